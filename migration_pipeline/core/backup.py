"""Backup first: a tar archive of a store's source files with a SHA-256 manifest, verified by
re-reading the archive before anything is loaded."""

from __future__ import annotations

import hashlib
import io
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
    """Archive every file under `store_dir` with a `sha256sum`-format manifest beside it, then re-read
    the archive and compare every member with the manifest. Memory stays flat for millions of files:
    nothing per file is kept (TarFile's member list is emptied as it goes)."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    archive = backup_dir / f"{store}-{stamp}.tar"
    manifest_path = archive.with_suffix(".sha256")
    files = total = 0
    with tarfile.open(archive, "w") as tar, open(manifest_path, "w", encoding="utf-8") as manifest:
        for relative in walk_files(store_dir):
            with open(store_dir / relative, "rb") as handle:
                data = handle.read()
                stat = os.fstat(handle.fileno())
            manifest.write(f"{hashlib.sha256(data).hexdigest()}  {relative}\n")
            files += 1
            total += len(data)
            # A TarInfo built by hand: tar.add() would look up user and group names for every file.
            info = tarfile.TarInfo(relative)
            info.size, info.mtime, info.mode = len(data), int(stat.st_mtime), stat.st_mode & 0o777
            tar.addfile(info, io.BytesIO(data))
            tar.members.clear()  # type: ignore[attr-defined]  # TarFile keeps every TarInfo otherwise
    _verify(archive, manifest_path, files)
    return Backup(archive.resolve(), _sha256_file(archive), files, total, manifest_path.resolve())


def _verify(archive: Path, manifest_path: Path, files: int) -> None:
    seen = 0
    with tarfile.open(archive, "r|") as tar, open(manifest_path, encoding="utf-8") as manifest:
        for member in tar:
            expected, _, name = manifest.readline().rstrip("\n").partition("  ")
            extracted = tar.extractfile(member)
            if name != member.name or extracted is None or hashlib.sha256(extracted.read()).hexdigest() != expected:
                raise MigrationError(f"backup {archive} does not verify at {member.name}; check the disk and re-run")
            tar.members.clear()  # type: ignore[attr-defined]  # TarFile keeps every TarInfo otherwise
            seen += 1
    if seen != files:
        raise MigrationError(f"backup {archive} holds {seen} files, expected {files}; re-run")


def read_manifest(path: Path) -> dict[str, str]:
    """A backup manifest as {relative path: SHA-256}."""
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries


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
