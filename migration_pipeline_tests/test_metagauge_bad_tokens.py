"""Issue 14 (items 2, 7, 8) end to end: one bad token in a Metagauge users.json quarantines exactly that
record while every other record loads and the gates pass, and a reader that loses a record fails the
row-count gate because the source side is counted independently of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.reconcile import (
    CheckOutcome,
    checksum_gate,
    current_plan,
    row_count_gate,
    table_counts,
)
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.sources.json_array import Element
from migration_pipeline.stores.metagauge import METAGAUGE_STORE
from migration_pipeline.stores.metagauge import store as metagauge_store

SPEC = METAGAUGE_STORE
USERS = 200
BAD = b'"__BAD__"'


def _uid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def _record(i: int, note: Any = "fine") -> bytes:
    return json.dumps({"id": _uid(i), "email": f"u{i}@example.com", "password": "$2b$10$hash", "name": f"User {i}",
                       "apiKey": f"key-{i}", "note": note}).encode()


def _write_users(root: Path, records: list[bytes], tail: bytes = b"\n]\n") -> Path:
    data = root / "metagauge" / "data"
    data.mkdir(parents=True)
    path = data / "users.json"
    path.write_bytes(b"\xef\xbb\xbf[\n" + b",\n".join(records) + tail)
    return path


def _quarantine(url: str) -> list[tuple[str, ...]]:
    with connect(url) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT table_name, source_file, locator, reason, message FROM migration.quarantine"
            " WHERE store = 'metagauge' ORDER BY id")]


def _gates(url: str) -> tuple[CheckOutcome, CheckOutcome, dict[str, int]]:
    with connect(url) as conn:
        plan_id, _ = current_plan(conn, "metagauge")
        counts = table_counts(conn, SPEC, plan_id)
        counted = conn.execute("SELECT records_seen, records_counted FROM migration.unit_progress"
                               " WHERE store = 'metagauge' AND table_name = 'users'").fetchone()
        return row_count_gate(counts), checksum_gate(conn, SPEC, plan_id), counts["users"] | {
            "seen": counted[0], "counted": counted[1]}


TOKENS = {
    "nan": (b"NaN", "NaN is not JSON"),
    "invalid_utf8": (b'"\xff\xfe"', None),  # message computed from the record below
    "lone_surrogate": (b'"\\ud800"', "lone surrogate \\ud800 in a string"),
}


@pytest.mark.parametrize("position", [0, USERS // 2, USERS - 1])
@pytest.mark.parametrize("token", list(TOKENS))
def test_one_bad_token_quarantines_only_its_record(database_url: str, tmp_path: Path, token: str,
                                                   position: int) -> None:
    bad, message = TOKENS[token]
    records = [_record(i) for i in range(USERS)]
    records[position] = _record(position, "__BAD__").replace(BAD, bad)
    if message is None:
        at = records[position].index(bad)
        message = f"invalid UTF-8 at byte offset {at + 1} of the record"  # after the token's quote
    _write_users(tmp_path, records)

    summary = stage_store(database_url, SPEC, tmp_path, run_id="t", secret=None, workers=1)

    assert summary.staged["users"] == USERS - 1
    assert _quarantine(database_url) == [("users", "data/users.json", f"[{position}]", "invalid_json", message)]
    rows, checksums, users = _gates(database_url)
    assert rows.passed and checksums.passed, (rows.summary, checksums.summary)
    assert users == {"source": USERS, "staged": USERS - 1, "quarantined": 1, "expected": USERS - 1,
                     "seen": USERS, "counted": USERS}
    with connect(database_url) as conn:
        loaded = {str(r[0]) for r in conn.execute('SELECT id FROM "metagauge__staging".users')}
    assert loaded == {_uid(i) for i in range(USERS) if i != position}


def test_every_gate_green_with_bad_tokens_first_middle_last(database_url: str, tmp_path: Path) -> None:
    records = [_record(i) for i in range(USERS)]
    for position, token in ((0, "nan"), (USERS // 2, "invalid_utf8"), (USERS - 1, "lone_surrogate")):
        records[position] = _record(position, "__BAD__").replace(BAD, TOKENS[token][0])
    _write_users(tmp_path, records)
    stage_store(database_url, SPEC, tmp_path, run_id="g", secret=None, workers=1)
    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, SPEC, "g", tmp_path / "docs")
    assert [o.name for o in outcomes if not o.passed] == []
    assert [q[2:4] for q in _quarantine(database_url)] == [
        ("[0]", "invalid_json"), (f"[{USERS // 2}]", "invalid_json"), (f"[{USERS - 1}]", "invalid_json")]


def test_numbers_beyond_float_are_loaded_exactly(database_url: str, tmp_path: Path) -> None:
    records = [_record(i) for i in range(USERS)]
    records[3] = _record(3, "__BAD__").replace(BAD, b"1e400")
    records[4] = _record(4, "__BAD__").replace(BAD, b"[123456789012345678901234567890, 0.1000000000000000000001]")
    _write_users(tmp_path, records)
    summary = stage_store(database_url, SPEC, tmp_path, run_id="n", secret=None, workers=1)
    assert summary.staged["users"] == USERS
    assert _quarantine(database_url) == []
    with connect(database_url) as conn:
        notes = dict(conn.execute(
            """SELECT id::text, (extra->'note')::text FROM "metagauge__staging".users WHERE id = ANY(%s)""",
            ([_uid(3), _uid(4)],)).fetchall())
    assert notes == {_uid(3): "1" + "0" * 400, _uid(4): "[123456789012345678901234567890, 0.1000000000000000000001]"}
    rows, checksums, _ = _gates(database_url)
    assert rows.passed and checksums.passed


def test_truncated_file_loads_every_earlier_record(database_url: str, tmp_path: Path) -> None:
    records = [_record(i) for i in range(USERS)]
    cut = records[150][:40]
    _write_users(tmp_path, [*records[:150], cut], tail=b"")
    summary = stage_store(database_url, SPEC, tmp_path, run_id="c", secret=None, workers=1)
    assert summary.staged["users"] == 150
    assert _quarantine(database_url) == [(
        "users", "data/users.json", "[150]", "invalid_json",
        "unexpected end of file: a JSON array is not closed (40 bytes of this element unread)")]
    rows, checksums, users = _gates(database_url)
    assert rows.passed and checksums.passed
    assert users["source"] == users["counted"] == 151


def test_deep_nesting_is_too_deep(database_url: str, tmp_path: Path) -> None:
    records = [_record(i) for i in range(USERS)]
    records[7] = _record(7, "__BAD__").replace(BAD, b"[" * 100_000 + b"]" * 100_000)
    _write_users(tmp_path, records)
    summary = stage_store(database_url, SPEC, tmp_path, run_id="d", secret=None, workers=1)
    assert summary.staged["users"] == USERS - 1
    assert _quarantine(database_url) == [
        ("users", "data/users.json", "[7]", "too_deep", "the element nests deeper than 512 levels")]
    rows, checksums, _ = _gates(database_url)
    assert rows.passed and checksums.passed


def test_nul_character_rule(database_url: str, tmp_path: Path) -> None:
    records = [_record(i) for i in range(USERS)]
    records[9] = _record(9, "a\x00b")  # json.dumps writes \u0000
    _write_users(tmp_path, records)
    stage_store(database_url, SPEC, tmp_path, run_id="z", secret=None, workers=1)
    assert _quarantine(database_url) == [("users", "data/users.json", "[9]", "nul_character",
                                          "a string holds \\u0000 (NUL), which PostgreSQL cannot store")]


def test_a_reader_that_drops_a_record_fails_the_row_count_gate(database_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _write_users(tmp_path, [_record(i) for i in range(USERS)])
    real = metagauge_store.read_json_array

    def losing(path: Path, *args: Any, **kwargs: Any) -> Iterator[Element]:
        return (e for e in real(path, *args, **kwargs) if e.index != 5)  # a parser bug loses record [5]

    monkeypatch.setattr(metagauge_store, "read_json_array", losing)
    stage_store(database_url, SPEC, tmp_path, run_id="l", secret=None, workers=1)
    rows, checksums, users = _gates(database_url)
    assert users == {"source": USERS, "staged": USERS - 1, "quarantined": 0, "expected": USERS,
                     "seen": USERS - 1, "counted": USERS}
    assert not rows.passed
    assert rows.summary == f"users: {USERS} source ≠ {USERS - 1} staged + 0 quarantined"
    assert checksums.passed  # the checksum only covers what the reader read: it cannot see the loss


def test_normalizers_take_exact_numbers() -> None:
    s = metagauge_store
    assert s._numeric(Decimal("25.123456789012345678"), "w") == Decimal("25.12345679")
    assert s._int(Decimal("1E+3"), "n") == 1000
    assert s._key(Decimal("123456789012345678901234567890"), "id") == "123456789012345678901234567890"
    assert s._json_text([Decimal("1e400")], "abi") == "[1E+400]"
    assert orjson.dumps(s._Json()({"a": Decimal("1e400"), "b": Decimal("0.1000000000000000000001")}, "x")) == (
        b'{"a":1E+400,"b":0.1000000000000000000001}')
    for call, reason in [(lambda: s._numeric(Decimal("1e400"), "w"), "out_of_range"),
                         (lambda: s._int(Decimal("1e400000000"), "n"), "out_of_range"),
                         (lambda: s._int(Decimal("1.00000000000000001"), "n"), "invalid_value")]:
        with pytest.raises(s._Reject) as caught:
            call()
        assert caught.value.reason == reason
