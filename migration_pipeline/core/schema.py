"""Versioned, forward-only DDL: apply sql/*.sql in name order, each once, checksums verified."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from migration_pipeline.core.errors import SchemaDriftError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_LOCK_ID = 7_300_001  # advisory lock serialising concurrent appliers

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS migration;
CREATE TABLE IF NOT EXISTS migration.schema_migrations (
    filename   text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class SchemaReport:
    applied: tuple[str, ...]
    already_applied: tuple[str, ...]


def apply_migrations(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> SchemaReport:
    """Apply every new file under `sql_dir`, each in its own transaction.

    An already-applied file whose content changed raises SchemaDriftError: DDL is forward-only,
    so a change goes into a new file.
    """
    files = sorted(p for p in sql_dir.glob("*.sql") if p.is_file())
    applied: list[str] = []
    seen: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(_BOOTSTRAP)
        recorded: dict[str, str] = dict(conn.execute("SELECT filename, sha256 FROM migration.schema_migrations").fetchall())
        for path in files:
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if path.name in recorded:
                if recorded[path.name] != digest:
                    raise SchemaDriftError(
                        f"sql/{path.name} was edited after it was applied (recorded sha256 "
                        f"{recorded[path.name][:12]}…, now {digest[:12]}…); restore it and put the change "
                        "in a new file"
                    )
                seen.append(path.name)
                continue
            with conn.transaction():
                conn.execute(text.encode("utf-8"))
                conn.execute(
                    "INSERT INTO migration.schema_migrations (filename, sha256) VALUES (%s, %s)",
                    (path.name, digest),
                )
            applied.append(path.name)
    return SchemaReport(applied=tuple(applied), already_applied=tuple(seen))
