"""`migration.check_results` (every gate's outcome per run) and `migration.adjustments` (rows the engine or a
store changed on purpose, with what that did to the checksum)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def record_check(conn: psycopg.Connection, run_id: str, store: str, plan_id: str, name: str, passed: bool,
                 summary: str, details: dict[str, Any]) -> None:
    """A gate's outcome for the run (a gate run again replaces it)."""
    conn.execute(
        """INSERT INTO migration.check_results (run_id, store, plan_id, check_name, passed, summary, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (run_id, store, check_name) DO UPDATE SET passed = EXCLUDED.passed,
             summary = EXCLUDED.summary, details = EXCLUDED.details, plan_id = EXCLUDED.plan_id,
             checked_at = now()""",
        (run_id, store, plan_id, name, passed, summary, Jsonb(details)),
    )


def check_summaries(conn: psycopg.Connection, run_id: str, store: str, plan_id: str) -> dict[str, str]:
    """Every check the run recorded on the plan: '' for one that passed, else its summary."""
    return {str(k): str(v) for k, v in conn.execute(
        "SELECT check_name, CASE WHEN passed THEN '' ELSE summary END FROM migration.check_results"
        " WHERE run_id = %s AND store = %s AND plan_id = %s", (run_id, store, plan_id)).fetchall()}


def check_recorded(conn: psycopg.Connection, store: str, plan_id: str, name: str) -> bool:
    """Whether any run recorded the check `name` on the plan."""
    return conn.execute(
        "SELECT 1 FROM migration.check_results WHERE store = %s AND plan_id = %s AND check_name = %s LIMIT 1",
        (store, plan_id, name)).fetchone() is not None


def record_adjustment(conn: psycopg.Connection, store: str, plan_id: str, table: str, reason: str, message: str,
                      rows_changed: int, hash_delta: int) -> None:
    conn.execute(
        """INSERT INTO migration.adjustments (store, plan_id, table_name, reason, message, rows_changed, hash_delta)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (store, plan_id, table, reason, message, rows_changed, hash_delta),
    )


def adjusted_hash_sum(conn: psycopg.Connection, store: str, plan_id: str, table: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(hash_delta), 0) FROM migration.adjustments"
        " WHERE store = %s AND plan_id = %s AND table_name = %s", (store, plan_id, table)).fetchone()
    return int(row[0]) if row else 0


def adjust_for_notes(conn: psycopg.Connection, store: str, plan_id: str) -> None:
    """The plan's unit notes (`units.add_notes`) as adjustments, one per table, reason and message: the rows
    were loaded as changed and hashed so, hence no checksum delta."""
    conn.execute(
        """INSERT INTO migration.adjustments (store, plan_id, table_name, reason, message, rows_changed, hash_delta)
           SELECT store, plan_id, table_name, reason, message, sum(records), 0 FROM migration.unit_notes
           WHERE store = %s AND plan_id = %s
           GROUP BY store, plan_id, table_name, reason, message ORDER BY table_name, reason, message""",
        (store, plan_id),
    )


def run_checks(conn: psycopg.Connection, run_id: str, store: str) -> list[tuple[str, bool, str, Any]]:
    """(check name, passed, summary, details) of every gate the run recorded for the store, by name."""
    return [(str(n), bool(p), str(s), d) for n, p, s, d in conn.execute(
        "SELECT check_name, passed, summary, details FROM migration.check_results"
        " WHERE run_id = %s AND store = %s ORDER BY check_name", (run_id, store)).fetchall()]


def plan_adjustments(conn: psycopg.Connection, store: str, plan_id: str) -> list[tuple[str, str, int, str]]:
    """(table, reason, rows changed, message) of every adjustment of the plan."""
    return [(str(t), str(r), int(n), str(m)) for t, r, n, m in conn.execute(
        "SELECT table_name, reason, rows_changed, message FROM migration.adjustments WHERE store = %s AND plan_id = %s",
        (store, plan_id)).fetchall()]
