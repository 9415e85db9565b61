"""Parallel-run automation: a sensor per store that notices changed source files, and an hourly
schedule per store for sources without cheap change detection. All of it is off by default;
switch it on in the UI (Automation) for the stores in their parallel run."""

from collections.abc import Iterator

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from migration_pipeline.core.changes import detect_changes
from migration_pipeline.core.names import change_sensor_name, staged_op, sync_schedule_name
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.resources import MigrationResource


def change_sensor(spec: StoreSpec, job_name: str) -> SensorDefinition:
    @sensor(
        name=change_sensor_name(spec.name),
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"While {spec.name} is promoted (parallel run), compares the source files' size and mtime with "
        "the live version's manifest (stat only) and starts an incremental migration run when files were added, "
        "changed or deleted: only those files are read, every other row is carried from the live tables, and the "
        "result goes through the same gates before it replaces them.",
    )
    def _sensor(context: SensorEvaluationContext, migration: MigrationResource) -> Iterator[RunRequest | SkipReason]:
        with migration.connect() as conn:
            changes = detect_changes(conn, spec, migration.root())
        if changes is None:
            yield SkipReason(f"{spec.name} has no live version yet: run the migration first")
        elif changes.empty:
            yield SkipReason(f"{spec.name}: no source file changed since the live version")
        else:
            context.log.info(f"{spec.name}: {changes.describe()}")
            incremental = {"ops": {staged_op(spec.name): {"config": {"incremental": spec.sync is not None}}}}
            yield RunRequest(run_key=f"{spec.name}-{changes.key()}", run_config=incremental,
                             tags={"migration/store": spec.name, "migration/changes": changes.describe()})

    return _sensor


def hourly_schedule(spec: StoreSpec, job_name: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=sync_schedule_name(spec.name),
        job_name=job_name,
        cron_schedule="0 * * * *",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Re-migrates {spec.name} every hour during the parallel run (for sources whose changes "
        "cannot be detected from file metadata).",
    )
