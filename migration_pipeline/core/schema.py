"""Versioned, forward-only DDL: sql/<schema>/*.sql (the bookkeeping schema `migration` first, then each
store's), each applied once and recorded as `<schema>/<file>`, checksums verified."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg

from migration_pipeline.core.bookkeeping import applied_ddl
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
@dataclass(frozen=True)
class SchemaReport:
    applied: tuple[str, ...]
    already_applied: tuple[str, ...]


# Databases migrated before sql/ had a folder per schema recorded bare file names; they are renamed once.
LEGACY_NAMES = {
    **{f"{name}.sql": f"migration/{name}.sql" for name in (
        "001_migration", "002_backups", "003_manifest_mtime", "004_quarantine_unit", "005_staging_finishing",
        "006_file_counts", "007_backup_pruning")},
    **{f"{name}.sql": f"wallet/{name}.sql" for name in ("010_wallet", "011_wallet_soft_delete", "012_wallet_fast_checks")},
    "020_metagauge.sql": "metagauge/020_metagauge.sql",
}


def ddl_files(root: Traversable) -> list[tuple[str, Traversable]]:
    """(recorded name, file) of every DDL file, in the order they apply: `migration/` first, then files at the
    top, then every other schema's folder, each in name order."""
    found: list[tuple[tuple[int, str, str], str, Traversable]] = []
    for entry in root.iterdir():
        if entry.is_dir():
            for file in entry.iterdir():
                if file.name.endswith(".sql") and file.is_file():
                    rank = 0 if entry.name == "migration" else 2
                    found.append(((rank, entry.name, file.name), f"{entry.name}/{file.name}", file))
        elif entry.name.endswith(".sql") and entry.is_file():
            found.append(((1, "", entry.name), entry.name, entry))
    return [(name, file) for _, name, file in sorted(found, key=lambda f: f[0])]


def apply_migrations(conn: psycopg.Connection, sql_dir: Traversable | None = None) -> SchemaReport:
    """Apply every new DDL file under `sql_dir` (default: the packaged sql/), each in its own transaction.

    An already-applied file whose content changed raises SchemaDriftError: DDL is forward-only,
    so a change goes into a new file.
    """
    root = sql_dir if sql_dir is not None else packaged_sql()
    files = ddl_files(root)
    if not files:
        raise SchemaDriftError(f"no DDL found in {root}: reinstall migration-pipeline")
    applied: list[str] = []
    seen: list[str] = []
    with conn.transaction():
        applied_ddl.prepare(conn)
        for old, new in LEGACY_NAMES.items():
            applied_ddl.rename_applied(conn, old, new)
        recorded = applied_ddl.applied_files(conn)
        for name, path in files:
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if name in recorded:
                if recorded[name] != digest:
                    raise SchemaDriftError(
                        f"sql/{name} was edited after it was applied (recorded sha256 "
                        f"{recorded[name][:12]}…, now {digest[:12]}…); restore it and put the change "
                        "in a new file"
                    )
                seen.append(name)
                continue
            with conn.transaction():
                conn.execute(text.encode("utf-8"))
                applied_ddl.record_applied(conn, name, digest)
            applied.append(name)
    return SchemaReport(applied=tuple(applied), already_applied=tuple(seen))
