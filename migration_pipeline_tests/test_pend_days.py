"""Pend's explorer days as Dagster partitions: discovered by a sensor, loaded alone or in ranges, each
reconciled on its own (blocking check), then the whole store gated and promoted. Real runs, real PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import (
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
from migration_pipeline.stores.factory import live_keys
from migration_pipeline.stores.pend import PEND_STORE

from .conftest import SAMPLES
from .test_pend_store import PII

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
        checks = {c.check_name: c for c in one_day.get_asset_check_evaluations()}
        assert {name: c.passed for name, c in checks.items()} == {"day_reconciliation": True,
                                                                  "day_live_replacement": True}
        assert checks["day_live_replacement"].metadata["summary"].value.startswith("pend is not live")  # type: ignore[union-attr]
        check = checks["day_reconciliation"]
        events = check.metadata["details"].value["blockchain_events"]  # type: ignore[index]
        assert (events["source"], events["staged"], events["quarantined"]) == (3, 1, 2)
        assert events["checksum_source"] == events["checksum_target"]

        both = backfill.execute_in_process(
            instance=instance, run_config=QUIET,
            tags={"dagster/asset_partition_range_start": "2024-03-01", "dagster/asset_partition_range_end": "2024-03-02"})
        assert both.success
        materialization = both.asset_materializations_for_node("pend__days")[0]
        assert materialization.metadata["units_resumed"].value == 2  # 2024-03-02's files were not read again
        check = next(c for c in both.get_asset_check_evaluations() if c.check_name == "day_reconciliation")
        # 6: the duplicate event is still staged; keys are enforced when the whole store finishes (first kept)
        assert check.passed and check.metadata["summary"].value.startswith("4 units, 6 rows")  # type: ignore[union-attr]
        with connect(database_url) as conn:
            assert conn.execute("SELECT status FROM migration.staging WHERE store = 'pend'").fetchone() == ("loading",)

        whole = defs.resolve_job_def(job_name("pend")).execute_in_process(instance=instance, run_config=QUIET)
        assert whole.success
        staged = next(m for m in whole.asset_materializations_for_node("pend__staged") if m.asset_key.path[1] == "staged")
        assert staged.metadata["units_resumed"].value == 4
        assert all(c.passed for c in whole.get_asset_check_evaluations())
        assert all(instance.get_latest_materialization_event(key) is not None for key in live_keys(PEND_STORE))
        # No KYC or user PII in the Dagster event log (messages, asset and check metadata) of any run.
        events = "\n".join(str(record) for run in (one_day, both, whole)
                           for record in instance.all_logs(run.run_id))
        assert len(events) > 10_000
        for value in PII:
            assert value not in events, value

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


def _live(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    with connect(database_url) as conn:
        return {t.name: conn.execute(f"SELECT * FROM pend.{t.name} ORDER BY 1, 2, 3, 4").fetchall()  # noqa: S608
                for t in PEND_STORE.tables}


def test_a_day_loaded_after_promotion_replaces_only_its_own_live_rows(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "source"
    shutil.copytree(SAMPLES / "pend", root / "pend")
    for name, value in {"DATABASE_URL": database_url, "MIGRATION_SOURCE_ROOT": str(root),
                        "MIGRATION_REPORT_DIR": str(tmp_path / "reports"),
                        "MIGRATION_BACKUP_DIR": str(tmp_path / "backups")}.items():
        monkeypatch.setenv(name, value)
    backfill = defs.resolve_job_def("backfill_pend_days")
    with instance_for_test() as instance:
        assert defs.resolve_job_def(job_name("pend")).execute_in_process(instance=instance, run_config=QUIET).success
        before = _live(database_url)
        events_before = before.pop("blockchain_events")

        # A new day: one new event, and one that repeats an event already live on 2024-03-01.
        new_day = root / "pend" / "explorer-data" / "2024-03-03"
        new_day.mkdir()
        (new_day / "ethereum.json").write_text(json.dumps([
            {"txHash": "0x" + "d4" * 32, "logIndex": 0, "chain": "ethereum", "value": "18446744073709551616",
             "blockTimestamp": 1709424000},
            {"txHash": "0x" + "a1" * 32, "logIndex": 0, "chain": "ethereum", "value": "1"}]))
        instance.add_dynamic_partitions(DAYS, ["2024-03-01", "2024-03-02", "2024-03-03"])
        run = backfill.execute_in_process(instance=instance, run_config=QUIET, partition_key="2024-03-03")
        assert run.success
        assert {c.check_name: c.passed for c in run.get_asset_check_evaluations()} == {
            "day_reconciliation": True, "day_live_replacement": True}
        after = _live(database_url)
        events_after = after.pop("blockchain_events")
        assert after == before  # no other table was touched
        assert [e for e in events_after if str(e[0]) != "2024-03-03"] == events_before
        assert [(str(e[0]), e[1], e[3], e[10]) for e in events_after if str(e[0]) == "2024-03-03"] == [
            ("2024-03-03", "ethereum", 0, Decimal(2**64))]
        with connect(database_url) as conn:
            duplicate = conn.execute(
                "SELECT source_file, locator, reason FROM migration.quarantine WHERE store = 'pend'"
                " AND source_file LIKE %s", ("%2024-03-03%",)).fetchall()
        assert duplicate == [("explorer-data/2024-03-03/ethereum.json", "[1]", "duplicate_key")]

        # The broken day file is repaired: re-running that day alone replaces that day's live rows only.
        (root / "pend" / "explorer-data" / "2024-03-02" / "ethereum.json").write_text(json.dumps([
            {"txHash": "0x" + "c3" * 32, "logIndex": 0, "chain": "ethereum", "value": "12"}]))
        rerun = backfill.execute_in_process(instance=instance, run_config=QUIET, partition_key="2024-03-02")
        assert rerun.success and all(c.passed for c in rerun.get_asset_check_evaluations())
        final = _live(database_url)
        events_final = final.pop("blockchain_events")
        assert final == before
        assert [e for e in events_final if str(e[0]) != "2024-03-02"] == \
            [e for e in events_after if str(e[0]) != "2024-03-02"]
        assert sorted((e[1], e[3], e[10]) for e in events_final if str(e[0]) == "2024-03-02") == [
            ("base", 1, Decimal("9" * 77)), ("ethereum", 0, Decimal(12))]
