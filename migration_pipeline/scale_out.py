"""Scale-out: a store's partitions (wallet shards, pend days) loaded as separate steps by Celery workers
on any number of machines (dagster-celery, the `celery` extra).

    fan_out_<store>:  <store>_prepare (schema, backup, list partitions) ──▶ <store>_load_<label>[key] × N
                      ──▶ <store>_finish_staging
    then migrate_<store> (the usual job): reuses the finished staging, runs the gates, promotes, reports.

Every load step stages one partition (`stage_store(..., partitions={key})`, the same units and resume as
the `<store>/shards` asset) and reconciles it (`reconcile_units`), in the worker process itself: the
parallelism is the number of worker processes, one step each. PostgreSQL is the only coordination point:
the plan, the units committed and the store's lease are rows there, so a step killed with its machine is
run again elsewhere (the broker redelivers a task whose worker never acknowledged it, `task_acks_late`)
and resumes from the last committed unit.

The store is held for the whole run by the run's own process (the executor takes the store's lease before
the first step and releases it after the last); the steps, in other processes or on other machines, take
the lease for the same run id, which the lease shares between the processes of one run and refuses to any
other run.

Workers: `celery -A migration_pipeline.scale_out worker -Q migration --concurrency N` with the same
environment as the run (DATABASE_URL, MIGRATION_SOURCE_ROOT, MIGRATION_BACKUP_DIR, MIGRATION_REPORT_DIR,
ENCRYPTION_SECRET, MIGRATION_CELERY_BROKER, MIGRATION_CELERY_BACKEND). The UI and its daemon load the jobs
with `dagster dev -m migration_pipeline.scale_out` (every job of migration_pipeline.definitions plus the
fan-out jobs).
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    DynamicOut,
    DynamicOutput,
    EnvVar,
    Failure,
    In,
    JobDefinition,
    OpExecutionContext,
    Out,
    executor,
    job,
    multiple_process_executor_requirements,
    op,
)
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.make_app import make_app

from migration_pipeline.core.backup import ensure_backup
from migration_pipeline.core.bookkeeping.plans import plan_status, units_total
from migration_pipeline.core.bookkeeping.units import committed_units
from migration_pipeline.core.errors import ConfigurationError
from migration_pipeline.core.lease import StoreLease
from migration_pipeline.core.promote import get_phase, set_phase
from migration_pipeline.core.reconcile import reconcile_units
from migration_pipeline.core.schema import apply_migrations
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.stage import finish_staging as core_finish_staging
from migration_pipeline.core.stage import stage_store
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.registry import all_stores, get_store

DEFAULT_QUEUE = "migration"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/0"
QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
_PRE_LIVE_PHASES = ("not_started", "staged", "validated", "rolled_back")  # as in stores.factory

# A task is acknowledged once it has run, not when a worker takes it: a worker that dies mid-step (SIGKILL,
# a lost machine) leaves it unacknowledged and the broker hands it to another worker. One task per worker
# process at a time, none reserved ahead: a reserved task would wait behind a long partition.
RELIABLE_DELIVERY: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_track_started": True,
    "broker_connection_retry_on_startup": True,
}


def broker_url() -> str:
    return os.environ.get("MIGRATION_CELERY_BROKER") or DEFAULT_BROKER


def result_backend() -> str:
    return os.environ.get("MIGRATION_CELERY_BACKEND") or DEFAULT_BACKEND


def fan_out_job_name(store: str) -> str:
    return f"fan_out_{store}"


class LeasedCeleryExecutor(CeleryExecutor):  # type: ignore[misc]
    """dagster-celery's executor, holding the store's lease in the run's process from before the first step
    until the last one ends: no other run of the store starts in between (it is refused at once)."""

    def __init__(self, store: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            raise ConfigurationError("DATABASE_URL is not set: the run cannot hold its store")
        lease = StoreLease.take(database_url, self.store, plan_context.dagster_run.run_id)
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            lease.release()


def leased_celery_executor(store: str) -> Any:
    @executor(name="celery", config_schema=CELERY_CONFIG, requirements=multiple_process_executor_requirements())
    def _executor(init_context: Any) -> LeasedCeleryExecutor:
        from dagster._core.execution.retries import RetryMode

        config = init_context.executor_config
        return LeasedCeleryExecutor(
            store,
            broker=config.get("broker") or broker_url(),
            # dagster-celery's default (rpc://) is replaced: results must outlive the worker that wrote them.
            backend=config.get("backend") if config.get("backend") not in (None, "rpc://") else result_backend(),
            include=config.get("include"),
            config_source={**RELIABLE_DELIVERY, **(config.get("config_source") or {})},
            retries=RetryMode.from_config(config["retries"]),
        )

    return _executor


def mapping_key(partition: str) -> str:
    """A partition key as a Dagster mapping key (letters, digits, underscores): 2024-03-01 → 2024_03_01."""
    return re.sub(r"[^A-Za-z0-9_]", "_", partition)


def partition_keys(spec: StoreSpec, source_root: Path) -> list[str]:
    """The static keys (wallet shards), else the keys present under the store folder (pend days)."""
    assert spec.partitions is not None
    if spec.partitions.kind == "static":
        return list(spec.partitions.keys)
    assert spec.partitions.discover_keys is not None
    return sorted(spec.partitions.discover_keys(source_root / spec.folder))


def _migration_resource() -> MigrationResource:
    return MigrationResource(database_url=EnvVar("DATABASE_URL"), source_root=EnvVar("MIGRATION_SOURCE_ROOT"),
                             report_dir=EnvVar("MIGRATION_REPORT_DIR"), backup_dir=EnvVar("MIGRATION_BACKUP_DIR"))


def fan_out_job(store: str, queue: str = DEFAULT_QUEUE) -> JobDefinition:
    """The fan-out job of a partitioned store; `queue` is the Celery queue its steps are sent to (workers
    listen on it with -Q)."""
    spec = get_store(store)
    if spec.partitions is None:
        raise ConfigurationError(f"store {store} has no partitions: run migrate_{store}")
    label = spec.partitions.label
    tags = {QUEUE_TAG: queue}

    @op(name=f"{store}_prepare", out=DynamicOut(str), tags=tags,
        description=f"Applies the schema, backs {store} up (once, as its migrate job does) and lists its {label}s.")
    def prepare(context: OpExecutionContext, migration: MigrationResource) -> Iterator[DynamicOutput[str]]:
        migration.hold_store_lock(spec.name, context.run_id)
        with migration.connect() as conn:
            apply_migrations(conn)
        # One process: a Celery pool process may not start processes of its own.
        ensure_backup(migration.database_url, migration.root() / spec.folder, Path(migration.backup_dir), spec.name,
                      workers=1)
        for key in partition_keys(spec, migration.root()):
            yield DynamicOutput(key, mapping_key=mapping_key(key))

    @op(name=f"{store}_load_{label}", ins={"partition": In(str)}, out=Out(str), tags=tags,
        description=f"Stages one {label} of {store} in this worker process and reconciles it; fails when the "
        f"{label}'s records and checksums do not add up.")
    def load_partition(context: OpExecutionContext, migration: MigrationResource, partition: str) -> str:
        migration.hold_store_lock(spec.name, context.run_id)
        # workers=1: the step is the unit of parallelism, and a Celery pool process may not start children.
        summary = stage_store(migration.database_url, spec, migration.root(), context.run_id,
                              migration.secret(required=spec.needs_secret), workers=1, partitions={partition})
        with migration.connect() as conn:
            outcome = reconcile_units(conn, spec, summary.plan_id, summary.in_scope, label)
            conn.commit()
        context.log.info(f"{label} {partition}: {outcome.summary} ({summary.resumed_units} units resumed)")
        if not outcome.passed:
            raise Failure(description=f"{label} {partition}: {outcome.summary}")
        return partition

    @op(name=f"{store}_finish_staging", ins={"loaded": In(list[str])}, tags=tags,
        description=f"Loads any {label} still missing, then finishes the staged tables (integrity rules, "
        f"constraints) once every {label} is in; migrate_{store} then gates and promotes them.")
    def finish_staging(context: OpExecutionContext, migration: MigrationResource, loaded: list[str]) -> None:
        migration.hold_store_lock(spec.name, context.run_id)
        url, secret = migration.database_url, migration.secret(required=spec.needs_secret)
        # A partition whose step never ran (a failed prepare cannot get here) is loaded now, in this process.
        summary = stage_store(url, spec, migration.root(), context.run_id, secret, workers=1,
                              partitions=set(partition_keys(spec, migration.root())))
        with migration.connect() as conn:
            status = plan_status(conn, spec.name)
            total = units_total(conn, spec.name)
            committed = len(committed_units(conn, spec.name, summary.plan_id))
        if status is not None and status != "staged":
            if committed != total:  # units outside every partition: the usual path
                summary = stage_store(url, spec, migration.root(), context.run_id, secret, workers=1)
            else:
                # On threads (the pool process of a Celery worker may not start processes of its own).
                core_finish_staging(url, spec, summary.plan_id, context.run_id, workers=migration.worker_count())
        with migration.connect() as conn:
            if get_phase(conn, spec.name).phase in _PRE_LIVE_PHASES:
                set_phase(conn, spec.name, "staged", run_id=context.run_id, actor="dagster", plan_id=summary.plan_id,
                          note=f"{len(loaded)} {label}s loaded by Celery workers")
                conn.commit()
        context.log.info(f"{store}: staging finished, {summary.units} units; run migrate_{store} to gate and promote")

    @job(name=fan_out_job_name(store), executor_def=leased_celery_executor(store),
         resource_defs={"migration": _migration_resource()},
         description=f"{store}'s {label}s loaded side by side by Celery workers, one step each; then run "
         f"migrate_{store}.")
    def _job() -> None:
        finish_staging(prepare().map(load_partition).collect())

    return _job


def fan_out_jobs() -> list[JobDefinition]:
    return [fan_out_job(s.name) for s in all_stores() if s.partitions is not None]


def celery_app() -> Any:
    """The workers' Celery app: dagster-celery's task, with the broker, backend and delivery settings the
    executor uses."""
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.tasks import create_task

    app = make_app(CeleryExecutor(retries=RetryMode(RetryMode.DISABLED), broker=broker_url(),
                                  backend=result_backend(), config_source=RELIABLE_DELIVERY).app_args())
    create_task(app)
    return app


def _definitions() -> Any:
    from dagster import Definitions

    from migration_pipeline.definitions import defs as base

    return Definitions.merge(base, Definitions(jobs=fan_out_jobs()))


def __getattr__(name: str) -> Any:
    # Built on first use: the workers need `app` (celery -A migration_pipeline.scale_out), the UI `defs`.
    if name in ("app", "celery"):
        value = celery_app()
    elif name == "defs":
        value = _definitions()
    else:
        raise AttributeError(name)
    globals()[name] = value
    return value
