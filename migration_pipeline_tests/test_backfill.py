"""Partitioned backfills of the wallet store: shards load alone or in ranges, are reconciled one by
one, and the whole store is gated before promotion. Real Dagster runs on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from migration_pipeline.core.database import connect
from migration_pipeline.definitions import defs, job_name
from migration_pipeline.stores.wallet import WALLET_STORE
from migration_pipeline.stores.wallet.store import UNITS_PER_SHARD

from .conftest import SAMPLE_SECRET, SAMPLES

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@pytest.fixture
def pipeline_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {"DATABASE_URL": database_url, "MIGRATION_SOURCE_ROOT": str(SAMPLES),
                        "MIGRATION_REPORT_DIR": str(tmp_path / "reports"),
                        "MIGRATION_BACKUP_DIR": str(tmp_path / "backups"), "ENCRYPTION_SECRET": SAMPLE_SECRET}.items():
        monkeypatch.setenv(name, value)
    return database_url


def _units_by_shard() -> dict[int, int]:
    counts: dict[int, int] = {}
    for unit in WALLET_STORE.discover(SAMPLES / "wallet").units:
        assert unit.shard is not None
        counts[unit.shard] = counts.get(unit.shard, 0) + 1
    return counts


def _loaded_shards(database_url: str) -> list[int]:
    with connect(database_url) as conn:
        rows = conn.execute("SELECT DISTINCT unit_no FROM migration.unit_progress WHERE store = 'wallet'").fetchall()
    return sorted({unit_no // UNITS_PER_SHARD for (unit_no,) in rows})


def test_shard_range_then_single_shard_then_whole_store(pipeline_env: str) -> None:
    database_url = pipeline_env
    backfill = defs.resolve_job_def("backfill_wallet_shards")
    with DagsterInstance.ephemeral() as instance:
        ranged = backfill.execute_in_process(
            instance=instance, run_config=QUIET,
            tags={"dagster/asset_partition_range_start": "00", "dagster/asset_partition_range_end": "03"})
        assert ranged.success
        assert _loaded_shards(database_url) == [0, 1, 2, 3]
        checks = ranged.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [("shard_reconciliation", True)]
        assert checks[0].metadata["summary"].value.startswith(f"{sum(_units_by_shard()[s] for s in range(4))} units")
        with connect(database_url) as conn:
            status = conn.execute("SELECT status FROM migration.staging WHERE store = 'wallet'").fetchone()
            live = conn.execute("SELECT count(*) FROM wallet.wallets").fetchone()
        assert status == ("loading",) and live == (0,)

        again = backfill.execute_in_process(instance=instance, run_config=QUIET, partition_key="02")
        assert again.success
        materialization = again.asset_materializations_for_node("wallet__shards")[0]
        assert materialization.metadata["units_resumed"].value == _units_by_shard()[2]
        assert _loaded_shards(database_url) == [0, 1, 2, 3]

        whole = defs.resolve_job_def(job_name("wallet")).execute_in_process(instance=instance, run_config=QUIET)
        assert whole.success
        staged = next(m for m in whole.asset_materializations_for_node("wallet__staged") if m.asset_key.path[1] == "staged")
        assert staged.metadata["units_resumed"].value == sum(_units_by_shard()[s] for s in range(4))
        assert staged.metadata["units"].value == sum(_units_by_shard().values())
        gate_results = {c.check_name: c.passed for c in whole.get_asset_check_evaluations()}
        assert gate_results["row_count_reconciliation"] and gate_results["checksum_reconciliation"]
        assert all(gate_results.values())
        for table in ("wallets", "users", "wallet_metadata", "wallet_audit_log"):
            assert instance.get_latest_materialization_event(AssetKey(["wallet", table])) is not None
        shard_check = AssetCheckKey(AssetKey(["wallet", "shards"]), "shard_reconciliation")
        assert shard_check in defs.resolve_asset_graph().asset_check_keys

    with connect(database_url) as conn:
        wallets = conn.execute("SELECT count(*), count(DISTINCT (fid, chain)) FROM wallet.wallets").fetchone()
        quarantined = conn.execute(
            "SELECT reason, count(*) FROM migration.quarantine q JOIN migration.staging s USING (store, plan_id)"
            " WHERE store = 'wallet' GROUP BY 1 ORDER BY 1").fetchall()
        phase = conn.execute("SELECT phase FROM migration.store_phase WHERE store = 'wallet'").fetchone()
    assert wallets == (16, 16)
    assert quarantined == [("bad_checksum", 1), ("duplicate_key", 1), ("empty_file", 1), ("fid_mismatch", 1),
                           ("invalid_address", 1), ("invalid_iv", 1), ("invalid_json", 1), ("not_an_object", 1)]
    assert phase == ("promoted",)
