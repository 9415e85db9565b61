"""`migration.schema_migrations`: the DDL files applied, with the SHA-256 of each as it was applied."""

from __future__ import annotations

import psycopg

_LOCK_ID = 7_300_001  # advisory lock serialising concurrent appliers

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS migration;
CREATE TABLE IF NOT EXISTS migration.schema_migrations (
    filename   text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def prepare(conn: psycopg.Connection) -> None:
    """Wait for any other applier (until the caller's transaction ends), and create the table if needed."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
    conn.execute(_BOOTSTRAP)


def rename_applied(conn: psycopg.Connection, old: str, new: str) -> None:
    """Record an applied file under its new name (once: never over a file already recorded under it)."""
    conn.execute(
        "UPDATE migration.schema_migrations SET filename = %s WHERE filename = %s"
        " AND NOT EXISTS (SELECT 1 FROM migration.schema_migrations WHERE filename = %s)", (new, old, new))


def applied_files(conn: psycopg.Connection) -> dict[str, str]:
    """{recorded name: sha256} of every applied file."""
    return {str(k): str(v) for k, v in conn.execute("SELECT filename, sha256 FROM migration.schema_migrations")}


def record_applied(conn: psycopg.Connection, name: str, sha256: str) -> None:
    conn.execute("INSERT INTO migration.schema_migrations (filename, sha256) VALUES (%s, %s)", (name, sha256))
