"""What every registered store must do, checked the same way for each (a new store joins by registering):
its samples stage to the figures of its `expected.json` and pass every gate; the manifest lists every file;
every quarantine row says where and why; a re-run, and a run killed mid-load then re-run, stage the same
rows; the Dagster definitions hold its assets and blocking checks."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from migration_pipeline.core.database import connect
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.registry import all_stores

from .conftest import SAMPLE_SECRET, SAMPLES
from .killing import stage_killed_after

STORES = list(all_stores())
IDS = [s.name for s in STORES]


def _expected(spec: StoreSpec) -> dict[str, Any]:
    return json.loads((Path(inspect.getfile(spec.discover)).parent / "expected.json").read_text())


def _secret(spec: StoreSpec) -> str | None:
    return SAMPLE_SECRET if spec.needs_secret else None


def _fingerprint(database_url: str, spec: StoreSpec) -> dict[str, tuple[int, int]]:
    """Per staged table: rows, and the order-independent sum of the row hashes of its hashed columns."""
    out = {}
    with connect(database_url) as conn:
        for table in spec.tables:
            hashed = sql_row_hash(table.columns) if table.columns else sql.SQL("0")
            row = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}.{}").format(
                hashed, sql.Identifier(spec.staging_schema), sql.Identifier(table.name))).fetchone()
            assert row is not None
            out[table.name] = (int(row[0]), int(row[1]))
    return out


@pytest.mark.parametrize("spec", STORES, ids=IDS)
def test_samples_stage_to_their_expected_figures_and_pass_every_gate(
    spec: StoreSpec, database_url: str, tmp_path: Path
) -> None:
    expected = _expected(spec)
    summary = stage_store(database_url, spec, SAMPLES, "conformance", _secret(spec), workers=2)
    assert summary.staged == expected["tables"]
    assert summary.quarantined == expected["quarantine"]
    assert {"mapped": summary.files_mapped, "unmapped": summary.files_unmapped} == expected["files"]
    assert summary.flagged == expected["flagged"]
    on_disk = sum(len(files) for _, _, files in os.walk(SAMPLES / spec.folder))
    assert summary.files_mapped + summary.files_unmapped == on_disk  # the manifest lists every file
    with connect(database_url) as conn:
        unexplained = conn.execute(
            "SELECT count(*) FROM migration.quarantine WHERE store = %s AND plan_id = %s AND"
            " (coalesce(reason, '') = '' OR coalesce(message, '') = '' OR locator IS NULL OR source_file = '')",
            (spec.name, summary.plan_id)).fetchone()
        assert unexplained == (0,)
        # Each unit's progress rows carry the number of files it listed: its manifest rows, unit by unit.
        miscounted = conn.execute(
            """SELECT p.unit_no, p.files, m.files FROM
                 (SELECT unit_no, min(files_listed) AS files, max(files_listed) AS most FROM migration.unit_progress
                  WHERE store = %(store)s AND plan_id = %(plan)s GROUP BY unit_no) p
               FULL JOIN (SELECT unit_no, count(*) AS files FROM migration.source_manifest
                          WHERE store = %(store)s AND plan_id = %(plan)s AND unit_no IS NOT NULL GROUP BY unit_no) m
                 USING (unit_no)
               WHERE p.files IS DISTINCT FROM p.most OR p.files IS DISTINCT FROM coalesce(m.files, 0)""",
            {"store": spec.name, "plan": summary.plan_id}).fetchall()
        assert miscounted == []
        outcomes = evaluate_gates(conn, database_url, spec, "conformance", tmp_path / "docs")
    assert [o.name for o in outcomes if not o.passed] == []


@pytest.mark.parametrize("spec", STORES, ids=IDS)
def test_a_rerun_and_a_run_killed_mid_load_then_rerun_stage_the_same_rows(
    spec: StoreSpec, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage_store(database_url, spec, SAMPLES, "first", _secret(spec), workers=1)
    clean = _fingerprint(database_url, spec)
    stage_store(database_url, spec, SAMPLES, "again", _secret(spec), workers=1)
    assert _fingerprint(database_url, spec) == clean

    stage_killed_after(1, monkeypatch, database_url, spec, SAMPLES, "killed", _secret(spec))
    resumed = stage_store(database_url, spec, SAMPLES, "resumed", _secret(spec), workers=1)
    assert resumed.resumed_units == 1
    assert _fingerprint(database_url, spec) == clean


@pytest.mark.parametrize("spec", STORES, ids=IDS)
def test_the_definitions_hold_the_store_assets_and_blocking_checks(spec: StoreSpec) -> None:
    from dagster import AssetKey

    from migration_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    for step in ("backup", "validation_report"):
        assert AssetKey([spec.name, step]) in graph.get_all_asset_keys()
    for table in spec.tables:
        assert AssetKey([spec.name, "staged", table.name]) in graph.get_all_asset_keys()
        assert AssetKey([spec.name, table.name]) in graph.get_all_asset_keys()
        checks = [k for k in graph.asset_check_keys if k.asset_key == AssetKey([spec.name, "staged", table.name])]
        assert {"row_count_reconciliation", "checksum_reconciliation"} <= {k.name for k in checks}
        assert all(graph.get_check_spec(k).blocking for k in checks)
