"""One factory turns any StoreSpec into its Dagster assets and blocking checks, one asset per target table.

    <store>/source_files ─▶ <store>/backup + <store>/staged/<table> … ─(blocking gates, per table)─▶
        <store>/<table> … ─▶ <store>/validation_report

The staged tables of a store are the outputs of ONE multi-asset (op `<store>__staged`): the store is read in one
pass and its tables are loaded side by side. Its backup is an output of the same op: written the first time,
beside the load (which only reads the source), and the op fails, so no gate runs, unless it verified. Its live
tables are the outputs of ONE multi-asset too (op `<store>__live`): promotion swaps the staging schema in as a
whole, so a store is promoted all or nothing.
"""


import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Backoff,
    Config,
    DataVersion,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    StaticPartitionsDefinition,
    asset,
    multi_asset,
    multi_asset_check,
    schedule,
    sensor,
)
from pydantic import Field

from migration_pipeline.core.backup import StoreBackup, backup_beside
from migration_pipeline.core.bookkeeping.phases import last_actor
from migration_pipeline.core.changes import detect_changes
from migration_pipeline.core.names import (
    STORE_STEPS,
    backfill_group,
    backfill_job,
    gates_op,
    live_op,
    live_replacement_check_name,
    partition_schedule_name,
    partition_sensor_name,
    reconciliation_check_name,
    staged_op,
    store_pool,
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
from migration_pipeline.core.schema import apply_migrations
from migration_pipeline.core.spec import StoreSpec, TableSpec
from migration_pipeline.core.stage import StageSummary, loader_pool, stage_store
from migration_pipeline.core.sync import sync_store
from migration_pipeline.progress import watch_progress
from migration_pipeline.quality import gx as _gx  # noqa: F401 - GX (3-4 s to import) loads with the code location, not in a run
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.resources import MigrationResource, step_errors, tag_run_with_stores
from migration_pipeline.stores.table_metadata import (
    catalog_table,
    quarantine_by_reason,
    quarantine_markdown,
    row_count,
)

SCHEMA_ASSET = AssetKey("migration_schema")
# Bumped when what a step writes changes, so that Dagster marks the assets it made as unsynced, truly.
CODE_VERSION = "2"
OWNERS = ["team:data-migration"]
# Transient database errors (a dropped connection, a failover: psycopg.OperationalError) fail a loading or
# promotion step, which is retried after 5 s, then 10 s, then 20 s (± jitter); every other failure is final
# (`resources.step_errors` raises it as a Failure that allows no retry).
TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


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
    requested_by: str = Field(default="dagster", min_length=1, max_length=200,
                              description="Who asks for the promotion (recorded in the phase history).")
    lock_timeout_seconds: float = Field(default=DEFAULT_LOCK_TIMEOUT, gt=0, le=3600)
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1, le=100)
    backoff_seconds: float = Field(default=DEFAULT_BACKOFF, ge=0, le=3600)
    terminate_stale_readers: bool = True


class GateConfig(Config):  # type: ignore[misc]
    """`max_row_loss_percent`: the share of a live table's rows a run may drop before the `live_row_loss`
    gate blocks promotion (100 promotes whatever was staged, an empty store included)."""

    max_row_loss_percent: float = Field(default=DEFAULT_MAX_ROW_LOSS_PERCENT, ge=0, le=100)


PRE_LIVE_PHASES = ("not_started", "staged", "validated", "rolled_back")
_ACTOR = "dagster"


def schema_spec() -> AssetSpec:
    """The bookkeeping schema and every store's DDL: applied by the first step of every run that writes (a
    store's backup, its partitions' load), never by a step of its own, so that no run waits for, and no
    Materialize asks about, an asset that is never out of date."""
    return AssetSpec(
        key=SCHEMA_ASSET, group_name="migration", kinds={"postgres"}, owners=OWNERS,
        description="Versioned DDL under sql/ applied in name order, each file once, by the first step of every "
        "run (observed there: files applied); an edited, already-applied file fails the run (forward-only "
        "migrations).")


def ensure_schema(conn: psycopg.Connection) -> AssetObservation:
    """Apply any DDL file not applied yet (cheap when none is: one lock, one query); observe the schema."""
    report = apply_migrations(conn)
    files = sorted({*report.applied, *report.already_applied})
    return AssetObservation(asset_key=SCHEMA_ASSET, metadata={
        "applied_now": len(report.applied), "applied_before": len(report.already_applied),
        "applied": ", ".join(report.applied) or "none", "files": len(files)})


# --- asset keys --------------------------------------------------------------------------------------------


def source_key(spec: StoreSpec) -> AssetKey:
    """The store's legacy files (external: written by the legacy applications, observed by each load)."""
    return AssetKey([spec.name, "source_files"])


def backup_key(spec: StoreSpec) -> AssetKey:
    return AssetKey([spec.name, "backup"])


def staged_key(spec: StoreSpec, table: str) -> AssetKey:
    """A table as loaded and checked in the staging schema (`wallet/staged/wallets`)."""
    return AssetKey([spec.name, "staged", table])


def live_key(spec: StoreSpec, table: str) -> AssetKey:
    """A live table, what the application reads (`wallet/wallets`)."""
    return AssetKey([spec.name, table])


def report_key(spec: StoreSpec) -> AssetKey:
    return AssetKey([spec.name, "validation_report"])


def staged_keys(spec: StoreSpec) -> list[AssetKey]:
    return [staged_key(spec, t.name) for t in spec.tables]


def live_keys(spec: StoreSpec) -> list[AssetKey]:
    return [live_key(spec, t.name) for t in spec.tables]


# --- checks ------------------------------------------------------------------------------------------------


def store_gate_table(spec: StoreSpec) -> str:
    """The table that carries the store-wide gates (key verification, serving lookups): the first loaded,
    the root of the store's foreign keys."""
    return spec.tables[0].name


def gate_checks(spec: StoreSpec) -> list[tuple[str, str, str]]:
    """(table, check name, description) of every blocking gate, as the UI lists them per staged table."""
    checks: list[tuple[str, str, str]] = []
    for t in spec.tables:
        checks += [
            (t.name, "row_count_reconciliation", f"Source records of {t.name} = staged rows + quarantined records"
             + ("." if t.loaded else " (derived table: the rows its SQL must produce).")),
            (t.name, "checksum_reconciliation",
             f"Order-independent checksum of the {t.name} records as read = the same checksum computed in SQL over "
             "the staged rows (+ rows moved to the quarantine)." if t.loaded else
             f"{t.name} is derived in SQL from the loaded tables: proven by its row count and its GX suite."),
            (t.name, "live_row_loss", f"{t.name} would not lose more than max_row_loss_percent (default 10%) of "
             "its live rows: an emptied or half-mounted source folder must not replace a good live table."),
            (t.name, gx_check_name(t.name), f"Great Expectations suite of {spec.name}.{t.name} "
             f"({len(t.expectations)} expectations) run in PostgreSQL on the staged table; Data Docs linked."),
        ]
    checks += [(store_gate_table(spec), g.name, f"Store-wide gate of {spec.name}: {g.description}") for g in spec.gates]
    return checks


def check_names(spec: StoreSpec) -> list[tuple[str, str]]:
    """(name, description) of every gate of a store once, in the order they are reported."""
    seen: dict[str, str] = {}
    for _, name, text in gate_checks(spec):
        seen.setdefault(name, text)
    return list(seen.items())


def _metadata_of(details: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, bool | int | float | str):
            metadata[key] = value
        elif value is not None:
            metadata[key] = MetadataValue.json(value)
    return metadata


def per_table_results(spec: StoreSpec, outcomes: Sequence[CheckOutcome]) -> list[AssetCheckResult]:
    """One result per (table, check) from the store's gate outcomes (evaluated once for the whole store)."""
    by_name = {o.name: o for o in outcomes}
    results = []
    for table, name, _ in gate_checks(spec):
        passed, summary, metadata = _table_outcome(spec, table, name, by_name.get(name))
        results.append(AssetCheckResult(asset_key=staged_key(spec, table), check_name=name, passed=passed,
                                        severity=AssetCheckSeverity.ERROR,
                                        metadata={"summary": summary, **metadata}))
    return results


def _table_outcome(
    spec: StoreSpec, table: str, name: str, outcome: CheckOutcome | None
) -> tuple[bool, str, dict[str, Any]]:
    if outcome is None:
        return False, "not evaluated: staging incomplete", {}
    tables = outcome.details.get("tables") if isinstance(outcome.details.get("tables"), dict) else None
    if name == "row_count_reconciliation" and tables and table in tables:
        c = tables[table]
        passed = c["staged"] == c["expected"]
        sign = "=" if passed else "≠"
        return passed, (f"{c['source']} source {sign} {c['staged']} staged + {c['quarantined']} quarantined"
                        if spec.table(table).loaded else f"{c['staged']} rows derived, {c['expected']} expected"), \
            {k: int(v) for k, v in c.items()}
    if name == "checksum_reconciliation" and tables is not None:
        if table not in tables:
            return outcome.passed or table not in {t.name for t in spec.tables if t.loaded}, \
                "derived table: proven by its row count and its GX suite", {}
        c = tables[table]
        passed = c["source"] == c["target"]
        return passed, f"checksum {'matches' if passed else 'differs'}: source {c['source']}, staged {c['target']}", \
            {"checksum_source": c["source"], "checksum_staged": c["target"]}
    if name == "live_row_loss" and tables and table in tables:
        c = tables[table]
        limit = float(outcome.details.get("max_row_loss_percent", DEFAULT_MAX_ROW_LOSS_PERCENT))
        passed = not c["staged"] < c["live"] * (1 - limit / 100)
        summary = (f"{c['live']} live rows, {c['staged']} staged: within the {limit:g}% a run may drop" if passed else
                   f"{c['live']} live rows would become {c['staged']}, more than the {limit:g}% a run may drop: "
                   "check that the source root holds the whole store; to promote anyway, allow the row loss")
        return passed, summary, {"live_rows": int(c["live"]), "staged_rows": int(c["staged"]),
                                 "max_row_loss_percent": limit}
    metadata = _metadata_of({k: v for k, v in outcome.details.items() if k != "data_docs"})
    docs = outcome.details.get("data_docs")
    if docs:
        metadata["data_docs"] = MetadataValue.url(Path(docs).resolve().as_uri())
    return outcome.passed, outcome.summary, metadata


# --- metadata ----------------------------------------------------------------------------------------------


def _declared_schema(table: TableSpec) -> Any:
    """The table's columns as the store declares them (shown before the first load; the catalog's after)."""
    from dagster import TableColumn, TableSchema

    return TableSchema(columns=[TableColumn(c.name, c.kind) for c in table.columns])


def _catalog_schema(conn: psycopg.Connection, schema: str, table: str) -> Any:
    from dagster import TableColumn, TableColumnConstraints, TableConstraints, TableSchema

    found = catalog_table(conn, schema, table)
    if found is None:
        return None
    return TableSchema(
        columns=[TableColumn(c.name, c.type, description=c.description,
                             constraints=TableColumnConstraints(nullable=c.nullable, unique=c.unique))
                 for c in found.columns],
        constraints=TableConstraints(other=list(found.constraints)),
    )


def table_metadata(conn: psycopg.Connection, spec: StoreSpec, schema: str, table: str) -> dict[str, Any]:
    """The standard table metadata the UI renders natively: row count, table name, column schema."""
    metadata: dict[str, Any] = {"dagster/table_name": f"{schema}.{table}"}
    count = row_count(conn, schema, table)
    if count is not None:
        metadata["dagster/row_count"] = count
    columns = _catalog_schema(conn, schema, table)
    if columns is not None:
        metadata["dagster/column_schema"] = columns
    return metadata


def _run_metadata(summary: StageSummary) -> dict[str, Any]:
    """What the load of the whole store did (the same on each staged table of the run)."""
    return {
        "plan_id": summary.plan_id,
        "units": summary.units,
        "units_resumed": summary.resumed_units,
        "files_mapped": summary.files_mapped,
        "files_unmapped": summary.files_unmapped,
        "flagged_records": summary.flagged,
        "seconds_total": round(sum(summary.seconds.values()), 3),
        "seconds": MetadataValue.json({k: round(v, 3) for k, v in summary.seconds.items()}),
    }


def stage_seconds(instance: Any, spec: StoreSpec, run_id: str | None = None) -> dict[str, float] | None:
    """The staging step's seconds per phase, as the latest materialization of the store's first staged table
    recorded them (of run `run_id`, when given)."""
    event = instance.get_latest_materialization_event(staged_key(spec, spec.tables[0].name))
    if event is None or (run_id is not None and event.run_id != run_id) or event.asset_materialization is None:
        return None
    seconds = event.asset_materialization.metadata.get("seconds")
    return dict(seconds.value) if seconds is not None else None


def _counts_metadata(summary: StageSummary) -> dict[str, Any]:
    """The store-level counts of a partitioned load (its partitions' asset)."""
    return {
        **_run_metadata(summary),
        "rows_staged": sum(summary.staged.values()),
        "records_seen": sum(summary.seen.values()),
        "quarantined_total": sum(summary.quarantined.values()),
        **{f"rows_staged/{t}": n for t, n in summary.staged.items()},
        "quarantined_by_reason": MetadataValue.md(
            "\n".join(["| reason | records |", "| --- | ---: |",
                       *(f"| `{r}` | {n} |" for r, n in sorted(summary.quarantined.items()))])
            if summary.quarantined else "No record quarantined."),
    }


def _phase_metadata(conn: psycopg.Connection, spec: StoreSpec) -> dict[str, Any]:
    """Who moved the store to its phase, when (with zone), in which run."""
    phase = get_phase(conn, spec.name)
    metadata: dict[str, Any] = {"phase": phase.phase, "phase_by": last_actor(conn, spec.name),
                                "phase_run": phase.run_id or ""}
    changed = getattr(phase.changed_at, "timestamp", None)
    if changed is not None:
        metadata["phase_at"] = MetadataValue.timestamp(phase.changed_at)  # type: ignore[arg-type]
    if phase.approved_by:
        metadata["approved_by"] = phase.approved_by
    return metadata


def observe_phase(conn: psycopg.Connection, spec: StoreSpec, description: str) -> list[AssetObservation]:
    """The store's phase change as an observation of each of its live tables (no data changed)."""
    metadata = _phase_metadata(conn, spec)
    return [AssetObservation(asset_key=key, description=description, metadata=metadata) for key in live_keys(spec)]


# --- the store's assets --------------------------------------------------------------------------------------


def build_store_assets(spec: StoreSpec) -> tuple[list[AssetsDefinition | AssetSpec], list[AssetChecksDefinition]]:
    clash = {t.name for t in spec.tables} & set(STORE_STEPS)
    assert not clash, f"{spec.name}: a table may not be named like a step of the store: {clash}"
    group = spec.name
    tags = {"migration/store": spec.name}
    source = AssetSpec(
        key=source_key(spec), group_name=group, kinds={"json"}, owners=OWNERS, tags=tags,
        description=f"The legacy files of {spec.name} under <source root>/{spec.folder}, written by the legacy "
        f"application (not by this pipeline): {'; '.join(spec.source_files) or spec.description} Each load "
        "observes them (files mapped and unmapped).",
    )

    backup_spec = AssetSpec(
        key=backup_key(spec), group_name=group, deps=[SCHEMA_ASSET, source.key], kinds={"zstd"}, owners=OWNERS,
        tags=tags, code_version=CODE_VERSION,
        description=f"A zstd-compressed tar archive of every file under <source root>/{spec.folder} with a SHA-256 "
        "manifest, verified by re-reading it. Written by the store's first load, beside it (the load only reads "
        "the source; the gates, so promotion, wait for both); kept 30 days.",
    )

    shard_assets: list[AssetsDefinition] = []
    if spec.partitions is not None:
        shard_assets.append(_shard_asset(spec, backup_key(spec)))

    staged_specs = [
        AssetSpec(
            key=staged_key(spec, t.name), group_name=group, kinds={"postgres"}, owners=OWNERS, tags=tags,
            code_version=CODE_VERSION, skippable=False,
            deps=[source.key],
            description=f"{t.description} Loaded into {spec.staging_schema}.{t.name} "
            + ("by COPY from every source file (resumable per unit); rejected records go to migration.quarantine "
               "with a reason and a locator." if t.loaded else "by SQL from the store's loaded tables.")
            + " Blocking gates below; all must pass before the store is promoted.",
            metadata={"dagster/table_name": f"{spec.staging_schema}.{t.name}",
                      **({"dagster/column_schema": _declared_schema(t)} if t.columns else {})},
        )
        for t in spec.tables
    ]

    @multi_asset(
        name=staged_op(spec.name),
        specs=[backup_spec, *staged_specs],
        retry_policy=TRANSIENT_RETRY,
        pool=store_pool(spec.name),
        description=f"Loads every table of {spec.name} in one pass over its source files into "
        f"{spec.staging_schema} (COPY, resumable per unit; rejected records quarantined), and the first time "
        "writes the store's backup beside the load.",
    )
    def staged(context: AssetExecutionContext, config: StagingConfig,
               migration: MigrationResource) -> Iterator[MaterializeResult | AssetObservation]:
        tag_run_with_stores(context)
        with step_errors():
            migration.hold_store_lock(spec.name, context.run_id)  # before anything is written: a second run writes nothing
            secret = migration.secret(required=spec.needs_secret)
            with migration.connect() as conn:
                context.log_event(ensure_schema(conn))
            changes = None
            extra: dict[str, Any] = {"mode": "full"}
            if config.incremental and spec.sync is not None:
                with migration.connect() as conn:
                    changes = detect_changes(conn, spec, migration.root())
            # The backup beside the load, in the load's worker processes (a sync has a backup already and loads
            # few files in a pool of its own); a line in the event log every few seconds (units loaded of the
            # total, rows/s, ETA, backup written): a 1M-user load is minutes of one step.
            workers = migration.worker_count()
            with nullcontext(None) if changes is not None else loader_pool(migration.database_url, spec, workers) \
                    as pool, \
                    backup_beside(migration.database_url, migration.root() / spec.folder, Path(migration.backup_dir),
                                  spec.name, workers, pool) as backing_up, \
                    watch_progress(migration.database_url, spec.name, context.log.info,
                                   backup_dir=Path(migration.backup_dir)):
                if changes is not None:
                    synced = sync_store(migration.database_url, spec, migration.root(), changes, context.run_id,
                                        secret, workers=workers)
                    summary = synced.stage
                    extra = {"mode": "incremental", "changes": changes.describe(), "files_read": synced.files_read,
                             "rows_carried": synced.rows_carried, "soft_deleted": synced.soft_deleted}
                else:
                    # A run that died during the gates left a finished staging: it is checked and kept, not reloaded.
                    summary = stage_store(migration.database_url, spec, migration.root(), context.run_id, secret,
                                          workers=workers, reuse_staged=True, pool=pool)
                backup = backing_up.result()  # the step fails, and no gate runs, without a verified backup
            yield backup_result(spec, backup)
            with migration.connect() as conn:
                if changes is None and get_phase(conn, spec.name).phase in PRE_LIVE_PHASES:
                    set_phase(conn, spec.name, "staged", run_id=context.run_id, actor=_ACTOR, plan_id=summary.plan_id)
                    conn.commit()
                yield AssetObservation(asset_key=source.key, metadata={
                    "files_mapped": summary.files_mapped, "files_unmapped": summary.files_unmapped,
                    "folder": spec.folder})
                yield from observe_phase(conn, spec, f"{spec.name} staged by run {context.run_id}")
                run = _run_metadata(summary)
                for t in spec.tables:
                    reasons = quarantine_by_reason(conn, spec.name, summary.plan_id, t.name)
                    yield MaterializeResult(
                        asset_key=staged_key(spec, t.name),
                        data_version=DataVersion(summary.plan_id),
                        metadata={
                            **table_metadata(conn, spec, spec.staging_schema, t.name),
                            "records_seen": summary.seen.get(t.name, 0),
                            "rows_staged": summary.staged.get(t.name, 0),
                            "quarantined": sum(r.records for r in reasons),
                            "quarantined_by_reason": MetadataValue.md(quarantine_markdown(reasons)),
                            **extra, **run,
                        })

    @multi_asset_check(
        specs=[AssetCheckSpec(name, asset=staged_key(spec, table), description=text, blocking=True)
               for table, name, text in gate_checks(spec)],
        name=gates_op(spec.name),
        description=f"Blocking gates of {spec.name}, evaluated once for the whole store and reported per table: "
        "all must pass before the staged tables are promoted.",
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
                                  stage_seconds=stage_seconds(context.instance, spec, run_id))
        context.log.info(f"{spec.name}: validation report {report.resolve()}")
        yield from per_table_results(spec, outcomes)

    live_specs = [
        AssetSpec(
            key=live_key(spec, t.name), group_name=group, kinds={"postgres"}, owners=OWNERS, tags=tags,
            code_version=CODE_VERSION, skippable=False, deps=[staged_key(spec, t.name)],
            description=f"The live table {spec.schema}.{t.name}: {t.description} Swapped in with the rest of "
            f"{spec.name} atomically once every gate passed; the replaced version is kept in "
            f"{spec.previous_schema} for rollback. Phase changes (staged, promoted, cut over, rolled back) are "
            "recorded on it with who, when and which run.",
            metadata={"dagster/table_name": f"{spec.schema}.{t.name}",
                      **({"dagster/column_schema": _declared_schema(t)} if t.columns else {})},
        )
        for t in spec.tables
    ]

    @multi_asset(
        name=live_op(spec.name),
        specs=live_specs,
        retry_policy=TRANSIENT_RETRY,
        pool=store_pool(spec.name),
        description=f"Promotes {spec.name}: swaps its staging schema in as the live one, all tables at once.",
    )
    def live(context: AssetExecutionContext, config: PromotionConfig,
             migration: MigrationResource) -> Iterator[MaterializeResult]:
        tag_run_with_stores(context)
        # Materialized without the staged tables (a promotion re-run alone): promote what the validated run staged.
        adopt = not set(staged_keys(spec)) & set(context.selected_asset_keys)
        with step_errors(), migration.connect() as conn:
            plan_id = promote(conn, spec, context.run_id, actor=config.requested_by.strip(), force=config.force,
                              adopt_staged=adopt, lock_timeout=config.lock_timeout_seconds,
                              attempts=config.attempts, backoff=config.backoff_seconds,
                              terminate_stale_readers=config.terminate_stale_readers)
            phase = _phase_metadata(conn, spec)
            for t in spec.tables:
                yield MaterializeResult(
                    asset_key=live_key(spec, t.name), data_version=DataVersion(plan_id),
                    metadata={**table_metadata(conn, spec, spec.schema, t.name), "plan_id": plan_id,
                              "previous_version": f"{spec.previous_schema}.{t.name}", **phase})

    @asset(
        key=report_key(spec),
        group_name=group,
        deps=live_keys(spec),
        kinds={"html"},
        owners=OWNERS,
        tags=tags,
        code_version=CODE_VERSION,
        description="Self-contained HTML report of the run: counts, checksums, quarantine reasons with locators, "
        "every gate, Data Docs, phase history. Review it before cutover; re-rendered on cutover and rollback.",
    )
    def validation_report(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        tag_run_with_stores(context)
        with step_errors(), migration.connect() as conn:
            promoted_run = get_phase(conn, spec.name).run_id or context.run_id  # the validated run, if live ran alone
            path = build_report(conn, spec, promoted_run, migration.reports(), outcome="promoted")
            phase = _phase_metadata(conn, spec)
        return MaterializeResult(metadata=report_metadata(path, promoted_run, phase),
                                 data_version=DataVersion(f"{promoted_run}:{phase['phase']}"))

    return [*shard_assets, staged, live, validation_report, source], [gates]


def backup_result(spec: StoreSpec, backup: StoreBackup) -> MaterializeResult:
    made = backup.written
    written = {"files": made.files, "bytes": made.bytes, "archive_bytes": made.archive.stat().st_size,
               "seconds": round(backup.seconds, 3)} if made else {}
    return MaterializeResult(asset_key=backup_key(spec), data_version=DataVersion(backup.sha256[:16]),
                             metadata={"archive": MetadataValue.path(str(backup.archive)), "sha256": backup.sha256,
                                       **written, "written_now": made is not None})


def report_metadata(path: Path, run_id: str, phase: dict[str, Any]) -> dict[str, Any]:
    resolved = path.resolve()
    return {"report": MetadataValue.url(resolved.as_uri()), "report_path": MetadataValue.path(str(resolved)),
            "validated_run": run_id, **phase}


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
        owners=OWNERS,
        tags={"migration/store": spec.name},
        code_version=CODE_VERSION,
        pool=store_pool(spec.name),
        partitions_def=partitions_definition(spec),
        backfill_policy=BackfillPolicy.single_run(),
        kinds={"postgres"},
        check_specs=[AssetCheckSpec(check_name, asset=key, blocking=True,
                                    description=f"For the {label}s of this run: every unit committed, source records = "
                                    "staged + quarantined, and the row-hash sum of the staged rows = the one read."),
                     *live_specs],
        description=f"{spec.name} loaded {label} by {label} into {spec.staging_schema} (the same units, resumable). "
        f"Backfill a range of {label}s, then materialize the {spec.name}/staged tables: they load any {label} still missing, "
        "finishes the staged tables and runs the whole-store gates before promotion.",
    )
    def shards(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        tag_run_with_stores(context)
        wanted = set(context.partition_keys)
        migration.hold_store_lock(spec.name, context.run_id)
        with migration.connect() as conn:
            context.log_event(ensure_schema(conn))
        with watch_progress(migration.database_url, spec.name, context.log.info):
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
        metadata["dagster/row_count"] = sum(summary.staged.values())  # the rows of this run's partitions
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


def build_all(specs: Sequence[StoreSpec]) -> tuple[list[AssetsDefinition | AssetSpec], list[AssetChecksDefinition]]:
    assets: list[AssetsDefinition | AssetSpec] = []
    checks: list[AssetChecksDefinition] = []
    for spec in specs:
        a, c = build_store_assets(spec)
        assets += a
        checks += c
    return assets, checks
