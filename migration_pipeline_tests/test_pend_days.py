"""Pend's explorer days as Dagster partitions: discovered by a sensor, loaded alone or in ranges, each
reconciled on its own (blocking check), then the whole store gated and promoted. Real runs, real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from migration_pipeline.core.database import connect
from migration_pipeline.definitions import defs, job_name
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.pend import PEND_STORE

from .conftest import SAMPLES

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DAYS = "pend_days"


@pytest.fixture
def pipeline_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {"DATABASE_URL": database_url, "MIGRATION_SOURCE_ROOT": str(SAMPLES),
                        "MIGRATION_REPORT_DIR": str(tmp_path / "reports"),
                        "MIGRATION_BACKUP_DIR": str(tmp_path / "backups")}.items():
        monkeypatch.setenv(name, value)
    return database_url


def _loaded_files(database_url: str) -> list[str]:
    with connect(database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT path FROM migration.source_manifest WHERE store = 'pend' AND status = 'mapped' ORDER BY 1")]


def test_days_are_discovered_then_loaded_alone_and_reconciled_per_day(pipeline_env: str, tmp_path: Path) -> None:
    database_url = pipeline_env
    resource = MigrationResource(database_url=database_url, source_root=str(SAMPLES))
    with instance_for_test() as instance:  # a schedule context needs an instance with a ref
        sensor = defs.get_sensor_def("pend_days_discovery")
        with build_sensor_context(instance=instance, resources={"migration": resource}) as context:
            result = sensor(context)
        assert isinstance(result, SensorResult)
        assert [r.partition_keys for r in result.dynamic_partitions_requests or []] == [["2024-03-01", "2024-03-02"]]
        instance.add_dynamic_partitions(DAYS, ["2024-03-01", "2024-03-02"])
        with build_sensor_context(instance=instance, resources={"migration": resource}) as context:
            again = sensor(context)
        assert not isinstance(again, SensorResult)  # nothing new: a SkipReason

        backfill = defs.resolve_job_def("backfill_pend_days")
        one_day = backfill.execute_in_process(instance=instance, run_config=QUIET, partition_key="2024-03-02")
        assert one_day.success
        assert _loaded_files(database_url) == ["explorer-data/2024-03-02/base.json",
                                               "explorer-data/2024-03-02/ethereum.json"]
        [check] = one_day.get_asset_check_evaluations()
        assert (check.check_name, check.passed) == ("day_reconciliation", True)
        events = check.metadata["details"].value["blockchain_events"]  # type: ignore[index]
        assert (events["source"], events["staged"], events["quarantined"]) == (3, 1, 2)
        assert events["checksum_source"] == events["checksum_target"]

        both = backfill.execute_in_process(
            instance=instance, run_config=QUIET,
            tags={"dagster/asset_partition_range_start": "2024-03-01", "dagster/asset_partition_range_end": "2024-03-02"})
        assert both.success
        materialization = both.asset_materializations_for_node("pend__days")[0]
        assert materialization.metadata["units_resumed"].value == 2  # 2024-03-02's files were not read again
        [check] = both.get_asset_check_evaluations()
        # 6: the duplicate event is still staged; keys are enforced when the whole store finishes (first kept)
        assert check.passed and check.metadata["summary"].value.startswith("4 units, 6 rows")  # type: ignore[union-attr]
        with connect(database_url) as conn:
            assert conn.execute("SELECT status FROM migration.staging WHERE store = 'pend'").fetchone() == ("loading",)

        whole = defs.resolve_job_def(job_name("pend")).execute_in_process(instance=instance, run_config=QUIET)
        assert whole.success
        staged = whole.asset_materializations_for_node("pend__staged")[0]
        assert staged.metadata["units_resumed"].value == 4
        assert all(c.passed for c in whole.get_asset_check_evaluations())
        assert instance.get_latest_materialization_event(AssetKey(["pend", "live"])) is not None

        schedule = defs.get_schedule_def("pend_daily_days")
        with build_schedule_context(instance=instance,
                                    scheduled_execution_time=datetime(2024, 3, 3, 0, 30, tzinfo=UTC)) as context:
            due = schedule(context)
        assert isinstance(due, RunRequest) and due.partition_key == "2024-03-02"
        with build_schedule_context(instance=instance,
                                    scheduled_execution_time=datetime(2024, 3, 9, 0, 30, tzinfo=UTC)) as context:
            assert isinstance(schedule(context), SkipReason)  # no folder for 2024-03-08
    with connect(database_url) as conn:
        per_day = conn.execute("SELECT day::text, count(*) FROM pend.blockchain_events GROUP BY 1 ORDER BY 1").fetchall()
    assert per_day == [("2024-03-01", 4), ("2024-03-02", 1)]
    assert PEND_STORE.partitions is not None and PEND_STORE.partitions.kind == "dynamic"
