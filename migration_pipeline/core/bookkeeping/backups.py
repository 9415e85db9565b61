"""`migration.backups`: every archive written of a store's source, until it is pruned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class RecordedBackup:
    store: str
    archive: Path
    manifest: Path
    sha256: str
    files: int
    bytes: int
    created_at: datetime
    keep_until: datetime
    pruned_at: datetime | None


_SELECT = sql.SQL("SELECT store, archive_path, manifest_path, sha256, files, bytes, created_at, keep_until, pruned_at"
                  " FROM migration.backups b ")


def insert_backup(conn: psycopg.Connection, store: str, archive: Path, sha256: str, files: int, size: int,
                  manifest: Path) -> None:
    conn.execute(
        "INSERT INTO migration.backups (store, archive_path, sha256, files, bytes, manifest_path)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (store, str(archive), sha256, files, size, str(manifest)),
    )


def newest_backup(conn: psycopg.Connection, store: str) -> tuple[str, str] | None:
    """(archive path, sha256) of the store's newest backup that was not pruned."""
    row = conn.execute(
        "SELECT archive_path, sha256 FROM migration.backups WHERE store = %s AND pruned_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1", (store,)).fetchone()
    return (row[0], row[1]) if row else None


def registered_names(conn: psycopg.Connection, store: str) -> set[str]:
    """The file names (not paths) of every archive and manifest recorded for the store."""
    return {Path(p).name for row in conn.execute(
        "SELECT archive_path, manifest_path FROM migration.backups WHERE store = %s", (store,)) for p in row}


def all_backups(conn: psycopg.Connection) -> list[RecordedBackup]:
    """Every backup ever written, per store newest first."""
    return _rows(conn.execute(_SELECT + sql.SQL("ORDER BY store, created_at DESC")))


def expired_backups(conn: psycopg.Connection) -> list[RecordedBackup]:
    """Backups past their keep_until, not pruned, except each store's newest (a store always keeps one)."""
    return _rows(conn.execute(_SELECT + sql.SQL(
        """WHERE pruned_at IS NULL AND keep_until < now()
            AND created_at < (SELECT max(created_at) FROM migration.backups n WHERE n.store = b.store)
            ORDER BY store, created_at""")))


def mark_pruned(conn: psycopg.Connection, store: str, archive: Path) -> None:
    conn.execute("UPDATE migration.backups SET pruned_at = now() WHERE store = %s AND archive_path = %s",
                 (store, str(archive)))


def _rows(cursor: psycopg.Cursor) -> list[RecordedBackup]:  # type: ignore[type-arg]
    return [RecordedBackup(r[0], Path(r[1]), Path(r[2]), *r[3:]) for r in cursor]


def newest_backup_row(conn: psycopg.Connection, store: str) -> tuple[str, str, int, Any] | None:
    """(archive, sha256, files, created at) of the store's newest backup; None without one (or without the
    table: a report may be rendered on a database whose bookkeeping predates backups)."""
    if conn.execute("SELECT to_regclass('migration.backups') IS NOT NULL").fetchone() != (True,):
        return None
    row = conn.execute("SELECT archive_path, sha256, files, created_at FROM migration.backups WHERE store = %s"
                       " ORDER BY created_at DESC LIMIT 1", (store,)).fetchone()
    return (str(row[0]), str(row[1]), int(row[2]), row[3]) if row else None
