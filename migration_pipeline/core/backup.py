"""Backup first: a tar archive of a store's source files with a SHA-256 manifest, verified by
re-reading the archive before anything is loaded."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.manifest import walk_files


@dataclass(frozen=True)
class Backup:
    archive: Path
    sha256: str
    files: int
    bytes: int
    manifest: Path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_backup(store_dir: Path, backup_dir: Path, store: str) -> Backup:
    """Archive every file under `store_dir`, then re-read the archive and compare every member."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    archive = backup_dir / f"{store}-{stamp}.tar"
    manifest: dict[str, str] = {}
    total = 0
    with tarfile.open(archive, "w") as tar:
        for relative in walk_files(store_dir):
            with open(store_dir / relative, "rb") as handle:
                data = handle.read()
                stat = os.fstat(handle.fileno())
            manifest[relative] = hashlib.sha256(data).hexdigest()
            total += len(data)
            # A TarInfo built by hand: tar.add() would look up user and group names for every file.
            info = tarfile.TarInfo(relative)
            info.size, info.mtime, info.mode = len(data), int(stat.st_mtime), stat.st_mode & 0o777
            tar.addfile(info, io.BytesIO(data))
    seen = 0
    with tarfile.open(archive, "r") as tar:
        for member in tar:
            extracted = tar.extractfile(member)
            if extracted is None or hashlib.sha256(extracted.read()).hexdigest() != manifest.get(member.name):
                raise MigrationError(f"backup {archive} does not verify at {member.name}; check the disk and re-run")
            seen += 1
    if seen != len(manifest):
        raise MigrationError(f"backup {archive} holds {seen} files, expected {len(manifest)}; re-run")
    manifest_path = archive.with_suffix(".sha256.json")
    manifest_path.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    return Backup(archive.resolve(), _sha256_file(archive), len(manifest), total, manifest_path.resolve())


def record_backup(conn: psycopg.Connection, store: str, backup: Backup) -> None:
    conn.execute(
        "INSERT INTO migration.backups (store, archive_path, sha256, files, bytes, manifest_path)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (store, str(backup.archive), backup.sha256, backup.files, backup.bytes, str(backup.manifest)),
    )
    conn.commit()


def latest_backup(conn: psycopg.Connection, store: str) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT archive_path, sha256 FROM migration.backups WHERE store = %s ORDER BY created_at DESC LIMIT 1",
        (store,)).fetchone()
    return (row[0], row[1]) if row and Path(row[0]).is_file() else None
