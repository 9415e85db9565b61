"""The one Definitions object: every store's assets and gates, the schema asset, jobs and resources."""

import os
from pathlib import Path

from dagster import (
    AnchorBasedFilePathMapping,
    AssetSelection,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
    link_code_references_to_git,
    with_source_code_references,
)

from migration_pipeline.automation import change_sensor, hourly_schedule
from migration_pipeline.core.names import migrate_job
from migration_pipeline.lifecycle import cutover_store, rollback_store
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.factory import (
    backfill_job_name,
    build_all,
    daily_partition_schedule,
    partition_sensor,
    schema_spec,
    shard_key,
    source_key,
)
from migration_pipeline.stores.registry import all_stores


def job_name(store: str) -> str:
    return migrate_job(store)


STORES = all_stores()
_assets, _checks = build_all(STORES)


def _with_code_references(assets: list) -> list:  # type: ignore[type-arg]
    """Each asset links to the code that defines it: the local file, or, when MIGRATION_GIT_URL is set
    (e.g. https://github.com/org/repo), that file on MIGRATION_GIT_BRANCH (default main)."""
    referenced = list(with_source_code_references(assets))
    git_url = os.environ.get("MIGRATION_GIT_URL")
    if git_url:
        anchor = Path(__file__).resolve().parent.parent
        referenced = list(link_code_references_to_git(
            referenced, git_url=git_url, git_branch=os.environ.get("MIGRATION_GIT_BRANCH", "main"),
            file_path_mapping=AnchorBasedFilePathMapping(local_file_anchor=anchor, file_anchor_path_in_repository="")))
    return referenced

defs = Definitions(
    assets=_with_code_references([schema_spec(), *_assets]),
    asset_checks=_checks,
    jobs=[
        define_asset_job(
            job_name(s.name),
            selection=AssetSelection.groups(s.name) - AssetSelection.assets(source_key(s)),
            description=f"Back up, stage, gate, promote and report the {s.name} store.",
            tags={"migration/store": s.name},
        )
        for s in STORES
    ]
    + [
        define_asset_job(
            backfill_job_name(s),
            selection=AssetSelection.assets(shard_key(s)),
            description=f"Load a range of {s.name}'s {s.partitions.label}s (partitions) into its staging; then run"
            f" migrate_{s.name}.",
            tags={"migration/store": s.name},
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
