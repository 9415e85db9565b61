"""Change detection for the parallel run: which source files were added, changed or deleted since
the live version was loaded. Only `stat` is used, so a store of millions of files is not re-read."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import psycopg

from migration_pipeline.core.bookkeeping import units
from migration_pipeline.core.manifest import iter_stats
from migration_pipeline.core.promote import get_phase
from migration_pipeline.core.rows import copy_field
from migration_pipeline.core.spec import StoreSpec


@dataclass(frozen=True)
class ChangeSet:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    live_plan: str

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def key(self) -> str:
        """Stable id of this set of changes (a sensor's run key: the same changes start one run)."""
        text = "\n".join(["+" + p for p in self.added] + ["~" + p for p in self.changed] + ["-" + p for p in self.deleted])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted"


_BATCH = 10_000


def detect_changes(conn: psycopg.Connection, spec: StoreSpec, source_root: Path) -> ChangeSet | None:
    """Changes against the manifest of the live version; None when the store has no live version.

    The files' stats are streamed into a temporary table and compared with the manifest in SQL: held in
    Python, the two sides took 119 MiB at 200k files, over 1 GB at 2M (the sensor runs this every tick)."""
    phase = get_phase(conn, spec.name)
    if phase.phase not in ("promoted", "cut_over") or phase.plan_id is None:
        return None
    conn.execute("DROP TABLE IF EXISTS pg_temp.current_files")
    conn.execute("CREATE TEMP TABLE current_files (path text NOT NULL, size_bytes bigint NOT NULL, mtime_ns bigint)"
                 " ON COMMIT DROP")
    stats = iter_stats(source_root / spec.folder)
    with conn.cursor().copy("COPY current_files (path, size_bytes, mtime_ns) FROM STDIN") as copy:
        while batch := list(itertools.islice(stats, _BATCH)):
            copy.write("".join(f"{copy_field(path)}\t{size}\t{copy_field(mtime)}\n" for path, size, mtime in batch))
    found: dict[str, list[str]] = {"added": [], "changed": [], "deleted": []}
    for path, kind in units.changed_files(conn, spec.name, phase.plan_id, "current_files"):
        found[kind].append(path)
    return ChangeSet(tuple(sorted(found["added"])), tuple(sorted(found["changed"])), tuple(sorted(found["deleted"])),
                     phase.plan_id)
