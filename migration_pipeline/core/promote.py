"""Phases of a store and the moves between them: promote (atomic swap), rollback, cutover.

Live tables are `<store>.*`, the staged version `<store>__staging.*` and the version replaced by
the last promotion `<store>__previous.*`. A promotion renames schemas inside one transaction that
first locks every live table, so readers see the old tables or the new, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.errors import PromotionBlockedError
from migration_pipeline.core.spec import StoreSpec

PHASES = ("not_started", "staged", "validated", "promoted", "cut_over", "rolled_back")
EXPECTED_CHECKS = ("row_count_reconciliation", "checksum_reconciliation")


@dataclass(frozen=True)
class PhaseRow:
    store: str
    phase: str
    plan_id: str | None
    run_id: str | None
    report_path: str | None
    approved_by: str | None
    changed_at: object


def get_phase(conn: psycopg.Connection, store: str) -> PhaseRow:
    row = conn.execute(
        "SELECT store, phase, plan_id, run_id, report_path, approved_by, changed_at FROM migration.store_phase"
        " WHERE store = %s", (store,)).fetchone()
    if row is None:
        return PhaseRow(store, "not_started", None, None, None, None, None)
    return PhaseRow(*row)


def set_phase(
    conn: psycopg.Connection, store: str, phase: str, *, run_id: str | None, actor: str, note: str = "",
    plan_id: str | None = None, approved_by: str | None = None,
) -> None:
    """Record a transition (and its history row) in the caller's transaction."""
    assert phase in PHASES
    before = get_phase(conn, store)
    conn.execute(
        """INSERT INTO migration.store_phase (store, phase, plan_id, run_id, approved_by)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (store) DO UPDATE SET phase = EXCLUDED.phase,
             plan_id = coalesce(EXCLUDED.plan_id, migration.store_phase.plan_id),
             run_id = coalesce(EXCLUDED.run_id, migration.store_phase.run_id),
             approved_by = EXCLUDED.approved_by, changed_at = now()""",
        (store, phase, plan_id, run_id, approved_by),
    )
    conn.execute(
        "INSERT INTO migration.phase_history (store, from_phase, to_phase, run_id, actor, note)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (store, before.phase, phase, run_id, actor, note),
    )


def set_report_path(conn: psycopg.Connection, store: str, path: str) -> None:
    conn.execute("UPDATE migration.store_phase SET report_path = %s WHERE store = %s", (path, store))


def failed_checks(conn: psycopg.Connection, spec: StoreSpec, run_id: str, plan_id: str) -> list[tuple[str, str]]:
    """Checks of this run and plan that did not pass, or that never ran."""
    rows: dict[str, str] = dict(conn.execute(
        "SELECT check_name, CASE WHEN passed THEN '' ELSE summary END FROM migration.check_results"
        " WHERE run_id = %s AND store = %s AND plan_id = %s", (run_id, spec.name, plan_id)).fetchall())
    required = list(EXPECTED_CHECKS) + [g.name for g in spec.gates] + [f"gx_suite_{t.name}" for t in spec.tables]
    missing = [(name, "did not run") for name in required if name not in rows]
    return missing + [(name, summary) for name, summary in rows.items() if summary]


def _lock_live(conn: psycopg.Connection, spec: StoreSpec, schema: str) -> None:
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)).fetchall()
    if tables:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(t)) for (t,) in tables)))


def _rename(conn: psycopg.Connection, old: str, new: str) -> None:
    conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def promote(
    conn: psycopg.Connection, spec: StoreSpec, run_id: str, actor: str, *, force: bool = False
) -> str:
    """Swap the staged tables in as live, keeping the replaced version for rollback.

    Refuses (PromotionBlockedError, nothing changed) unless this run staged the current plan and
    every gate of this run passed, or when the store is cut over and `force` is not set.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('promote:' || %s))", (spec.name,))
        staging = conn.execute(
            "SELECT plan_id, status, run_id FROM migration.staging WHERE store = %s FOR UPDATE", (spec.name,)
        ).fetchone()
        if staging is None or staging[1] != "staged":
            raise PromotionBlockedError(f"{spec.name}: nothing staged to promote (run the load first)")
        plan_id, _, staged_by = staging
        if staged_by != run_id:
            raise PromotionBlockedError(
                f"{spec.name}: the staged data belongs to run {staged_by}, not {run_id}; another run restaged "
                "the store, so this run may not promote it")
        failures = failed_checks(conn, spec, run_id, plan_id)
        if failures:
            name, why = failures[0]
            more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
            raise PromotionBlockedError(f"{spec.name}: promotion blocked by gate {name}: {why}{more}")
        phase = get_phase(conn, spec.name)
        if phase.phase == "cut_over" and not force:
            raise PromotionBlockedError(
                f"{spec.name} is cut over: the application owns its live tables now; re-run with --force to "
                "overwrite them (recorded)")
        _lock_live(conn, spec, spec.schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(spec.previous_schema)))
        _rename(conn, spec.schema, spec.previous_schema)
        _rename(conn, spec.staging_schema, spec.schema)
        ddl.enable_autovacuum(conn, spec.schema)
        conn.execute("UPDATE migration.staging SET status = 'promoted' WHERE store = %s", (spec.name,))
        note = "forced over cut_over" if phase.phase == "cut_over" else ""
        set_phase(conn, spec.name, "promoted", run_id=run_id, actor=actor, plan_id=plan_id, note=note)
    return plan_id


def rollback(conn: psycopg.Connection, spec: StoreSpec, actor: str, run_id: str | None = None) -> None:
    """Swap the previous live version back in (the rolled-back one becomes the previous)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('promote:' || %s))", (spec.name,))
        phase = get_phase(conn, spec.name)
        if phase.phase not in ("promoted", "cut_over", "rolled_back") or not _schema_exists(conn, spec.previous_schema):
            raise PromotionBlockedError(f"{spec.name}: there is no previous version to roll back to")
        _lock_live(conn, spec, spec.schema)
        _lock_live(conn, spec, spec.previous_schema)
        swap = f"{spec.name}__swap"
        _rename(conn, spec.schema, swap)
        _rename(conn, spec.previous_schema, spec.schema)
        _rename(conn, swap, spec.previous_schema)
        set_phase(conn, spec.name, "rolled_back", run_id=run_id, actor=actor,
                  note=f"restored the version replaced by the promotion of plan {phase.plan_id}")


def cutover(conn: psycopg.Connection, spec: StoreSpec, approved_by: str, run_id: str | None = None) -> None:
    """Mark the promoted store as cut over; requires the last validation to have passed with a report."""
    from pathlib import Path

    with conn.transaction():
        phase = get_phase(conn, spec.name)
        if phase.phase != "promoted":
            raise PromotionBlockedError(
                f"{spec.name} is {phase.phase}: only a promoted store can be cut over (promote it first)")
        if phase.run_id is None or failed_checks(conn, spec, phase.run_id, phase.plan_id or ""):
            raise PromotionBlockedError(f"{spec.name}: the latest validation did not pass; cutover refused")
        # The report must be the promoted run's (`<root>/<store>/<run_id>/report.html`), not an older run's.
        report = Path(phase.report_path) if phase.report_path else None
        if report is None or not report.is_file() or report.parent.name != phase.run_id:
            raise PromotionBlockedError(
                f"{spec.name}: the validation report of run {phase.run_id} is missing; regenerate it first")
        # store_phase keeps the promoted run (its report is the one approved); the history names this run.
        set_phase(conn, spec.name, "cut_over", run_id=None, actor=approved_by, approved_by=approved_by,
                  note=f"approved by {approved_by}" + (f" in run {run_id}" if run_id else ""))
