"""Stream a store into its staging schema: read units (in parallel where they are independent),
COPY each unit with its bookkeeping in one transaction, then finish the staged tables in SQL.

A crashed run leaves committed units behind; the next run with the same source fingerprint
resumes after them, so nothing is read twice into the staging tables and nothing is lost.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import multiprocessing
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.manifest import describe_file
from migration_pipeline.core.reconcile import file_counts
from migration_pipeline.core.rows import RowEncoder, copy_field
from migration_pipeline.core.spec import Batch, ManifestEntry, Quarantined, ReadContext, StoreSpec, TableSpec, Unit
from migration_pipeline.core.values import ColumnType, Unstorable, column_types, diagnose, fast_check

BOOKKEEPING = ("_source_file", "_locator", "_seq")


@dataclass
class StageSummary:
    store: str
    plan_id: str
    run_id: str
    resumed_units: int
    units: int
    files_mapped: int
    files_unmapped: int
    seen: dict[str, int] = field(default_factory=dict)
    staged: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    in_scope: tuple[Unit, ...] = ()  # the units this call was asked to have loaded


def stage_store(
    database_url: str,
    spec: StoreSpec,
    source_root: Path,
    run_id: str,
    secret: str | None,
    workers: int = 2,
    partitions: Collection[str] | None = None,
    reuse_staged: bool = False,
) -> StageSummary:
    """Load `spec`'s store under `source_root` into `<store>__staging`, resuming a crashed attempt.

    A unit committed by an earlier attempt is kept only if its files still hash to what was read then;
    a changed unit is loaded again. With `reuse_staged`, a finished staging of the same source whose gates
    never completed (the run died during them) is kept as it is. With `partitions`, only the units of those
    partitions are loaded and the staging is left open (status `loading`) for the others; without,
    every missing unit is loaded and the staging finished.
    """
    store_dir = source_root / spec.folder
    timings: dict[str, float] = {}
    with loader_pool(database_url, spec, workers) as pool:  # its workers start while the store is listed
        started = time.perf_counter()
        discovery = spec.discover(store_dir)
        timings["discover"] = time.perf_counter() - started

        started = time.perf_counter()
        with connect(database_url) as conn:
            plan = _begin_plan(conn, spec, plan_fingerprint(discovery.fingerprint, secret), len(discovery.units),
                               run_id, reuse_staged and partitions is None)
            if plan.resumed:
                changed = changed_units(conn, spec.name, plan.plan_id, store_dir, plan.done)
                if changed and plan.status == "loading":
                    discard_units(conn, spec, plan.plan_id, changed)
                    plan.done -= changed
                elif changed:  # its loaded tables were already transformed: only a new plan is exact
                    plan = _new_plan(conn, spec, plan.fingerprint, len(discovery.units), run_id)
            if not plan.resumed:  # a resumed plan's unmapped files were recorded with it, before any unit
                _record_unmapped(conn, spec, plan.plan_id, store_dir, discovery.unmapped)
            conn.commit()
        timings["resume_check"] = time.perf_counter() - started

        started = time.perf_counter()
        todo = [u for u in discovery.units
                if u.number not in plan.done and (partitions is None or u.partition in partitions)]
        load_units(database_url, spec, plan.plan_id, run_id, todo, ReadContext(store_dir=store_dir, secret=secret),
                   pool, workers)
        timings["read_and_copy"] = time.perf_counter() - started

    started = time.perf_counter()
    if partitions is None and plan.status != "staged":
        timings.update(finish_staging(database_url, spec, plan.plan_id, run_id, workers))
    with connect(database_url) as conn:
        summary = summarize(conn, spec, plan.plan_id, run_id)
    timings["finish_sql"] = time.perf_counter() - started  # the three steps and the summary's counts
    in_scope = tuple(u for u in discovery.units if partitions is None or u.partition in partitions)
    summary.in_scope = in_scope
    summary.resumed_units = sum(1 for u in in_scope if u.number in plan.done)
    summary.seconds = timings
    return summary


# Bumped whenever what a unit stages changes, so that no plan of an older version is ever resumed.
PLAN_FORMAT = "2"


def plan_fingerprint(source_fingerprint: str, secret: str | None) -> str:
    """What a plan may be resumed under: the store's listing, the plan format and the secret the keys were
    verified with (as an HMAC, which says nothing of the secret that the stored ciphertexts do not)."""
    digest = hashlib.sha256(f"{PLAN_FORMAT}\0{source_fingerprint}\0".encode())
    if secret is not None:
        digest.update(hmac.new(secret.encode("utf-8"), b"migration-pipeline plan", hashlib.sha256).digest())
    return digest.hexdigest()


@dataclass
class _Plan:
    plan_id: str
    fingerprint: str
    status: str            # loading, finishing or staged
    resumed: bool
    done: set[int] = field(default_factory=set)  # units already committed


def _begin_plan(
    conn: psycopg.Connection, spec: StoreSpec, fingerprint: str, units_total: int, run_id: str, reuse_staged: bool
) -> _Plan:
    """The plan this run loads: the store's open plan of the same fingerprint (or, with `reuse_staged`, its
    finished plan whose gates never completed), else a new one."""
    # Serialises runs that start a plan at the same moment (e.g. shard runs of one backfill).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('plan:' || %s))", (spec.name,))
    row = conn.execute(
        "SELECT plan_id, fingerprint, status FROM migration.staging WHERE store = %s FOR UPDATE", (spec.name,)
    ).fetchone()
    resumable = row is not None and row[1] == fingerprint and (
        row[2] in ("loading", "finishing") or (row[2] == "staged" and reuse_staged and not _gated(conn, spec, row[0])))
    if not resumable:
        return _new_plan(conn, spec, fingerprint, units_total, run_id)
    assert row is not None
    plan_id = row[0]
    done = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT unit_no FROM migration.unit_progress WHERE store = %s AND plan_id = %s",
            (spec.name, plan_id),
        )
    }
    # The run that resumes owns the plan now: its gates and its promotion (derived rows keep their loader's run id).
    conn.execute("UPDATE migration.staging SET run_id = %s WHERE store = %s", (run_id, spec.name))
    return _Plan(plan_id, fingerprint, row[2], True, done)


def _gated(conn: psycopg.Connection, spec: StoreSpec, plan_id: str) -> bool:
    """Whether the store's gates completed on this plan (they record every outcome at once, at their end)."""
    return conn.execute(
        "SELECT 1 FROM migration.check_results WHERE store = %s AND plan_id = %s"
        " AND check_name = 'row_count_reconciliation' LIMIT 1", (spec.name, plan_id)).fetchone() is not None


def _new_plan(conn: psycopg.Connection, spec: StoreSpec, fingerprint: str, units_total: int, run_id: str) -> _Plan:
    plan_id = uuid.uuid4().hex[:16]
    ddl.create_staging_tables(conn, spec, BOOKKEEPING)
    discard_unkept_bookkeeping(conn, spec)
    conn.execute(
        """INSERT INTO migration.staging (store, plan_id, fingerprint, status, run_id, units_total)
           VALUES (%s, %s, %s, 'loading', %s, %s)
           ON CONFLICT (store) DO UPDATE SET plan_id = EXCLUDED.plan_id, fingerprint = EXCLUDED.fingerprint,
             status = 'loading', run_id = EXCLUDED.run_id, units_total = EXCLUDED.units_total,
             started_at = now(), staged_at = NULL""",
        (spec.name, plan_id, fingerprint, run_id, units_total),
    )
    return _Plan(plan_id, fingerprint, "loading", False)


def changed_units(
    conn: psycopg.Connection, store: str, plan_id: str, store_dir: Path, units: Collection[int], threads: int = 4
) -> set[int]:
    """The units among `units` whose files no longer hash (SHA-256, size) to what their load read. The
    names alone prove nothing: a store replaced by another version keeps its names."""
    recorded = conn.execute(
        "SELECT unit_no, path, size_bytes, sha256 FROM migration.source_manifest"
        " WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)", (store, plan_id, list(units))).fetchall()
    changed: set[int] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="rehash") as pool:
        for start in range(0, len(recorded), 4096):  # a slice at a time: no future per file of millions at once
            part = recorded[start : start + 4096]
            now = pool.map(lambda r: describe_file(store_dir, r[1], mapped=True), part)
            changed.update(r[0] for r, entry in zip(part, now, strict=True) if (entry.size_bytes, entry.sha256) != r[2:])
    # A unit that recorded no file at all cannot be proven unchanged.
    changed |= set(units) - {r[0] for r in recorded}
    return changed


def discard_units(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, units: Collection[int]) -> None:
    """Remove everything the given committed units of an open plan wrote, so that they load again."""
    numbers = list(units)
    paths = [r[0] for r in conn.execute(
        "SELECT path FROM migration.source_manifest WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)",
        (spec.name, plan_id, numbers))]
    for table in (t for t in spec.tables if t.loaded):
        conn.execute(sql.SQL("DELETE FROM {} WHERE _source_file = ANY(%s)").format(
            ddl.qualified(spec.staging_schema, table.name)), (paths,))
    conn.execute("DELETE FROM migration.flagged_records WHERE store = %s AND plan_id = %s AND source_file = ANY(%s)",
                 (spec.name, plan_id, paths))
    for bookkeeping in ("quarantine", "source_manifest", "unit_progress", "unmapped_fields"):
        conn.execute(sql.SQL("DELETE FROM migration.{} WHERE store = %s AND plan_id = %s AND unit_no = ANY(%s)").format(
            sql.Identifier(bookkeeping)), (spec.name, plan_id, numbers))


def discard_unkept_bookkeeping(conn: psycopg.Connection, spec: StoreSpec) -> None:
    """A new plan starts: drop the progress, manifest and flags of every plan but the live one."""
    for table in ("unit_progress", "source_manifest", "flagged_records", "unmapped_fields"):
        conn.execute(
            sql.SQL("DELETE FROM migration.{} WHERE store = %s AND plan_id <> ALL(%s)").format(sql.Identifier(table)),
            (spec.name, _kept_plans(conn, spec.name)),
        )


def _kept_plans(conn: psycopg.Connection, store: str) -> list[str]:
    """Plans whose bookkeeping is still needed: the live version's (for its report and rollback)."""
    rows = conn.execute("SELECT plan_id FROM migration.store_phase WHERE store = %s AND plan_id IS NOT NULL", (store,))
    return [r[0] for r in rows]


def _record_unmapped(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, store_dir: Path, unmapped: Iterable[str]
) -> None:
    entries = [describe_file(store_dir, rel, mapped=False) for rel in unmapped]
    _copy_manifest(conn.cursor(), spec.name, plan_id, entries)


def _copy_manifest(
    cur: psycopg.Cursor, store: str, plan_id: str, entries: Iterable[ManifestEntry], unit_no: int | None = None
) -> None:
    # Formatted here rather than by write_row: this runs once per source file, millions of times.
    suffix = f"\t{copy_field(unit_no)}\n"
    prefix = f"{copy_field(store)}\t{copy_field(plan_id)}\t"
    text = "".join(
        f"{prefix}{copy_field(e.path)}\t{e.size_bytes}\t{copy_field(e.sha256)}\t"
        f"{'symlink' if e.link_target is not None else 'mapped' if e.mapped else 'unmapped'}\t{copy_field(e.mtime_ns)}"
        f"\t{copy_field(e.link_target)}{suffix}"
        for e in entries
    )
    with cur.copy(
        "COPY migration.source_manifest (store, plan_id, path, size_bytes, sha256, status, mtime_ns, link_target,"
        " unit_no)"
        " FROM STDIN"
    ) as copy:
        if text:
            copy.write(text)


# --- one unit -------------------------------------------------------------------------------------

_ENCODERS: dict[tuple[str, str], RowEncoder] = {}


def _encoder(spec: StoreSpec, table: TableSpec) -> RowEncoder:
    key = (spec.name, table.name)
    if key not in _ENCODERS:
        _ENCODERS[key] = RowEncoder(table.columns)
    return _ENCODERS[key]


def load_unit(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str, unit: Unit, context: ReadContext
) -> dict[str, int]:
    """Read one unit and commit its rows, quarantine, flags, manifest and progress atomically."""
    try:
        return _load_unit(conn, spec, plan_id, run_id, unit, context)
    except psycopg.Error as exc:
        # PostgreSQL quotes the offending value in its message (CONTEXT: COPY ..., column x: "..."), and that
        # value may be a key or a password hash: say what failed and where, never the value.
        raise MigrationError(
            f"{spec.name}: PostgreSQL refused unit {unit.number} ({type(exc).__name__}, SQLSTATE {exc.sqlstate}); "
            "the unit was rolled back and nothing else changed: fix the store's normalization, then re-run to resume"
        ) from None


def _load_unit(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str, unit: Unit, context: ReadContext
) -> dict[str, int]:
    seen: dict[str, int] = {t.name: 0 for t in spec.tables if t.loaded}
    emitted: dict[str, int] = dict.fromkeys(seen, 0)
    hash_sums: dict[str, int] = dict.fromkeys(seen, 0)
    counted: dict[str, int] = {}
    with conn.transaction():
        cur = conn.cursor()
        for batch in spec.read_unit(unit, context):
            for table_name, rows in batch.rows.items():
                table = spec.table(table_name)
                encoder = _encoder(spec, table)
                fits = _fit_check(conn, spec, table)
                buffer = io.StringIO()
                total = 0
                width = encoder.width
                refused = 0
                for row in rows:
                    values = row[:width]
                    try:
                        line, row_hash = encoder.encode(values, row[width:])
                        stored = fits.fast(values) and "\x00" not in line and (
                            not fits.has_json or "\\\\u0000" not in line or fits.diagnose(values) is None)
                    except (ValueError, TypeError, ArithmeticError, UnicodeError):
                        stored = False
                    if not stored:
                        problem = fits.diagnose(values) or Unstorable(
                            "invalid_value", "a value cannot be written for its column")
                        batch.quarantined.append(Quarantined(
                            table_name, str(row[width]), str(row[width + 1]), problem.reason, problem.message))
                        refused += 1
                        continue
                    total += row_hash
                    buffer.write(line)
                columns = [c.name for c in table.columns] + list(BOOKKEEPING)
                with cur.copy(
                    sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
                        sql.Identifier(spec.staging_schema),
                        sql.Identifier(table_name),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                    )
                ) as copy:
                    copy.write(buffer.getvalue())
                emitted[table_name] += len(rows) - refused
                hash_sums[table_name] += total
            for table_name, count in batch.seen.items():
                seen[table_name] += count
            for table_name, count in batch.counted.items():
                counted[table_name] = counted.get(table_name, 0) + count
            _write_side_records(cur, spec.name, plan_id, run_id, unit.number, batch)
        with cur.copy(
            "COPY migration.unit_progress (store, plan_id, unit_no, table_name, records_seen, rows_emitted,"
            " row_hash_sum, run_id, records_counted) FROM STDIN"
        ) as copy:
            for table_name in seen:
                copy.write_row(
                    (spec.name, plan_id, unit.number, table_name, seen[table_name], emitted[table_name],
                     hash_sums[table_name], run_id, counted.get(table_name))
                )
    return seen


def _write_side_records(
    cur: psycopg.Cursor, store: str, plan_id: str, run_id: str, unit_no: int, batch: Batch
) -> None:
    if batch.quarantined:
        with cur.copy(
            "COPY migration.quarantine (store, plan_id, run_id, table_name, source_file, locator, reason, message,"
            " unit_no) FROM STDIN"
        ) as copy:
            for q in batch.quarantined:
                copy.write_row(
                    (store, plan_id, run_id, q.table, q.source_file, q.locator, q.reason, q.message, unit_no))
    if batch.flagged:
        with cur.copy(
            "COPY migration.flagged_records (store, plan_id, table_name, source_file, locator, reason, message)"
            " FROM STDIN"
        ) as copy:
            for f in batch.flagged:
                copy.write_row((store, plan_id, f.table, f.source_file, f.locator, f.reason, f.message))
    if batch.manifest:
        _copy_manifest(cur, store, plan_id, batch.manifest, unit_no)
    for (table, name), records in batch.unmapped_fields.items():
        cur.execute(
            """INSERT INTO migration.unmapped_fields (store, plan_id, unit_no, table_name, field, records)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (store, plan_id, unit_no, table_name, field)
               DO UPDATE SET records = migration.unmapped_fields.records + EXCLUDED.records""",
            (store, plan_id, unit_no, table, name, records))


@dataclass(frozen=True)
class _Fit:
    """A table's column types as the catalog has them, and the checks built from them."""

    types: list[ColumnType]
    fast: Callable[[Sequence[Any]], bool]
    has_json: bool

    def diagnose(self, values: Sequence[Any]) -> Unstorable | None:
        return diagnose(self.types, values)


_FITS: dict[tuple[str, str], _Fit] = {}


def _fit_check(conn: psycopg.Connection, spec: StoreSpec, table: TableSpec) -> _Fit:
    """Built once per table and process, from the staged table (whose columns are the live table's)."""
    key = (spec.staging_schema, table.name)
    if key not in _FITS:
        types = column_types(conn, spec.staging_schema, table.name, [c.name for c in table.columns])
        _FITS[key] = _Fit(types, fast_check(types), any(t.data_type == "jsonb" for t in types))
    return _FITS[key]


# --- the process pool -------------------------------------------------------------------------------


@contextmanager
def loader_pool(database_url: str, spec: StoreSpec, workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for a store whose units are independent (None for one worker or a sequential
    store). They are started at once, so that they import the store (~0.5 s with the start) while the
    caller does its own setup."""
    if not spec.parallel or workers < 2:
        yield None
        return
    # spawn: the parent may be a threaded Dagster process, where fork is unsafe.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(database_url, spec)) as pool:
        for _ in range(workers):
            pool.submit(int)  # a task that finds no idle worker starts one
        yield pool


def load_units(
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, units: list[Unit], context: ReadContext,
    pool: ProcessPoolExecutor | None, workers: int,
) -> None:
    """Load units in the pool when there is one and more than one unit, else one after another here."""
    if pool is not None and len(units) > 1:
        _load_parallel(pool, workers, plan_id, run_id, units, context)
    else:
        with connect(database_url) as conn:
            for unit in units:
                load_unit(conn, spec, plan_id, run_id, unit, context)

_WORKER_CONN: psycopg.Connection | None = None
_WORKER_URL: str | None = None
_WORKER_SPEC: StoreSpec | None = None


def _worker_init(database_url: str, spec: StoreSpec) -> None:
    # The spec arrives pickled (its functions by module and name), so the worker imports the store's module
    # here: a failure in a task is reported, one in the initializer would break the pool without saying why.
    global _WORKER_URL, _WORKER_SPEC
    _WORKER_URL = database_url
    _WORKER_SPEC = spec


def _worker_load(plan_id: str, run_id: str, unit: Unit, context: ReadContext) -> int:
    global _WORKER_CONN
    assert _WORKER_URL is not None and _WORKER_SPEC is not None
    if _WORKER_CONN is None or _WORKER_CONN.closed:
        _WORKER_CONN = connect(_WORKER_URL)
    load_unit(_WORKER_CONN, _WORKER_SPEC, plan_id, run_id, unit, context)
    return unit.number


def _load_parallel(pool: ProcessPoolExecutor, workers: int, plan_id: str, run_id: str,
                   units: list[Unit], context: ReadContext) -> None:
    pending: set[Future[int]] = set()
    for unit in units:
        pending.add(pool.submit(_worker_load, plan_id, run_id, unit, context))
        if len(pending) >= workers * 3:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
    for f in pending:
        f.result()


# --- finishing in SQL ----------------------------------------------------------------------------------


def finish_staging(
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, workers: int = 2
) -> dict[str, float]:
    """Finish the loaded staging in SQL, in three steps, each of which can run again after a crash;
    return the seconds of each (`sql_integrity`, `sql_tables`, `sql_foreign_keys`):

    1. one transaction: the integrity rules on the loaded tables (dedupe, CHECKs, orphans; what fails
       goes to the quarantine), their keys, their bookkeeping columns dropped; status `finishing`;
    2. on `workers` connections: each derived table filled from the loaded ones, and every table's
       indexes, triggers, identity and statistics built;
    3. the foreign keys, added NOT VALID, then validated on `workers` connections; status `staged`.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with connect(database_url) as conn:
        status = conn.execute("SELECT status FROM migration.staging WHERE store = %s", (spec.name,)).fetchone()
        if status == ("loading",):
            _apply_integrity_rules(conn, spec, plan_id, run_id)
            conn.execute("UPDATE migration.staging SET status = 'finishing' WHERE store = %s", (spec.name,))
        else:  # resumed: the derived tables are filled again, which their referencing keys would forbid
            ddl.drop_foreign_keys(conn, spec.staging_schema)
        conn.commit()
    seconds["sql_integrity"] = time.perf_counter() - started
    started = time.perf_counter()
    # Loaded tables first: theirs are the longest chains (the largest indexes), and start at once.
    chains = sorted(spec.tables, key=lambda t: not t.loaded)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="finish") as pool:
        for done in [pool.submit(_finish_table, database_url, spec, table, run_id) for table in chains]:
            done.result()
        seconds["sql_tables"] = time.perf_counter() - started
        started = time.perf_counter()
        with connect(database_url) as conn:
            to_validate = ddl.add_foreign_keys(conn, spec)
            conn.commit()
        for done in [pool.submit(_validate, database_url, spec.staging_schema, table, name)
                     for table, name in to_validate]:
            done.result()
    with connect(database_url) as conn:
        conn.execute(
            """UPDATE migration.staging SET status = 'staged', staged_at = now(), run_id = %s,
                 (files_mapped, files_unmapped) = (
                   SELECT count(*) FILTER (WHERE status = 'mapped'), count(*) FILTER (WHERE status <> 'mapped')
                   FROM migration.source_manifest WHERE store = %s AND plan_id = %s)
               WHERE store = %s""",
            (run_id, spec.name, plan_id, spec.name),
        )
        conn.commit()
    seconds["sql_foreign_keys"] = time.perf_counter() - started
    return seconds


def _apply_integrity_rules(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str) -> None:
    staging = spec.staging_schema
    for statement in spec.post_load_sql:
        conn.execute(sql.SQL(statement).format(schema=sql.Identifier(staging)))
    loaded = [t for t in spec.tables if t.loaded]
    for position, table in enumerate(loaded):
        enforced = ddl.enforce_unique_keys(conn, spec, table)
        ddl.quarantine_duplicates(conn, spec, table, plan_id, run_id, enforced)
        ddl.add_missing_constraints(conn, spec, table.name, "pu")  # the keys that had duplicates
        ddl.quarantine_check_violations(conn, spec, table, plan_id, run_id)
        ddl.resolve_orphans(conn, spec, table, plan_id, run_id, earlier={t.name for t in loaded[:position]})
    # A flagged record that was then moved to the quarantine (e.g. a later duplicate) is not loaded: its
    # flag must not block promotion nor be counted against the staged rows.
    conn.execute(
        """DELETE FROM migration.flagged_records f USING migration.quarantine q
           WHERE f.store = %s AND f.plan_id = %s AND q.store = f.store AND q.plan_id = f.plan_id
             AND q.table_name = f.table_name AND q.source_file = f.source_file AND q.locator = f.locator""",
        (spec.name, plan_id),
    )
    # Dropped here, under this transaction's lock: in step 2 no statement on a loaded table may block the
    # derived tables that read it.
    for table in loaded:
        ddl.drop_bookkeeping(conn, spec, table.name, BOOKKEEPING)


def _validate(database_url: str, schema: str, table: str, constraint: str) -> None:
    with connect(database_url) as conn:
        ddl.validate_constraint(conn, schema, table, constraint)
        conn.commit()


def _finish_table(database_url: str, spec: StoreSpec, table: TableSpec, run_id: str) -> None:
    with connect(database_url) as conn:
        if not table.loaded:
            # Derived from loaded tables only (never from another derived table): the chains run side by side.
            assert table.derive_sql is not None
            staged = ddl.qualified(spec.staging_schema, table.name)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(staged))  # a repeated finish starts over
            conn.execute(sql.SQL(table.derive_sql).format(schema=sql.Identifier(spec.staging_schema),
                                                          run_id=sql.Literal(run_id)))
        ddl.finish_staged_table(conn, spec, table.name, BOOKKEEPING)
        conn.commit()
        conn.autocommit = True  # VACUUM runs outside a transaction
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ddl.qualified(spec.staging_schema, table.name)))


def summarize(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str) -> StageSummary:
    """Counts of the current plan, read back from the database."""
    seen: dict[str, int] = dict(conn.execute(
        "SELECT table_name, sum(records_seen)::bigint FROM migration.unit_progress"
        " WHERE store = %s AND plan_id = %s GROUP BY 1", (spec.name, plan_id)).fetchall())
    quarantined: dict[str, int] = dict(conn.execute(
        "SELECT reason, count(*) FROM migration.quarantine WHERE store = %s AND plan_id = %s GROUP BY 1",
        (spec.name, plan_id)).fetchall())
    mapped, unmapped = file_counts(conn, spec.name, plan_id)
    staged = {
        t.name: conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(spec.staging_schema), sql.Identifier(t.name))
        ).fetchone()[0]  # type: ignore[index]
        for t in spec.tables
    }
    flagged = conn.execute(
        "SELECT count(*) FROM migration.flagged_records WHERE store = %s AND plan_id = %s", (spec.name, plan_id)
    ).fetchone()[0]  # type: ignore[index]
    units = conn.execute("SELECT units_total FROM migration.staging WHERE store = %s", (spec.name,)).fetchone()[0]  # type: ignore[index]
    return StageSummary(
        store=spec.name, plan_id=plan_id, run_id=run_id, resumed_units=0, units=units,
        files_mapped=mapped, files_unmapped=unmapped,
        seen={k: int(v) for k, v in seen.items()}, staged=staged, quarantined=quarantined, flagged=flagged,
    )
