"""Progress read from the bookkeeping a load commits (progress.py), on the real PostgreSQL: each phase as the
tables show it, the counts exactly, the lines a pipe or the Dagster event log gets."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.progress import (
    Snapshot,
    StoreProgress,
    clock,
    final_line,
    progress_line,
    watch_progress,
)


def _plan(conn: psycopg.Connection, plan_id: str, run_id: str, status: str, units_total: int) -> None:
    conn.execute(
        """INSERT INTO migration.staging (store, plan_id, fingerprint, status, run_id, units_total)
           VALUES ('wallet', %s, 'f', %s, %s, %s)
           ON CONFLICT (store) DO UPDATE SET plan_id = EXCLUDED.plan_id, status = EXCLUDED.status,
             run_id = EXCLUDED.run_id, units_total = EXCLUDED.units_total, started_at = now()""",
        (plan_id, status, run_id, units_total))


def _status(conn: psycopg.Connection, status: str) -> None:
    conn.execute("UPDATE migration.staging SET status = %s WHERE store = 'wallet'", (status,))


def _files(conn: psycopg.Connection, plan_id: str, unit: int | None, count: int) -> None:
    for n in range(count):
        conn.execute(
            "INSERT INTO migration.source_manifest (store, plan_id, path, size_bytes, sha256, status, unit_no)"
            " VALUES ('wallet', %s, %s, 1, 'x', %s, %s)",
            (plan_id, f"u{unit}/f{n}", "unmapped" if unit is None else "mapped", unit))


def _unit(conn: psycopg.Connection, plan_id: str, unit: int, rows: dict[str, int], files: int,
          files_recorded: int | None = None) -> None:
    """A unit committed as the load commits one: its progress per table (with the count of files it listed, as
    the load records it, or without, as a sync's carried unit) and its files, in one transaction."""
    with conn.transaction():
        for table, emitted in rows.items():
            conn.execute(
                "INSERT INTO migration.unit_progress (store, plan_id, unit_no, table_name, records_seen, rows_emitted,"
                " row_hash_sum, run_id, files_listed) VALUES ('wallet', %s, %s, %s, %s, %s, 0, 'r1', %s)",
                (plan_id, unit, table, emitted + 1, emitted, files_recorded))
        _files(conn, plan_id, unit, files)


def _read(reader: StoreProgress, conn: psycopg.Connection) -> Snapshot:
    return replace(reader.read(conn), load_seconds=0.0)


def test_each_phase_and_the_counts_as_the_bookkeeping_shows_them(database_url: str, tmp_path: Path) -> None:
    reader = StoreProgress("wallet", backup_dir=tmp_path)
    with connect(database_url, autocommit=True) as conn:
        _plan(conn, "old", "r0", "promoted", 9)  # the previous run's plan: not this run's progress
        _unit(conn, "old", 0, {"wallets": 50}, 3)
        assert _read(reader, conn) == Snapshot("wallet", "starting")
        (tmp_path / ".wallet-20260101T000000Z.tar.zst.part").write_bytes(b"z" * 3 * 2**20)
        assert _read(reader, conn) == Snapshot("wallet", "backing_up", backup_bytes=3 * 2**20)
        (tmp_path / ".wallet-20260101T000000Z.tar.zst.part").unlink()
        conn.execute("INSERT INTO migration.store_leases (store, holder, run_id, expires_at)"
                     " VALUES ('wallet', 'h:1:x', 'r1', now() + interval '1 minute')")
        assert _read(reader, conn) == Snapshot("wallet", "backing_up")
        conn.execute("INSERT INTO migration.backups (store, archive_path, sha256, files, bytes, manifest_path)"
                     " VALUES ('wallet', 'a', 's', 1, 1, 'm')")
        assert _read(reader, conn) == Snapshot("wallet", "listing")

        _plan(conn, "p1", "r1", "loading", 3)
        _files(conn, "p1", None, 2)  # the unmapped files, recorded with the plan
        assert _read(reader, conn) == Snapshot("wallet", "loading", 0, 3, files=2, rows=0)
        _unit(conn, "p1", 0, {"wallets": 5, "users": 7}, 4)
        assert _read(reader, conn) == Snapshot("wallet", "loading", 1, 3, files=6, rows=12)
        # The backup is written beside the load: its archive's growth shows with the load's counts.
        (tmp_path / ".wallet-20260101T000000Z.tar.zst.part").write_bytes(b"z" * 5 * 2**20)
        assert _read(reader, conn) == Snapshot("wallet", "loading", 1, 3, files=6, rows=12, backup_bytes=5 * 2**20)
        (tmp_path / ".wallet-20260101T000000Z.tar.zst.part").unlink()
        _unit(conn, "p1", 2, {"wallets": 10, "users": 1}, 5)
        _unit(conn, "p1", 1, {"wallets": 100, "users": 0}, 6)
        loaded = Snapshot("wallet", "integrity", 3, 3, files=17, rows=123)
        assert _read(reader, conn) == loaded
        _status(conn, "finishing")
        assert _read(reader, conn) == replace(loaded, phase="finishing")
        _status(conn, "staged")
        assert _read(reader, conn) == replace(loaded, phase="gates")
        for name, passed in (("row_count_reconciliation", True), ("key_verification", False)):
            conn.execute("INSERT INTO migration.check_results (run_id, store, plan_id, check_name, passed, summary)"
                         " VALUES ('r1', 'wallet', 'p1', %s, %s, '')", (name, passed))
        assert _read(reader, conn) == replace(loaded, phase="blocked")
        conn.execute("UPDATE migration.check_results SET passed = true")
        assert _read(reader, conn) == replace(loaded, phase="promoting")
        _status(conn, "promoted")
        assert _read(reader, conn) == replace(loaded, phase="promoted")


def test_files_are_counted_from_the_units_progress_rows_and_in_the_manifest_only_where_they_carry_no_count(
        database_url: str) -> None:
    reader = StoreProgress("wallet")
    with connect(database_url, autocommit=True) as conn:
        _plan(conn, "old", "r0", "promoted", 9)
        assert _read(reader, conn) == Snapshot("wallet", "starting")
        _plan(conn, "p1", "r1", "loading", 3)
        # The recorded count is what is read: the manifest of these units is not (it holds one row each here).
        _unit(conn, "p1", 0, {"wallets": 5, "users": 7}, 1, files_recorded=2000)
        _unit(conn, "p1", 1, {"wallets": 5}, 1, files_recorded=3)
        assert _read(reader, conn) == Snapshot("wallet", "loading", 2, 3, files=2003, rows=17)
        _unit(conn, "p1", 2, {"wallets": 4}, 6)  # no count recorded: its manifest rows are counted
        assert _read(reader, conn) == Snapshot("wallet", "integrity", 3, 3, files=2009, rows=21)


def test_a_resumed_plan_is_this_runs_progress_with_the_units_already_committed(database_url: str) -> None:
    """A crashed run's plan resumed under the same plan id: the new run id on it is what says it is this run's."""
    reader = StoreProgress("wallet")
    with connect(database_url, autocommit=True) as conn:
        _plan(conn, "p1", "crashed", "loading", 4)
        _unit(conn, "p1", 0, {"wallets": 8}, 2)
        assert _read(reader, conn) == Snapshot("wallet", "starting")
        conn.execute("UPDATE migration.staging SET run_id = 'resumer'")
        assert _read(reader, conn) == Snapshot("wallet", "loading", 1, 4, files=2, rows=8)


def test_a_database_without_the_bookkeeping_tables_reads_as_starting(server_url: str) -> None:
    from migration_pipeline.core.database import drop_database, ensure_database

    url = ensure_database(server_url, "mp_progress_bare")
    try:
        with connect(url, autocommit=True) as conn:
            assert StoreProgress("wallet").read(conn) == Snapshot("wallet", "starting")
    finally:
        drop_database(server_url, "mp_progress_bare")


def test_the_lines_say_phase_counts_rate_eta_and_elapsed() -> None:
    loading = Snapshot("wallet", "loading", 412, 1000, files=824_000, rows=823_990)
    assert progress_line(loading, 51.2, 35_123.4, 32.0) == (
        "wallet: loading 412/1,000 units, 824,000 files, 823,990 rows, 35,123 rows/s, ETA 0:32, elapsed 0:51")
    assert progress_line(Snapshot("wallet", "backing_up", backup_bytes=312 * 2**20), 12) == (
        "wallet: backing up, 312 MiB written, elapsed 0:12")
    assert progress_line(replace(loading, backup_bytes=40 * 2**20), 51.2, 35_123.4, 32.0) == (
        "wallet: loading 412/1,000 units, 824,000 files, 823,990 rows, backup 40 MiB written, 35,123 rows/s, "
        "ETA 0:32, elapsed 0:51")
    assert progress_line(replace(loading, phase="finishing", units_done=1000), 3700) == (
        "wallet: building tables, indexes, keys; 1,000/1,000 units, 824,000 files, 823,990 rows loaded, elapsed 1:01:40")
    assert final_line(replace(loading, units_done=1000, load_seconds=55.84), "wallet", 110.3) == (
        "wallet: loaded 1,000/1,000 units, 824,000 files, 823,990 rows in 55.8 s (14,756 rows/s); elapsed 1:50")
    assert final_line(None, "pend", 4) == "pend: no unit loaded by this run; elapsed 0:04"
    assert (clock(0), clock(59.9), clock(61), clock(3600)) == ("0:00", "0:59", "1:01", "1:00:00")


def test_watch_progress_sends_a_line_per_phase_and_every_few_seconds_then_the_counts(database_url: str) -> None:
    """What a Dagster step gets with `sink=context.log.info`: here a list, with the loader in this thread."""
    lines: list[str] = []
    with connect(database_url, autocommit=True) as conn, \
            watch_progress(database_url, "wallet", lines.append, every_s=0.6, poll_s=0.1) as watcher:
        time.sleep(0.35)
        _plan(conn, "p1", "r1", "loading", 2)
        _files(conn, "p1", None, 1)
        time.sleep(0.35)
        _unit(conn, "p1", 0, {"wallets": 3}, 2)
        time.sleep(1.5)  # long enough for periodic lines in the same phase
        _unit(conn, "p1", 1, {"wallets": 4}, 2)
        _status(conn, "staged")
        while watcher.latest.get("wallet", Snapshot("wallet")).phase != "gates":
            time.sleep(0.05)
    shown = [re.sub(r", elapsed \d:\d\d$", "", line) for line in lines[:-1]]
    assert all(re.search(r", elapsed \d:\d\d$", line) for line in lines[:-1]), lines
    assert shown[0] == "wallet: starting"
    assert "wallet: loading 0/2 units, 1 files, 0 rows" in shown
    periodic = [s for s in shown if s.startswith("wallet: loading 1/2 units, 3 files, 3 rows")]
    assert len(periodic) >= 2, lines  # 1.5 s in one phase: a line every 0.6 s
    assert re.fullmatch(r"wallet: loading 1/2 units, 3 files, 3 rows, [\d,]+ rows/s, ETA 0:0\d", periodic[-1]), lines
    assert shown[-1] == "wallet: checking the gates; 2/2 units, 5 files, 7 rows loaded"
    assert re.fullmatch(r"wallet: loaded 2/2 units, 5 files, 7 rows in \d+\.\d s( \([\d,]+ rows/s\))?; elapsed 0:0\d",
                        lines[-1]), lines


def test_a_phase_reached_after_the_last_poll_is_said_before_the_counts(database_url: str) -> None:
    """A promotion quicker than a poll (CI's flake: the lines on a pipe ended at `checking the gates`): the
    watcher's last poll, as the block ends, still gives the phase the run ended in."""
    lines: list[str] = []
    with connect(database_url, autocommit=True) as conn, \
            watch_progress(database_url, "wallet", lines.append, every_s=60, poll_s=30):
        _plan(conn, "p1", "r1", "loading", 1)
        _unit(conn, "p1", 0, {"wallets": 3}, 2)
        _status(conn, "promoted")
    shown = [re.sub(r", elapsed \d:\d\d$", "", line) for line in lines]
    assert shown[:2] == ["wallet: starting", "wallet: promoted; 1/1 units, 2 files, 3 rows loaded"], lines
    assert re.fullmatch(r"wallet: loaded 1/1 units, 2 files, 3 rows in \d+\.\d s; elapsed 0:0\d", lines[2]), lines
    assert len(lines) == 3, lines


def test_a_server_that_cannot_be_reached_is_no_error_and_no_line_but_the_last(tmp_path: Path) -> None:
    lines: list[str] = []
    with watch_progress("postgresql://nobody@127.0.0.1:1/none", "wallet", lines.append, every_s=0.2, poll_s=0.05):
        time.sleep(0.3)
    assert len(lines) == 1 and re.fullmatch(r"wallet: no unit loaded by this run; elapsed 0:0\d", lines[0]), lines


@pytest.mark.parametrize("phase", ["starting", "promoted"])
def test_the_store_shown_is_the_one_being_worked_on(phase: str) -> None:
    from migration_pipeline.progress import Watcher

    watcher = Watcher("postgresql://nobody@127.0.0.1:1/none", ["wallet", "metagauge"], lambda s, e: None)
    watcher.latest = {"wallet": Snapshot("wallet", phase), "metagauge": Snapshot("metagauge", "loading")}
    assert watcher.current() == Snapshot("metagauge", "loading")
    watcher.latest["metagauge"] = Snapshot("metagauge", "starting")
    assert watcher.current() == (Snapshot("wallet", "promoted") if phase == "promoted" else Snapshot("wallet"))


def test_heartbeat_says_what_and_how_long_every_few_seconds() -> None:
    from migration_pipeline.progress import heartbeat

    lines: list[str] = []
    with heartbeat("generate: writing the wallet store", lines.append, every_s=0.2):
        time.sleep(0.7)
    assert 2 <= len(lines) <= 3, lines  # at 0.2, 0.4 and 0.6 s (one may be late on a loaded machine)
    assert all(re.fullmatch(r"generate: writing the wallet store, elapsed 0:0\d", line) for line in lines), lines


def test_the_starting_phase_can_be_named_for_what_the_caller_does_first() -> None:
    lines: list[str] = []
    with watch_progress("postgresql://nobody@127.0.0.1:1/none", "wallet", lines.append, every_s=0.2, poll_s=0.05,
                        starting="measuring the floor") as watcher:
        watcher.latest["wallet"] = Snapshot("wallet")
        time.sleep(0.3)
    assert re.fullmatch(r"wallet: measuring the floor, elapsed 0:0\d", lines[0]), lines


def test_the_lines_reach_the_dagster_event_log_from_the_watcher_thread(database_url: str) -> None:
    """The wiring the assets use: `sink=context.log.info`, called from the watcher's thread while the step works."""
    from dagster import DagsterInstance, asset, materialize

    @asset
    def loads(context) -> None:  # type: ignore[no-untyped-def]  # (a string annotation: Dagster cannot resolve a local import)
        with connect(database_url, autocommit=True) as conn, \
                watch_progress(database_url, "wallet", context.log.info, every_s=0.3, poll_s=0.05):
            _plan(conn, "p1", "r1", "loading", 1)
            time.sleep(0.4)
            _unit(conn, "p1", 0, {"wallets": 9}, 4)
            time.sleep(0.4)

    with DagsterInstance.ephemeral() as instance:
        result = materialize([loads], instance=instance)
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
    lines = [m for m in messages if m.startswith("wallet: ")]
    assert any(re.fullmatch(r"wallet: loading 0/1 units, 0 files, 0 rows, elapsed 0:0\d", line) for line in lines), messages
    assert re.fullmatch(r"wallet: loaded 1/1 units, 4 files, 9 rows in \d\.\d s; elapsed 0:0\d", lines[-1]), messages
