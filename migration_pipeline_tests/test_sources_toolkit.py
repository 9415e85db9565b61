"""The pieces of `sources/` that several stores share: exact-number parsing, the rows of one file, the
discovery of a store of fixed files, and JSON text with exact numbers."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from migration_pipeline.core.spec import Batch, Note, Quarantined
from migration_pipeline.sources.coerce import dumps_exact
from migration_pipeline.sources.files import discover_fixed_files
from migration_pipeline.sources.json_array import JsonRejected, parse_exact, parse_json
from migration_pipeline.sources.records import FileRows, Reject


def test_parse_exact_keeps_every_number_and_of_one_kind() -> None:
    value = parse_exact(b'\xef\xbb\xbf{"a": 0.1, "b": 12, "c": 1e2, "d": 123456789012345678901234567890}')
    assert value == {"a": Decimal("0.1"), "b": 12, "c": Decimal("1E+2"), "d": 123456789012345678901234567890}
    assert type(value["a"]) is Decimal and type(value["b"]) is int
    assert type(parse_json(b'{"a": 0.1}')["a"]) is float  # the shared reader's float, where one is exact


@pytest.mark.parametrize(("raw", "reason", "message"), [
    (b"[NaN]", "invalid_json", "NaN is not JSON"),
    (b'["a\\u0000b"]', "nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store"),
    (b'{"a": 1', "invalid_json", "Expecting ',' delimiter at byte offset 7 of the record"),
    (b"[" + b"9" * 5000 + b"]", "invalid_json", "a number has more digits than can be read"),
    (b'"\xff"', "invalid_json", "invalid UTF-8 at byte offset 1 of the record"),
])
def test_parse_exact_refuses_what_is_not_json(raw: bytes, reason: str, message: str) -> None:
    with pytest.raises(JsonRejected) as refused:
        parse_exact(raw)
    assert (refused.value.reason, refused.value.message) == (reason, message)


def test_file_rows_number_rows_across_batches_and_reject_into_the_current_batch() -> None:
    first = Batch()
    rows = FileRows(first, "data/x.json", 7 << 40)
    rows.emit("t", (1, "a"), "[0]")
    rows.reject("t", "[1]", "invalid_value", "n is not a number")
    second = rows.batch = Batch()
    rows.emit("u", (2,), "[2].child")
    assert first.rows == {"t": [(1, "a", "data/x.json", "[0]", (7 << 40) + 1)]}
    assert first.quarantined == [Quarantined("t", "data/x.json", "[1]", "invalid_value", "n is not a number")]
    assert first.seen == {"t": 2}
    assert second.rows == {"u": [(2, "data/x.json", "[2].child", (7 << 40) + 2)]}


def test_batch_notes_add_up() -> None:
    batch = Batch()
    rounded = Note("t", "timestamp_rounded", "at: rounded")
    batch.note(rounded)
    batch.note(rounded, 4)
    batch.note(Note("t", "blank_line", "blank lines skipped in the file"), 2)
    assert batch.notes == {rounded: 5, Note("t", "blank_line", "blank lines skipped in the file"): 2}


def test_reject_carries_its_reason_and_message() -> None:
    with pytest.raises(Reject) as rejected:
        raise Reject("missing_field", "id is missing")
    assert (rejected.value.reason, rejected.value.message, str(rejected.value)) == (
        "missing_field", "id is missing", "id is missing")


def test_fixed_files_discovery(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name in ("b.json", "c.json", "notes.txt"):
        (tmp_path / "data" / name).write_text(name)
    os.symlink(tmp_path / "data" / "b.json", tmp_path / "data" / "a.json")  # a link is never read through
    files = ["data/a.json", "data/b.json", "data/missing.json", "data/c.json"]
    found = discover_fixed_files(tmp_path, files, lambda n, rel: (n, rel))
    assert [(u.number, u.payload) for u in found.units] == [(1, (1, "data/b.json")), (3, (3, "data/c.json"))]
    assert found.unmapped == ("data/a.json", "data/notes.txt")
    assert discover_fixed_files(tmp_path, files, lambda n, rel: n).fingerprint == found.fingerprint
    (tmp_path / "data" / "notes.txt").write_text("changed")
    assert discover_fixed_files(tmp_path, files, lambda n, rel: n).fingerprint != found.fingerprint
    assert discover_fixed_files(tmp_path / "absent", files, lambda n, rel: n).units == ()


def test_dumps_exact_writes_the_digits_parsed() -> None:
    assert dumps_exact({"a": Decimal("1E+400"), "b": Decimal("0.1000000000000000000001"), "c": 1}) == (
        b'{"a":1E+400,"b":0.1000000000000000000001,"c":1}')
