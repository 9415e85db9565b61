"""The defarm store end to end against a real PostgreSQL: the hand-checked sample (data_samples/defarm/
EXPECTED.md and the store's expected.json), exact values of the type mapping, a re-run, a run killed
mid-load then resumed, a generated store's exact counts and the generate command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migration_pipeline.core import stage
from migration_pipeline.core.database import connect
from migration_pipeline.core.report import build_report
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.defarm import DEFARM_STORE
from migration_pipeline.stores.defarm.generate import generate_defarm_store
from migration_pipeline.stores.defarm.store import ENGINE_NAMES, ENGINES
from migration_pipeline.stores.registry import get_store

from .conftest import REPO, SAMPLES

SPEC = DEFARM_STORE
EXPECTED = json.loads((REPO / "migration_pipeline" / "stores" / "defarm" / "expected.json").read_text())
ST = "defarm__staging"
D1, D2, D3, D4, D5 = ("DFID-20251011-000001-A1B2", "DFID-20251011-000002-C3D4", "DFID-20251011-000003-E5F6",
                      "DFID-20251011-000004-0A0B", "DFID-20251011-000005-1F2E")
U64_MAX = Decimal(18446744073709551615)


def _q(table: str, *locators: tuple[int, str]) -> set[tuple[str, str, str, str]]:
    return {(table, f"snapshot/{table}.jsonl", f"line {n}", reason) for n, reason in locators}


EXPECTED_QUARANTINE = (
    _q("users", (3, "duplicate_key"), (4, "invalid_value"), (5, "invalid_value"), (6, "missing_field"))
    | _q("items", (6, "duplicate_key"), (7, "invalid_value"), (8, "invalid_value"), (9, "invalid_json"),
         (10, "invalid_value"), (11, "invalid_json"), (12, "invalid_value"))
    | _q("circuits", (2, "duplicate_key"), (3, "invalid_value"))
    | _q("enhanced_identifiers", (3, "duplicate_key"), (4, "orphan"))
    | _q("circuit_items", (3, "orphan")) | _q("circuit_operations", (2, "orphan"))
    | _q("storage_history", (2, "invalid_value")) | _q("lid_dfid_mappings", (3, "duplicate_key"))
    | _q("receipts", (2, "not_an_object")) | _q("logs", (2, "invalid_json"))
    | _q("data_lake_entries", (2, "nul_character")) | _q("events", (3, "orphan")) | _q("activities", (2, "too_deep"))
    | _q("notifications", (2, "invalid_json")) | _q("api_keys", (2, "invalid_value"))
)


def _staged(conn: psycopg.Connection, schema: str = ST) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in ENGINE_NAMES:
        rows = conn.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        out[table] = sorted(rows.fetchall(), key=repr)
    return out


def _side_records(conn: psycopg.Connection) -> tuple[list[Any], list[Any], list[Any]]:
    quarantine = conn.execute("SELECT table_name, source_file, locator, reason, message FROM migration.quarantine"
                              " WHERE store = 'defarm' AND plan_id = (SELECT plan_id FROM migration.staging"
                              " WHERE store = 'defarm') ORDER BY 1, 2, 3").fetchall()
    adjustments = conn.execute("SELECT table_name, reason, message, rows_changed FROM migration.adjustments"
                               " WHERE store = 'defarm' AND plan_id = (SELECT plan_id FROM migration.staging"
                               " WHERE store = 'defarm') ORDER BY 1, 2, 3").fetchall()
    manifest = conn.execute("SELECT path, status, size_bytes, sha256 FROM migration.source_manifest"
                            " WHERE store = 'defarm' AND plan_id = (SELECT plan_id FROM migration.staging"
                            " WHERE store = 'defarm') ORDER BY 1").fetchall()
    return quarantine, adjustments, manifest


def test_registered_with_its_seventeen_engines() -> None:
    assert get_store("defarm") is DEFARM_STORE
    assert sorted(t.name for t in SPEC.tables) == sorted(EXPECTED["tables"]) == sorted(
        ["items", "enhanced_identifiers", "circuits", "circuit_items", "circuit_operations", "users", "adapters",
         "storage_history", "lid_dfid_mappings", "receipts", "logs", "data_lake_entries", "events", "activities",
         "notifications", "api_keys", "credit_transactions"])
    secrets = {(t.name, c.name) for t in SPEC.tables for c in t.columns if c.secret}
    assert secrets == {("users", "password_hash"), ("api_keys", "key_hash"), ("api_keys", "key_prefix")}


def test_the_ddl_has_the_types_the_rust_fields_declare(database_url: str) -> None:
    kinds = {"text": "text", "int": "bigint", "bool": "boolean", "timestamptz": "timestamp with time zone",
             "uuid": "uuid", "text[]": "ARRAY", "jsonb": "jsonb", "numeric": "numeric"}
    with connect(database_url) as conn:
        for engine in ENGINES:
            catalog = {r[0]: r[1:] for r in conn.execute(
                "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable"
                " FROM information_schema.columns WHERE table_schema = 'defarm' AND table_name = %s", (engine.name,))}
            assert set(catalog) == {c.name for c in engine.columns}
            for field in engine.fields:
                column = field.columns()[0]
                data_type, precision, scale, nullable = catalog[column.name]
                assert data_type == kinds[column.kind], (engine.name, column.name)
                assert nullable == ("YES" if field.optional else "NO"), (engine.name, column.name)
                if field.base in ("u64", "usize"):
                    assert (precision, scale) == (20, 0)
                if field.is_enum:
                    assert catalog[f"{field.name}_payload"][0] == "jsonb"


def test_sample_exact_outcome(database_url: str, tmp_path: Path) -> None:
    summary = stage_store(database_url, SPEC, SAMPLES, run_id="t", secret=None, workers=1)
    assert summary.staged == EXPECTED["tables"]
    assert (summary.files_mapped, summary.files_unmapped) == (EXPECTED["files"]["mapped"], EXPECTED["files"]["unmapped"])
    assert summary.quarantined == EXPECTED["quarantine"]
    assert summary.flagged == EXPECTED["flagged"]

    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, SPEC, "t", tmp_path / "docs")
        assert [(o.name, o.summary) for o in outcomes if not o.passed] == []
        assert len(outcomes) == 3 + len(SPEC.tables)

        quarantine, adjustments, manifest = _side_records(conn)
        assert {r[:4] for r in quarantine} == EXPECTED_QUARANTINE and len(quarantine) == len(EXPECTED_QUARANTINE)
        messages = {(r[0], r[2]): r[4] for r in quarantine}
        assert messages[("items", "line 9")] == "Unterminated string starting at byte offset 51 of the record"
        assert messages[("items", "line 11")] == "NaN is not JSON"
        assert messages[("logs", "line 2")] == "lone surrogate \\ud800 in a string"
        assert messages[("notifications", "line 2")] == "invalid UTF-8 at byte offset 160 of the record"
        assert messages[("activities", "line 2")] == "the record nests deeper than 512 levels"
        assert messages[("users", "line 4")] == "credits is negative"
        assert messages[("users", "line 6")] == "password_hash is missing or null"
        assert messages[("circuit_operations", "line 2")] == \
            "requester_id refers to a users record that is missing or quarantined"
        assert [(r[0], r[1], r[3]) for r in adjustments] == [
            ("items", "blank_line", 1), ("items", "timestamp_rounded", 1), ("items", "timestamp_rounded", 2),
            ("items", "unknown_enum_variant", 1), ("users", "timestamp_rounded", 2)]
        assert adjustments[1][2].startswith("creation_timestamp: DateTime<Utc> values with digits below the microsecond")
        assert sorted(p for p, s, *_ in manifest if s == "mapped") == sorted(f"snapshot/{n}.jsonl" for n in ENGINE_NAMES)
        assert sorted(p for p, s, *_ in manifest if s == "unmapped") == [
            "EXPECTED.md", "snapshot/export-manifest.json", "snapshot/items.jsonl.bak"]

        counted = dict(conn.execute(
            "SELECT table_name, sum(records_counted)::int FROM migration.unit_progress WHERE store = 'defarm'"
            " GROUP BY 1").fetchall())
        assert counted["items"] == 12 and counted["users"] == 6  # non-blank lines, counted without parsing

        users = {r[0]: r[1:] for r in conn.execute(
            f"SELECT user_id, credits, credits::text, created_at, status, status_payload, last_login, tier,"
            f" tier_payload FROM {ST}.users")}
        assert users["user-0001"] == (U64_MAX, "18446744073709551615",
                                      datetime(2025, 10, 11, 12, 0, 0, 123457, tzinfo=UTC),  # …789 rounded up
                                      "Active", None, None, "Professional", None)
        assert users["user-0002"] == (Decimal(0), "0", datetime(2025, 10, 11, 12, 0, 0, 123456, tzinfo=UTC),  # …500: even
                                      "Suspended", {"reason": "chargeback"}, None, "Professional", None)

        items = {r[0]: r[1:] for r in conn.execute(
            f"SELECT dfid, status, status_payload, creation_timestamp, last_modified, enriched_data, extra, local_id,"
            f" fingerprint, confidence_score FROM {ST}.items")}
        assert set(items) == {D1, D2, D3, D4, D5}
        assert items[D1][:2] == ("Active", None)
        assert items[D2][:2] == ("Merged", {"into": D1})
        assert items[D3][:2] == ("MergedInto", D1)
        assert items[D4][:2] == ("Frozen", {"by": "auditor"})  # an unknown variant, loaded
        assert items[D5][:2] == ("Deprecated", None)           # the last line, without its newline
        assert items[D1][2] == datetime(2025, 10, 11, 12, 0, 0, tzinfo=UTC)      # …000000005Z
        assert items[D1][3] == datetime(2025, 10, 11, 12, 0, 1, tzinfo=UTC)      # 09:00:00.999999999-03:00
        assert items[D2][3] == datetime(2025, 10, 11, 12, 0, 0, 123458, tzinfo=UTC)  # …123457500Z: even
        assert items[D1][4]["rfid"] == 123456789012345678901234567890            # jsonb keeps it exactly
        assert items[D1][5] == {"exported_by": "v2.3"} and items[D2][5] == {}
        assert str(items[D2][6]) == "0b6f3f8e-9d2c-4c1a-8e7b-6a5d4c3b2a19" and items[D1][6] is None
        assert items[D1][7] is None and items[D1][8] == Decimal("0.95")
        big = conn.execute(f"SELECT enriched_data->>'rfid' FROM {ST}.items WHERE dfid = %s", (D1,)).fetchone()
        assert big == ("123456789012345678901234567890",)

        circuits = conn.execute(f"SELECT alias_config, adapter_config, description FROM {ST}.circuits").fetchall()
        assert circuits == [(None, None, "Mato Grosso herd")]  # null and missing are both NULL
        assert conn.execute(f"SELECT config_id::text, adapter_type, adapter_type_payload FROM {ST}.adapters"
                            " ORDER BY 1").fetchall() == [
            ("a0000000-0000-4000-8000-000000000001", "IpfsIpfs", None),
            ("a0000000-0000-4000-8000-000000000002", "Custom", "s3")]
        assert conn.execute(f"SELECT dfid, location, location_payload, size_bytes::text FROM {ST}.storage_history"
                            " ORDER BY 1").fetchall() == [
            (D1, "IPFS", {"cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "pinned": True},
             "18446744073709551615"),
            (D5, "Local", {"path": "/data/items/5"}, "0")]
        assert conn.execute(f"SELECT id_type, id_type_payload FROM {ST}.enhanced_identifiers ORDER BY key").fetchall() \
            == [("Contextual", {"scope": "MT"}), ("Canonical", None)]
        assert conn.execute(f"SELECT rate_limit_per_hour, usage_count::text FROM {ST}.api_keys").fetchall() == [
            (4294967295, "18446744073709551615")]
        assert conn.execute(f"SELECT amount, balance_after::text FROM {ST}.credit_transactions ORDER BY amount"
                            ).fetchall() == [(-5, "18446744073709551610"), (100, "18446744073709551615")]

        secrets = [r[0] for r in conn.execute(f"SELECT password_hash FROM {ST}.users")] + [
            v for r in conn.execute(f"SELECT key_hash, key_prefix FROM {ST}.api_keys") for v in r]
        bookkeeping = "\n".join(str(r) for t in ("quarantine", "adjustments", "check_results", "unmapped_fields")
                                for r in conn.execute(f"SELECT * FROM migration.{t}"))  # noqa: S608
        report = build_report(conn, SPEC, "t", tmp_path / "reports", outcome="blocked")
    text = report.read_text(encoding="utf-8") + (report.parent / "summary.json").read_text(encoding="utf-8")
    assert "timestamp_rounded" in text and "unknown_enum_variant" in text
    for secret in secrets:
        assert secret not in bookkeeping and secret not in text


def test_a_rerun_is_identical(database_url: str) -> None:
    stage_store(database_url, SPEC, SAMPLES, run_id="first", secret=None, workers=1)
    with connect(database_url) as conn:
        first, first_side = _staged(conn), _side_records(conn)
    stage_store(database_url, SPEC, SAMPLES, run_id="second", secret=None, workers=2)  # in the process pool
    with connect(database_url) as conn:
        assert _staged(conn) == first
        assert _side_records(conn) == first_side


def test_a_run_killed_mid_load_then_resumed_is_exact(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_defarm_store(tmp_path / "clean", items=1500, seed=5)
    shutil.copytree(tmp_path / "clean", tmp_path / "killed")
    stage_store(database_url, SPEC, tmp_path / "clean", run_id="clean", secret=None, workers=1)
    with connect(database_url) as conn:
        expected, (quarantine, adjustments, _) = _staged(conn), _side_records(conn)

    real_load_unit = stage.load_unit
    loaded: list[int] = []

    def die_after_one(*args: Any) -> dict[str, int]:
        if loaded:
            raise KeyboardInterrupt  # SIGKILL as the loader sees it: one unit committed, the rest never
        loaded.append(args[4].number)
        return real_load_unit(*args)

    with monkeypatch.context() as patched:
        patched.setattr(stage, "load_unit", die_after_one)
        with pytest.raises(KeyboardInterrupt):
            stage_store(database_url, SPEC, tmp_path / "killed", run_id="killed", secret=None, workers=1)
    with connect(database_url) as conn:
        committed = conn.execute("SELECT count(DISTINCT unit_no) FROM migration.unit_progress WHERE store = 'defarm'"
                                 " AND plan_id = (SELECT plan_id FROM migration.staging WHERE store = 'defarm')"
                                 ).fetchone()
    assert committed == (1,)

    resumed = stage_store(database_url, SPEC, tmp_path / "killed", run_id="resumed", secret=None, workers=1)
    assert resumed.resumed_units == 1 and resumed.units == 17
    with connect(database_url) as conn:
        assert _staged(conn) == expected
        again_quarantine, again_adjustments, _ = _side_records(conn)
        assert again_quarantine == quarantine and again_adjustments == adjustments
        outcomes = evaluate_gates(conn, database_url, SPEC, "resumed", tmp_path / "docs")
        assert [o.name for o in outcomes if not o.passed] == []


def test_a_generated_store_loads_exactly_what_it_says(database_url: str, tmp_path: Path) -> None:
    made = generate_defarm_store(tmp_path, items=4000, seed=9)
    again = generate_defarm_store(tmp_path / "again", items=4000, seed=9)
    for name in ENGINE_NAMES:  # deterministic per seed
        assert (tmp_path / "defarm/snapshot" / f"{name}.jsonl").read_bytes() == \
            (tmp_path / "again/defarm/snapshot" / f"{name}.jsonl").read_bytes()
    assert again.rows == made.rows
    summary = stage_store(database_url, SPEC, tmp_path, run_id="g", secret=None, workers=1)
    assert summary.staged == {name: made.rows[name] for name in ENGINE_NAMES}
    assert summary.quarantined == dict(made.quarantined)
    assert summary.files_unmapped == 1  # snapshot/README.txt
    with connect(database_url) as conn:
        tags = {r[0] for r in conn.execute(f"SELECT DISTINCT status FROM {ST}.items")}
        assert tags == {"Active", "Deprecated", "Split", "Merged", "MergedInto", "Frozen"}
        edges = {r[0] for r in conn.execute(f"SELECT DISTINCT credits::text FROM {ST}.users")}
        assert {"0", "9223372036854775808", "18446744073709551615"} <= edges
        rounded = conn.execute("SELECT sum(rows_changed) FROM migration.adjustments WHERE store = 'defarm'"
                               " AND reason = 'timestamp_rounded'").fetchone()
        assert rounded is not None and rounded[0] > 0


def test_generate_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "migration_pipeline.cli", "generate", "--store", "defarm", "--items", "200",
         "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote ") and "(200 items) in 18 files" in done.stdout
    assert sorted(p.name for p in (tmp_path / "defarm/snapshot").iterdir()) == sorted(
        [f"{n}.jsonl" for n in ENGINE_NAMES] + ["README.txt"])


@pytest.mark.slow
def test_the_migrate_job_promotes_the_sample(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole Dagster job (backup, stage, gates, promotion, report) on the sample: the live tables hold the
    expected rows, u64 max exactly, and the report lists the adjustments."""
    from dagster import DagsterInstance

    from migration_pipeline.core.promote import get_phase
    from migration_pipeline.definitions import defs, job_name

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MIGRATION_SOURCE_ROOT", str(SAMPLES))
    monkeypatch.setenv("MIGRATION_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MIGRATION_BACKUP_DIR", str(tmp_path / "backups"))
    result = defs.resolve_job_def(job_name("defarm")).execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    with connect(database_url) as conn:
        assert get_phase(conn, "defarm").phase == "promoted"
        live = {t: conn.execute(sql.SQL("SELECT count(*) FROM defarm.{}").format(sql.Identifier(t))).fetchone()[0]  # type: ignore[index]
                for t in ENGINE_NAMES}
        assert live == EXPECTED["tables"]
        assert conn.execute("SELECT credits::text FROM defarm.users WHERE user_id = 'user-0001'").fetchone() == (
            "18446744073709551615",)
    report = next((tmp_path / "reports" / "defarm").glob("*/report.html")).read_text(encoding="utf-8")
    assert "timestamp_rounded" in report and "unknown_enum_variant" in report and "blank_line" in report


def test_a_reader_that_loses_a_line_fails_the_row_count_gate(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source side of reconciliation is the file's lines counted apart from the parser: a reader that
    drops a line shrinks what it reads, not what is counted."""
    from migration_pipeline.core.reconcile import row_count_gate, table_counts
    from migration_pipeline.sources.jsonl import JsonLines
    from migration_pipeline.stores.defarm import store

    class Lossy(JsonLines):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return (line for line in super().__iter__() if not (self.path.name == "items.jsonl" and line.number == 2))

    monkeypatch.setattr(store, "JsonLines", Lossy)
    summary = stage_store(database_url, SPEC, SAMPLES, run_id="lossy", secret=None, workers=1)
    with connect(database_url) as conn:
        gate = row_count_gate(table_counts(conn, SPEC, summary.plan_id))
    assert not gate.passed
    assert gate.summary.startswith("items: 12 source ≠ 4 staged + 7 quarantined")
