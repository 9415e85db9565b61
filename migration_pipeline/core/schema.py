"""Versioned, forward-only DDL: apply sql/*.sql in name order, each once, checksums verified."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg

from migration_pipeline.core.errors import SchemaDriftError


def packaged_sql() -> Traversable:
    """sql/ as installed: inside the wheel (or mapped there by an editable install) as `migration_pipeline.sql`;
    from a bare checkout on PYTHONPATH, the repository's own sql/."""
    try:
        return resources.files("migration_pipeline.sql")
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[2] / "sql"
        if not checkout.is_dir():
            raise SchemaDriftError("the package's DDL (sql/) is missing: reinstall migration-pipeline") from None
        return checkout
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


def apply_migrations(conn: psycopg.Connection, sql_dir: Traversable | None = None) -> SchemaReport:
    """Apply every new file under `sql_dir`, each in its own transaction.

    An already-applied file whose content changed raises SchemaDriftError: DDL is forward-only,
    so a change goes into a new file.
    """
    root = sql_dir if sql_dir is not None else packaged_sql()
    files = sorted((p for p in root.iterdir() if p.name.endswith(".sql") and p.is_file()), key=lambda p: p.name)
    if not files:
        raise SchemaDriftError(f"no DDL found in {root}: reinstall migration-pipeline")
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
