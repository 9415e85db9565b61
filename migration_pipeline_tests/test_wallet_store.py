"""The wallet store through the engine's functions (no Dagster): the samples give exactly what
data_samples/wallet/EXPECTED.md says, every quarantine reason of `normalize_wallet`, parallel staging."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from migration_pipeline.core.database import connect
from migration_pipeline.core.keys import cipher_key
from migration_pipeline.core.promote import get_phase, promote
from migration_pipeline.core.spec import ReadContext
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.wallet.generate import generate_wallet_store
from migration_pipeline.stores.wallet.store import (
    FILE_NAME,
    SHARDS,
    UNITS_PER_SHARD,
    WALLET_STORE,
    _Reject,
    normalize_wallet,
)

from .conftest import SAMPLE_SECRET, SAMPLES

STORE_DIR = SAMPLES / "wallet"
WALLET_DIR = STORE_DIR / "storage" / "wallets"
PREFIX = "storage/wallets/"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# EXPECTED.md, "Loaded": file -> (fid, chain, wallet_type, address as in the file, created_at or None = mtime, has key)
LOADED: dict[str, tuple[int, str, str, str, datetime | None, bool]] = {
    "wallet_0007_ethereum.json": (7, "ethereum", "trading", "0xF0C89cF06E3005352B7AD54396b818A435EF2C45",
                                  _utc("2024-10-05T14:30:45.678Z"), True),
    "wallet_10_ethereum.json": (10, "ethereum", "trading", "0xfCC4738399266dc2590D800Dfc0c9bbA47b822EA",
                                _utc("2025-01-15T08:30:00.000Z"), True),
    "wallet_12_ethereum.json": (12, "ethereum", "trading", "0x9c747ef9Cd36785F65B29c11aFE20934Db13Ca29",
                                _utc("2025-03-03T03:03:03.303Z"), True),
    "wallet_1_base-account.json": (1, "base-account", "base-account", "0xBD569bd9CA4739Da1530ad72783dFfD7dBe6Ef05",
                                   _utc("2024-03-01T09:15:02.250Z"), True),
    "wallet_1_ethereum.json": (1, "ethereum", "trading", "0x2Ea6D71B798718Ebb072A24D61A4c7DF5df98297",
                               _utc("2024-03-01T09:15:00.000Z"), True),
    "wallet_21_polygon.json": (21, "polygon", "polygon", "0x5C27dE5f668BF25B6c2f170FdC0562C0CC933312",
                               _utc("2025-09-14T10:22:31.123Z"), True),
    "wallet_2_base-account.json": (2, "base-account", "base-account", "0xd41A2fEB255dC2023dC1DBE1413e37A10c6BE787",
                                   _utc("2024-04-12T17:45:11.000Z"), False),
    "wallet_2_ethereum.json": (2, "ethereum", "trading", "0x4314e99b8F56bc7Ff7AFb64D6B9200E02006cd90",
                               _utc("2024-04-12T17:45:10.500Z"), True),
    "wallet_3_base-account.json": (3, "base-account", "base-account", "0xE273c281574473D8EDCE54520058c7Ff42c6B238",
                                   _utc("2024-06-10T06:13:21.000Z"), False),
    "wallet_3_ethereum.json": (3, "ethereum", "trading", "0xbF56F8C1CA0ef95eB8141Dc28B8A09f05E76d5F8",
                               _utc("2024-06-10T06:13:20.123Z"), True),
    "wallet_4_base-account.json": (4, "base-account", "base-account", "0x9DaCd487498f6608B112D6Fda2D67018679c07C9",
                                   _utc("2024-07-04T12:00:00.000Z"), False),
    "wallet_4_ethereum.json": (4, "ethereum", "trading", "0x65Ab4a20B38397ea5bBfdb4443fB935266D4cE18", None, True),
    "wallet_5_ethereum.json": (5, "ethereum", "trading", "0xebe497f1c1290dca2baef8e97c6eb00dac77ac8b",
                               _utc("2024-08-15T23:59:59.999Z"), True),
    "wallet_6_ethereum.json": (6, "ethereum", "trading", "0x4Ea4aA2b80D9Ff86fc68E4dB1A763560D1903C1D",
                               _utc("2024-09-01T00:00:00.001Z"), True),
    "wallet_8_ethereum.json": (8, "ethereum", "trading", "0xC504f0946649BFe43605ED93E0369b0FF5bb4b10",
                               _utc("2024-11-11T11:11:11.111Z"), True),
    "wallet_9_ethereum.json": (9, "ethereum", "trading", "0x44F4CF56783A57F76fDA57C58b72E5Ce5E38993f",
                               _utc("2024-12-24T18:00:00.000Z"), True),
}

QUARANTINED = {
    ("storage/wallets/wallet_7_ethereum.json", "duplicate_key"),
    ("storage/wallets/wallet_11_ethereum.json", "fid_mismatch"),
    ("storage/wallets/wallet_13_ethereum.json", "bad_checksum"),
    ("storage/wallets/wallet_14_ethereum.json", "invalid_json"),
    ("storage/wallets/wallet_15_ethereum.json", "empty_file"),
    ("storage/wallets/wallet_16_ethereum.json", "not_an_object"),
    ("storage/wallets/wallet_17_ethereum.json", "invalid_address"),
    ("storage/wallets/wallet_18_ethereum.json", "invalid_iv"),
}

# EXPECTED.md, "Unmapped": (path, size, sha256)
UNMAPPED_IN_WALLETS = {
    ("storage/wallets/.DS_Store", 136, "91af6319c45d7c64e2972e0729c693ad1eae4915af87431682db78bbf2181dcd"),
    ("storage/wallets/notes.txt", 139, "508ada03837a360c4dc2e01097741118d2be9bdbccad85aac5325232f3a6fb2b"),
    ("storage/wallets/wallet_12_ethereum (1).json", 373,
     "1f53e07eb5fd8b59364c0af65293dc68b845faf8c15e4449b96b5d31cf7ca596"),
}

USER_FIDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 21]
MAPPED_NAMES = sorted(set(LOADED) | {q[0].removeprefix(PREFIX) for q in QUARANTINED})


def _file_record(name: str) -> dict[str, Any]:
    return orjson.loads((WALLET_DIR / name).read_bytes().removeprefix(b"\xef\xbb\xbf").strip())


def _mtime(name: str) -> datetime:
    """The file's mtime, truncated to the microsecond (PostgreSQL's precision)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=(WALLET_DIR / name).stat().st_mtime_ns // 1000)


def _files_outside_wallet_dir() -> set[tuple[str, int, str]]:
    """Every file of the store folder outside storage/wallets (e.g. EXPECTED.md), with size and hash."""
    out = set()
    for path in STORE_DIR.rglob("*"):
        rel = path.relative_to(STORE_DIR).as_posix()
        if path.is_file() and not rel.startswith(PREFIX):
            data = path.read_bytes()
            out.add((rel, len(data), hashlib.sha256(data).hexdigest()))
    return out


def _rows(conn: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT * FROM {}.{} ORDER BY 1").format(sql.Identifier(schema), sql.Identifier(table))
    ).fetchall()


def _reloptions(conn: psycopg.Connection, schema: str) -> dict[str, list[str] | None]:
    return dict(conn.execute(
        "SELECT relname, reloptions FROM pg_class WHERE relnamespace = to_regnamespace(%s) AND relkind = 'r'"
        " ORDER BY relname", (schema,)).fetchall())


def test_samples_match_expected_md(database_url: str, tmp_path: Path) -> None:
    assert MAPPED_NAMES == sorted(p.name for p in WALLET_DIR.iterdir() if p.name.startswith("wallet_")
                                  and " " not in p.name), "the sample folder changed; update EXPECTED.md and this test"
    assert len(MAPPED_NAMES) == 24

    summary = stage_store(database_url, WALLET_STORE, SAMPLES, "t1", SAMPLE_SECRET, workers=1)
    outside = _files_outside_wallet_dir()
    assert summary.resumed_units == 0
    # One unit per shard (fid mod 16) that has files: the samples are small enough for one unit each.
    mapped_fids = {int(m.group(1)) for n in os.listdir(SAMPLES / "wallet" / "storage" / "wallets")
                   if (m := FILE_NAME.fullmatch(n))}
    assert summary.units == len({fid % SHARDS for fid in mapped_fids}) == 16
    assert summary.files_mapped == 24
    assert summary.files_unmapped == 3 + len(outside)
    assert summary.seen == {"wallets": 24}
    assert summary.staged == {"wallets": 16, "users": 12, "wallet_metadata": 16, "wallet_audit_log": 16}
    assert summary.quarantined == {"bad_checksum": 1, "duplicate_key": 1, "empty_file": 1, "fid_mismatch": 1,
                                   "invalid_address": 1, "invalid_iv": 1, "invalid_json": 1, "not_an_object": 1}
    assert summary.flagged == 0

    with connect(database_url) as conn:
        # The counts were recorded when the staging finished, and are what the manifest holds.
        assert conn.execute("SELECT files_mapped, files_unmapped FROM migration.staging WHERE store = 'wallet'"
                            ).fetchone() == (24, 3 + len(outside))
        assert dict(conn.execute("SELECT status, count(*) FROM migration.source_manifest WHERE store = 'wallet'"
                                 " AND plan_id = %s GROUP BY 1", (summary.plan_id,)).fetchall()) == {
            "mapped": 24, "unmapped": 3 + len(outside)}
        rows = conn.execute(
            "SELECT id, fid, chain, wallet_type, address, encrypted_private_key, iv, created_at, updated_at"
            " FROM wallet__staging.wallets ORDER BY id").fetchall()
        assert len(rows) == 16
        by_key = {(r[1], r[2]): r for r in rows}
        assert len(by_key) == 16
        for name, (fid, chain, wallet_type, address, created_at, has_key) in LOADED.items():
            row = by_key[(fid, chain)]
            wid, _, _, got_type, got_address, ciphertext, iv, got_created, got_updated = row
            assert wid == MAPPED_NAMES.index(name) + 1, name  # a file's position in sorted order is its id
            assert got_type == wallet_type, name
            assert got_address.lower() == address.lower(), name
            expected_created = created_at if created_at is not None else _mtime(name)
            assert got_created == expected_created, name
            assert got_updated == expected_created, name
            record = _file_record(name)
            if has_key:
                assert ciphertext == record["encryptedPrivateKey"], name
                assert iv == record["iv"], name
            else:  # issue 14.3: a keyless wallet keeps the iv its file carries
                assert ciphertext is None and iv == record["iv"] and iv is not None, name
        assert sum(1 for r in rows if r[5] is not None) == 13
        assert sum(1 for r in rows if r[6] is not None) == 16
        assert Counter(r[3] for r in rows) == {"trading": 11, "base-account": 4, "polygon": 1}

        quarantine = conn.execute(
            "SELECT source_file, reason, table_name, run_id, plan_id FROM migration.quarantine WHERE store = 'wallet'"
        ).fetchall()
        assert {(q[0], q[1]) for q in quarantine} == QUARANTINED
        assert len(quarantine) == 8
        assert {(q[2], q[3], q[4]) for q in quarantine} == {("wallets", "t1", summary.plan_id)}

        manifest = conn.execute(
            "SELECT path, size_bytes, sha256, status FROM migration.source_manifest WHERE store = 'wallet'"
            " AND plan_id = %s", (summary.plan_id,)).fetchall()
        unmapped = {(p, s, h) for p, s, h, status in manifest if status == "unmapped"}
        assert unmapped == UNMAPPED_IN_WALLETS | outside
        mapped = {(p, s, h) for p, s, h, status in manifest if status == "mapped"}
        assert mapped == {(PREFIX + n, len(d := (WALLET_DIR / n).read_bytes()), hashlib.sha256(d).hexdigest())
                          for n in MAPPED_NAMES}
        assert len(manifest) == 24 + 3 + len(outside)

        users = conn.execute("SELECT fid, created_at FROM wallet__staging.users ORDER BY fid").fetchall()
        assert [u[0] for u in users] == USER_FIDS
        oldest = {}
        for fid, chain, *_ in LOADED.values():
            oldest[fid] = min(oldest.get(fid, by_key[(fid, chain)][7]), by_key[(fid, chain)][7])
        assert dict(users) == oldest

        metadata = conn.execute(
            "SELECT wallet_id, balance_usd, total_deposits, total_withdrawals, transaction_count, last_balance_check"
            " FROM wallet__staging.wallet_metadata ORDER BY wallet_id").fetchall()
        assert [m[0] for m in metadata] == [r[0] for r in rows]
        assert {m[1:] for m in metadata} == {(0, 0, 0, 0, None)}

        audit = conn.execute(
            "SELECT wallet_id, action, accessed_by FROM wallet__staging.wallet_audit_log ORDER BY wallet_id").fetchall()
        assert audit == [(r[0], "migrated", "t1") for r in rows]

        outcomes = evaluate_gates(conn, database_url, WALLET_STORE, "t1", tmp_path / "docs")
        assert {o.name: o.passed for o in outcomes} == {
            "row_count_reconciliation": True, "checksum_reconciliation": True, "live_row_loss": True,
            "key_verification": True, "serving": True,
            "gx_suite_wallets": True, "gx_suite_users": True, "gx_suite_wallet_metadata": True,
            "gx_suite_wallet_audit_log": True,
        }
        key_gate = next(o for o in outcomes if o.name == "key_verification")
        assert key_gate.summary == "all 13 keys decrypt and derive their stored address"
        # The suites ran in two threads with a GX context each; one Data Docs site shows every table's results.
        docs = {o.details["data_docs"] for o in outcomes if o.name.startswith("gx_suite_")}
        assert len(docs) == 1
        index = Path(docs.pop()).read_text(encoding="utf-8")
        assert all(index.count(f"wallet_staging-{t.name}.html") == 1 for t in WALLET_STORE.tables)

        staged = {t.name: _rows(conn, "wallet__staging", t.name) for t in WALLET_STORE.tables}
        assert _rows(conn, "wallet", "wallets") == []
        # Autovacuum stays off the staged tables while they are loaded, and is handed back on promotion.
        assert _reloptions(conn, "wallet__staging") == dict.fromkeys(
            ("users", "wallet_audit_log", "wallet_metadata", "wallets"), ["autovacuum_enabled=false"])
        conn.commit()

        plan_id = promote(conn, WALLET_STORE, "t1", actor="test")
        assert plan_id == summary.plan_id
        live = {t.name: _rows(conn, "wallet", t.name) for t in WALLET_STORE.tables}
        assert live == staged
        assert [len(v) for v in live.values()] == [16, 12, 16, 16]
        assert get_phase(conn, "wallet").phase == "promoted"
        assert conn.execute("SELECT to_regnamespace('wallet__staging')").fetchone() == (None,)
        assert _reloptions(conn, "wallet") == dict.fromkeys(
            ("users", "wallet_audit_log", "wallet_metadata", "wallets"), None)


def test_second_staging_run_without_changes_is_a_new_plan_with_the_same_rows(database_url: str) -> None:
    first = stage_store(database_url, WALLET_STORE, SAMPLES, "r1", SAMPLE_SECRET, workers=1)
    with connect(database_url) as conn:
        before = _rows(conn, "wallet__staging", "wallets")
    second = stage_store(database_url, WALLET_STORE, SAMPLES, "r2", SAMPLE_SECRET, workers=1)
    assert second.plan_id != first.plan_id  # the first finished (staged), so it is not resumed
    assert second.resumed_units == 0
    with connect(database_url) as conn:
        assert _rows(conn, "wallet__staging", "wallets") == before
        assert conn.execute("SELECT count(*) FROM migration.quarantine WHERE store = 'wallet' AND plan_id = %s",
                            (second.plan_id,)).fetchone() == (8,)


def test_a_run_stopped_during_its_first_unit_resumes(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan and its unmapped files are committed before any unit: a run that dies while loading the
    first unit leaves a plan with nothing loaded. The next run resumes it, listing the unmapped files once."""
    from migration_pipeline.core import stage

    def die(*args: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(stage, "load_unit", die)
        with pytest.raises(KeyboardInterrupt):
            stage_store(database_url, WALLET_STORE, SAMPLES, "r1", SAMPLE_SECRET, workers=1)
    with connect(database_url) as conn:
        opened = conn.execute("SELECT plan_id, status FROM migration.staging WHERE store = 'wallet'").fetchone()
    assert opened is not None and opened[1] == "loading"
    resumed = stage_store(database_url, WALLET_STORE, SAMPLES, "r2", SAMPLE_SECRET, workers=1)
    assert resumed.plan_id == opened[0]
    assert (resumed.files_mapped, resumed.files_unmapped) == (24, 3 + len(_files_outside_wallet_dir()))
    assert resumed.staged == {"wallets": 16, "users": 12, "wallet_metadata": 16, "wallet_audit_log": 16}


TABLES = ("wallets", "users", "wallet_metadata", "wallet_audit_log")


def _staged_schema(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Every constraint, index and trigger of the staged tables, by name and definition."""
    return conn.execute(
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE connamespace = 'wallet__staging'::regnamespace
           UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'wallet__staging'
           UNION ALL SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
           WHERE tgrelid::regclass::text LIKE 'wallet__staging.%' AND NOT tgisinternal
           ORDER BY 1, 2""").fetchall()


@pytest.mark.parametrize("stop_in", ["_finish_table", "_validate"])
def test_a_finish_that_stopped_halfway_resumes_to_the_same_staging(
    stop_in: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finish commits step by step: stopped after the integrity rules and some tables (or after the
    foreign keys were added, unvalidated), the next run loads nothing again and ends with the rows, ids,
    keys and indexes of a finish that never stopped."""
    from migration_pipeline.core import stage

    stage_store(database_url, WALLET_STORE, SAMPLES, "clean", SAMPLE_SECRET, workers=2)
    with connect(database_url) as conn:
        clean = {t: _rows(conn, "wallet__staging", t) for t in TABLES}
        clean_schema = _staged_schema(conn)

    step = getattr(stage, stop_in)

    def stop_after_one(*args: Any) -> None:
        step(*args)
        if stop_in == "_validate" or args[2].name == "wallet_audit_log":  # committed, then the process "dies"
            raise KeyboardInterrupt

    monkeypatch.setattr(stage, stop_in, stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        stage_store(database_url, WALLET_STORE, SAMPLES, "stopped", SAMPLE_SECRET, workers=2)
    with connect(database_url) as conn:
        assert conn.execute("SELECT status FROM migration.staging WHERE store = 'wallet'").fetchone() == ("finishing",)
    monkeypatch.undo()

    resumed = stage_store(database_url, WALLET_STORE, SAMPLES, "resumed", SAMPLE_SECRET, workers=2)
    assert resumed.resumed_units == resumed.units > 0  # every unit was loaded before the stop
    with connect(database_url) as conn:
        assert conn.execute("SELECT status FROM migration.staging WHERE store = 'wallet'").fetchone() == ("staged",)
        # wallet_audit_log.accessed_by is the run that derived it: the one that resumed.
        resumed_rows = {t: _rows(conn, "wallet__staging", t) for t in TABLES}
        assert {r[3] for r in resumed_rows["wallet_audit_log"]} == {"resumed"}
        assert resumed_rows["wallets"] == clean["wallets"] and resumed_rows["users"] == clean["users"]
        assert [r[:3] for r in resumed_rows["wallet_audit_log"]] == [r[:3] for r in clean["wallet_audit_log"]]
        assert resumed_rows["wallet_metadata"] == clean["wallet_metadata"]
        assert _staged_schema(conn) == clean_schema
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE connamespace = 'wallet__staging'::regnamespace"
                            " AND NOT convalidated").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM migration.quarantine WHERE store = 'wallet' AND plan_id = %s",
                            (resumed.plan_id,)).fetchone() == (8,)


# --- normalize_wallet, one reason at a time ------------------------------------------------------------------

KEY = cipher_key(SAMPLE_SECRET)
BASE = _file_record("wallet_1_ethereum.json")
BASE_ACCOUNT = _file_record("wallet_2_base-account.json")


def _normalize(record: Any, name: str = "wallet_1_ethereum.json", *, raw: bytes | None = None,
               mtime_ns: int = 1_735_787_045 * 10**9) -> tuple[Any, ...]:
    data = raw if raw is not None else json.dumps(record).encode()
    return normalize_wallet(name, data, 42, mtime_ns)


def _reason(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(_Reject) as info:
        _normalize(*args, **kwargs)
    return info.value.reason


def _with(**changes: Any) -> dict[str, Any]:
    record = dict(BASE)
    for k, v in changes.items():
        if v is _DROP:
            record.pop(k, None)
        else:
            record[k] = v
    return record


_DROP = object()


def test_normalize_valid_wallet() -> None:
    row = _normalize(BASE)
    assert row == (42, 1, BASE["address"], BASE["encryptedPrivateKey"], BASE["iv"], "ethereum", "trading",
                   _utc("2024-03-01T09:15:00.000Z"), _utc("2024-03-01T09:15:00.000Z"))
    # fid missing: from the name; createdAt missing: the mtime; epoch ms; BOM, CRLF and trailing whitespace
    row = _normalize(_with(fid=_DROP, createdAt=_DROP), mtime_ns=1_700_000_000_500_000_999)
    assert row[1] == 1 and row[7] == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)  # ns truncated
    row = _normalize(_with(createdAt=1718000000123))
    assert row[7] == _utc("2024-06-10T06:13:20.123Z")
    raw = b"\xef\xbb\xbf" + json.dumps(BASE, indent=2).replace("\n", "\r\n").encode() + b"  \n\t\n   "
    assert _normalize(None, raw=raw) == _normalize(BASE)
    # leading zeros in the name, other chains, base-account without a key
    row = _normalize(BASE, "wallet_0001_ethereum.json")
    assert row[1] == 1
    row = _normalize({**BASE, "chain": "polygon"}, "wallet_1_polygon.json")
    assert (row[5], row[6]) == ("polygon", "polygon")
    for empty in (_DROP, None, ""):
        record = dict(BASE_ACCOUNT)
        if empty is _DROP:
            record.pop("encryptedPrivateKey", None)
        else:
            record["encryptedPrivateKey"] = empty
        row = _normalize(record, "wallet_2_base-account.json")
        assert (row[3], row[4], row[6]) == (None, BASE_ACCOUNT["iv"], "base-account")
    keyless_without_iv = {k: v for k, v in BASE_ACCOUNT.items() if k not in ("encryptedPrivateKey", "iv")}
    assert _normalize(keyless_without_iv, "wallet_2_base-account.json")[3:5] == (None, None)
    with pytest.raises(_Reject, match="iv is not 16 bytes") as rejected:
        _normalize({**keyless_without_iv, "iv": "abc"}, "wallet_2_base-account.json")
    assert rejected.value.reason == "invalid_iv"


def test_read_unit_flags_exactly_the_keys_that_do_not_verify(tmp_path: Path) -> None:
    """Keys are verified per unit, all at once: each verdict must land on its own file."""
    other = _file_record("wallet_2_ethereum.json")  # a valid key of another address
    files = {
        "wallet_1_ethereum.json": BASE,
        "wallet_1_polygon.json": {**BASE, "chain": "polygon"},
        "wallet_2_base-account.json": _with(encryptedPrivateKey=_DROP, iv=_DROP, fid=2, chain="base-account"),
        "wallet_3_ethereum.json": _with(fid=3, encryptedPrivateKey=other["encryptedPrivateKey"], iv=other["iv"]),
        "wallet_4_ethereum.json": _with(fid=4, encryptedPrivateKey="00" * 80),
        "wallet_5_ethereum.json": {**other, "fid": 5},
    }
    wallet_dir = tmp_path / "wallet" / "storage" / "wallets"
    wallet_dir.mkdir(parents=True)
    for name, record in files.items():
        (wallet_dir / name).write_text(json.dumps(record))
    (wallet_dir / "wallet_6_ethereum.json").write_text("{")  # quarantined: no verdict for it

    def flags(secret: str | None) -> list[tuple[str, str]]:
        discovery = WALLET_STORE.discover(tmp_path / "wallet")
        context = ReadContext(store_dir=tmp_path / "wallet", secret=secret)
        batches = [b for unit in discovery.units for b in WALLET_STORE.read_unit(unit, context)]
        assert sum(len(b.rows.get("wallets", ())) for b in batches) == 6
        return sorted((f.source_file.removeprefix(PREFIX), f.reason) for b in batches for f in b.flagged)

    assert flags(SAMPLE_SECRET) == [("wallet_3_ethereum.json", "key_address_mismatch"),
                                    ("wallet_4_ethereum.json", "decrypt_failed")]
    every_key = ["wallet_1_ethereum.json", "wallet_1_polygon.json", "wallet_3_ethereum.json",
                 "wallet_4_ethereum.json", "wallet_5_ethereum.json"]
    assert [name for name, _ in flags("another secret")] == every_key
    assert flags(None) == []  # no secret given: nothing verified, nothing flagged


@pytest.mark.parametrize(
    ("reason", "record", "name", "raw"),
    [
        ("fid_mismatch", _with(fid=111), "wallet_1_ethereum.json", None),
        ("fid_mismatch", _with(fid="2"), "wallet_1_ethereum.json", None),
        ("bad_checksum", _with(address="0x2eA6D71B798718Ebb072A24D61A4c7DF5df98297"), "wallet_1_ethereum.json", None),
        ("invalid_json", None, "wallet_1_ethereum.json", json.dumps(BASE).encode()[:100]),
        ("empty_file", None, "wallet_1_ethereum.json", b""),
        ("empty_file", None, "wallet_1_ethereum.json", b"\xef\xbb\xbf \r\n\t "),
        ("not_an_object", [BASE], "wallet_1_ethereum.json", None),
        ("not_an_object", "text", "wallet_1_ethereum.json", None),
        ("invalid_address", _with(address=BASE["address"][:-1]), "wallet_1_ethereum.json", None),
        ("invalid_address", _with(address=BASE["address"] + "0"), "wallet_1_ethereum.json", None),
        ("invalid_address", _with(address=BASE["address"][:-2] + "zz"), "wallet_1_ethereum.json", None),
        ("invalid_address", _with(address=_DROP), "wallet_1_ethereum.json", None),
        ("invalid_address", _with(address=12), "wallet_1_ethereum.json", None),
        ("invalid_iv", _with(iv=BASE["iv"][:30]), "wallet_1_ethereum.json", None),
        ("invalid_iv", _with(iv=BASE["iv"][:-1] + "g"), "wallet_1_ethereum.json", None),
        ("invalid_iv", _with(iv=_DROP), "wallet_1_ethereum.json", None),
        ("invalid_ciphertext", _with(encryptedPrivateKey=BASE["encryptedPrivateKey"][:-2]),
         "wallet_1_ethereum.json", None),
        ("invalid_ciphertext", _with(encryptedPrivateKey="zz" * 48), "wallet_1_ethereum.json", None),
        ("invalid_ciphertext", _with(encryptedPrivateKey=123), "wallet_1_ethereum.json", None),
        ("missing_key", _with(encryptedPrivateKey=_DROP), "wallet_1_ethereum.json", None),
        ("missing_key", _with(encryptedPrivateKey=None), "wallet_1_ethereum.json", None),
        ("missing_key", _with(encryptedPrivateKey=""), "wallet_1_ethereum.json", None),
        ("invalid_timestamp", _with(createdAt="yesterday"), "wallet_1_ethereum.json", None),
        ("invalid_timestamp", _with(createdAt=True), "wallet_1_ethereum.json", None),
        ("invalid_timestamp", _with(createdAt=10**20), "wallet_1_ethereum.json", None),
        ("chain_mismatch", _with(chain="base-account"), "wallet_1_ethereum.json", None),
        ("invalid_fid", _with(fid="abc"), "wallet_1_ethereum.json", None),
        ("invalid_fid", _with(fid=1.5), "wallet_1_ethereum.json", None),
        ("invalid_fid", _with(fid=True), "wallet_1_ethereum.json", None),
        ("invalid_fid", _with(fid=_DROP), "wallet_0_ethereum.json", None),
        ("invalid_fid", _with(fid=_DROP), "wallet_000_ethereum.json", None),
    ],
)
def test_normalize_rejects(reason: str, record: Any, name: str, raw: bytes | None) -> None:
    assert _reason(record, name, raw=raw) == reason


def test_reject_messages_never_carry_values() -> None:
    secret_ish = BASE["encryptedPrivateKey"]
    for record in (_with(createdAt=secret_ish), _with(fid=secret_ish), _with(address=secret_ish)):
        with pytest.raises(_Reject) as info:
            _normalize(record)
        assert secret_ish not in info.value.message


# --- parallel staging --------------------------------------------------------------------------------------


def test_parallel_staging_of_a_generated_store(database_url: str, tmp_path: Path) -> None:
    secret = "parallel-test-secret"
    generated = generate_wallet_store(tmp_path / "src", users=3000, secret=secret, seed=11, quirk_rate=0.02)
    nested = generated.wallets_dir / "old" / "wallet_9_ethereum.json"  # a folder in the wallet folder
    nested.parent.mkdir()
    nested.write_bytes(b"{}")
    # A link to a folder is not followed, as the backup and change detection do not follow it either.
    (generated.wallets_dir / "linked").symlink_to(nested.parent)
    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "par", secret, workers=2)
    assert summary.units == 16  # 6001 mapped files in 16 shards by fid, each shard under 2000 files
    assert summary.resumed_units == 0
    assert summary.files_mapped == generated.mapped_files == 6001
    assert summary.files_unmapped == generated.unmapped_files + 2 == 5  # the nested file, and the link itself
    # The staged asset's metadata times each part, the finish's three steps too.
    assert sorted(summary.seconds) == ["discover", "finish_sql", "read_and_copy", "resume_check", "sql_foreign_keys",
                                       "sql_integrity", "sql_tables"]
    assert summary.seconds["finish_sql"] >= summary.seconds["sql_integrity"] + summary.seconds["sql_tables"] > 0
    with connect(database_url) as conn:
        assert conn.execute("SELECT size_bytes, status FROM migration.source_manifest WHERE plan_id = %s AND path = %s",
                            (summary.plan_id, f"{PREFIX}old/wallet_9_ethereum.json")).fetchone() == (2, "unmapped")
    assert summary.seen == {"wallets": generated.mapped_files}
    assert summary.quarantined == generated.expected_quarantined
    assert summary.staged == {"wallets": generated.expected_loaded, "users": generated.expected_users,
                              "wallet_metadata": generated.expected_loaded,
                              "wallet_audit_log": generated.expected_loaded}
    assert summary.flagged == 0
    with connect(database_url) as conn:
        ids = conn.execute("SELECT count(*), count(DISTINCT id), min(id), max(id), count(DISTINCT (fid, chain))"
                           " FROM wallet__staging.wallets").fetchone()
        assert ids is not None
        assert ids[0] == ids[1] == ids[4] == generated.expected_loaded
        assert ids[2] >= 1 and ids[3] <= generated.mapped_files
        progress = conn.execute(
            "SELECT unit_no, records_seen FROM migration.unit_progress WHERE plan_id = %s ORDER BY unit_no",
            (summary.plan_id,)).fetchall()
        per_shard: dict[int, int] = {}
        for name in os.listdir(generated.wallets_dir):
            if match := FILE_NAME.fullmatch(name):
                shard = int(match.group(1)) % SHARDS
                per_shard[shard * UNITS_PER_SHARD] = per_shard.get(shard * UNITS_PER_SHARD, 0) + 1
        assert progress == sorted(per_shard.items())
        assert sum(seen for _, seen in progress) == 6001
        kept = conn.execute("SELECT count(*) FROM migration.quarantine WHERE source_file = %s AND reason ="
                            " 'duplicate_key'", (PREFIX + str(generated.duplicate_quarantined),)).fetchone()
        assert kept == (1,)
        outcomes = evaluate_gates(conn, database_url, WALLET_STORE, "par", tmp_path / "docs")
        assert [o.name for o in outcomes if not o.passed] == []


def test_wrong_secret_flags_every_loaded_key_and_only_those(database_url: str) -> None:
    summary = stage_store(database_url, WALLET_STORE, SAMPLES, "bad", "not-the-secret", workers=1)
    assert summary.staged["wallets"] == 16
    assert summary.flagged == 13  # the duplicate wallet_7_ethereum.json is quarantined, not flagged
    with_key = sorted(PREFIX + n for n, v in LOADED.items() if v[5])
    with connect(database_url) as conn:
        flagged = conn.execute("SELECT source_file, reason FROM migration.flagged_records WHERE plan_id = %s"
                               " ORDER BY 1", (summary.plan_id,)).fetchall()
        assert [f[0] for f in flagged] == with_key
        assert {f[1] for f in flagged} <= {"decrypt_failed", "key_address_mismatch"}
        gate = next(g for g in WALLET_STORE.gates if g.name == "key_verification")
        passed, text, details = gate.evaluate(conn, "wallet", summary.plan_id)
    assert not passed
    assert text.startswith("13 of 13 wallet keys fail verification (")
    assert details["files"] == with_key
    assert details["keys_checked"] == 13 and details["failing"] == 13


def test_oversized_fid_and_unreadable_file_are_quarantined_not_fatal(database_url: str, tmp_path: Path) -> None:
    wallets = tmp_path / "src" / "wallet" / "storage" / "wallets"
    wallets.mkdir(parents=True)
    shutil.copy(SAMPLES / "wallet" / "storage" / "wallets" / "wallet_1_ethereum.json", wallets / "wallet_1_ethereum.json")
    (wallets / "wallet_99999999999999999999_base-account.json").write_text('{"address": "0x' + "a" * 40 + '"}')
    (wallets / "wallet_5_ethereum.json").symlink_to(tmp_path / "missing-target.json")  # a link: listed, never read
    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "odd", SAMPLE_SECRET, workers=1)
    assert summary.staged["wallets"] == 1
    with connect(database_url) as conn:
        rows = conn.execute("SELECT source_file, reason FROM migration.quarantine ORDER BY 1").fetchall()
        link = conn.execute("SELECT status FROM migration.source_manifest WHERE path = %s",
                            ("storage/wallets/wallet_5_ethereum.json",)).fetchone()
    assert link == ("symlink",)
    assert rows == [("storage/wallets/wallet_99999999999999999999_base-account.json", "invalid_fid")]
    # A file listed by discovery that is gone when its unit reads it: recorded and quarantined, never a crash.
    from array import array

    from migration_pipeline.core.spec import Unit
    from migration_pipeline.stores.wallet.store import WalletFiles, read_unit

    vanished = Unit(0, WalletFiles(array("q", [1]), ("wallet_7_ethereum.json",)))
    batch = next(read_unit(vanished, ReadContext(tmp_path / "src" / "wallet", SAMPLE_SECRET)))
    assert [(q.source_file, q.reason) for q in batch.quarantined] == [
        ("storage/wallets/wallet_7_ethereum.json", "unreadable_file")]


def test_unreadable_unmapped_files_and_named_pipes_are_recorded_not_fatal(database_url: str, tmp_path: Path) -> None:
    """An unmapped dangling link stopped staging with a FileNotFoundError traceback, and a named pipe would
    have blocked it forever. Both are in the manifest now, as change detection sees them."""
    from migration_pipeline.core.manifest import iter_stats

    store = tmp_path / "src" / "wallet"
    wallets = store / "storage" / "wallets"
    wallets.mkdir(parents=True)
    shutil.copy(WALLET_DIR / "wallet_1_ethereum.json", wallets / "wallet_1_ethereum.json")
    (store / "notes.txt").symlink_to(tmp_path / "gone.txt")
    os.mkfifo(store / "app.pipe")
    os.mkfifo(wallets / "wallet_2_ethereum.json")  # mapped: read as an empty file, not waited on
    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "odd", SAMPLE_SECRET, workers=1)
    assert (summary.files_mapped, summary.files_unmapped, summary.quarantined) == (2, 2, {"empty_file": 1})
    with connect(database_url) as conn:
        manifest = conn.execute("SELECT path, status, size_bytes, sha256, mtime_ns FROM migration.source_manifest"
                                " WHERE path NOT LIKE '%wallet_1_%' ORDER BY path").fetchall()
    pipe_mtime = (store / "app.pipe").stat().st_mtime_ns
    assert manifest == [("app.pipe", "unmapped", 0, hashlib.sha256(b"").hexdigest(), pipe_mtime),
                        ("notes.txt", "symlink", 0, "", None),  # a link is never read through
                        ("storage/wallets/wallet_2_ethereum.json", "mapped", 0, hashlib.sha256(b"").hexdigest(),
                         (wallets / "wallet_2_ethereum.json").stat().st_mtime_ns)]
    stats = {path: (size, mtime) for path, size, mtime in iter_stats(store)}
    assert all(stats[path] == (size, mtime) for path, _, size, _, mtime in manifest)


def test_pipes_with_a_writer_and_links_to_devices_are_read_as_empty_files(database_url: str, tmp_path: Path) -> None:
    """A pipe that a writer holds open made the read raise BlockingIOError (a traceback), and a link to
    /dev/zero was read until memory ran out. A pipe is read as empty now, and a link is never read through:
    listed as a link, or quarantined unreadable where a wallet was expected."""
    store = tmp_path / "src" / "wallet"
    wallets = store / "storage" / "wallets"
    wallets.mkdir(parents=True)
    shutil.copy(WALLET_DIR / "wallet_1_ethereum.json", wallets / "wallet_1_ethereum.json")
    os.mkfifo(store / "app.pipe")
    os.mkfifo(wallets / "wallet_2_ethereum.json")
    (store / "zeros").symlink_to("/dev/zero")
    (wallets / "wallet_3_ethereum.json").symlink_to("/dev/zero")
    writers = [os.open(pipe, os.O_RDWR | os.O_NONBLOCK) for pipe in (store / "app.pipe", wallets / "wallet_2_ethereum.json")]
    try:
        for writer in writers:
            os.write(writer, b'{"fid": 2}')  # sent, not yet read: stays in the pipe
        summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "streams", SAMPLE_SECRET, workers=1)
    finally:
        for writer in writers:
            os.close(writer)
    assert (summary.files_mapped, summary.files_unmapped, summary.quarantined) == (2, 3, {"empty_file": 1})
    empty = hashlib.sha256(b"").hexdigest()
    with connect(database_url) as conn:
        manifest = conn.execute("SELECT path, status, size_bytes, sha256 FROM migration.source_manifest"
                                " WHERE path NOT LIKE '%wallet_1_%' ORDER BY path").fetchall()
        quarantined = conn.execute("SELECT source_file FROM migration.quarantine ORDER BY 1").fetchall()
    assert manifest == [("app.pipe", "unmapped", 0, empty),
                        ("storage/wallets/wallet_2_ethereum.json", "mapped", 0, empty),
                        ("storage/wallets/wallet_3_ethereum.json", "symlink", 0, ""),
                        ("zeros", "symlink", 0, "")]
    assert quarantined == [("storage/wallets/wallet_2_ethereum.json",)]


def test_a_wallet_file_over_the_size_cap_is_hashed_and_quarantined_not_read(database_url: str, tmp_path: Path) -> None:
    store = tmp_path / "src" / "wallet"
    wallets = store / "storage" / "wallets"
    wallets.mkdir(parents=True)
    shutil.copy(WALLET_DIR / "wallet_1_ethereum.json", wallets / "wallet_1_ethereum.json")
    huge = b'{"fid": 2, "padding": "' + b"x" * (1 << 20) + b'"}'
    (wallets / "wallet_2_ethereum.json").write_bytes(huge)
    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "huge", SAMPLE_SECRET, workers=1)
    assert (summary.files_mapped, summary.staged["wallets"], summary.quarantined) == (2, 1, {"file_too_large": 1})
    with connect(database_url) as conn:
        assert conn.execute("SELECT size_bytes, sha256, status FROM migration.source_manifest"
                            " WHERE path = 'storage/wallets/wallet_2_ethereum.json'").fetchone() == (
            len(huge), hashlib.sha256(huge).hexdigest(), "mapped")
        assert conn.execute("SELECT reason, message FROM migration.quarantine").fetchall() == [
            ("file_too_large", f"the file is {len(huge)} bytes, over the 1048576 a wallet file may have")]


def test_names_that_are_not_utf8_are_backed_up_as_bytes_and_recorded_escaped(database_url: str, tmp_path: Path) -> None:
    """Linux names are bytes: a legacy app may have written Latin-1 ones. They were a UnicodeEncodeError
    traceback in the backup (and in staging). Now the archive and its sha256sum-format manifest hold the
    bytes, and the database holds the name as UTF-8 text with each odd byte as \\xNN."""
    from migration_pipeline.core.backup import read_manifest, verify_archive, write_backup
    from migration_pipeline.core.manifest import iter_stats

    store = tmp_path / "src" / "wallet"
    wallets = store / "storage" / "wallets"
    wallets.mkdir(parents=True)
    shutil.copy(WALLET_DIR / "wallet_1_ethereum.json", wallets / "wallet_1_ethereum.json")
    (wallets / os.fsdecode(b"wallet_\xff_ethereum.json")).write_bytes(b"{}")
    (store / os.fsdecode(b"notes-\xe9t\xe9.txt")).write_bytes(b"latin-1 name")
    (wallets / "wallet_\u0663_ethereum.json").write_bytes(b"{}")  # an Arabic-Indic 3: valid UTF-8, not a fid

    backup = write_backup(store, tmp_path / "backups", "wallet", workers=1)
    assert backup.files == 4
    assert sorted(os.fsencode(name) for name in read_manifest(backup.manifest)) == [
        b"notes-\xe9t\xe9.txt", b"storage/wallets/wallet_1_ethereum.json",
        "storage/wallets/wallet_\u0663_ethereum.json".encode(), b"storage/wallets/wallet_\xff_ethereum.json"]
    assert verify_archive(backup.archive, backup.manifest) is None

    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "odd", SAMPLE_SECRET, workers=1)
    assert (summary.files_mapped, summary.files_unmapped, summary.staged["wallets"]) == (1, 3, 1)
    with connect(database_url) as conn:
        manifest = conn.execute("SELECT path, status, size_bytes FROM migration.source_manifest ORDER BY path").fetchall()
    sample_size = (WALLET_DIR / "wallet_1_ethereum.json").stat().st_size
    assert manifest == [("notes-\\xe9t\\xe9.txt", "unmapped", 12),
                        ("storage/wallets/wallet_1_ethereum.json", "mapped", sample_size),
                        ("storage/wallets/wallet_\\xff_ethereum.json", "unmapped", 2),
                        ("storage/wallets/wallet_\u0663_ethereum.json", "unmapped", 2)]
    # Change detection lists the same names as the manifest: nothing looks added or deleted.
    assert sorted(path for path, _, _ in iter_stats(store)) == [path for path, _, _ in manifest]


@pytest.mark.parametrize("count", [0, 1, 65536, 65537, 140000])
def test_the_fingerprint_is_the_hash_of_the_names_one_per_line(count: int) -> None:
    """A crashed plan resumes only when the fingerprint is the same: fed in slices, it must stay the SHA-256
    of every name joined by newlines (what earlier versions recorded)."""
    from migration_pipeline.stores.wallet.store import _fingerprint

    names = [f"wallet_{i}_ethereum.json" for i in range(count)]
    assert _fingerprint(names) == hashlib.sha256("\n".join(names).encode()).hexdigest()
