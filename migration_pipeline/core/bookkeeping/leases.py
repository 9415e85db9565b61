"""`migration.store_leases`: which run holds a store, until when, and whether its holder is marked alive.

A holder marks itself alive with a session advisory lock named after it (the first 16 hex digits of the MD5
of its name as a 64-bit key): the mark lasts as long as the holder's connection."""

from __future__ import annotations

from datetime import timedelta

import psycopg

_HOLDER_KEY = "('x' || left(md5('store-lease-holder:' || %s), 16))::bit(64)::bigint"


def mark_alive(conn: psycopg.Connection, holder: str) -> None:
    conn.execute(f"SELECT pg_advisory_lock({_HOLDER_KEY})", (holder,))  # type: ignore[arg-type]


def holder_is_gone(conn: psycopg.Connection, holder: str) -> bool:
    """Whether no session holds the holder's mark (its process is gone); the try holds the mark until the
    caller's transaction ends."""
    return conn.execute(f"SELECT pg_try_advisory_xact_lock({_HOLDER_KEY})",  # type: ignore[arg-type]
                        (holder,)).fetchone() == (True,)


def lock_leases(conn: psycopg.Connection, store: str) -> None:
    """Serialise the runs taking a lease of `store`, until the caller's transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('lease:' || %s))", (store,))


def drop_expired(conn: psycopg.Connection, store: str) -> None:
    conn.execute("DELETE FROM migration.store_leases WHERE store = %s AND expires_at < now()", (store,))


def other_runs_leases(conn: psycopg.Connection, store: str, run_id: str) -> list[tuple[str, str, bool]]:
    """(run, holder, marked alive) of the leases other runs hold on the store, oldest first."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT run_id, holder, alive FROM migration.store_leases WHERE store = %s AND run_id <> %s ORDER BY taken_at",
        (store, run_id)).fetchall()]


def put_lease(conn: psycopg.Connection, store: str, holder: str, run_id: str, seconds: float, alive: bool) -> None:
    conn.execute(
        """INSERT INTO migration.store_leases (store, holder, run_id, expires_at, alive)
           VALUES (%s, %s, %s, now() + %s, %s)
           ON CONFLICT (store, holder) DO UPDATE SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at,
             alive = EXCLUDED.alive""",
        (store, holder, run_id, timedelta(seconds=seconds), alive))


def extend_lease(conn: psycopg.Connection, store: str, holder: str, seconds: float) -> bool:
    """Push an unexpired lease's expiry forward; False when it is gone."""
    renewed = conn.execute(
        "UPDATE migration.store_leases SET expires_at = now() + %s WHERE store = %s AND holder = %s"
        " AND expires_at >= now()", (timedelta(seconds=seconds), store, holder))
    return renewed.rowcount == 1


def delete_lease(conn: psycopg.Connection, store: str, holder: str) -> None:
    conn.execute("DELETE FROM migration.store_leases WHERE store = %s AND holder = %s", (store, holder))
