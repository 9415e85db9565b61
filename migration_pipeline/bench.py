"""`migration-pipeline bench`: the full migration of a generated wallet store against a plain floor.

The floor is what any loader must do at least: read and parse every file, COPY every field into an
unindexed table, and verify every key, on both cores. It is measured twice: pipelined (workers parse
and verify while the parent COPYs, the stricter reference) and phase after phase, as the issue states
its floor (read+parse, COPY, then verify on 2 cores). The full migration is the real Dagster job
(staging, SQL integrity rules, indexes, every gate, promotion, report).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psutil

from migration_pipeline.core.database import connect, drop_database, ensure_database
from migration_pipeline.core.errors import ConfigurationError
from migration_pipeline.core.manifest import read_whole
from migration_pipeline.core.rows import copy_field
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.workers import tune_gc_for_record_work

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
        with ProcessPoolExecutor(workers, initializer=tune_gc_for_record_work) as pool, conn.cursor() as cur:
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
    return {step: end - start for step, (start, end) in _step_spans(instance, run_id).items()}


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
            stage_parts = _staged_seconds(instance, "wallet")
            backup_seconds = _backup_seconds(instance, "wallet")
            sync_rows: list[tuple[str, float]] = []
            if sync_changes and result.success:
                touched = _touch_wallets(root / "wallet" / "storage" / "wallets", sync_changes)
                t0 = time.perf_counter()
                synced = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                    "ops": {"wallet__staged": {"config": {"incremental": True}}}})
                sync_total = time.perf_counter() - t0
                sync_steps = _step_seconds(instance, synced.run_id)
                sync_parts = _staged_seconds(instance, "wallet")
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
        ("full: stage (read, parse, verify, COPY, SQL rules, indexes; the backup beside it)",
         steps.get("wallet__staged", 0.0)),
        ("  of which the backup (zstd tar + SHA-256 manifest, verified; once per store)", backup_seconds or 0.0),
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
    print(f"{'ratio full run / faster floor':64} {total / floor_best:8.2f}")
    print(f"{'ratio full run / floor as the issue states it':64} {total / phases['total']:8.2f}")
    if metagauge_users:
        print()
        for name, value, moved in metagauge_benchmark(server_url, metagauge_users):
            print(f"{name:64} {value:8.2f} {moved:>20}")
    if not keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if result.success else 1


# --- `bench --store S`: any registered store against the generic floor ------------------------------------------
#
# The generic floor is what any loader of the same files must do at least: read every file, parse it (JSON as a
# whole, JSON Lines line by line, anything else is a document taken as bytes), and COPY one row per record (its
# JSON text) or per document (its bytes) into one table; two processes parse while the parent COPYs; then the
# table gets the unique index on each record's (file, locator) that the floor names ("COPY + unique index").
# A store adds what its own loader cannot skip in `migration_pipeline/stores/<store>/floor.py`: `LABEL` and
# `extra(records, secret) -> int`, run on each chunk's parsed records (the wallet verifies every key). A new
# store gets the generic floor for free.

JSON_SUFFIXES = (".json",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CHUNK_BYTES = 16 << 20   # files (or JSON Lines byte ranges) of about this much go to one worker task
CHUNK_FILES = 2000
BENCH_SEED = 11


@dataclass(frozen=True, slots=True)
class FloorExtra:
    """A store's own floor work on parsed records, declared in its folder's `floor.py`."""

    label: str
    run: Callable[[Sequence[tuple[str, Any]], str | None], int]


def floor_extra(spec: StoreSpec) -> FloorExtra | None:
    """The extra floor work `spec`'s store declares (its package's `floor` module), None for the generic floor."""
    package = spec.read_unit.__module__.rpartition(".")[0]
    if not package.startswith("migration_pipeline.stores.") or importlib.util.find_spec(package + ".floor") is None:
        return None
    module = importlib.import_module(package + ".floor")
    return FloorExtra(label=module.LABEL, run=module.extra)


def _records(value: Any) -> list[Any]:
    """The records of a parsed JSON document: an array's elements; an object of objects' values (descending
    through one-key envelopes such as `{"users": {...}}`); else the document itself."""
    while isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), (dict, list)):
        value = next(iter(value.values()))
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return list(value.values())
    return [value]


@dataclass(frozen=True, slots=True)
class FloorTask:
    """Whole files, or one byte range of one JSON Lines file (a line belongs to the range its first byte is in)."""

    files: tuple[str, ...]
    start: int = 0
    end: int = -1


@dataclass(slots=True)
class FloorPiece:
    text: str
    rows: int
    parse_errors: int
    extra_items: int
    extra_cpu: float


def _json_row(path: str, locator: int, record: Any) -> str:
    return f"{copy_field(path)}\t{locator}\t{copy_field(orjson.dumps(record).decode())}\t\\N\n"


def _floor_task(store_dir: str, task: FloorTask, extra: FloorExtra | None, secret: str | None) -> FloorPiece:
    out: list[str] = []
    parsed: list[tuple[str, Any]] = []
    errors = 0
    for path in task.files:
        full = os.path.join(store_dir, path)
        if path.endswith(JSONL_SUFFIXES):
            with open(full, "rb") as handle:
                position = task.start
                if position > 0:
                    handle.seek(position - 1)
                    if handle.read(1) != b"\n":
                        position += len(handle.readline())
                else:
                    handle.seek(0)
                number = 0
                while task.end < 0 or position < task.end:
                    line = handle.readline()
                    if not line:
                        break
                    position += len(line)
                    number += 1
                    if not line.strip():
                        continue
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        errors += 1
                        continue
                    parsed.append((path, record))
                    out.append(_json_row(path, position, record))
        elif path.endswith(JSON_SUFFIXES):
            try:
                document = orjson.loads(read_whole(full)[0].removeprefix(b"\xef\xbb\xbf"))
            except (orjson.JSONDecodeError, OSError):
                errors += 1
                continue
            for number, record in enumerate(_records(document)):
                parsed.append((path, record))
                out.append(_json_row(path, number, record))
        else:  # a document: its bytes, as bytea's hex input (COPY text doubles the backslash)
            data = read_whole(full)[0]
            out.append(f"{copy_field(path)}\t0\t\\N\t\\\\x{data.hex()}\n")
    items, cpu = 0, 0.0
    if extra is not None:
        started = time.process_time()
        items = extra.run(parsed, secret)
        cpu = time.process_time() - started
    return FloorPiece("".join(out), len(out), errors, items, cpu)


@dataclass(frozen=True, slots=True)
class SourceFiles:
    files: tuple[tuple[str, int], ...]   # (path relative to the store folder, bytes)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    @property
    def document_bytes(self) -> int:
        return sum(size for path, size in self.files if not path.endswith(JSON_SUFFIXES + JSONL_SUFFIXES))


@dataclass(frozen=True, slots=True)
class SourceSummary:
    files: int
    bytes: int
    document_bytes: int


def summarize_source(store_dir: Path, warm: bool) -> tuple[SourceSummary, float]:
    """The store's files counted (and, if `warm`, each read once into the page cache), with the seconds the
    reading took. Run in a child process: 2M names held by the bench's own process would count in the peak
    RSS of the run it measures."""
    files = source_files(store_dir)
    started = time.perf_counter()
    if warm:  # both loaders read the same files: neither pays the disk for the other
        for path, _ in files.files:
            with open(store_dir / path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
    return SourceSummary(len(files.files), files.bytes, files.document_bytes), time.perf_counter() - started


def source_files(store_dir: Path) -> SourceFiles:
    """Every regular file under the store folder (symbolic links are never followed, as the pipeline does)."""
    found: list[tuple[str, int]] = []
    for folder, dirs, names in os.walk(store_dir):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            stat = os.lstat(full)
            if not os.path.islink(full) and os.path.isfile(full):
                found.append((os.path.relpath(full, store_dir), stat.st_size))
    return SourceFiles(tuple(found))


def floor_tasks(files: SourceFiles) -> list[FloorTask]:
    tasks: list[FloorTask] = []
    batch: list[str] = []
    size = 0
    for path, bytes_ in files.files:
        if path.endswith(JSONL_SUFFIXES) and bytes_ > CHUNK_BYTES:
            tasks += [FloorTask((path,), start, min(start + CHUNK_BYTES, bytes_))
                      for start in range(0, bytes_, CHUNK_BYTES)]
            continue
        batch.append(path)
        size += bytes_
        if size >= CHUNK_BYTES or len(batch) >= CHUNK_FILES:
            tasks.append(FloorTask(tuple(batch)))
            batch, size = [], 0
    if batch:
        tasks.append(FloorTask(tuple(batch)))
    return tasks


@dataclass(slots=True)
class FloorResult:
    wall: float
    copy: float          # the parent's time in COPY (waiting on the server)
    index: float         # the unique index on (file, locator), built after the COPY
    rows: int
    parse_errors: int
    extra_items: int
    extra_cpu: float     # CPU seconds of the store's extra, summed over the workers


def generic_floor(database_url: str, store_dir: Path, workers: int, extra: FloorExtra | None,
                  secret: str | None) -> FloorResult:
    """The floor: `workers` processes read and parse (and run the store's extra) while this one COPYs every
    record into one table, then builds its unique index on (file, locator); at most 2 tasks per worker wait in
    memory. The files are listed first, not timed."""
    tasks = floor_tasks(source_files(store_dir))
    result = FloorResult(0.0, 0.0, 0.0, 0, 0, 0, 0.0)
    started = time.perf_counter()
    with connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute("CREATE TABLE bench_floor (file text, locator bigint, record text, content bytea)")
        with ProcessPoolExecutor(workers, initializer=tune_gc_for_record_work) as pool, conn.cursor() as cur:
            pending: list[Any] = []
            queue = iter(tasks)
            for task in queue:
                pending.append(pool.submit(_floor_task, str(store_dir), task, extra, secret))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                piece: FloorPiece = pending.pop(0).result()
                task_next = next(queue, None)
                if task_next is not None:
                    pending.append(pool.submit(_floor_task, str(store_dir), task_next, extra, secret))
                t0 = time.perf_counter()
                with cur.copy("COPY bench_floor FROM STDIN") as copy:
                    copy.write(piece.text)
                result.copy += time.perf_counter() - t0
                result.rows += piece.rows
                result.parse_errors += piece.parse_errors
                result.extra_items += piece.extra_items
                result.extra_cpu += piece.extra_cpu
        indexing = time.perf_counter()
        conn.execute("CREATE UNIQUE INDEX ON bench_floor (file, locator)")
        result.index = time.perf_counter() - indexing
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
    result.wall = time.perf_counter() - started
    return result


class Sampler:
    """Every 100 ms: the resident memory and CPU time of this process tree (or only its children), and the CPU
    time of every server backend connected to `database` (read from /proc: the server runs on this machine).
    A process that ended keeps the CPU time last seen (up to 100 ms of it is missed)."""

    def __init__(self, database_url: str | None, include_self: bool = True, every: float = 0.1) -> None:
        self.include_self = include_self
        self.every = every
        self.database_url = database_url
        self.peak_rss = 0
        self.samples: list[tuple[float, float, float]] = []  # (epoch seconds, client CPU, server CPU)
        self._client: dict[int, float] = {}
        self._server: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _backends(self, conn: Any, database: str) -> list[int]:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (database,)).fetchall()
        return [int(r[0]) for r in rows]

    def _run(self) -> None:
        me = psutil.Process()
        conn = None
        database = ""
        if self.database_url is not None:
            from psycopg.conninfo import conninfo_to_dict

            conn = connect(self.database_url, autocommit=True, application_name="bench-sampler")
            database = str(conninfo_to_dict(self.database_url).get("dbname") or "")
        try:
            while True:
                self._sample(me, conn, database)
                if self._stop.wait(self.every):
                    self._sample(me, conn, database)
                    return
        finally:
            if conn is not None:
                conn.close()

    def _sample(self, me: psutil.Process, conn: Any, database: str) -> None:
        processes = ([me] if self.include_self else []) + me.children(recursive=True)
        rss = 0
        for process in processes:
            try:
                times = process.cpu_times()
                rss += process.memory_info().rss
            except psutil.Error:
                continue
            self._client[process.pid] = times.user + times.system
        self.peak_rss = max(self.peak_rss, rss)
        if conn is not None:
            for pid in self._backends(conn, database):
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                self._server[pid] = times.user + times.system
        self.samples.append((time.time(), sum(self._client.values()), sum(self._server.values())))

    def cpu_between(self, start: float, end: float) -> tuple[float, float]:
        """(client, server) CPU seconds spent between two epoch times (from the samples nearest them)."""
        def at(moment: float) -> tuple[float, float]:
            before = [s for s in self.samples if s[0] <= moment]
            chosen = before[-1] if before else self.samples[0]
            return chosen[1], chosen[2]

        if not self.samples:
            return 0.0, 0.0
        (c0, s0), (c1, s1) = at(start), at(end)
        return c1 - c0, s1 - s0

    @property
    def cpu(self) -> tuple[float, float]:
        if not self.samples:
            return 0.0, 0.0
        return self.samples[-1][1] - self.samples[0][1], self.samples[-1][2] - self.samples[0][2]

    def __enter__(self) -> Sampler:
        self._thread.start()
        while not self.samples and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(slots=True)
class Measured:
    """One side of a phase: wall seconds, CPU seconds (client, server), rows moved, bytes moved."""

    wall: float
    cpu: tuple[float, float] | None = None
    rows: int | None = None


def _step_spans(instance: Any, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) of every step of the run that ended, from its event log."""
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            spans[event.step_key] = (starts[event.step_key], entry.timestamp)
    return spans


def _live_rows(database_url: str, spec: StoreSpec) -> dict[str, int]:
    from psycopg import sql

    with connect(database_url) as conn:
        out = {}
        for table in spec.tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(spec.schema, table.name))).fetchone()
            out[table.name] = int(row[0]) if row else 0
        return out


def _generate_store(spec: StoreSpec, root: Path, sizes: Mapping[str, int], secret: str) -> str:
    assert spec.generator is not None
    return spec.generator.run(root, sizes, BENCH_SEED, secret)


def bench_root(spec: StoreSpec, sizes: Mapping[str, int]) -> Path:
    return Path(".bench") / "-".join([spec.name, *(f"{k}{v}" for k, v in sizes.items())])


def generator_sizes(spec: StoreSpec, given: Mapping[str, int | None]) -> dict[str, int]:
    """The sizes `spec`'s generator takes: each given value, else the option's default; a required option
    that is missing raises ValueError naming it."""
    if spec.generator is None:
        raise ValueError(f"store {spec.name} declares no generator: it cannot be benchmarked")
    sizes = {}
    for name, (_text, default) in spec.generator.options.items():
        value = given.get(name)
        if value is None:
            value = default
        if value is None:
            raise ValueError(f"bench --store {spec.name} needs --{name.replace('_', '-')}")
        sizes[name] = int(value)
    return sizes


PHASE_HEADERS = ("phase", "floor s", "full s", "ratio", "floor CPU s", "full CPU s", "CPU ratio",
                 "floor rows/s", "full rows/s", "floor MB/s", "full MB/s")


def _ratio(full: float | None, floor: float | None) -> str:
    return f"{full / floor:.2f}" if full is not None and floor else ""


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else ""


def _per_second(amount: float | None, seconds: float | None, scale: float = 1.0) -> str:
    return f"{amount / scale / seconds:,.0f}" if amount and seconds else ""


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_cache() -> None:
    """Write dirty pages back, then drop the kernel's page cache, dentries and inodes: the next reads of the
    store (and of the database's files) go to the disk."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError as exc:
        raise ConfigurationError(
            f"--cold-cache cannot drop the page cache ({DROP_CACHES}: {exc.strerror or exc}): it takes root on "
            "Linux; run the bench as root, or without --cold-cache") from None


def _disk_read_bytes() -> int:
    counters = psutil.disk_io_counters()
    return int(counters.read_bytes) if counters is not None else 0


def store_benchmark(server_url: str, spec: StoreSpec, sizes: Mapping[str, int], workers: int = 2,
                    keep: bool = False, dump: bool = True, out: Callable[[str], None] = print,
                    cold_cache: bool = False) -> int:
    """Generate `spec`'s store at `sizes` (or reuse `.bench/<store>-<sizes>`), measure the floor before and
    after the full Dagster run on the same files, and print the phases with their ratios; 0 if the run
    succeeded (and the dump restored equal). Warm: the page cache holds the store before each side is
    measured; `cold_cache`: it is dropped before each side, which then reads the store from the disk."""
    import shutil
    import tempfile

    from dagster import DagsterInstance
    from tabulate import tabulate

    from migration_pipeline.definitions import defs, job_name

    root = bench_root(spec, sizes)
    store_dir = root / spec.folder
    if not store_dir.is_dir():
        t0 = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            said = pool.submit(_generate_store, spec, root, dict(sizes), SECRET).result()
        out(f"generated in {time.perf_counter() - t0:.1f} s: {said}")
    extra = floor_extra(spec)
    database = f"migration_bench_{spec.name}_{os.getpid()}"
    url = ensure_database(server_url, database)
    dumps = Path(tempfile.mkdtemp(prefix=f"bench-{spec.name}-dump-", dir=root))
    try:
        with connect(url) as conn:
            from migration_pipeline.core.schema import apply_migrations

            apply_migrations(conn)
        files, warm = _in_child(summarize_source, store_dir, not cold_cache)
        disk_read: dict[str, int] = {}  # bytes read from the disk while each side ran

        def cold_start() -> int:
            if cold_cache:
                drop_page_cache()
            return _disk_read_bytes()

        def measure_floor() -> tuple[FloorResult, Sampler]:
            before = cold_start()
            with Sampler(url, include_self=False) as sampled:
                result = _in_child(generic_floor, url, store_dir, workers, extra, SECRET)
            disk_read.setdefault("floor", _disk_read_bytes() - before)
            return result, sampled

        floors = [measure_floor()]
        out(f"floor before the run: {floors[0][0].wall:.2f} s, CPU {sum(floors[0][1].cpu):.2f} s, "
            f"{floors[0][0].rows:,} rows")
        os.environ.update({"DATABASE_URL": url, "MIGRATION_SOURCE_ROOT": str(root.resolve()),
                           "ENCRYPTION_SECRET": SECRET, "MIGRATION_WORKERS": str(workers),
                           "MIGRATION_REPORT_DIR": str((root / "reports").resolve())})
        job = defs.resolve_job_def(job_name(spec.name))
        before = cold_start()
        with Sampler(url) as sampled, DagsterInstance.ephemeral() as instance:
            t0 = time.perf_counter()
            result = job.execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            total = time.perf_counter() - t0
            disk_read["full"] = _disk_read_bytes() - before
            spans = _step_spans(instance, result.run_id)
            stage_parts = _staged_seconds(instance, spec)
            backup_seconds = _backup_seconds(instance, spec)
        full_sampler = sampled
        rows = _live_rows(url, spec) if result.success else {}
        floors.append(measure_floor())
        dump_rows: list[list[str]] = []
        restored_equal = True
        if dump and result.success:
            dump_rows, restored_equal = _dump_and_restore(url, spec, dumps, sum(rows.values()))
    finally:
        drop_database(server_url, database)
        shutil.rmtree(dumps, ignore_errors=True)

    floor, floor_sampler = min(floors, key=lambda f: f[0].wall)
    floor_cpu = sum(floor_sampler.cpu)
    loaded = sum(rows.values())

    def step(suffix: str) -> tuple[float, float] | None:
        return next((span for key, span in spans.items() if key.endswith(suffix)), None)

    def full_row(label: str, spans_: list[tuple[float, float] | None], floor_side: bool, moved: int | None,
                 moved_bytes: int | None, wall_measured: float | None = None) -> list[str]:
        present = [s for s in spans_ if s is not None]
        wall = wall_measured if wall_measured is not None else sum(e - s for s, e in present) if present else None
        cpu = sum(sum(full_sampler.cpu_between(s, e)) for s, e in present) if present else None
        return [label,
                _seconds(floor.wall) if floor_side else "", _seconds(wall),
                _ratio(wall, floor.wall) if floor_side else "",
                _seconds(floor_cpu) if floor_side else "", _seconds(cpu),
                _ratio(cpu, floor_cpu) if floor_side else "",
                _per_second(floor.rows, floor.wall) if floor_side else "",
                _per_second(moved, wall), _per_second(files.bytes, floor.wall, 1e6) if floor_side else "",
                _per_second(moved_bytes, wall, 1e6)]

    staged, gates = step("__staged"), step("_gates")
    live, report, schema = step("__live"), step("__validation_report"), step("migration_schema")
    whole_span = (min(s for s, _ in spans.values()), max(e for _, e in spans.values())) if spans else None
    total_cpu = sum(full_sampler.cpu)
    table = [
        ["floor: read + parse + COPY every record/document (" + str(workers) + " procs + parent) + unique index"
         + (f" + {extra.label}" if extra else ""),
         _seconds(floor.wall), "", "", _seconds(floor_cpu), "", "", _per_second(floor.rows, floor.wall), "",
         _per_second(files.bytes, floor.wall, 1e6), ""],
        ["  floor, both measurements (before / after the run)",
         " / ".join(_seconds(f.wall) for f, _ in floors)] + [""] * 9,
        ["  of which COPY (the parent waiting on the server)", _seconds(floor.copy)] + [""] * 9,
        ["  of which the unique index on (file, locator), after the COPY", _seconds(floor.index)] + [""] * 9,
        *([[f"  of which {extra.label} (CPU in the workers; {floor.extra_items} items)", "", "", "",
            _seconds(floor.extra_cpu)] + [""] * 6] if extra else []),
        full_row("full: schema", [schema], False, None, None),
        full_row("full: stage (read, parse, validate, COPY, SQL rules, indexes; the backup beside it)", [staged],
                 True, loaded, files.bytes),
        ["  of which read + parse + COPY (the floor's work)", _seconds(floor.wall),
         _seconds(stage_parts.get("read_and_copy")), _ratio(stage_parts.get("read_and_copy"), floor.wall),
         "", "", "", "", _per_second(loaded, stage_parts.get("read_and_copy")),
         _per_second(files.bytes, floor.wall, 1e6), _per_second(files.bytes, stage_parts.get("read_and_copy"), 1e6)],
        ["  of which SQL: rules, keys, derived tables, indexes", "", _seconds(stage_parts.get("finish_sql"))]
        + [""] * 8,
        ["  of which the backup, written beside the load (once per store)", "", _seconds(backup_seconds)]
        + [""] * 7 + [_per_second(files.bytes, backup_seconds, 1e6)],
        full_row("full: gates", [gates], False, None, None),
        full_row("full: promote + validation report", [live, report], False, None, None),
        full_row(f"full: whole Dagster run ({'succeeded' if result.success else 'FAILED'})", [whole_span], True,
                 loaded, files.bytes, wall_measured=total),
        ["peak RSS MiB (processes + workers; server not counted)", f"{floor_sampler.peak_rss / 2**20:.0f}",
         f"{full_sampler.peak_rss / 2**20:.0f}", _ratio(full_sampler.peak_rss, floor_sampler.peak_rss)]
        + [""] * 7,
        *dump_rows,
    ]
    out(f"\n{spec.name} store: {', '.join(f'{k}={v}' for k, v in sizes.items())}; {files.files} files, "
        f"{files.bytes / 1e6:,.0f} MB ({files.document_bytes / 1e6:,.0f} MB of documents); "
        f"{loaded:,} rows loaded, {floor.rows:,} floor rows ({floor.parse_errors} unparsable); {workers} workers;"
        + (" page cache dropped before each side (cold)" if cold_cache else
           f" page cache warmed in {warm:.1f} s (not counted)")
        + f"; read from the disk: floor {disk_read.get('floor', 0) / 1e6:,.0f} MB, full run "
          f"{disk_read.get('full', 0) / 1e6:,.0f} MB")
    if (unwarmed := not_warm(cold_cache, files.bytes, disk_read.get("floor", 0))) is not None:
        out(unwarmed)
    out("CPU = client processes + the server backends of the bench database, sampled every 100 ms")
    out(tabulate(table, headers=PHASE_HEADERS, tablefmt="github", disable_numparse=True))
    if files.document_bytes > files.bytes // 100:
        staged_wall = staged[1] - staged[0] if staged else None
        out(f"documents: {files.document_bytes / 1e6:,.0f} MB; floor {_per_second(files.document_bytes, floor.wall, 1e6)}"
            f" MB/s, full stage {_per_second(files.document_bytes, staged_wall, 1e6)} MB/s, whole run "
            f"{_per_second(files.document_bytes, total, 1e6)} MB/s")
    out(f"ratio full run / floor: {total / floor.wall:.2f}; CPU {total_cpu / floor_cpu:.2f}"
        if floor.wall and floor_cpu else "")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if result.success and restored_equal else 1


def not_warm(cold_cache: bool, store_bytes: int, floor_read: int) -> str | None:
    """A warning when a warm bench was not warm: the floor read more than a tenth of the store's bytes from the disk
    although the page cache had been warmed (the store does not stay in this machine's memory beside the server's
    writes), so its ratio is not comparable with warm runs. None otherwise, and for a cold bench."""
    if cold_cache or floor_read <= store_bytes // 10:
        return None
    return (f"warning: not a warm measurement: the floor read {floor_read / 1e6:,.0f} MB from the disk after the page "
            f"cache was warmed with the store's {store_bytes / 1e6:,.0f} MB (it does not stay in memory here); "
            "compare its ratio with runs that read as much, or run with --cold-cache")


def _dump_and_restore(url: str, spec: StoreSpec, dumps: Path, rows: int) -> tuple[list[list[str]], bool]:
    """Rows timing `dump` and `restore-check` of the live schema (core.dump); a failure is a row, not a crash."""
    from migration_pipeline.core.dump import dump_store, restore_check
    from migration_pipeline.core.errors import MigrationError

    blank = [""] * 5
    t0 = time.perf_counter()
    try:
        made = dump_store(url, spec, dumps)
    except MigrationError as exc:
        return [[f"dump FAILED: {exc}", "", _seconds(time.perf_counter() - t0), *blank, "", "", ""]], False
    dump_s = time.perf_counter() - t0
    out = [["dump (pg_dump -Fc of the live schema + SHA-256)", "", _seconds(dump_s), *blank,
            _per_second(rows, dump_s), "", _per_second(made.bytes, dump_s, 1e6)]]
    t0 = time.perf_counter()
    try:
        compared = restore_check(url, spec, made.path)
    except MigrationError as exc:
        out.append([f"restore-check FAILED: {exc}", "", _seconds(time.perf_counter() - t0), *blank, "", "", ""])
        return out, False
    restore_s = time.perf_counter() - t0
    equal = all(c.equal for c in compared)
    out.append([f"restore-check (pg_restore, {len(compared)} tables compared: {'equal' if equal else 'DIFFERENT'})",
                "", _seconds(restore_s), *blank, _per_second(rows, restore_s), "", ""])
    return out, equal


def _backup_seconds(instance: Any, spec: StoreSpec | str) -> float | None:
    """How long the run's backup took (beside the load), from its materialization; None when it kept an older one."""
    from migration_pipeline.stores.factory import backup_key
    from migration_pipeline.stores.registry import get_store

    event = instance.get_latest_materialization_event(backup_key(get_store(spec) if isinstance(spec, str) else spec))
    seconds = event.asset_materialization.metadata.get("seconds") if event and event.asset_materialization else None
    return float(seconds.value) if seconds is not None else None


def _staged_seconds(instance: Any, spec: StoreSpec | str) -> dict[str, float]:
    """The staged step's own timings (discover, read_and_copy, finish_sql) from its materialization."""
    from migration_pipeline.stores.factory import stage_seconds
    from migration_pipeline.stores.registry import get_store

    return stage_seconds(instance, get_store(spec) if isinstance(spec, str) else spec) or {}
