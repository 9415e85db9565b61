"""The source manifest: every file under a store folder with its size and SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from migration_pipeline.core.spec import ManifestEntry


def describe_bytes(relative_path: str, data: bytes, *, mapped: bool) -> ManifestEntry:
    return ManifestEntry(relative_path, len(data), hashlib.sha256(data).hexdigest(), mapped)


def describe_file(store_dir: Path, relative_path: str, *, mapped: bool) -> ManifestEntry:
    """Hash a file in 1 MiB blocks (works for files of any size)."""
    digest = hashlib.sha256()
    size = 0
    with open(store_dir / relative_path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return ManifestEntry(relative_path, size, digest.hexdigest(), mapped)


def walk_files(store_dir: Path) -> list[str]:
    """Every regular file below `store_dir`, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(store_dir).as_posix() for p in store_dir.rglob("*") if p.is_file())
