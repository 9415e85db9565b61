"""The streaming JSON reader (`sources.json_array`) and its independent item count (`sources.json_count`)
alone: every case at several block sizes (so that each boundary falls inside strings, escapes and
brackets), and the count always equal to the reader's number of items."""

from __future__ import annotations

import random
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.sources.json_array import Element, JsonRejected, parse_json, read_json
from migration_pipeline.sources.json_count import count_items

EMPTY_AT_CLOSE = ("invalid_json", "empty element: a comma before the closing bracket")
NOT_CLOSED = "unexpected end of file: a JSON array is not closed"

CASES: list[tuple[bytes, list[tuple[str, Any]]]] = [
    (b"", [("[0]", ("invalid_json", "the file is empty"))]),
    (b"\xef\xbb\xbf \r\n", [("[0]", ("invalid_json", "the file is empty"))]),
    (b'{"users": []}', [("[0]", ("invalid_json", "the file does not hold a JSON array"))]),
    (b"[]", []),
    (b"\xef\xbb\xbf[\r\n]\r\n  ", []),
    (b'\xef\xbb\xbf[\r\n  {"a": 1},\r\n  {"b": [2, "]}"]}\r\n]\r\n \t', [("[0]", {"a": 1}), ("[1]", {"b": [2, "]}"]})]),
    (b'[{"a": "x\\"]", "b": "\\\\"}, "s,t", 3]', [("[0]", {"a": 'x"]', "b": "\\"}), ("[1]", "s,t"), ("[2]", 3)]),
    (b"[1,,2]", [("[0]", 1), ("[1]", ("invalid_json", "empty element: two commas with nothing between")),
                 ("[2]", 2)]),
    (b"[1,]", [("[0]", 1), ("[1]", EMPTY_AT_CLOSE)]),
    (b"[1 2, 3]", [("[0]", ("invalid_json", "Extra data at byte offset 2 of the record")), ("[1]", 3)]),
    (b"[1] junk", [("[0]", 1), ("[1]", ("invalid_json", "4 bytes after the closing bracket were not read"))]),
    (b"[1}", [("[0]", 1), ("[1]", ("invalid_json", "a JSON array is closed by the wrong kind of bracket"))]),
    (b"[", [("[0]", ("invalid_json", f"{NOT_CLOSED} (0 bytes unread)"))]),
    (b"[1,", [("[0]", 1), ("[1]", ("invalid_json", f"{NOT_CLOSED} (0 bytes unread)"))]),
    (b'[1, {"x": "ab\\', [("[0]", 1), ("[1]", ("invalid_json", f"{NOT_CLOSED} (10 bytes of this element unread)"))]),
    (b'[{"a": NaN}, {"a": Infinity}, {"a": -Infinity}, 1]',
     [("[0]", ("invalid_json", "NaN is not JSON")), ("[1]", ("invalid_json", "Infinity is not JSON")),
      ("[2]", ("invalid_json", "-Infinity is not JSON")), ("[3]", 1)]),
    (b'[{"a": "\xff"}, {"\xed\xa0\x80": 1}, 2]',
     [("[0]", ("invalid_json", "invalid UTF-8 at byte offset 7 of the record")),
      ("[1]", ("invalid_json", "invalid UTF-8 at byte offset 2 of the record")), ("[2]", 2)]),
    (b'[{"a": "\\ud800"}, {"\\uDC00x": 1}, "\\ud83d\\ude00", "\\\\ud800"]',
     [("[0]", ("invalid_json", "lone surrogate \\ud800 in a string")),
      ("[1]", ("invalid_json", "lone surrogate \\udc00 in a string")), ("[2]", "\U0001f600"), ("[3]", "\\ud800")]),
    (b'[{"a": "\\u0000"}, {"\\u0000": 1}, "\\\\u0000"]',
     [("[0]", ("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store")),
      ("[1]", ("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store")), ("[2]", "\\u0000")]),
    (b'[{"a": "\x01"}, 1]', [("[0]", ("invalid_json", "Invalid control character at byte offset 7 of the record")),
                              ("[1]", 1)]),
    (b"[1e400, -2.5E-400, 0.1000000000000000000001, 123456789012345678901234567890, 18446744073709551615,"
     b" 1.5, 100.0, -0.0, 12345678.901234567, 1.00000000000000001]",
     [("[0]", Decimal("1e400")), ("[1]", Decimal("-2.5e-400")), ("[2]", Decimal("0.1000000000000000000001")),
      ("[3]", Decimal("123456789012345678901234567890")), ("[4]", 18446744073709551615), ("[5]", 1.5),
      ("[6]", 100.0), ("[7]", -0.0), ("[8]", 12345678.901234567), ("[9]", Decimal("1.00000000000000001"))]),
]


def _items(elements: list[Element]) -> list[tuple[str, Any]]:
    return [(e.locator, e.value if e.ok else (e.reason, e.message)) for e in elements]


@pytest.mark.parametrize("block_size", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize(("data", "expected"), CASES)
def test_items_and_independent_count(tmp_path: Path, data: bytes, expected: list[tuple[str, Any]],
                                     block_size: int) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(data)
    items = _items(list(read_json(path, block_size=block_size)))
    assert items == expected
    assert [type(v) for _, v in items] == [type(v) for _, v in expected]  # Decimal stays Decimal, float float
    assert count_items(path, block_size=block_size) == len(expected)


def test_count_agrees_with_reader_on_random_bytes(tmp_path: Path) -> None:
    """Any bytes at all, cut into blocks anywhere: the independent count equals the reader's items."""
    rng = random.Random(14)
    path = tmp_path / "f.json"
    alphabet = b'[]{},"\\ \n1x:'
    valid = b'[{"a": [1, {"b": "c\\"]"}], "d": "e,f"}, 2, "g", [], {}]'
    for _ in range(1000):
        if rng.random() < 0.5:
            data = bytearray(valid)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(alphabet)
        else:
            data = bytearray(b"[" + bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30))))
        block = rng.choice([1, 2, 3, 5, 64])
        for container in ("array", "object"):
            path.write_bytes((b"[" if container == "array" else b"{") + bytes(data[1:]))
            items = list(read_json(path, container, block_size=block))  # type: ignore[arg-type]
            assert count_items(path, container, block_size=rng.choice([1, 2, 3, 5, 64])) == len(items), bytes(data)


def test_huge_integer_beyond_int_digit_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    digits = "9" * 5000  # int() refuses more than 4300 digits
    path.write_text(f"[{digits}, -{digits}]")
    assert [e.value for e in read_json(path)] == [Decimal(digits), Decimal("-" + digits)]


@pytest.mark.parametrize("position", [0, 1, 2])
def test_one_bad_element_only_loses_itself(tmp_path: Path, position: int) -> None:
    records = [b'{"id": 0}', b'{"id": 1}', b'{"id": 2}']
    records[position] = b'{"id": ' + str(position).encode() + b', "x": [[[[' + b'"\\ud800"' + b"]]]]}"
    path = tmp_path / "f.json"
    path.write_bytes(b"[\n" + b",\n".join(records) + b"\n]\n")
    items = _items(list(read_json(path, block_size=5)))
    assert items == [(f"[{i}]", ("invalid_json", "lone surrogate \\ud800 in a string") if i == position else {"id": i})
                     for i in range(3)]


def test_too_deep_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(b'[{"ok": 1}, {"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, {"ok": 2}]')
    tracemalloc.start()
    try:
        items = _items(list(read_json(path, max_depth=512, block_size=1 << 16)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert items == [("[0]", {"ok": 1}), ("[1]", ("too_deep", "the element nests deeper than 512 levels")),
                     ("[2]", {"ok": 2})]
    assert peak < 2_000_000, f"peak {peak} bytes"
    assert count_items(path) == 3


def test_depth_cap_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"[[[1]], [[[1]]]]")
    assert _items(list(read_json(path, max_depth=2))) == [
        ("[0]", [[1]]), ("[1]", ("too_deep", "the element nests deeper than 2 levels"))]


def test_object_of_members(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b'{"0xa": {"n": 1}, "0xb": NaN, "0x\\ud800": {}, "0xc": [1], "0xd": 1e400}')
    items = _items(list(read_json(path, "object", block_size=4)))
    assert items == [("0xa", {"n": 1}), ("0xb", ("invalid_json", "NaN is not JSON")),
                     ("[2]", ("invalid_json", "lone surrogate \\ud800 in a string")), ("0xc", [1]),
                     ("0xd", Decimal("1e400"))]
    assert count_items(path, "object") == 5
    path.write_bytes(b'[{"a": 1}]')
    assert _items(list(read_json(path, "object"))) == [("[0]", ("invalid_json", "the file does not hold a JSON object"))]
    assert count_items(path, "object") == 1


def test_parse_json_document() -> None:
    assert parse_json(b'\xef\xbb\xbf{"fid": 1, "big": 1e400}\r\n') == {"fid": 1, "big": Decimal("1e400")}
    for raw, reason, message in [
        (b'{"a": NaN}', "invalid_json", "NaN is not JSON"),
        (b'{"a": "\\udfff"}', "invalid_json", "lone surrogate \\udfff in a string"),
        (b'{"a": "\xc3"}', "invalid_json", "invalid UTF-8 at byte offset 7 of the record"),
        (b'\xef\xbb\xbf{"a": "\xc3"}', "invalid_json", "invalid UTF-8 at byte offset 10 of the record"),
        (b'{"a": 1', "invalid_json", "Expecting ',' delimiter at byte offset 7 of the record"),
        (b"[" * 100_000, "too_deep", "the record nests deeper than 512 levels"),
    ]:
        with pytest.raises(JsonRejected) as caught:
            parse_json(raw)
        assert (caught.value.reason, caught.value.message) == (reason, message)


def test_messages_never_echo_values(tmp_path: Path) -> None:
    secret = "$2b$12$SECRETHASHVALUE"
    path = tmp_path / "f.json"
    path.write_bytes(
        f'[{{"p": "{secret}", "q": NaN}}, {{"p": "{secret}\\ud800"}}, {{"p": "{secret}", "x": tru}},'
        f' {{"p": "{secret}\x01"}}, {{"p": "{secret}\\q"}}, {{"p": "{secret}'.encode())
    for element in read_json(path):
        assert not element.ok and "SECRET" not in element.message
