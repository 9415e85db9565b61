"""The JSON Lines reader: line numbers, blank lines, a last line without newline, and strict parsing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.sources.jsonl import JsonLines, Problem, count_lines, parse_line


def _read(tmp_path: Path, data: bytes) -> tuple[list[tuple[int, Any, str | None]], JsonLines]:
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    reader = JsonLines(path)
    return [(line.number, line.value, line.problem.reason if line.problem else None) for line in reader], reader


def test_line_numbers_blank_lines_and_a_last_line_without_newline(tmp_path: Path) -> None:
    lines, reader = _read(tmp_path, b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n{"a": 2\n{"a": 3}\n\t\n{"a": 4}')
    assert lines == [(1, {"a": 1}, None), (4, None, "invalid_json"), (5, {"a": 3}, None), (7, {"a": 4}, None)]
    assert (reader.lines, reader.blank_lines) == (7, 3)
    assert count_lines(tmp_path / "x.jsonl") == 4  # the same records, counted without parsing


def test_a_bad_line_names_its_line_and_the_rest_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": }\n{"a": 3}\n')
    got = list(JsonLines(path))
    assert [(g.locator, g.problem) for g in got] == [
        ("line 1", None), ("line 2", Problem("invalid_json", "Expecting value at byte offset 6 of the record")),
        ("line 3", None)]


def test_an_empty_file_has_no_lines(tmp_path: Path) -> None:
    lines, reader = _read(tmp_path, b"")
    assert lines == [] and (reader.lines, reader.blank_lines) == (0, 0)
    assert count_lines(tmp_path / "x.jsonl") == 0


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"a": NaN}', Problem("invalid_json", "NaN is not JSON")),
    (b'{"a": -Infinity}', Problem("invalid_json", "-Infinity is not JSON")),
    (b'{"a": "\xff\xfe"}', Problem("invalid_json", "invalid UTF-8 at byte offset 7 of the record")),
    (b'{"a": "\xc3("}', Problem("invalid_json", "invalid UTF-8 at byte offset 7 of the record")),
    (b'{"a": "\\ud800"}', Problem("invalid_json", "lone surrogate \\ud800 in a string")),
    (b'{"\\udc80x": 1}', Problem("invalid_json", "lone surrogate \\udc80 in a string")),
    (b'{"a": "x\\u0000y"}', Problem("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store")),
    (b'{"a\\u0000": 1}', Problem("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store")),
    (b'{"a": ' + b"[" * 512 + b"]" * 512 + b"}", Problem("too_deep", "the record nests deeper than 512 levels")),
    (b"[" * 5000 + b"]" * 5000, Problem("too_deep", "the record nests deeper than 512 levels")),
    (b'{"a": 1', Problem("invalid_json", "Expecting ',' delimiter at byte offset 7 of the record")),
])
def test_strict_parsing_refuses_with_a_precise_reason(body: bytes, problem: Problem) -> None:
    assert parse_line(body) == problem


@pytest.mark.parametrize(("body", "value"), [
    (b'{"n": 18446744073709551615}', {"n": 18446744073709551615}),
    (b'{"n": 18446744073709551616}', {"n": Decimal(18446744073709551616)}),  # beyond 64 bits: exact, not a float
    (b'{"n": -9223372036854775809}', {"n": Decimal(-9223372036854775809)}),
    (b'{"n": 123456789012345678901234567890}', {"n": Decimal("123456789012345678901234567890")}),
    (b'{"f": 0.12345678901234567, "g": 1e400, "h": 1e-400}',                  # digits a float would lose
     {"f": Decimal("0.12345678901234567"), "g": Decimal("1E+400"), "h": Decimal("1E-400")}),
    (b'{"f": 0.95, "g": 1.5, "i": 9223372036854775807}', {"f": 0.95, "g": 1.5, "i": 9223372036854775807}),
    (b'{"s": "\\\\u0000"}', {"s": "\\u0000"}),                               # an escaped backslash, then text
    (b'{"s": "\\ud83d\\ude00"}', {"s": "\U0001F600"}),                       # a surrogate pair is one character
    ("{\"s\": \"ação\"}".encode(), {"s": "ação"}),
])
def test_strict_parsing_keeps_what_json_holds(body: bytes, value: Any) -> None:
    parsed = parse_line(body)
    assert parsed == value
    assert {k: type(v) for k, v in parsed.items()} == {k: type(v) for k, v in value.items()}


def test_exactly_512_levels_is_kept() -> None:
    value = parse_line(b"[" * 512 + b"]" * 512)
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == 512
