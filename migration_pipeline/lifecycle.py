"""Jobs a reviewer launches from the UI (Launchpad, with config): cutover and rollback of a store.

The store is an enum of the registered stores (the Launchpad refuses any other name before the run starts);
the person is a name (stripped; an empty one is refused by the run's first step in one line: Dagster's config
schema has no string-length rule). A refusal (a second cutover, a blocked version) fails the step with its one
line (`dagster.Failure`), never a traceback. Each phase change is recorded on the store's live tables
(observations: who, when, which run) and the report is re-rendered."""

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import psycopg
from dagster import AssetMaterialization, Config, DataVersion, Failure, OpExecutionContext, job, op
from pydantic import Field

from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.promote import cutover, get_phase, rollback
from migration_pipeline.core.report import build_report
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.factory import live_keys, observe_phase, report_key, report_metadata
from migration_pipeline.stores.registry import all_stores, get_store
from migration_pipeline.stores.table_metadata import row_count

# The registered stores, as the Launchpad offers them (a dropdown; any other value is refused before the run).
StoreName = Enum("StoreName", {s.name: s.name for s in all_stores()})  # type: ignore[misc]


class CutoverConfig(Config):  # type: ignore[misc]
    store: StoreName = Field(description="The store whose live version is approved.")  # type: ignore[valid-type]
    approved_by: str = Field(max_length=200, description="The person who approves (recorded and shown in the report).")


class RollbackConfig(Config):  # type: ignore[misc]
    store: StoreName = Field(description="The store to roll back to its previous live version.")  # type: ignore[valid-type]
    requested_by: str = Field(max_length=200, description="The person who asks for the rollback (recorded).")


def _store_name(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def refuse(context: OpExecutionContext, reason: str) -> Failure:
    """The step's refusal: its one line logged as an error (what the run's page shows first), then a Failure
    with that line as its description, without the chained exception."""
    context.log.error(reason)
    return Failure(description=reason, allow_retries=False)


def person(context: OpExecutionContext, value: str, field: str) -> str:
    """A person's name as given, stripped; an empty one is refused in one line."""
    name = value.strip()
    if not name:
        raise refuse(context, f"{field} is empty: give the name of the person (it is recorded)")
    return name


def cut_over_with_report(
    conn: psycopg.Connection, store: str, approved_by: str, run_id: str | None, report_dir: Path,
    log: Callable[[str], object] | None = None,
) -> Path:
    """Cut the live version over, then re-render its run's report so that it names the approver."""
    spec = get_store(store)
    approved = cutover(conn, spec, approved_by=approved_by, run_id=run_id, report_root=report_dir)
    if log is not None:
        log(approved)
    promoted_run = get_phase(conn, spec.name).run_id
    return build_report(conn, spec, promoted_run or "", report_dir, outcome="cut over")


def what_would_be_approved(conn: psycopg.Connection, spec: StoreSpec, report_dir: Path) -> dict[str, Any]:
    """The live version a cutover would approve: its plan, the run that staged and validated it, its rows per
    table and its report (read before anything changes)."""
    phase = get_phase(conn, spec.name)
    rows = {t.name: row_count(conn, spec.schema, t.name) or 0 for t in spec.tables}
    report = report_dir / spec.name / (phase.run_id or "-") / "report.html"
    return {"store": spec.name, "phase": phase.phase, "plan_id": phase.plan_id or "", "validated_run": phase.run_id or "",
            "live_rows": sum(rows.values()), "report": str(report.resolve()),
            **{f"rows/{t}": n for t, n in rows.items()}}


@op(description="Mark a promoted store as cut over; refused unless its latest validation passed and its report "
    "exists. Logs what exactly is approved (version, run, rows, report) before it acts.")
def cut_over_store(context: OpExecutionContext, config: CutoverConfig, migration: MigrationResource) -> None:
    spec = get_store(_store_name(config.store))
    approver = person(context, config.approved_by, "approved_by")
    context.instance.add_run_tags(context.run_id, {"migration/store": spec.name, "migration/approved_by": approver})
    with migration.connect() as conn:
        preview = what_would_be_approved(conn, spec, migration.reports())
        context.log.info(
            f"{spec.name}: about to approve plan {preview['plan_id'] or '-'} of run {preview['validated_run'] or '-'} "
            f"({preview['live_rows']} live rows: " + ", ".join(f"{t.name} {preview['rows/' + t.name]}" for t in spec.tables)
            + f"); report {preview['report']}; approver {approver}")
        try:
            report = cut_over_with_report(conn, spec.name, approver, context.run_id, migration.reports(),
                                          log=context.log.info)
        except MigrationError as exc:
            raise refuse(context, str(exc)) from None
        for observation in observe_phase(conn, spec, f"{spec.name} cut over, approved by {approver}"):
            context.log_event(observation)
        phase = get_phase(conn, spec.name)
        context.log_event(AssetMaterialization(
            asset_key=report_key(spec), description=f"re-rendered after the cutover approved by {approver}",
            metadata=report_metadata(report, phase.run_id or "", {"phase": phase.phase, "approved_by": approver}),
            tags={"dagster/data_version": f"{phase.run_id}:{phase.phase}"}))
    context.log.info(f"report updated: {report}")


@op(description="Restore the previous live version of a store atomically, record it and re-render the report.")
def roll_back_store(context: OpExecutionContext, config: RollbackConfig, migration: MigrationResource) -> None:
    spec = get_store(_store_name(config.store))
    requester = person(context, config.requested_by, "requested_by")
    context.instance.add_run_tags(context.run_id, {"migration/store": spec.name, "migration/requested_by": requester})
    with migration.connect() as conn:
        promoted_run = get_phase(conn, spec.name).run_id
        try:
            rollback(conn, spec, actor=requester, run_id=context.run_id)
        except MigrationError as exc:
            raise refuse(context, str(exc)) from None
        context.log.info(f"{spec.name}: rolled back by {requester}")
        # The live tables changed (the previous version is back): a materialization of each, with its rows.
        observations = observe_phase(conn, spec, f"{spec.name} rolled back by {requester}")
        for key, observation in zip(live_keys(spec), observations, strict=True):
            table = key.path[-1]
            context.log_event(AssetMaterialization(
                asset_key=key, description=observation.description,
                metadata={**observation.metadata, "dagster/row_count": row_count(conn, spec.schema, table) or 0,
                          "dagster/table_name": f"{spec.schema}.{table}"},
                tags={"dagster/data_version": str(DataVersion(f"rolled_back:{context.run_id}").value)}))
        if promoted_run:
            report = build_report(conn, spec, promoted_run, migration.reports(), outcome="rolled back")
            phase = get_phase(conn, spec.name)
            context.log_event(AssetMaterialization(
                asset_key=report_key(spec), description=f"re-rendered after the rollback asked by {requester}",
                metadata=report_metadata(report, promoted_run, {"phase": phase.phase, "rolled_back_by": requester}),
                tags={"dagster/data_version": f"{promoted_run}:{phase.phase}"}))
            context.log.info(f"report updated: {report}")


@job(description="Cut a promoted store over (config: store, approved_by).")
def cutover_store() -> None:
    cut_over_store()


@job(description="Roll a store back to its previous live version (config: store, requested_by).")
def rollback_store() -> None:
    roll_back_store()

