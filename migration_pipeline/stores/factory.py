"""One factory turns any StoreSpec into its Dagster assets and blocking checks.

    staged ──(blocking gates: GX suite per table, row counts, checksums, store gates)──▶ live ──▶ validation_report
"""


import warnings
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    StaticPartitionsDefinition,
    asset,
    multi_asset_check,
    schedule,
    sensor,
)
from pydantic import Field

from migration_pipeline.core.backup import latest_backup, prune_strays, record_backup, write_backup
from migration_pipeline.core.changes import detect_changes
from migration_pipeline.core.names import (
    backfill_group,
    backfill_job,
    gates_op,
    live_replacement_check_name,
    partition_schedule_name,
    partition_sensor_name,
    reconciliation_check_name,
)
from migration_pipeline.core.partition_swap import replace_live_partition
from migration_pipeline.core.promote import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_LOCK_TIMEOUT,
    get_phase,
    promote,
    set_phase,
)
from migration_pipeline.core.reconcile import (
    DEFAULT_MAX_ROW_LOSS_PERCENT,
    CheckOutcome,
    gx_check_name,
    reconcile_units,
)
from migration_pipeline.core.report import build_report
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.stage import stage_store
from migration_pipeline.core.sync import sync_store
from migration_pipeline.quality import gx as _gx  # noqa: F401 - GX (3-4 s to import) loads with the code location, not in a run
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.resources import MigrationResource

SCHEMA_ASSET = AssetKey("migration_schema")


class StagingConfig(Config):  # type: ignore[misc]
    """`incremental`: during the parallel run, read only the files added, changed or deleted since the
    live version and carry every other row from it (stores with sync rules; others run in full)."""

    incremental: bool = False


class PromotionConfig(Config):  # type: ignore[misc]
    """`force` overwrites a cut-over store's live tables (recorded in the phase history). Each of the
    `attempts` waits up to `lock_timeout_seconds` for every lock (readers of the live tables hold theirs
    until their transaction ends), the next starts after `backoff_seconds`, doubled each time; then the
    step fails alone and re-materializing live promotes the staged data without reloading it.
    `terminate_stale_readers`: on the last attempt, disconnect sessions whose snapshot predates the staged
    data (they would read the new tables empty) instead of failing."""

    force: bool = False
    requested_by: str = "dagster"
    lock_timeout_seconds: float = Field(default=DEFAULT_LOCK_TIMEOUT, gt=0)
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1)
    backoff_seconds: float = Field(default=DEFAULT_BACKOFF, ge=0)
    terminate_stale_readers: bool = True

class GateConfig(Config):  # type: ignore[misc]
    """`max_row_loss_percent`: the share of a live table's rows a run may drop before the `live_row_loss`
    gate blocks promotion (100 promotes whatever was staged, an empty store included)."""

    max_row_loss_percent: float = Field(default=DEFAULT_MAX_ROW_LOSS_PERCENT, ge=0, le=100)


PRE_LIVE_PHASES = ("not_started", "staged", "validated", "rolled_back")
_ACTOR = "dagster"


def check_names(spec: StoreSpec) -> list[tuple[str, str]]:
    """(name, description) of every gate of a store, in the order they are reported."""
    return [
        ("row_count_reconciliation", "Per table: source records = staged rows + quarantined records."),
        ("checksum_reconciliation", "Order-independent checksum of the records as read = the same checksum "
                                    "computed in SQL over the staged rows (+ rows moved to the quarantine)."),
        ("live_row_loss", "No table would lose more than max_row_loss_percent (default 10%) of its live rows: an "
                          "emptied or half-mounted source folder must not replace good live tables."),
        *[(g.name, g.description) for g in spec.gates],
        *[(gx_check_name(t.name), f"Great Expectations suite of {spec.name}.{t.name} ({len(t.expectations)} "
           "expectations) run in PostgreSQL on the staged table.") for t in spec.tables],
    ]


def _counts_metadata(summary: Any) -> dict[str, Any]:
    return {
        "files_mapped": summary.files_mapped,
        "files_unmapped": summary.files_unmapped,
        "units": summary.units,
        "units_resumed": summary.resumed_units,
        "rows_staged": MetadataValue.json(summary.staged),
        "records_seen": MetadataValue.json(summary.seen),
        "quarantined_by_reason": MetadataValue.json(summary.quarantined),
        "quarantined_total": sum(summary.quarantined.values()),
        "flagged_records": summary.flagged,
        "seconds": MetadataValue.json({k: round(v, 3) for k, v in summary.seconds.items()}),
        "plan_id": summary.plan_id,
    }


def _stage_seconds(instance: Any, staged_key: AssetKey, run_id: str) -> dict[str, float] | None:
    """The staging step's seconds per phase, as this run's materialization of `staged` recorded them."""
    event = instance.get_latest_materialization_event(staged_key)
    if event is None or event.run_id != run_id or event.asset_materialization is None:
        return None
    seconds = event.asset_materialization.metadata.get("seconds")
    return dict(seconds.value) if seconds is not None else None


def _result(spec: StoreSpec, outcome: CheckOutcome) -> AssetCheckResult:
    metadata: dict[str, Any] = {"summary": outcome.summary}
    for key, value in outcome.details.items():
        metadata[key] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    docs = outcome.details.get("data_docs")
    if docs:
        metadata["data_docs"] = MetadataValue.path(docs)
    return AssetCheckResult(
        asset_key=AssetKey([spec.name, "staged"]),
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def build_store_assets(spec: StoreSpec) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    group = spec.name
    staged_key = AssetKey([spec.name, "staged"])
    backup_key = AssetKey([spec.name, "backup"])

    @asset(
        key=backup_key,
        group_name=group,
        deps=[SCHEMA_ASSET],
        description=f"Backup first: a zstd-compressed tar archive of every file under <source root>/{spec.folder} with "
        "a SHA-256 manifest, verified by re-reading it. Written once, before the store's first load; kept 30 days.",
    )
    def backup(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        migration.hold_store_lock(spec.name, context.run_id)  # before anything is written: a second run writes nothing
        with migration.connect() as conn:
            prune_strays(conn, Path(migration.backup_dir), spec.name)  # what a killed backup left
            existing = latest_backup(conn, spec.name)
            if existing:
                return MaterializeResult(metadata={"archive": MetadataValue.path(existing[0]),
                                                   "sha256": existing[1], "written_now": False})
            made = write_backup(migration.root() / spec.folder, Path(migration.backup_dir), spec.name, migration.worker_count())
            record_backup(conn, spec.name, made)
        return MaterializeResult(metadata={"archive": MetadataValue.path(str(made.archive)), "sha256": made.sha256,
                                           "files": made.files, "bytes": made.bytes,
                                           "archive_bytes": made.archive.stat().st_size, "written_now": True})
    live_key = AssetKey([spec.name, "live"])

    shard_assets: list[AssetsDefinition] = []
    if spec.partitions is not None:
        shard_assets.append(_shard_asset(spec, backup_key))

    @asset(
        key=staged_key,
        group_name=group,
        deps=[SCHEMA_ASSET, backup_key, *[a.key for a in shard_assets]],
        kinds={"postgres"},
        description=f"{spec.description} Every source file streamed into schema {spec.staging_schema} with COPY "
        "(resumable per unit); rejected records go to migration.quarantine with a reason; every file is listed in "
        "migration.source_manifest.",
    )
    def staged(context: AssetExecutionContext, config: StagingConfig, migration: MigrationResource) -> MaterializeResult:
        migration.hold_store_lock(spec.name, context.run_id)
        secret = migration.secret(required=spec.needs_secret)
        changes = None
        if config.incremental and spec.sync is not None:
            with migration.connect() as conn:
                changes = detect_changes(conn, spec, migration.root())
        if changes is not None:
            synced = sync_store(migration.database_url, spec, migration.root(), changes, context.run_id, secret,
                                workers=migration.worker_count())
            metadata = _counts_metadata(synced.stage)
            metadata.update({"mode": "incremental", "changes": changes.describe(), "files_read": synced.files_read,
                             "rows_carried": synced.rows_carried, "soft_deleted": synced.soft_deleted})
            return MaterializeResult(metadata=metadata)
        # A run that died during the gates left a finished staging: it is checked and kept, not reloaded.
        summary = stage_store(migration.database_url, spec, migration.root(), context.run_id, secret,
                              workers=migration.worker_count(), reuse_staged=True)
        with migration.connect() as conn:
            if get_phase(conn, spec.name).phase in PRE_LIVE_PHASES:
                set_phase(conn, spec.name, "staged", run_id=context.run_id, actor=_ACTOR, plan_id=summary.plan_id)
        return MaterializeResult(metadata={"mode": "full", **_counts_metadata(summary)})

    @multi_asset_check(
        specs=[AssetCheckSpec(name, asset=staged_key, description=text, blocking=True)
               for name, text in check_names(spec)],
        name=gates_op(spec.name),
        description=f"Blocking gates of {spec.name}: all must pass before the staged tables are promoted.",
    )
    def gates(context: AssetCheckExecutionContext, config: GateConfig,
              migration: MigrationResource) -> Iterator[AssetCheckResult]:
        run_id = context.run.run_id
        docs_dir = migration.reports() / spec.name / run_id
        with migration.connect() as conn:
            outcomes = evaluate_gates(conn, migration.database_url, spec, run_id, docs_dir, config.max_row_loss_percent)
            passed = all(o.passed for o in outcomes)
            if passed and get_phase(conn, spec.name).phase in PRE_LIVE_PHASES:
                set_phase(conn, spec.name, "validated", run_id=run_id, actor=_ACTOR)
                conn.commit()
            report = build_report(conn, spec, run_id, migration.reports(),
                                  outcome="validated" if passed else "blocked",
                                  stage_seconds=_stage_seconds(context.instance, staged_key, run_id))
        context.log.info(f"{spec.name}: validation report {report.resolve()}")
        by_name = {o.name: o for o in outcomes}
        for name, _ in check_names(spec):
            outcome = by_name.get(name) or CheckOutcome(name, False, "not evaluated: staging incomplete")
            yield _result(spec, outcome)

    @asset(
        key=live_key,
        group_name=group,
        deps=[staged_key],
        kinds={"postgres"},
        description=f"The live {spec.name} tables: the staged tables swapped in atomically after every gate "
        f"passed; the replaced version is kept in {spec.previous_schema} for rollback.",
    )
    def live(context: AssetExecutionContext, config: PromotionConfig, migration: MigrationResource) -> MaterializeResult:
        # Materialized without staged (a promotion re-run alone): promote what the validated run staged.
        adopt = staged_key not in context.selected_asset_keys
        with migration.connect() as conn:
            plan_id = promote(conn, spec, context.run_id, actor=config.requested_by, force=config.force,
                              adopt_staged=adopt, lock_timeout=config.lock_timeout_seconds,
                              attempts=config.attempts, backoff=config.backoff_seconds,
                              terminate_stale_readers=config.terminate_stale_readers)
        return MaterializeResult(metadata={"plan_id": plan_id, "schema": spec.schema,
                                           "previous_version": spec.previous_schema})

    @asset(
        key=AssetKey([spec.name, "validation_report"]),
        group_name=group,
        deps=[live_key],
        description="Self-contained HTML report of the run: counts, checksums, quarantine reasons with locators, "
        "every gate, Data Docs, phase history. Review it before cutover.",
    )
    def validation_report(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        with migration.connect() as conn:
            promoted_run = get_phase(conn, spec.name).run_id or context.run_id  # the validated run, if live ran alone
            path = build_report(conn, spec, promoted_run, migration.reports(), outcome="promoted")
        return MaterializeResult(metadata={"report": MetadataValue.path(str(path.resolve()))})

    return [backup, *shard_assets, staged, live, validation_report], [gates]


def backfill_job_name(spec: StoreSpec) -> str:
    """The job that loads a range of the store's partitions (`backfill_wallet_shards`, `backfill_pend_days`)."""
    assert spec.partitions is not None
    return backfill_job(spec.name, spec.partitions.asset)


def shard_key(spec: StoreSpec) -> AssetKey:
    """The store's partitioned loading asset (`wallet/shards`, `pend/days`)."""
    assert spec.partitions is not None
    return AssetKey([spec.name, spec.partitions.asset])


def partitions_definition(spec: StoreSpec) -> PartitionsDefinition:
    """Static keys as declared; dynamic keys (days) added by the store's partition sensor as folders appear.

    Days are dynamic rather than a `DailyPartitionsDefinition`: a legacy explorer cache has days with gaps and
    no known first day, and a daily definition would show every calendar day since its start as a missing
    partition forever; dynamic keys are exactly the day folders present, so the UI's partition bar is the store."""
    assert spec.partitions is not None
    if spec.partitions.kind == "static":
        return StaticPartitionsDefinition(list(spec.partitions.keys))
    return DynamicPartitionsDefinition(name=spec.partitions.dynamic_name(spec.name))


def _shard_asset(spec: StoreSpec, backup_key: AssetKey) -> AssetsDefinition:
    """Partitioned loading: each unit of the store that belongs to a partition (wallet: fid mod 16 as
    "00".."15"; pend: an explorer day) is loaded by its partition's run.

    A backfill of any range of partitions runs as one run (both cores busy); a partition can be re-run alone;
    each is reconciled on its own (blocking check) before `staged` finishes the whole store.
    """
    key = shard_key(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backfill_policy is marked beta in Dagster 1.13
        return _shard_asset_definition(spec, key, backup_key)


def _shard_asset_definition(spec: StoreSpec, key: AssetKey, backup_key: AssetKey) -> AssetsDefinition:
    assert spec.partitions is not None
    label = spec.partitions.label
    check_name = reconciliation_check_name(label)
    live_check = live_replacement_check_name(label) if spec.partitions.live_table else None
    live_specs = [AssetCheckSpec(live_check, asset=key, blocking=True,
                                 description=f"Once {spec.name} is live: the {label}'s staged rows (reconciled) replace "
                                 f"only that {label}'s rows of {spec.name}.{spec.partitions.live_table}, in one "
                                 "transaction; the live rows' count and checksum must equal the staged ones', else "
                                 f"nothing changes. Before promotion the {label} waits in staging.")] if live_check else []

    @asset(
        key=key,
        group_name=backfill_group(spec.name),
        deps=[SCHEMA_ASSET, backup_key],
        partitions_def=partitions_definition(spec),
        backfill_policy=BackfillPolicy.single_run(),
        kinds={"postgres"},
        check_specs=[AssetCheckSpec(check_name, asset=key, blocking=True,
                                    description=f"For the {label}s of this run: every unit committed, source records = "
                                    "staged + quarantined, and the row-hash sum of the staged rows = the one read."),
                     *live_specs],
        description=f"{spec.name} loaded {label} by {label} into {spec.staging_schema} (the same units, resumable). "
        f"Backfill a range of {label}s, then materialize {spec.name}/staged: it loads any {label} still missing, "
        "finishes the staged tables and runs the whole-store gates before promotion.",
    )
    def shards(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        wanted = set(context.partition_keys)
        migration.hold_store_lock(spec.name, context.run_id)
        summary = stage_store(migration.database_url, spec, migration.root(), context.run_id,
                              migration.secret(required=spec.needs_secret), workers=migration.worker_count(),
                              partitions=wanted)
        outcomes = []
        with migration.connect() as conn:
            phase = get_phase(conn, spec.name).phase
            if phase in PRE_LIVE_PHASES:
                set_phase(conn, spec.name, "staged", run_id=context.run_id, actor=_ACTOR, plan_id=summary.plan_id,
                          note=f"{label}s {', '.join(sorted(context.partition_keys))} loaded")
            outcome = reconcile_units(conn, spec, summary.plan_id, summary.in_scope, label)
            conn.commit()
            outcomes.append(outcome)
            if live_check is not None:
                if phase not in ("promoted", "cut_over"):
                    outcomes.append(CheckOutcome(live_check, True, f"{spec.name} is not live: the {label} waits in "
                                                 "staging for the whole-store promotion"))
                elif not outcome.passed:
                    outcomes.append(CheckOutcome(live_check, False, f"not attempted: the {label}'s reconciliation "
                                                 "failed, the live rows are unchanged"))
                else:
                    outcomes.append(replace_live_partition(conn, spec, summary.plan_id, context.run_id,
                                                           summary.in_scope, sorted(wanted), live_check))
        metadata = _counts_metadata(summary)
        assert spec.partitions is not None
        metadata[spec.partitions.asset] = ", ".join(sorted(context.partition_keys))
        return MaterializeResult(
            metadata=metadata,
            check_results=[AssetCheckResult(check_name=o.name, passed=o.passed, severity=AssetCheckSeverity.ERROR,
                                            metadata={"summary": o.summary, "details": MetadataValue.json(o.details)})
                           for o in outcomes],
        )

    return shards


def partition_sensor(spec: StoreSpec, job_name: str) -> SensorDefinition:
    """Adds a partition for every key found under the store folder (a new day folder) that Dagster does not
    know yet; on by default, because dynamic partitions exist only once added. It starts no run: a day is
    loaded by a backfill from the UI, the daily schedule or the store's migration run."""
    assert spec.partitions is not None and spec.partitions.discover_keys is not None
    partitioning = spec.partitions
    definition = partitions_definition(spec)
    assert isinstance(definition, DynamicPartitionsDefinition)

    @sensor(
        name=partition_sensor_name(spec.name, partitioning.asset),
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Lists the {partitioning.label} folders of {spec.name} and adds each new one as a partition of "
        f"{spec.name}/{partitioning.asset}, so that it can be backfilled or re-run alone from the UI. Starts no run.",
    )
    def _sensor(context: SensorEvaluationContext, migration: MigrationResource) -> SensorResult | SkipReason:
        assert partitioning.discover_keys is not None
        present = list(partitioning.discover_keys(migration.root() / spec.folder))
        known = set(context.instance.get_dynamic_partitions(partitioning.dynamic_name(spec.name)))
        new = [k for k in present if k not in known]
        if not new:
            return SkipReason(f"no new {partitioning.label} folder ({len(present)} known)")
        return SensorResult(dynamic_partitions_requests=[definition.build_add_request(new)])

    return _sensor


def daily_partition_schedule(spec: StoreSpec, job_name: str) -> ScheduleDefinition:
    """Loads yesterday's partition (a day folder written during the day) into the staging, reconciled alone;
    off by default. Skips when that day has no folder (yet)."""
    assert spec.partitions is not None
    partitioning = spec.partitions

    @schedule(
        name=partition_schedule_name(spec.name, partitioning.asset),
        job_name=job_name,
        cron_schedule="30 0 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Every day at 00:30 UTC: loads yesterday's {partitioning.label} of {spec.name} (its partition of "
        f"{spec.name}/{partitioning.asset}) with its blocking reconciliation check, once its folder exists (the "
        "discovery sensor adds it). Off by default: switch it on once the store is migrated and the app keeps "
        "writing day folders.",
    )
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        day = (scheduled.date() - timedelta(days=1)).isoformat()
        if day not in context.instance.get_dynamic_partitions(partitioning.dynamic_name(spec.name)):
            return SkipReason(f"no {partitioning.label} folder {day} yet")
        return RunRequest(run_key=f"{spec.name}-{day}", partition_key=day)

    return _schedule


def build_all(specs: Sequence[StoreSpec]) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    assets: list[AssetsDefinition] = []
    checks: list[AssetChecksDefinition] = []
    for spec in specs:
        a, c = build_store_assets(spec)
        assets += a
        checks += c
    return assets, checks
