"""Checks a run makes before any work, so that what can be known at the start fails there, in one line, with
exit 2, instead of after the whole load: folders writable, free disk for the backups, the role's privileges."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import psycopg

from migration_pipeline.core.errors import ConfigurationError, InsufficientPrivilegeError, shorten

MB = 1024 * 1024


def usable_folder(path: Path, what: str, fix: str) -> Path:
    """`path` created if missing and proven writable by writing a file there (permission bits say nothing
    for root, or on a read-only mount)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"{what} {shorten(str(path))} is not a writable folder ({reason}): {fix}") from None
    return path


def role_may_create(conn: psycopg.Connection) -> None:
    """The role can create schemas in the database: sql/ and every run's staging schema need it."""
    row = conn.execute(
        "SELECT current_user, current_database(), has_database_privilege(current_database(), 'CREATE')").fetchone()
    assert row is not None
    user, database, may = row
    if not may:
        raise InsufficientPrivilegeError(
            f"role {user} may not create schemas in database {database}: run GRANT CREATE ON DATABASE {database} TO "
            f"{user} (as its owner or a superuser), or use a role that owns the database")


def folder_bytes(folders: Iterable[Path]) -> int:
    """What the files under `folders` weigh (a backup archive is at most about that)."""
    total = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue  # gone or unreadable: the backup itself says so, with the file's name
    return total


def disks_used(folders: Iterable[Path]) -> int:
    """The bytes used on the disks that hold `folders`, each disk once: the most their files can weigh (files
    under a mount point inside a folder aside)."""
    used: dict[int, int] = {}
    for folder in folders:
        try:
            used[os.stat(folder).st_dev] = shutil.disk_usage(folder).used
        except OSError:
            continue  # gone: the store is reported missing, not here
    return sum(used.values())


def free_disk_for(folder: Path, sources: Sequence[Path], what: str, fix: str, *, free: int | None = None,
                  weigh: Callable[[Iterable[Path]], int] = folder_bytes) -> None:
    """Room on the disk of `folder` (`free` bytes: measured unless given) for a backup of `sources`. Their files
    are weighed only when the disks holding them use more than that: weighing is a stat per file, 13 s before
    a run of 2M files."""
    if free is None:
        free = shutil.disk_usage(folder).free
    if not sources or free >= disks_used(sources):
        return
    needed = weigh(sources)
    if free < needed:
        raise ConfigurationError(
            f"{what} {shorten(str(folder))} has {free // MB} MB free, the backup needs about {-(-needed // MB)} MB: "
            f"{fix}")
