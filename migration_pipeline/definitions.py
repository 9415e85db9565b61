"""The one Definitions object: every store's assets and gates, the schema asset, jobs and resources."""


from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Definitions,
    EnvVar,
    MaterializeResult,
    asset,
    define_asset_job,
    in_process_executor,
)

from migration_pipeline.automation import change_sensor, hourly_schedule
from migration_pipeline.core.names import migrate_job
from migration_pipeline.core.schema import apply_migrations
from migration_pipeline.lifecycle import cutover_store, rollback_store
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.factory import (
    SCHEMA_ASSET,
    backfill_job_name,
    build_all,
    daily_partition_schedule,
    partition_sensor,
    shard_key,
)
from migration_pipeline.stores.registry import all_stores


@asset(
    key=SCHEMA_ASSET,
    group_name="migration",
    kinds={"postgres"},
    description="Versioned DDL under sql/ applied in name order, each file once; an edited, already-applied file "
    "fails the run (forward-only migrations).",
)
def migration_schema(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
    with migration.connect() as conn:
        report = apply_migrations(conn)
    return MaterializeResult(metadata={"applied": list(report.applied), "already_applied": len(report.already_applied)})


def job_name(store: str) -> str:
    return migrate_job(store)


STORES = all_stores()
_assets, _checks = build_all(STORES)

defs = Definitions(
    assets=[migration_schema, *_assets],
    asset_checks=_checks,
    jobs=[
        define_asset_job(
            job_name(s.name),
            selection=AssetSelection.assets(SCHEMA_ASSET) | AssetSelection.groups(s.name),
            description=f"Back up, stage, gate, promote and report the {s.name} store.",
        )
        for s in STORES
    ]
    + [
        define_asset_job(
            backfill_job_name(s),
            selection=AssetSelection.assets(shard_key(s)),
            description=f"Load a range of {s.name}'s {s.partitions.label}s (partitions) into its staging; then run"
            f" migrate_{s.name}.",
        )
        for s in STORES if s.partitions is not None
    ]
    + [cutover_store, rollback_store],
    sensors=[change_sensor(s, job_name(s.name)) for s in STORES]
    + [partition_sensor(s, backfill_job_name(s)) for s in STORES
       if s.partitions is not None and s.partitions.kind == "dynamic"],
    schedules=[hourly_schedule(s, job_name(s.name)) for s in STORES]
    + [daily_partition_schedule(s, backfill_job_name(s)) for s in STORES
       if s.partitions is not None and s.partitions.kind == "dynamic"],
    resources={
        "migration": MigrationResource(
            database_url=EnvVar("DATABASE_URL"),
            source_root=EnvVar("MIGRATION_SOURCE_ROOT"),
            report_dir=EnvVar("MIGRATION_REPORT_DIR"),
            backup_dir=EnvVar("MIGRATION_BACKUP_DIR"),
        )
    },
    # One process per run: the store lock lives for the whole run and the loader has its own pool.
    executor=in_process_executor,
)
