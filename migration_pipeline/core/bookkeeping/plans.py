"""`migration.staging`: the plan each store is staging (one row per store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class PlanRow:
    plan_id: str
    fingerprint: str
    status: str  # loading, finishing, staged or promoted
    run_id: str


def lock_plans(conn: psycopg.Connection, store: str) -> None:
    """Serialise the runs that start or resume a plan of `store` (e.g. shard runs of one backfill), until the
    caller's transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('plan:' || %s))", (store,))


def plan_for_update(conn: psycopg.Connection, store: str) -> PlanRow | None:
    """The store's plan, locked for the caller's transaction; None when it was never staged."""
    row = conn.execute(
        "SELECT plan_id, fingerprint, status, run_id FROM migration.staging WHERE store = %s FOR UPDATE",
        (store,)).fetchone()
    return None if row is None else PlanRow(*row)


def open_plan(conn: psycopg.Connection, store: str, plan_id: str, fingerprint: str, run_id: str,
              units_total: int) -> None:
    """Make `plan_id` the store's plan, status `loading`, replacing any earlier one."""
    conn.execute(
        """INSERT INTO migration.staging (store, plan_id, fingerprint, status, run_id, units_total)
           VALUES (%s, %s, %s, 'loading', %s, %s)
           ON CONFLICT (store) DO UPDATE SET plan_id = EXCLUDED.plan_id, fingerprint = EXCLUDED.fingerprint,
             status = 'loading', run_id = EXCLUDED.run_id, units_total = EXCLUDED.units_total,
             started_at = now(), staged_at = NULL""",
        (store, plan_id, fingerprint, run_id, units_total),
    )


def set_plan_run(conn: psycopg.Connection, store: str, run_id: str) -> None:
    """The run that owns the plan now (its gates and its promotion)."""
    conn.execute("UPDATE migration.staging SET run_id = %s WHERE store = %s", (run_id, store))


def plan_status(conn: psycopg.Connection, store: str) -> str | None:
    row = conn.execute("SELECT status FROM migration.staging WHERE store = %s", (store,)).fetchone()
    return None if row is None else str(row[0])


def set_plan_status(conn: psycopg.Connection, store: str, status: str) -> None:
    conn.execute("UPDATE migration.staging SET status = %s WHERE store = %s", (status, store))


def mark_staged(conn: psycopg.Connection, store: str, plan_id: str, run_id: str) -> None:
    """Status `staged`, with the plan's file counts from its manifest (the gates and reports read them)."""
    conn.execute(
        """UPDATE migration.staging SET status = 'staged', staged_at = now(), run_id = %s,
             (files_mapped, files_unmapped) = (
               SELECT count(*) FILTER (WHERE status = 'mapped'), count(*) FILTER (WHERE status <> 'mapped')
               FROM migration.source_manifest WHERE store = %s AND plan_id = %s)
           WHERE store = %s""",
        (run_id, store, plan_id, store),
    )


def current_plan(conn: psycopg.Connection, store: str) -> tuple[str, str]:
    """(plan id, status) of the store's plan; LookupError when it was never staged."""
    row = conn.execute("SELECT plan_id, status FROM migration.staging WHERE store = %s", (store,)).fetchone()
    if row is None:
        raise LookupError(f"store {store} has not been staged")
    return row[0], row[1]


def units_total(conn: psycopg.Connection, store: str) -> int:
    row = conn.execute("SELECT units_total FROM migration.staging WHERE store = %s", (store,)).fetchone()
    return int(row[0]) if row else 0


def recorded_file_counts(conn: psycopg.Connection, store: str, plan_id: str) -> tuple[int, int] | None:
    """(mapped, unmapped) files as recorded when the plan's staging finished; None before."""
    row = conn.execute(
        "SELECT files_mapped, files_unmapped FROM migration.staging WHERE store = %s AND plan_id = %s"
        " AND status IN ('staged', 'promoted') AND files_mapped IS NOT NULL", (store, plan_id)).fetchone()
    return (int(row[0]), int(row[1])) if row else None


@dataclass(frozen=True)
class StagedPlan:
    """The staged plan a promotion swaps in, with the transaction that marked it staged."""

    plan_id: str
    status: str
    run_id: str
    xmin: str
    staged_at: datetime | None


def staged_plan_for_update(conn: psycopg.Connection, store: str) -> StagedPlan | None:
    """The store's plan, locked, with `xmin` and `staged_at` (the transaction that marked it staged, after every
    staged row was committed); None when it was never staged."""
    row = conn.execute(
        "SELECT plan_id, status, run_id, xmin::text, staged_at FROM migration.staging WHERE store = %s FOR UPDATE",
        (store,)).fetchone()
    return None if row is None else StagedPlan(*row)


def staging_window(conn: psycopg.Connection, store: str, plan_id: str) -> tuple[Any, Any] | None:
    """(started at, staged at) of the plan; staged at is None until it is staged."""
    row = conn.execute("SELECT started_at, staged_at FROM migration.staging WHERE store = %s AND plan_id = %s",
                       (store, plan_id)).fetchone()
    return (row[0], row[1]) if row else None
