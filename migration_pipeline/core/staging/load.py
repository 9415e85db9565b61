"""Step 2 of staging: read units and COPY each, with everything it recorded (progress, manifest, quarantine,
flags, unmapped fields, notes), in one transaction: a committed unit is whole, a crashed one left nothing.
Independent units are read in a pool of worker processes."""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping import units
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.rows import RowEncoder
from migration_pipeline.core.spec import Batch, Quarantined, ReadContext, StoreSpec, TableSpec, Unit
from migration_pipeline.core.staging.plan import BOOKKEEPING
from migration_pipeline.core.values import ColumnType, Unstorable, column_types, diagnose, fast_check
from migration_pipeline.core.workers import tune_gc_for_record_work

# (conn, spec, plan_id, run_id, unit, context) -> records seen per table
UnitLoader = Callable[[psycopg.Connection, StoreSpec, str, str, Unit, ReadContext], dict[str, int]]

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
    files = 0
    with conn.transaction():
        cur = conn.cursor()
        for batch in spec.read_unit(unit, context):
            for table_name, rows in batch.rows.items():
                copied, hash_sum = _copy_rows(conn, cur, spec, spec.table(table_name), rows, batch)
                emitted[table_name] += copied
                hash_sums[table_name] += hash_sum
            for table_name, count in batch.seen.items():
                seen[table_name] += count
            for table_name, count in batch.counted.items():
                counted[table_name] = counted.get(table_name, 0) + count
            _record_side_records(cur, spec.name, plan_id, run_id, unit.number, batch)
            files += len(batch.manifest)
        units.copy_unit_progress(cur, spec.name, plan_id, run_id, unit.number, seen, emitted, hash_sums, counted,
                                 files)
    return seen


def _copy_rows(conn: psycopg.Connection, cur: psycopg.Cursor, spec: StoreSpec, table: TableSpec,
               rows: list[tuple[Any, ...]], batch: Batch) -> tuple[int, int]:
    """COPY a batch's rows of one table; a row PostgreSQL would refuse goes to the batch's quarantine instead.
    Returns (rows copied, the sum of their hashes)."""
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
            problem = fits.diagnose(values) or Unstorable("invalid_value", "a value cannot be written for its column")
            batch.quarantined.append(Quarantined(
                table.name, str(row[width]), str(row[width + 1]), problem.reason, problem.message))
            refused += 1
            continue
        total += row_hash
        buffer.write(line)
    columns = [c.name for c in table.columns] + list(BOOKKEEPING)
    with cur.copy(
        sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(spec.staging_schema),
            sql.Identifier(table.name),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
    ) as copy:
        copy.write(buffer.getvalue())
    return len(rows) - refused, total


def _record_side_records(
    cur: psycopg.Cursor, store: str, plan_id: str, run_id: str, unit_no: int, batch: Batch
) -> None:
    if batch.quarantined:
        units.copy_quarantine(cur, store, plan_id, run_id, unit_no, batch.quarantined)
    if batch.flagged:
        units.copy_flags(cur, store, plan_id, batch.flagged)
    if batch.manifest:
        units.copy_manifest(cur, store, plan_id, batch.manifest, unit_no)
    if batch.unmapped_fields:
        units.add_unmapped_fields(cur, store, plan_id, unit_no, batch.unmapped_fields)
    if batch.notes:
        units.add_notes(cur, store, plan_id, unit_no, batch.notes)


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
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, units_: list[Unit], context: ReadContext,
    pool: ProcessPoolExecutor | None, workers: int, load_one: UnitLoader = load_unit,
) -> None:
    """Load units in the pool when there is one and more than one unit, else one after another here with
    `load_one`."""
    if pool is not None and len(units_) > 1:
        _load_parallel(pool, workers, plan_id, run_id, units_, context)
    else:
        with connect(database_url) as conn:
            for unit in units_:
                load_one(conn, spec, plan_id, run_id, unit, context)


_WORKER_CONN: psycopg.Connection | None = None
_WORKER_URL: str | None = None
_WORKER_SPEC: StoreSpec | None = None


def _worker_init(database_url: str, spec: StoreSpec) -> None:
    # The spec arrives pickled (its functions by module and name), so the worker imports the store's module
    # here: a failure in a task is reported, one in the initializer would break the pool without saying why.
    global _WORKER_URL, _WORKER_SPEC
    tune_gc_for_record_work()
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
                   units_: list[Unit], context: ReadContext) -> None:
    pending: set[Future[int]] = set()
    for unit in units_:
        pending.add(pool.submit(_worker_load, plan_id, run_id, unit, context))
        if len(pending) >= workers * 3:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
    for f in pending:
        f.result()
