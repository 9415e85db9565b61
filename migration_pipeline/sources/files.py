"""Discovery of a store made of fixed files (one unit per file that is present, in a fixed order)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from migration_pipeline.core.manifest import walk_files
from migration_pipeline.core.spec import Discovery, Unit


def discover_fixed_files(store_dir: Path, files: Sequence[str], payload: Callable[[int, str], Any]) -> Discovery:
    """One unit per file of `files` (paths relative to `store_dir`) that is present, numbered by its position
    in `files`, with `payload(position, path)`; every other file under the store is unmapped. The fingerprint
    hashes every file's path, size and mtime."""
    # A link is never read through (core/manifest.py): a data file that is a link is listed as a link.
    present = [(n, rel) for n, rel in enumerate(files)
               if (store_dir / rel).is_file() and not (store_dir / rel).is_symlink()]
    mapped = {rel for _, rel in present}
    everything = walk_files(store_dir) if store_dir.is_dir() else []
    digest = hashlib.sha256()
    for rel in everything:
        st = os.lstat(store_dir / rel)  # a dangling or looping link has no stat through it
        # A name that is not UTF-8 is hashed as its bytes.
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return Discovery(
        units=tuple(Unit(number=n, payload=payload(n, rel)) for n, rel in present),
        unmapped=tuple(rel for rel in everything if rel not in mapped),
        fingerprint=digest.hexdigest(),
    )
