"""Progress of a store's run, read from the bookkeeping every load already commits, so that it can be watched
from any process (the command line, or a Dagster step beside the one that loads):

* `migration.staging`: the plan of the run, its status and `units_total` (written when the plan begins);
* `migration.unit_progress`: the units committed, with the rows each emitted;
* `migration.source_manifest`: the files of each committed unit, and the plan's unmapped files;
* `migration.store_leases` and the backup's `.part` archive: the run holds the store, the backup is being written
  (before and beside the load);
* `migration.check_results`: the gates have recorded their outcome.

A watcher thread polls PostgreSQL on a connection of its own (about every second; a handful of index scans)
and either calls `sink` with one line every few seconds (`watch_progress`: a log, a pipe, the Dagster event
log) or drives a live bar on a terminal (`watch_progress_bar`). It never raises into the work it watches:
a failed poll (the server gone, the database not created yet) is skipped silently, the work says it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from migration_pipeline.core.bookkeeping.monitor import (
    files_listed,
    gates_passed,
    has_backup,
    lease_held,
    rows_per_unit,
    staging_progress,
)

POLL_SECONDS = 1.0
LINE_SECONDS = 5.0

# What each phase is called in a line or on the bar.
PHASES = {
    "starting": "starting",
    "backing_up": "backing up",
    "listing": "listing files",
    "loading": "loading",
    "integrity": "integrity rules",
    "finishing": "building tables, indexes, keys",
    "gates": "checking the gates",
    "promoting": "promoting",
    "blocked": "blocked by a gate",
    "promoted": "promoted",
}


@dataclass(frozen=True)
class Snapshot:
    """What one poll saw of a store's run."""

    store: str
    phase: str = "starting"
    units_done: int = 0
    units_total: int = 0  # 0: not known (an incremental sync records none)
    files: int = 0
    rows: int = 0
    backup_bytes: int = 0
    load_seconds: float = 0.0  # from the plan's start to the last unit seen committed (database clock)

    @property
    def loaded_any(self) -> bool:
        return self.units_done > 0


@dataclass
class _Plan:
    plan_id: str
    units: dict[int, int] = field(default_factory=dict)  # unit -> rows emitted
    files: int = 0
    load_seconds: float = 0.0
    age_offset: float = 0.0  # a resumed plan started in an earlier run: its age counts from now


class StoreProgress:
    """Reads a store's progress; `read` is called again and again on the same reader.

    The plan found when the reader first reads (the previous run's, or none) is not this run's: progress is
    that of a plan, or a run id on the plan (a resumed plan), that appears afterwards."""

    def __init__(self, store: str, backup_dir: Path | None = None) -> None:
        self.store = store
        self.backup_dir = backup_dir
        self._baseline: tuple[str, str] | None = None
        self._has_baseline = False
        self._plan: _Plan | None = None

    def read(self, conn: psycopg.Connection[Any]) -> Snapshot:
        row = self._staging_row(conn)
        if not self._has_baseline:
            self._baseline, self._has_baseline = (row[0], row[1]) if row else None, True
        if row is None or (row[0], row[1]) == self._baseline:
            return self._before_staging(conn)
        plan_id, run_id, status, units_total, age = row
        if self._plan is None or self._plan.plan_id != plan_id:
            resumed = self._baseline is not None and self._baseline[0] == plan_id
            self._plan = _Plan(plan_id, files=files_listed(conn, self.store, plan_id, None),
                               age_offset=age if resumed else 0.0)
            self._plan.units = dict.fromkeys(rows_per_unit(conn, self.store, plan_id), 0) if resumed else {}
            if resumed:  # the units an earlier run committed: counted once, their load not timed
                self._plan.files += files_listed(conn, self.store, plan_id, list(self._plan.units))
        plan = self._plan
        units = rows_per_unit(conn, self.store, plan_id)
        new = [u for u in units if u not in plan.units]
        if new:
            plan.files += files_listed(conn, self.store, plan_id, new)
            plan.load_seconds = age - plan.age_offset
        plan.units = units
        done = len(units)
        if status == "loading":
            phase = "integrity" if units_total and done >= units_total else "loading"
        elif status == "finishing":
            phase = "finishing"
        elif status == "staged":
            gates = gates_passed(conn, self.store, run_id)
            phase = "gates" if gates is None else "promoting" if gates else "blocked"
        else:
            phase = "promoted" if status == "promoted" else "starting"
        # The backup is written beside the load: its archive's growth is shown until it is verified.
        return Snapshot(self.store, phase, done, units_total, plan.files, sum(units.values()),
                        backup_bytes=self._backup_being_written() or 0, load_seconds=plan.load_seconds)

    def _staging_row(self, conn: psycopg.Connection[Any]) -> tuple[str, str, str, int, float] | None:
        try:
            return staging_progress(conn, self.store)
        except psycopg.errors.UndefinedTable:  # sql/ not applied yet: nothing staged
            return None

    def _before_staging(self, conn: psycopg.Connection[Any]) -> Snapshot:
        try:
            held = lease_held(conn, self.store)
            backed_up = held and has_backup(conn, self.store)
        except psycopg.errors.UndefinedTable:
            return Snapshot(self.store, "starting")
        writing = self._backup_being_written()
        if writing is not None:
            return Snapshot(self.store, "backing_up", backup_bytes=writing)
        if not held:
            return Snapshot(self.store, "starting")
        return Snapshot(self.store, "listing" if backed_up else "backing_up")

    def _backup_being_written(self) -> int | None:
        """Bytes of the archive the backup is writing (`.<store>-<stamp>.tar.zst.part`), None when there is none."""
        if self.backup_dir is None:
            return None
        try:
            return sum(p.stat().st_size for p in self.backup_dir.glob(f".{self.store}-*.tar.zst.part")) or None
        except OSError:
            return None


# --- text ------------------------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """0:07, 1:05:09."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class _Rate:
    """Units and rows per second since loading was first seen, for the rate and the ETA."""

    started: float | None = None
    units: int = 0
    rows: int = 0

    def update(self, snap: Snapshot, now: float) -> tuple[float | None, float | None]:
        """(rows/s, seconds left), None where not known yet."""
        if snap.phase != "loading":
            return None, None
        if self.started is None:
            self.started, self.units, self.rows = now, snap.units_done, snap.rows
            return None, None
        took = now - self.started
        if took < 1.0 or snap.units_done <= self.units:
            return None, None
        rows_per_s = (snap.rows - self.rows) / took
        left = (snap.units_total - snap.units_done) * took / (snap.units_done - self.units) if snap.units_total else None
        return rows_per_s, left


def backup_written(snap: Snapshot) -> str:
    """`, 312 MiB written` while backing up, `, backup 40 MiB written` beside the load, else nothing."""
    if not snap.backup_bytes:
        return ""
    return f", {'' if snap.phase == 'backing_up' else 'backup '}{snap.backup_bytes / 2**20:,.0f} MiB written"


def counts(snap: Snapshot) -> str:
    units = f"{snap.units_done:,}/{snap.units_total:,}" if snap.units_total else f"{snap.units_done:,}"
    return f"{units} units, {snap.files:,} files, {snap.rows:,} rows"


def progress_line(snap: Snapshot, elapsed: float, rows_per_s: float | None = None, left: float | None = None,
                  phases: dict[str, str] = PHASES) -> str:
    """`wallet: loading 412/1,000 units, 824,000 files, 824,000 rows, 35,120 rows/s, ETA 0:32, elapsed 0:51`."""
    parts = [f"{snap.store}: {phases[snap.phase]}"]
    if snap.phase == "loading" or snap.loaded_any:
        parts[0] += f" {counts(snap)}" if snap.phase == "loading" else f"; {counts(snap)} loaded"
    parts[0] += backup_written(snap)
    if rows_per_s is not None:
        parts.append(f"{rows_per_s:,.0f} rows/s")
    if left is not None:
        parts.append(f"ETA {clock(left)}")
    parts.append(f"elapsed {clock(elapsed)}")
    return ", ".join(parts)


def final_line(snap: Snapshot | None, store: str, elapsed: float) -> str:
    """`wallet: loaded 1,000/1,000 units, 2,000,004 files, 1,999,998 rows in 55.8 s (35,842 rows/s); elapsed 1:50`."""
    if snap is None or not snap.loaded_any:
        return f"{store}: no unit loaded by this run; elapsed {clock(elapsed)}"
    rate = f" ({snap.rows / snap.load_seconds:,.0f} rows/s)" if snap.load_seconds >= 1 else ""
    return f"{store}: loaded {counts(snap)} in {snap.load_seconds:.1f} s{rate}; elapsed {clock(elapsed)}"


# --- the watcher -----------------------------------------------------------------------------------------


class Watcher:
    """Polls `stores` every `poll_s` on a connection of its own and hands each snapshot of the store being
    worked on (the first that is neither starting nor promoted; else the last that moved) to `on_snapshot`."""

    def __init__(self, database_url: str, stores: Sequence[str], on_snapshot: Callable[[Snapshot, float], None],
                 backup_dir: Path | None = None, poll_s: float = POLL_SECONDS) -> None:
        self.database_url, self.poll_s, self.on_snapshot = database_url, poll_s, on_snapshot
        self.readers = [StoreProgress(s, backup_dir) for s in stores]
        self.latest: dict[str, Snapshot] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self.healthy = False  # the last poll answered
        self._thread = threading.Thread(target=self._run, name="migration-progress", daemon=True)

    def start(self) -> Watcher:
        """The first poll here, before the work starts: what the database shows now is the previous run's."""
        first = self.poll()
        if first is not None:
            try:
                self.on_snapshot(first, time.monotonic() - self.started)
            except Exception:  # noqa: S110 (showing progress must never break the work)
                pass
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._thread.is_alive() or not self.healthy:
            return  # the server went away mid-poll: the work says so, the counts seen last stand
        self.poll()  # the last counts, once the work is over
        self._close()

    def current(self) -> Snapshot | None:
        moved = [self.latest[r.store] for r in self.readers if r.store in self.latest]
        active = [s for s in moved if s.phase not in ("starting", "promoted")]
        if active:
            return active[0]
        touched = [s for s in moved if s.phase != "starting"]
        return touched[-1] if touched else (moved[0] if moved else None)

    def poll(self) -> Snapshot | None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=3,
                                             application_name="migration-pipeline progress")
                self._conn.execute("SET statement_timeout = '5s'")
            for reader in self.readers:
                self.latest[reader.store] = reader.read(self._conn)
            self.healthy = True
        except (psycopg.Error, OSError):
            self.healthy = False
            self._close()  # the next poll connects again
        return self.current()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            snap = self.poll()
            if snap is not None and not self._stop.is_set():
                try:
                    self.on_snapshot(snap, time.monotonic() - self.started)
                except Exception:  # noqa: S110 (showing progress must never break the work)
                    pass

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None


@contextmanager
def watch_progress(database_url: str, store: str | Sequence[str], sink: Callable[[str], None],
                   every_s: float = LINE_SECONDS, *, backup_dir: Path | None = None,
                   poll_s: float = POLL_SECONDS, starting: str = PHASES["starting"]) -> Iterator[Watcher]:
    """While the block runs, `sink` gets a line of the store's progress every `every_s` seconds and at each
    change of phase; at the end, the loaded counts. For Dagster: `with watch_progress(url, name,
    context.log.info): ...`; on a pipe: `sink=print`. `starting` names what happens before the store's run
    shows in the database (the bench generates and measures its floor then)."""
    stores = [store] if isinstance(store, str) else list(store)
    phases = {**PHASES, "starting": starting}
    rate = _Rate()
    last: dict[str, Any] = {"at": None, "phase": None}

    def on_snapshot(snap: Snapshot, elapsed: float) -> None:
        rows_per_s, left = rate.update(snap, elapsed)
        due = last["at"] is None or elapsed - last["at"] >= every_s - poll_s / 2
        if due or (snap.store, snap.phase) != last["phase"]:
            sink(progress_line(snap, elapsed, rows_per_s, left, phases))
            last["at"], last["phase"] = elapsed, (snap.store, snap.phase)

    watcher = Watcher(database_url, stores, on_snapshot, backup_dir, poll_s).start()
    try:
        yield watcher
    finally:
        watcher.stop()
        elapsed = time.monotonic() - watcher.started
        # A phase reached after the last poll (a promotion quicker than a poll, say) is still said, before
        # the counts: the lines end where the run ended.
        ended = watcher.current()
        if ended is not None and (ended.store, ended.phase) != last["phase"]:
            sink(progress_line(ended, elapsed, None, None, phases))
        for name in stores:
            sink(final_line(watcher.latest.get(name), name, elapsed))


@contextmanager
def watch_progress_bar(database_url: str, store: str | Sequence[str], *, file: Any = None,
                       backup_dir: Path | None = None, poll_s: float = POLL_SECONDS,
                       starting: str = PHASES["starting"]) -> Iterator[Watcher]:
    """A live bar on a terminal while the block runs: the phase, units loaded of the total, files, rows,
    rows/s, elapsed and ETA; left on screen at the end, followed by the loaded counts (`final_line`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    started = time.monotonic()

    class Elapsed(ProgressColumn):  # rich's own stops when the units are all loaded; the run goes on
        def render(self, task: Any) -> Text:
            return Text(f"elapsed {clock(time.monotonic() - started)}", style="progress.elapsed")

    stores = [store] if isinstance(store, str) else list(store)
    try:  # measured now: while a Dagster step runs, stdout's descriptor points at the step's log file
        width: int | None = os.get_terminal_size(file.fileno()).columns if file is not None else None
    except (OSError, ValueError, AttributeError):
        width = None
    console = Console(file=file, highlight=False, width=width or None)
    bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                   TextColumn("units {task.fields[detail]}"), Elapsed(), TextColumn("{task.fields[eta]}"),
                   console=console, refresh_per_second=4, redirect_stdout=False, redirect_stderr=False)
    phases = {**PHASES, "starting": starting}
    task = bar.add_task(f"{stores[0]}: {starting}", total=None, detail="", eta="")
    rate = _Rate()

    def on_snapshot(snap: Snapshot, elapsed: float) -> None:
        rows_per_s, left = rate.update(snap, elapsed)
        detail = f"{snap.files:,} files, {snap.rows:,} rows" + (f", {rows_per_s:,.0f} rows/s" if rows_per_s else "")
        bar.update(task, description=f"{snap.store}: {phases[snap.phase]}{backup_written(snap)}", completed=snap.units_done,
                   total=snap.units_total or None, detail=detail, eta=f"ETA {clock(left)}" if left is not None else "")

    watcher = Watcher(database_url, stores, on_snapshot, backup_dir, poll_s)
    bar.start()
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        final = watcher.current()
        if final is not None:
            on_snapshot(final if final.units_total else replace(final, units_total=final.units_done),
                        time.monotonic() - watcher.started)
        bar.stop()
        elapsed = time.monotonic() - watcher.started
        for name in stores:
            console.print(final_line(watcher.latest.get(name), name, elapsed), soft_wrap=True)


@contextmanager
def heartbeat(what: str, sink: Callable[[str], None] | None, every_s: float = LINE_SECONDS, *,
              file: Any = None) -> Iterator[None]:
    """For work with no bookkeeping to read (generating a store): `what, elapsed 0:15` every `every_s` when
    `sink` is given, else a spinner with the time elapsed on the terminal."""
    stop = threading.Event()
    started = time.monotonic()
    if sink is None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        spinner = Progress(SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=Console(file=file),
                           transient=True, redirect_stdout=False, redirect_stderr=False)
        with spinner:
            spinner.add_task(what, total=None)
            yield
        return

    def beat() -> None:
        while not stop.wait(every_s):
            sink(f"{what}, elapsed {clock(time.monotonic() - started)}")

    thread = threading.Thread(target=beat, name="migration-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
