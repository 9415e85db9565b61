"""The one Definitions object loads, and every store is built by the same factory."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey

from migration_pipeline.definitions import defs
from migration_pipeline.stores.factory import check_names
from migration_pipeline.stores.registry import all_stores


def test_every_store_has_the_same_graph_of_assets_and_blocking_gates() -> None:
    graph = defs.resolve_asset_graph()
    assert [s.name for s in all_stores()] == ["wallet", "metagauge", "pend", "defarm"]
    for spec in all_stores():
        for step in ("backup", "staged", "live", "validation_report"):
            key = AssetKey([spec.name, step])
            assert key in graph.get_all_asset_keys()
            assert graph.get(key).description, key
        assert graph.get(AssetKey([spec.name, "live"])).parent_keys == {AssetKey([spec.name, "staged"])}
        # On a fresh database the bookkeeping tables come first: the backup records itself in one of them.
        assert graph.get(AssetKey([spec.name, "backup"])).parent_keys == {AssetKey("migration_schema")}
        expected = {AssetCheckKey(AssetKey([spec.name, "staged"]), name) for name, _ in check_names(spec)}
        assert expected <= graph.asset_check_keys
        for check_key in expected:
            check = graph.get_check_spec(check_key)
            assert check.blocking and check.description
    gates = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(["metagauge", "staged"])}
    assert gates == {"row_count_reconciliation", "checksum_reconciliation", "live_row_loss", "serving"} | {
        f"gx_suite_{t}" for t in ("users", "user_onboarding", "user_preferences", "contracts", "contract_competitors",
                                  "contract_rpc_config", "contract_analysis_params", "analyses", "chat_sessions",
                                  "chat_messages")}
    assert "key_verification" in {k.name for k in graph.asset_check_keys if k.asset_key.path[0] == "wallet"}


def test_jobs_sensors_and_schedules() -> None:
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"migrate_wallet", "migrate_metagauge", "backfill_wallet_shards", "cutover_store", "rollback_store"} <= jobs
    sensors = {s.name: s.default_status.value for s in defs.sensors or []}
    schedules = {s.name: s.default_status.value for s in defs.schedules or []}
    assert sensors == {"wallet_source_changes": "STOPPED", "metagauge_source_changes": "STOPPED",
                       "pend_source_changes": "STOPPED",
                       # only adds day partitions (they exist only once added); starts no run
                       "pend_days_discovery": "RUNNING",
                       "defarm_source_changes": "STOPPED"}
    assert schedules == {"wallet_hourly_sync": "STOPPED", "metagauge_hourly_sync": "STOPPED",
                         "pend_hourly_sync": "STOPPED", "pend_daily_days": "STOPPED", "defarm_hourly_sync": "STOPPED"}
