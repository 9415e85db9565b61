"""What a progress display reads while a store is worked on, from another connection: the plan's row, the
units committed so far, the files they listed, the gates' outcome, the store's lease and backups. Cheap
statements (the indexes of `unit_progress` and `source_manifest` lead with the store and plan)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg


def staging_progress(conn: psycopg.Connection[Any], store: str) -> tuple[str, str, str, int, float] | None:
    """(plan id, run id, status, units in the plan, seconds since the plan started) of the store's plan."""
    row = conn.execute(
        "SELECT plan_id, run_id, status, units_total, extract(epoch FROM clock_timestamp() - started_at)::float8"
        " FROM migration.staging WHERE store = %s", (store,)).fetchone()
    return (str(row[0]), str(row[1]), str(row[2]), int(row[3] or 0), float(row[4])) if row else None


def files_listed(conn: psycopg.Connection[Any], store: str, plan_id: str, units: Sequence[int] | None) -> int:
    """Manifest rows of the plan: of those units, or (None) of no unit (files no unit reads)."""
    if units is None:
        row = conn.execute("SELECT count(*) FROM migration.source_manifest WHERE store = %s AND plan_id = %s"
                           " AND unit_no IS NULL", (store, plan_id)).fetchone()
        return int(row[0]) if row else 0
    recorded = dict(conn.execute(
        "SELECT unit_no, max(files_listed) FROM migration.unit_progress WHERE store = %s AND plan_id = %s"
        " AND unit_no = ANY(%s) GROUP BY unit_no", (store, plan_id, list(units))).fetchall())
    uncounted = [u for u in units if recorded.get(u) is None]
    listed = sum(int(n) for n in recorded.values() if n is not None)
    if uncounted:  # units whose progress rows carry no count (carried by a sync, or written before it was kept)
        row = conn.execute("SELECT count(*) FROM migration.source_manifest WHERE store = %s AND plan_id = %s"
                           " AND unit_no = ANY(%s)", (store, plan_id, uncounted)).fetchone()
        listed += int(row[0]) if row else 0
    return listed


def rows_per_unit(conn: psycopg.Connection[Any], store: str, plan_id: str) -> dict[int, int]:
    """Rows each committed unit of the plan emitted."""
    return {int(u): int(n) for u, n in conn.execute(
        "SELECT unit_no, sum(rows_emitted)::bigint FROM migration.unit_progress WHERE store = %s AND plan_id = %s"
        " GROUP BY unit_no", (store, plan_id)).fetchall()}


def gates_passed(conn: psycopg.Connection[Any], store: str, run_id: str) -> bool | None:
    """Whether every gate the run recorded passed; None before the first is recorded."""
    row = conn.execute("SELECT bool_and(passed) FROM migration.check_results WHERE store = %s AND run_id = %s",
                       (store, run_id)).fetchone()
    return None if row is None or row[0] is None else bool(row[0])


def lease_held(conn: psycopg.Connection[Any], store: str) -> bool:
    return conn.execute("SELECT 1 FROM migration.store_leases WHERE store = %s AND expires_at > now() LIMIT 1",
                        (store,)).fetchone() is not None


def has_backup(conn: psycopg.Connection[Any], store: str) -> bool:
    return conn.execute("SELECT 1 FROM migration.backups WHERE store = %s LIMIT 1", (store,)).fetchone() is not None
