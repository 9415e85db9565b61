"""Single odd values never crash a store nor leak: each becomes one quarantine row with its file, its
locator and a precise reason, and every other record loads (issue 14, items 4, 5, 6 and 14)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.spec import Batch, Column, Discovery, ReadContext, StoreSpec, TableSpec, Unit
from migration_pipeline.core.stage import stage_store
from migration_pipeline.core.timestamps import InvalidTimestamp, parse_timestamp
from migration_pipeline.core.values import ColumnType, diagnose, fast_check
from migration_pipeline.stores.wallet.store import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES

KEYLESS = json.loads((SAMPLES / "wallet/storage/wallets/wallet_2_base-account.json").read_text())
PASTED_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
LONG_CHAIN = "a" * 60


def _keyless(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in {**KEYLESS, **fields}.items() if v is not None}


HOSTILE = {
    "wallet_30_base-account.json": _keyless(fid="²"),
    "wallet_31_base-account.json": _keyless(fid=31, createdAt="²"),
    "wallet_32_base-account.json": _keyless(fid=32, createdAt="9999-12-31T23:59:59-05:00"),
    "wallet_33_base-account.json": _keyless(fid=33, createdAt="0001-01-01T00:00:00+05:00"),
    f"wallet_34_{LONG_CHAIN}.json": _keyless(fid=34, chain=LONG_CHAIN),
    "wallet_35_base-account.json": _keyless(fid=35, chain=PASTED_KEY),
    "wallet_36_base-account.json": _keyless(fid=36, createdAt=1e30),
    "wallet_37_base-account.json": _keyless(fid=1e30),
    "wallet_38_base-account.json": _keyless(fid=38, createdAt="1" * 5000),
    "wallet_39_base-account.json": _keyless(fid=39, note="a\x00b"),
    "wallet_40_base-account.json": _keyless(fid=40, note="\ud800"),
    "wallet_41_base-account.json": _keyless(fid=123456789012345678901234567890),
    # orjson reads an integer beyond 64 bits as a float: described as the float, the message would differ
    "wallet_42_base-account.json": _keyless(fid=42, chain=12345678901234567890123),
    # a float or an object in a field no column holds sends the file to the strict reader, which loads it
    "wallet_43_base-account.json": _keyless(fid=43, meta={"score": 2.5, "tags": ["x"]}),
}

EXPECTED = {
    "wallet_30_base-account.json": ("invalid_fid", "fid inside the file is a string of 1 characters that is not a "
                                    "positive 64-bit integer in ASCII digits"),
    "wallet_31_base-account.json": ("invalid_timestamp", "createdAt: not ISO-8601"),
    "wallet_32_base-account.json": ("invalid_timestamp", "createdAt: out of range once converted to UTC (before year 1"
                                    " or after 9999)"),
    "wallet_33_base-account.json": ("invalid_timestamp", "createdAt: out of range once converted to UTC (before year 1"
                                    " or after 9999)"),
    f"wallet_34_{LONG_CHAIN}.json": ("value_too_long", "column chain: 60 characters, over the column's 50"),
    "wallet_36_base-account.json": ("invalid_timestamp", "createdAt: epoch number out of range"),
    "wallet_37_base-account.json": ("invalid_fid", "fid inside the file is a JSON number with a fraction or an "
                                    "exponent (such as 1e30), not an integer"),
    "wallet_38_base-account.json": ("invalid_timestamp", "createdAt: epoch number out of range"),
    "wallet_39_base-account.json": ("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store"),
    "wallet_40_base-account.json": ("invalid_json", "lone surrogate \\ud800 in a string"),
    "wallet_41_base-account.json": ("invalid_fid", "fid inside the file is not a positive 64-bit integer"),
    "wallet_42_base-account.json": ("chain_mismatch", "chain inside the file (a number of 23 characters, sha256 "
                                    "0c71ebdc…) differs from 'base-account' in its name"),
}


@pytest.fixture
def hostile_store(tmp_path: Path) -> Path:
    wallet_dir = tmp_path / "wallet" / "storage" / "wallets"
    wallet_dir.mkdir(parents=True)
    shutil.copy(SAMPLES / "wallet/storage/wallets/wallet_2_base-account.json", wallet_dir)
    for name, record in HOSTILE.items():
        (wallet_dir / name).write_text(json.dumps(record))
    return tmp_path


def test_each_odd_wallet_value_is_one_quarantine_row_and_the_rest_loads(database_url: str, hostile_store: Path) -> None:
    summary = stage_store(database_url, WALLET_STORE, hostile_store, "hostile", SAMPLE_SECRET, workers=1)
    with connect(database_url) as conn:
        rows = conn.execute("SELECT source_file, locator, reason, message FROM migration.quarantine"
                            " WHERE store = 'wallet' ORDER BY source_file").fetchall()
        loaded = conn.execute("SELECT fid, chain FROM wallet__staging.wallets ORDER BY fid").fetchall()
    got = {r[0].removeprefix("storage/wallets/"): (r[2], r[3]) for r in rows}
    assert {k: v for k, v in got.items() if k != "wallet_35_base-account.json"} == EXPECTED
    reason, message = got["wallet_35_base-account.json"]
    assert reason == "chain_mismatch"
    assert PASTED_KEY not in message and PASTED_KEY[2:18] not in message
    assert message.startswith(f"chain inside the file (a string of {len(PASTED_KEY)} characters, sha256 ")
    assert {r[1] for r in rows} == {"file"}
    assert loaded == [(2, "base-account"), (43, "base-account")]
    assert summary.seen == {"wallets": 15}


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "²", "١٢٣", "1" * 400])
def test_timestamps_beyond_the_calendar_are_invalid_not_a_crash(text: str) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_timestamp(text)


def test_timestamps_at_the_edges_that_exist_are_kept() -> None:
    assert parse_timestamp("9999-12-31T23:59:59+05:00").isoformat() == "9999-12-31T18:59:59+00:00"
    assert parse_timestamp("0001-01-01T00:00:00-05:00").isoformat() == "0001-01-01T05:00:00+00:00"
    assert parse_timestamp(1_700_000_000_123).isoformat() == "2023-11-14T22:13:20.123000+00:00"


# --- the engine's check of every value against its column, for any store ---------------------------------

TYPES = [ColumnType("name", "character varying", max_length=5), ColumnType("n", "integer"),
         ColumnType("amount", "numeric", precision=5, scale=2), ColumnType("doc", "jsonb"),
         ColumnType("note", "text"), ColumnType("uid", "uuid")]
GOOD = ("abcde", 2**31 - 1, Decimal("999.99"), {"k": [1, "x"]}, "ok", "6f1c2a34-8b2d-4e8f-9a1b-2c3d4e5f6a7b")


@pytest.mark.parametrize(("position", "value", "reason", "message"), [
    (0, "abcdef", "value_too_long", "column name: 6 characters, over the column's 5"),
    (1, 2**31, "out_of_range", "column n: an integer of 10 digits, outside integer"),
    (2, Decimal("1000"), "out_of_range", "column amount: a number beyond numeric(5,2)"),
    (3, {"k": "a\x00b"}, "nul_character", "column doc: holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store"),
    (3, {"k": {1, 2}}, "invalid_value", "column doc: a dict that cannot be written as JSON"),
    (4, "a\ud800b", "invalid_unicode", "column note: holds a lone surrogate, which is not Unicode text"),
    (4, "a\x00b", "nul_character", "column note: holds a NUL character (\\u0000), which PostgreSQL text cannot store"),
    (5, "not-a-uuid", "invalid_value", "column uid: a str of 10 characters that is not a UUID"),
])
def test_diagnose_names_the_column_and_never_the_value(position: int, value: Any, reason: str, message: str) -> None:
    row = list(GOOD)
    row[position] = value
    problem = diagnose(TYPES, row)
    assert problem is not None and (problem.reason, problem.message) == (reason, message)
    assert diagnose(TYPES, GOOD) is None
    assert fast_check(TYPES)(GOOD) is True


THINGS = TableSpec(name="things", description="odd values", columns=(
    Column("id", "int"), Column("name", "text"), Column("n", "int"), Column("doc", "jsonb"), Column("note", "text")))


def _discover(store_dir: Path) -> Discovery:
    return Discovery(units=(Unit(number=0, payload=None),), unmapped=(), fingerprint="fixed")


ODD_ROWS: list[tuple[Any, ...]] = [
    (1, "fine", 1, {"a": 1}, "fine"),
    (2, "a" * 51, 2, {}, "too long"),
    (3, "fine", 2**31, {}, "integer overflow"),
    (4, "fine", 4, {"a": "x\x00"}, "nul in jsonb"),
    (5, "fine", 5, {}, "a\x00b"),
    (6, "fine", 6, {}, "lone \udc80 surrogate"),
    (7, "fine", 7, {"big": 2**80}, "big int in jsonb"),
    (8, "last", 8, None, None),
]


def _read(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    batch = Batch()
    for i, row in enumerate(ODD_ROWS):
        batch.add_row("things", (*row, "things.json", f"[{i}]", i + 1))
    yield batch


ODD_STORE = StoreSpec(name="oddities", description="engine test", folder="oddities", tables=(THINGS,),
                      discover=_discover, read_unit=_read, parallel=False)


def test_the_engine_quarantines_values_their_columns_cannot_store(database_url: str, tmp_path: Path) -> None:
    """Issue 14.6: checked against the column's type and width before COPY, for any store."""
    with connect(database_url) as conn:
        conn.execute("CREATE SCHEMA oddities")
        conn.execute("CREATE TABLE oddities.things (id integer PRIMARY KEY, name varchar(50), n integer, doc jsonb,"
                     " note text)")
        conn.commit()
    summary = stage_store(database_url, ODD_STORE, tmp_path, "odd", None, workers=1)
    with connect(database_url) as conn:
        quarantined = conn.execute("SELECT locator, reason, message FROM migration.quarantine"
                                   " WHERE store = 'oddities' ORDER BY locator").fetchall()
        loaded = conn.execute("SELECT id FROM oddities__staging.things ORDER BY id").fetchall()
    assert quarantined == [
        ("[1]", "value_too_long", "column name: 51 characters, over the column's 50"),
        ("[2]", "out_of_range", "column n: an integer of 10 digits, outside integer"),
        ("[3]", "nul_character", "column doc: holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store"),
        ("[4]", "nul_character", "column note: holds a NUL character (\\u0000), which PostgreSQL text cannot store"),
        ("[5]", "invalid_unicode", "column note: holds a lone surrogate, which is not Unicode text"),
    ]
    assert loaded == [(1,), (7,), (8,)]
    assert summary.seen == {"things": 8} and summary.staged == {"things": 3}
    with connect(database_url) as conn:  # an integer beyond 64 bits is kept exactly in jsonb
        assert conn.execute("SELECT doc->>'big' FROM oddities__staging.things WHERE id = 7").fetchone() == (
            str(2**80),)


def test_a_value_postgresql_still_refuses_aborts_only_its_unit_and_is_never_quoted(
    database_url: str, tmp_path: Path
) -> None:
    """The safety net behind the checks: raw JSON text a store hands over (an orjson Fragment) is not parsed
    again; if PostgreSQL refuses it, the error names the unit, never the value, and the unit rolls back."""
    import dataclasses

    import orjson

    from migration_pipeline.core.errors import MigrationError

    def reader(unit: Unit, context: ReadContext) -> Iterator[Batch]:
        batch = Batch()
        batch.add_row("things", (1, "ok", 1, orjson.Fragment(b'{"SECRET-0xdeadbeef": '), None, "t.json", "[0]", 1))
        yield batch

    with connect(database_url) as conn:
        conn.execute("CREATE SCHEMA oddities")
        conn.execute("CREATE TABLE oddities.things (id integer PRIMARY KEY, name varchar(50), n integer, doc jsonb,"
                     " note text)")
        conn.commit()
    with pytest.raises(MigrationError) as info:
        stage_store(database_url, dataclasses.replace(ODD_STORE, read_unit=reader), tmp_path, "r", None, workers=1)
    assert "SECRET" not in str(info.value) and "deadbeef" not in str(info.value)
    assert str(info.value).startswith("oddities: PostgreSQL refused unit 0 (InvalidTextRepresentation, SQLSTATE 22P02)")
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM oddities__staging.things").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM migration.unit_progress WHERE store = 'oddities'").fetchone() == (0,)


def test_unknown_wallet_fields_are_counted_and_reported_never_dropped_silently(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 14.19: a wallet table has no extra column, so fields no column holds are counted per field and
    listed in the report; a field name that looks like a pasted key is described, not shown."""
    from migration_pipeline.core.report import build_report

    wallet_dir = tmp_path / "wallet" / "storage" / "wallets"
    wallet_dir.mkdir(parents=True)
    for fid in (50, 51, 52):
        extra = {"nickname": "x", "label": "y"} if fid != 52 else {"nickname": "z", PASTED_KEY: 1}
        (wallet_dir / f"wallet_{fid}_base-account.json").write_text(json.dumps({**KEYLESS, "fid": fid, **extra}))
    (wallet_dir / "wallet_53_base-account.json").write_text(json.dumps({**KEYLESS, "fid": 53, "chain": "x", "ghost": 1}))
    stage_store(database_url, WALLET_STORE, tmp_path, "fields", SAMPLE_SECRET, workers=1)
    with connect(database_url) as conn:
        counted = conn.execute("SELECT table_name, field, sum(records)::int FROM migration.unmapped_fields"
                               " WHERE store = 'wallet' GROUP BY 1, 2 ORDER BY field").fetchall()
        html = build_report(conn, WALLET_STORE, "fields", tmp_path / "reports", outcome="blocked").read_text()
    described = f"<a name of {len(PASTED_KEY)} characters, sha256 "
    assert [(t, f if not f.startswith("<") else described, n) for t, f, n in counted] == [
        ("wallets", described, 1), ("wallets", "label", 2), ("wallets", "nickname", 3)]  # ghost: a quarantined file
    assert "Source fields no column holds" in html and "<code>nickname</code>" in html
    assert PASTED_KEY not in html and PASTED_KEY[2:20] not in html


def test_email_case_folding_is_the_same_on_every_server(database_url: str, tmp_path: Path) -> None:
    """Issue 14.20: duplicates by e-mail compare ASCII letters case-insensitively under the "C" collation, not
    under the database's LC_CTYPE (which folded É to é on one server and not on another)."""
    from migration_pipeline.stores.metagauge import METAGAUGE_STORE

    users = json.loads((SAMPLES / "metagauge/data/users.json").read_text(encoding="utf-8-sig"))
    template = users[0]
    emails = ["ADA@example.com", "ada@EXAMPLE.com", "ÉVA@example.com", "éva@example.com"]
    data = tmp_path / "metagauge" / "data"
    data.mkdir(parents=True)
    (data / "users.json").write_text(json.dumps(
        [{**template, "id": f"user_{i}_x", "email": email, "apiKey": f"key-{i}"} for i, email in enumerate(emails)]))
    stage_store(database_url, METAGAUGE_STORE, tmp_path, "emails", None, workers=1)
    with connect(database_url) as conn:
        loaded = conn.execute("SELECT email FROM metagauge__staging.users ORDER BY email").fetchall()
        duplicates = conn.execute("SELECT locator FROM migration.quarantine WHERE reason = 'duplicate_key'").fetchall()
    assert sorted(e for (e,) in loaded) == sorted(["ADA@example.com", "ÉVA@example.com", "éva@example.com"])
    assert duplicates == [("[1]",)]


def test_the_serving_gate_fails_a_lookup_without_an_index_with_its_query_and_plan(database_url: str,
                                                                                  tmp_path: Path) -> None:
    """Issue 19: each declared lookup must be able to use an index; the wallet's case-insensitive address
    lookup has one (it was a sequential scan of the whole table), a lookup on an unindexed column has not."""
    from migration_pipeline.core.serving import Lookup, serving_gate

    stage_store(database_url, WALLET_STORE, SAMPLES, "serve", SAMPLE_SECRET, workers=1)
    declared = next(g for g in WALLET_STORE.gates if g.name == "serving")
    with connect(database_url) as conn:
        passed, summary, details = declared.evaluate(conn, "wallet", "")
        assert (passed, summary) == (True, "all 4 declared lookups use an index")
        plan = details["lookups"]["wallet by address, any case"]["plan"]
        assert any(node.endswith("Index Scan using idx_wallets_address_lower") for node in plan), plan
        unindexed = serving_gate((Lookup("wallets by creation time", "wallets", "created_at = %s", ("created_at",)),))
        passed, summary, _ = unindexed.evaluate(conn, "wallet", "")
    assert not passed
    assert summary == ("1 of 1 lookups have no index and scan their whole table: wallets by creation time (SELECT * "
                       "FROM wallets WHERE created_at = %s: Seq Scan): add the index in sql/<store>/")


def test_the_serving_gate_waits_for_an_index_that_older_transactions_cannot_use_yet(database_url: str) -> None:
    """The finish updates rows before it builds indexes; while any older transaction runs, those updates stay
    HOT chains, the index is built with `indcheckxmin` and the planner of a snapshot older than the index
    ignores it: the gate saw a sequential scan and blocked promotion whenever the server was busy. The gate
    waits (bounded) until the index is usable, and passes once the older transaction ends."""
    import threading

    from migration_pipeline.stores.metagauge.store import METAGAUGE_STORE

    with connect(database_url, autocommit=True) as older:
        older.execute("BEGIN")
        older.execute("SELECT txid_current()")  # an xid older than every index the finish builds
        stage_store(database_url, METAGAUGE_STORE, SAMPLES, "older", None, workers=1)
        with connect(database_url) as conn:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON"
                " n.oid = c.relnamespace WHERE n.nspname = 'metagauge__staging' AND i.indcheckxmin").fetchone()
            assert waiting is not None and waiting[0] > 0  # the condition that made the gate flaky
            ending = threading.Timer(1.0, lambda: older.execute("COMMIT"))
            ending.start()
            gate = next(g for g in METAGAUGE_STORE.gates if g.name == "serving")
            passed, summary, _ = gate.evaluate(conn, "metagauge", "")
            ending.join()
    assert (passed, summary) == (True, "all 5 declared lookups use an index")
