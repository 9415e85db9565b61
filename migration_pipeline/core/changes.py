"""Change detection for the parallel run: which source files were added, changed or deleted since
the live version was loaded. Only `stat` is used, so a store of millions of files is not re-read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from migration_pipeline.core.manifest import stat_files
from migration_pipeline.core.promote import get_phase
from migration_pipeline.core.spec import StoreSpec


@dataclass(frozen=True)
class ChangeSet:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    live_plan: str
    current: dict[str, tuple[int, int | None]]  # every file now: (size, mtime_ns; None if unreadable)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def key(self) -> str:
        """Stable id of this set of changes (a sensor's run key: the same changes start one run)."""
        text = "\n".join(["+" + p for p in self.added] + ["~" + p for p in self.changed] + ["-" + p for p in self.deleted])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted"


def detect_changes(conn: psycopg.Connection, spec: StoreSpec, source_root: Path) -> ChangeSet | None:
    """Changes against the manifest of the live version; None when the store has no live version."""
    phase = get_phase(conn, spec.name)
    if phase.phase not in ("promoted", "cut_over") or phase.plan_id is None:
        return None
    recorded = {
        path: (size, mtime)
        for path, size, mtime in conn.execute(
            "SELECT path, size_bytes, mtime_ns FROM migration.source_manifest WHERE store = %s AND plan_id = %s",
            (spec.name, phase.plan_id),
        )
    }
    store_dir = source_root / spec.folder
    current = stat_files(store_dir) if store_dir.is_dir() else {}
    added = tuple(sorted(p for p in current if p not in recorded))
    deleted = tuple(sorted(p for p in recorded if p not in current))
    changed = tuple(sorted(p for p, stat in current.items() if p in recorded and recorded[p] != stat))
    return ChangeSet(added, changed, deleted, phase.plan_id, current)
