"""The one Definitions object loads, and every store is built by the same factory: one asset per table."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey

from migration_pipeline.definitions import defs
from migration_pipeline.lifecycle import StoreName
from migration_pipeline.stores.factory import gate_checks
from migration_pipeline.stores.registry import all_stores


def test_every_store_has_one_asset_per_table_and_blocking_gates_per_table() -> None:
    graph = defs.resolve_asset_graph()
    assert [s.name for s in all_stores()] == ["wallet", "metagauge", "pend", "defarm"]
    # The DDL is applied by the first step of each run (observed there): no step, never "missing upstream".
    assert graph.get(AssetKey("migration_schema")).is_external
    for spec in all_stores():
        source, backup = AssetKey([spec.name, "source_files"]), AssetKey([spec.name, "backup"])
        report = AssetKey([spec.name, "validation_report"])
        assert graph.get(source).is_external and not graph.get(source).is_materializable
        # On a fresh database the bookkeeping tables come first: the backup records itself in one of them.
        assert graph.get(backup).parent_keys == {AssetKey("migration_schema"), source}
        live = set()
        for table in spec.tables:
            staged, promoted = AssetKey([spec.name, "staged", table.name]), AssetKey([spec.name, table.name])
            assert graph.get(staged).parent_keys == {source}
            # Written by the same step, beside the load: one op, so no gate of a staged table runs without it.
            assert graph.get(staged).assets_def is graph.get(backup).assets_def
            assert graph.get(promoted).parent_keys == {staged}
            for key in (staged, promoted):
                node = graph.get(key)
                assert node.description and node.group_name == spec.name and node.owners == ["team:data-migration"]
                assert node.code_version and set(node.kinds) == {"postgres"}
                assert node.metadata["dagster/table_name"] in (f"{spec.staging_schema}.{table.name}",
                                                               f"{spec.name}.{table.name}")
            live.add(promoted)
        assert graph.get(report).parent_keys == live
        # One load (one op) per store makes its staged tables; one promotion (one op) its live tables.
        assert {graph.get(AssetKey([spec.name, "staged", t.name])).assets_def.op.name for t in spec.tables} == {
            f"{spec.name}__staged"}
        assert {graph.get(AssetKey([spec.name, t.name])).assets_def.op.name for t in spec.tables} == {f"{spec.name}__live"}
        expected = {AssetCheckKey(AssetKey([spec.name, "staged", table]), name) for table, name, _ in gate_checks(spec)}
        assert len(expected) == 4 * len(spec.tables) + len(spec.gates)
        assert expected <= graph.asset_check_keys
        for check_key in expected:
            check = graph.get_check_spec(check_key)
            assert check.blocking and check.description
    gates = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(["metagauge", "staged", "users"])}
    assert gates == {"row_count_reconciliation", "checksum_reconciliation", "live_row_loss", "gx_suite_users", "serving"}
    contracts = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(["metagauge", "staged", "contracts"])}
    assert contracts == {"row_count_reconciliation", "checksum_reconciliation", "live_row_loss", "gx_suite_contracts"}
    assert "key_verification" in {k.name for k in graph.asset_check_keys if k.asset_key.path[0] == "wallet"}


def test_jobs_sensors_and_schedules() -> None:
    jobs = {j.name: j for j in defs.resolve_all_job_defs()}
    assert {"migrate_wallet", "migrate_metagauge", "backfill_wallet_shards", "cutover_store", "rollback_store"} <= set(jobs)
    # A store's runs carry its tag, launched from the CLI, a sensor or the UI.
    assert jobs["migrate_wallet"].tags["migration/store"] == "wallet"
    assert jobs["backfill_pend_days"].tags["migration/store"] == "pend"
    assert [m.name for m in StoreName] == ["wallet", "metagauge", "pend", "defarm"]
    sensors = {s.name: s.default_status.value for s in defs.sensors or []}
    schedules = {s.name: s.default_status.value for s in defs.schedules or []}
    assert sensors == {"wallet_source_changes": "STOPPED", "metagauge_source_changes": "STOPPED",
                       "pend_source_changes": "STOPPED",
                       # only adds day partitions (they exist only once added); starts no run
                       "pend_days_discovery": "RUNNING",
                       "defarm_source_changes": "STOPPED"}
    assert schedules == {"wallet_hourly_sync": "STOPPED", "metagauge_hourly_sync": "STOPPED",
                         "pend_hourly_sync": "STOPPED", "pend_daily_days": "STOPPED", "defarm_hourly_sync": "STOPPED"}
