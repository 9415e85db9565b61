"""`migration.store_phase` (where each store is in its lifecycle) and `migration.phase_history` (every move)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class PhaseRow:
    store: str
    phase: str
    plan_id: str | None
    run_id: str | None
    report_path: str | None
    approved_by: str | None
    changed_at: object


def phase_of(conn: psycopg.Connection, store: str) -> PhaseRow:
    """The store's phase (`not_started` before its first promotion or cutover)."""
    row = conn.execute(
        "SELECT store, phase, plan_id, run_id, report_path, approved_by, changed_at FROM migration.store_phase"
        " WHERE store = %s", (store,)).fetchone()
    if row is None:
        return PhaseRow(store, "not_started", None, None, None, None, None)
    return PhaseRow(*row)


def record_phase(
    conn: psycopg.Connection, store: str, phase: str, *, from_phase: str, run_id: str | None, actor: str,
    note: str, plan_id: str | None, approved_by: str | None,
) -> None:
    """Move the store to `phase` and add the move to its history (plan and run kept when not given)."""
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
        (store, from_phase, phase, run_id, actor, note),
    )


def set_report_path(conn: psycopg.Connection, store: str, path: str) -> None:
    conn.execute("UPDATE migration.store_phase SET report_path = %s WHERE store = %s", (path, store))


def live_plans(conn: psycopg.Connection, store: str) -> list[str]:
    """The plan of the store's live version, if any: its bookkeeping is kept (for its report and rollback)."""
    rows = conn.execute("SELECT plan_id FROM migration.store_phase WHERE store = %s AND plan_id IS NOT NULL", (store,))
    return [r[0] for r in rows]


def phase_history(conn: psycopg.Connection, store: str, limit: int = 30) -> list[tuple[Any, ...]]:
    """(at, from, to, actor, run id, note) of the store's latest phase changes, newest first."""
    return list(conn.execute(
        "SELECT at, from_phase, to_phase, actor, run_id, note FROM migration.phase_history WHERE store = %s"
        " ORDER BY id DESC LIMIT %s", (store, limit)).fetchall())


def last_actor(conn: psycopg.Connection, store: str) -> str:
    """Who made the store's latest phase change ('' before the first)."""
    row = conn.execute("SELECT actor FROM migration.phase_history WHERE store = %s ORDER BY id DESC LIMIT 1",
                       (store,)).fetchone()
    return str(row[0]) if row else ""
