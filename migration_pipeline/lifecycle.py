"""Jobs a reviewer launches from the UI (Launchpad, with config): cutover and rollback of a store."""

from collections.abc import Callable
from pathlib import Path

import psycopg
from dagster import Config, OpExecutionContext, job, op

from migration_pipeline.core.promote import cutover, get_phase, rollback
from migration_pipeline.core.report import build_report
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.registry import get_store


class CutoverConfig(Config):  # type: ignore[misc]
    store: str
    approved_by: str


class RollbackConfig(Config):  # type: ignore[misc]
    store: str
    requested_by: str


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


@op(description="Mark a promoted store as cut over; refused unless its latest validation passed and its report exists.")
def cut_over_store(context: OpExecutionContext, config: CutoverConfig, migration: MigrationResource) -> None:
    with migration.connect() as conn:
        report = cut_over_with_report(conn, config.store, config.approved_by, context.run_id, migration.reports(),
                                      log=context.log.info)
    context.log.info(f"report updated: {report}")


@op(description="Restore the previous live version of a store atomically and record it.")
def roll_back_store(context: OpExecutionContext, config: RollbackConfig, migration: MigrationResource) -> None:
    spec = get_store(config.store)
    with migration.connect() as conn:
        rollback(conn, spec, actor=config.requested_by, run_id=context.run_id)
    context.log.info(f"{spec.name}: rolled back by {config.requested_by}")


@job(description="Cut a promoted store over (config: store, approved_by).")
def cutover_store() -> None:
    cut_over_store()


@job(description="Roll a store back to its previous live version (config: store, requested_by).")
def rollback_store() -> None:
    roll_back_store()
