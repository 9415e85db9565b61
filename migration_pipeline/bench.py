"""`migration-pipeline bench`: the full migration of a generated wallet store against a plain floor.

The floor is what any loader must do at least: read and parse every file, COPY every field into an
unindexed table, and verify every key, on both cores. It is measured twice: pipelined (workers parse
and verify while the parent COPYs, the stricter reference) and phase after phase, as the issue states
its floor (read+parse, COPY, then verify on 2 cores). The full migration is the real Dagster job
(staging, SQL integrity rules, indexes, every gate, promotion, report).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psutil

from migration_pipeline.core.database import connect, drop_database, ensure_database
from migration_pipeline.core.manifest import read_whole
from migration_pipeline.core.rows import copy_field

SECRET = "bench-secret"
T = TypeVar("T")


class PeakRss:
    """Peak resident memory of this process and its children (the worker pool), sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                total = 0
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


FLOOR_FIELDS = ("fid", "address", "encryptedPrivateKey", "iv", "chain", "createdAt")


def _floor_chunk(args: tuple[str, list[str]]) -> str:
    """One chunk's COPY text, its keys verified."""
    folder, names = args
    out = io.StringIO()
    keys = []
    for name in names:
        try:
            record = orjson.loads(read_whole(os.path.join(folder, name))[0].removeprefix(b"\xef\xbb\xbf"))
        except (orjson.JSONDecodeError, OSError):
            continue
        if not isinstance(record, dict):
            continue
        ciphertext, iv = record.get("encryptedPrivateKey"), record.get("iv")
        if ciphertext and iv and isinstance(record.get("address"), str):
            keys.append((ciphertext, iv, record["address"]))
        # Every field of the record, as text and as found: the floor loads the whole store, unnormalized.
        out.write("\t".join([name, *(copy_field(record.get(f)) for f in FLOOR_FIELDS)]) + "\n")
    _verify_records(keys)
    return out.getvalue()


def floor(database_url: str, wallet_dir: Path, workers: int) -> dict[str, float]:
    names = sorted(os.listdir(wallet_dir))
    chunks = [(str(wallet_dir), names[i : i + 2000]) for i in range(0, len(names), 2000)]
    started = time.perf_counter()
    copy_s = 0.0
    with connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute("CREATE TABLE bench_floor (name text, fid text, address text, encrypted_private_key text,"
                     " iv text, chain text, created_at text)")
        with ProcessPoolExecutor(workers) as pool, conn.cursor() as cur:
            for text in pool.map(_floor_chunk, chunks):
                t0 = time.perf_counter()
                with cur.copy("COPY bench_floor FROM STDIN") as copy:
                    copy.write(text)
                copy_s += time.perf_counter() - t0
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
    return {"total": time.perf_counter() - started, "copy": copy_s}


def _verify_records(records: list[tuple[str, str, str]]) -> int:
    """Verified as the pipeline verifies a unit's keys (one AES call for them all): the floor does the
    least any loader must, with the same primitives (one call per key would make it 0.5 s slower at 100k)."""
    from migration_pipeline.core.keys import cipher_key, verify_wallet_keys

    return sum(verdict is None for verdict in verify_wallet_keys(records, cipher_key(SECRET)))


def floor_by_phases(database_url: str, wallet_dir: Path, workers: int) -> dict[str, float]:
    """The floor as the issue states it, phase after phase: read and parse every file (one process),
    COPY every field (one connection), then verify every key (`workers` processes)."""
    started = time.perf_counter()
    records = []
    for name in sorted(os.listdir(wallet_dir)):
        try:
            record = orjson.loads(read_whole(os.path.join(wallet_dir, name))[0].removeprefix(b"\xef\xbb\xbf"))
        except (orjson.JSONDecodeError, OSError):
            continue
        if isinstance(record, dict):
            records.append((name, record))
    read_parse = time.perf_counter() - started

    started = time.perf_counter()
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE bench_floor (name text, fid text, address text,"
                    " encrypted_private_key text, iv text, chain text, created_at text)")
        with cur.copy("COPY bench_floor FROM STDIN") as copy:
            copy.write("".join("\t".join([name, *(copy_field(r.get(f)) for f in FLOOR_FIELDS)]) + "\n"
                               for name, r in records))
    copy_s = time.perf_counter() - started

    started = time.perf_counter()
    keys = [(r["encryptedPrivateKey"], r["iv"], r["address"]) for _, r in records
            if r.get("encryptedPrivateKey") and isinstance(r.get("iv"), str) and isinstance(r.get("address"), str)]
    with ProcessPoolExecutor(workers) as pool:  # forked, like the pipelined floor's pool
        sum(pool.map(_verify_records, [keys[i : i + 2000] for i in range(0, len(keys), 2000)]))
    verify = time.perf_counter() - started
    return {"read_parse": read_parse, "copy": copy_s, "verify": verify, "total": read_parse + copy_s + verify}


def _in_child(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a child process: what a floor holds (2M file names, parsed records) must
    not stay in this process, whose resident memory is the pipeline's peak RSS."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    starts: dict[str, float] = {}
    durations: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            durations[event.step_key] = entry.timestamp - starts[event.step_key]
    return durations


def _stage_seconds(instance: Any) -> dict[str, float]:
    """The staged asset's own timings (discover, read_and_copy, finish_sql) from its materialization."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(["wallet", "staged", "wallets"]))
    materialization = event.asset_materialization if event else None
    seconds = materialization.metadata.get("seconds") if materialization else None
    return dict(seconds.value) if seconds is not None else {}


def _touch_wallets(wallet_dir: Path, count: int) -> int:
    """Change `count` ethereum wallets the way the legacy app would (a new createdAt); return how many."""
    import random

    names = sorted(n for n in os.listdir(wallet_dir) if n.endswith("_ethereum.json"))
    chosen = random.Random(1).sample(names, min(count, len(names)))
    for name in chosen:
        try:
            record = orjson.loads((wallet_dir / name).read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            record["createdAt"] = "2031-01-01T00:00:00.000Z"
            (wallet_dir / name).write_bytes(orjson.dumps(record))
    return len(chosen)


def metagauge_benchmark(server_url: str, users: int) -> list[tuple[str, float, str]]:
    """The metagauge store of `users` users (20 KB analysis results): the whole Dagster run, its stage
    and gates, as rows (phase, seconds, what was moved)."""
    from dagster import DagsterInstance

    from migration_pipeline.definitions import defs, job_name
    from migration_pipeline.stores.metagauge.generate import generate_metagauge_store

    root = Path(".bench") / f"metagauge-{users}"
    summary = generate_metagauge_store(root, users=users, seed=11)
    megabytes = sum(summary.files.values()) / 2**20
    url = ensure_database(server_url, "migration_bench_metagauge")
    try:
        os.environ.update({"DATABASE_URL": url, "MIGRATION_SOURCE_ROOT": str(root.resolve()),
                           "MIGRATION_REPORT_DIR": str((Path(".bench") / "reports").resolve())})
        # No RSS row: the generator ran in this process just before, so its peak would be counted.
        # Streaming memory is measured alone by test_metagauge.py::test_streaming_memory (VmHWM).
        with DagsterInstance.ephemeral() as instance:
            t0 = time.perf_counter()
            result = defs.resolve_job_def(job_name("metagauge")).execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            total = time.perf_counter() - t0
            steps = _step_seconds(instance, result.run_id)
    finally:
        drop_database(server_url, "migration_bench_metagauge")
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    rows = sum(summary.loaded.values())
    moved = f"{megabytes:.0f} MB, {rows} rows"
    return [
        ("metagauge: stage (stream 5 documents, normalize, COPY, SQL rules)", steps.get("metagauge__staged", 0.0), moved),
        ("metagauge: gates (10 GX suites, counts, checksums, report)", steps.get("metagauge_gates", 0.0), moved),
        (f"metagauge: whole Dagster run ({'succeeded' if result.success else 'FAILED'})", total, moved),
    ]


def run_benchmark(server_url: str, users: int, workers: int = 2, keep: bool = False, sync_changes: int = 0,
                  metagauge_users: int = 0) -> int:
    from dagster import DagsterInstance

    from migration_pipeline.definitions import defs, job_name
    from migration_pipeline.stores.wallet.generate import generate_wallet_store

    root = Path(".bench") / f"wallet-{users}"
    if not (root / "wallet").is_dir():
        t0 = time.perf_counter()
        # In a child process, so that the generator's memory is not counted in the pipeline's peak RSS.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(generate_wallet_store, root, users=users, secret=SECRET, seed=11).result()
        print(f"generated {2 * users} wallet files in {time.perf_counter() - t0:.1f} s under {root}")
    # Counted, not listed: 2M names held here would be freed memory the pipeline's RSS is then measured on top of.
    with os.scandir(root / "wallet" / "storage" / "wallets") as entries:
        files = sum(1 for _ in entries)
    url = ensure_database(server_url, "migration_bench")
    try:
        with connect(url) as conn:
            from migration_pipeline.core.schema import apply_migrations

            apply_migrations(conn)
        # Both loaders read the same files: warm the page cache first so neither pays the disk for the other.
        warm_started = time.perf_counter()
        for entry in os.scandir(root / "wallet" / "storage" / "wallets"):
            with open(entry.path, "rb") as handle:
                handle.read()
        warm = time.perf_counter() - warm_started
        floor_times = _in_child(floor, url, root / "wallet" / "storage" / "wallets", workers)
        os.environ.update({"DATABASE_URL": url, "MIGRATION_SOURCE_ROOT": str(root.resolve()),
                           "ENCRYPTION_SECRET": SECRET, "MIGRATION_WORKERS": str(workers),
                           "MIGRATION_REPORT_DIR": str((Path(".bench") / "reports").resolve())})
        job = defs.resolve_job_def(job_name("wallet"))
        with PeakRss() as rss, DagsterInstance.ephemeral() as instance:
            t0 = time.perf_counter()
            result = job.execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            total = time.perf_counter() - t0
            steps = _step_seconds(instance, result.run_id)
            stage_parts = _stage_seconds(instance)
            sync_rows: list[tuple[str, float]] = []
            if sync_changes and result.success:
                touched = _touch_wallets(root / "wallet" / "storage" / "wallets", sync_changes)
                t0 = time.perf_counter()
                synced = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                    "ops": {"wallet__staged": {"config": {"incremental": True}}}})
                sync_total = time.perf_counter() - t0
                sync_steps = _step_seconds(instance, synced.run_id)
                sync_parts = _stage_seconds(instance)
                sync_rows = [
                    (f"sync: stage ({touched} changed files read, the rest carried)", sync_steps.get("wallet__staged", 0.0)),
                    ("  of which carry the unchanged rows and bookkeeping (SQL)", sync_parts.get("carry", 0.0)),
                    ("  of which read+parse+verify+COPY the changed files", sync_parts.get("read_and_copy", 0.0)),
                    ("  of which SQL: finish a complete new version", sync_parts.get("finish_sql", 0.0)),
                    ("sync: gates", sync_steps.get("wallet_gates", 0.0)),
                    (f"sync: whole Dagster run ({'succeeded' if synced.success else 'FAILED'})", sync_total),
                ]
        # Measured again after the run: this machine's speed drifts, and the ratio uses the faster floor.
        floor_after = _in_child(floor, url, root / "wallet" / "storage" / "wallets", workers)
        phases = _in_child(floor_by_phases, url, root / "wallet" / "storage" / "wallets", workers)
    finally:
        drop_database(server_url, "migration_bench")
    floor_best = min(floor_times["total"], floor_after["total"])
    rows = [
        ("page-cache warm-up (read every file once, not counted)", warm),
        (f"floor: read+parse+verify+COPY every field ({workers} procs), before the run", floor_times["total"]),
        ("floor: the same, after the run", floor_after["total"]),
        ("  of which COPY (parent)", floor_after["copy"]),
        ("floor as the issue states it, phase after phase:", phases["total"]),
        ("  read+parse every file (1 proc)", phases["read_parse"]),
        ("  COPY every field (1 connection)", phases["copy"]),
        (f"  verify every key ({workers} procs)", phases["verify"]),
        ("full: schema", steps.get("migration_schema", 0.0)),
        ("full: backup (zstd tar + SHA-256 manifest, verified; once per store)", steps.get("wallet__backup", 0.0)),
        ("full: stage (read, parse, verify, COPY, SQL rules, indexes)", steps.get("wallet__staged", 0.0)),
        ("  of which discover (list and sort the files)", stage_parts.get("discover", 0.0)),
        (f"  of which read+parse+verify+COPY ({workers} worker procs)", stage_parts.get("read_and_copy", 0.0)),
        ("  of which SQL: dedupe, CHECKs, derived tables, keys, indexes", stage_parts.get("finish_sql", 0.0)),
        ("    integrity rules and keys (1 transaction)", stage_parts.get("sql_integrity", 0.0)),
        ("    derived tables, indexes, VACUUM ANALYZE (2 connections)", stage_parts.get("sql_tables", 0.0)),
        ("    foreign keys (validated side by side)", stage_parts.get("sql_foreign_keys", 0.0)),
        ("full: gates (row counts, checksums, keys, GX suites, report)", steps.get("wallet_gates", 0.0)),
        ("full: promote (atomic swap)", steps.get("wallet__live", 0.0)),
        ("full: validation report", steps.get("wallet__validation_report", 0.0)),
        ("full: whole Dagster run", total),
        *sync_rows,
    ]
    print(f"\nwallet store: {users} users, {files} files, {workers} workers, run {'succeeded' if result.success else 'FAILED'}")
    print(f"{'phase':64} {'seconds':>8} {'files/s':>9}")
    for name, seconds in rows:
        print(f"{name:64} {seconds:8.2f} {files / seconds if seconds else 0:9.0f}")
    print(f"{'peak RSS of the pipeline (process + workers)':64} {rss.peak / 2**20:8.0f} MiB")
    without_backup = total - steps.get("wallet__backup", 0.0)
    print(f"{'ratio full run / faster floor':64} {total / floor_best:8.2f}")
    print(f"{'ratio full run without the one-time backup / faster floor':64} {without_backup / floor_best:8.2f}")
    print(f"{'ratio full run / floor as the issue states it':64} {total / phases['total']:8.2f}")
    print(f"{'ratio without the one-time backup / floor as the issue states it':64} {without_backup / phases['total']:8.2f}")
    if metagauge_users:
        print()
        for name, value, moved in metagauge_benchmark(server_url, metagauge_users):
            print(f"{name:64} {value:8.2f} {moved:>20}")
    if not keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if result.success else 1
