"""Stream a store into its staging schema: read units (in parallel where they are independent),
COPY each unit with its bookkeeping in one transaction, then finish the staged tables in SQL.

A crashed run leaves committed units behind; the next run with the same source fingerprint
resumes after them, so nothing is read twice into the staging tables and nothing is lost.
"""

from __future__ import annotations

import io
import multiprocessing
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.reconcile import file_counts
from migration_pipeline.core.rows import RowEncoder, copy_field
from migration_pipeline.core.spec import Batch, ManifestEntry, ReadContext, StoreSpec, TableSpec, Unit

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
    shards: Collection[int] | None = None,
) -> StageSummary:
    """Load `spec`'s store under `source_root` into `<store>__staging`, resuming a crashed attempt.

    With `shards`, only the units of those shards are loaded and the staging is left open (status
    `loading`) for the other shards; without, every missing unit is loaded and the staging finished.
    """
    store_dir = source_root / spec.folder
    timings: dict[str, float] = {}
    with loader_pool(database_url, spec, workers) as pool:  # its workers start while the store is listed
        started = time.perf_counter()
        discovery = spec.discover(store_dir)
        timings["discover"] = time.perf_counter() - started

        with connect(database_url) as conn:
            plan_id, done_units, new_plan = _begin_plan(conn, spec, discovery.fingerprint, len(discovery.units), run_id)
            if new_plan:  # a resumed plan's unmapped files were recorded with it, before any unit
                _record_unmapped(conn, spec, plan_id, store_dir, discovery.unmapped)
            conn.commit()

        started = time.perf_counter()
        todo = [u for u in discovery.units
                if u.number not in done_units and (shards is None or u.shard in shards)]
        load_units(database_url, spec, plan_id, run_id, todo, ReadContext(store_dir=store_dir, secret=secret), pool,
                   workers)
        timings["read_and_copy"] = time.perf_counter() - started

    started = time.perf_counter()
    if shards is None:
        timings.update(finish_staging(database_url, spec, plan_id, run_id, workers))
    with connect(database_url) as conn:
        summary = summarize(conn, spec, plan_id, run_id)
    timings["finish_sql"] = time.perf_counter() - started  # the three steps and the summary's counts
    in_scope = tuple(u for u in discovery.units if shards is None or u.shard in shards)
    summary.in_scope = in_scope
    summary.resumed_units = sum(1 for u in in_scope if u.number in done_units)
    summary.seconds = timings
    return summary


def _begin_plan(
    conn: psycopg.Connection, spec: StoreSpec, fingerprint: str, units_total: int, run_id: str
) -> tuple[str, set[int], bool]:
    """(plan id, units already committed, whether the plan is new) of the plan this run loads."""
    # Serialises runs that start a plan at the same moment (e.g. shard runs of one backfill).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('plan:' || %s))", (spec.name,))
    row = conn.execute(
        "SELECT plan_id, fingerprint, status FROM migration.staging WHERE store = %s FOR UPDATE", (spec.name,)
    ).fetchone()
    if row and row[2] in ("loading", "finishing") and row[1] == fingerprint:
        plan_id = row[0]
        done = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT unit_no FROM migration.unit_progress WHERE store = %s AND plan_id = %s",
                (spec.name, plan_id),
            )
        }
        conn.execute("UPDATE migration.staging SET run_id = %s WHERE store = %s", (run_id, spec.name))
        return plan_id, done, False

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
    return plan_id, set(), True


def discard_unkept_bookkeeping(conn: psycopg.Connection, spec: StoreSpec) -> None:
    """A new plan starts: drop the progress, manifest and flags of every plan but the live one."""
    for table in ("unit_progress", "source_manifest", "flagged_records"):
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
    from migration_pipeline.core.manifest import describe_file

    entries = [describe_file(store_dir, rel, mapped=False) for rel in unmapped]
    _copy_manifest(conn.cursor(), spec.name, plan_id, entries)


def _copy_manifest(cur: psycopg.Cursor, store: str, plan_id: str, entries: Iterable[ManifestEntry]) -> None:
    # Formatted here rather than by write_row: this runs once per source file, millions of times.
    prefix = f"{copy_field(store)}\t{copy_field(plan_id)}\t"
    text = "".join(
        f"{prefix}{copy_field(e.path)}\t{e.size_bytes}\t{copy_field(e.sha256)}\t"
        f"{'mapped' if e.mapped else 'unmapped'}\t{copy_field(e.mtime_ns)}\n"
        for e in entries
    )
    with cur.copy(
        "COPY migration.source_manifest (store, plan_id, path, size_bytes, sha256, status, mtime_ns) FROM STDIN"
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
                buffer = io.StringIO()
                total = 0
                width = encoder.width
                for row in rows:
                    line, row_hash = encoder.encode(row[:width], row[width:])
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
                emitted[table_name] += len(rows)
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
        _copy_manifest(cur, store, plan_id, batch.manifest)


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
                             initializer=_worker_init, initargs=(database_url, spec.name)) as pool:
        for _ in range(workers):
            pool.submit(int)  # a task that finds no idle worker starts one
        yield pool


def load_units(
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, units: list[Unit], context: ReadContext,
    pool: ProcessPoolExecutor | None, workers: int,
) -> None:
    """Load units in the pool when there is one and more than one unit, else one after another here."""
    if pool is not None and len(units) > 1:
        _load_parallel(pool, workers, spec.name, plan_id, run_id, units, context)
    else:
        with connect(database_url) as conn:
            for unit in units:
                load_unit(conn, spec, plan_id, run_id, unit, context)

_WORKER_CONN: psycopg.Connection | None = None
_WORKER_URL: str | None = None


def _worker_init(database_url: str, store: str) -> None:
    # Imports only: a failure here would break the pool without saying why, one in a task is reported.
    global _WORKER_URL
    from migration_pipeline.stores.registry import get_store

    get_store(store)
    _WORKER_URL = database_url


def _worker_load(store: str, plan_id: str, run_id: str, unit: Unit, context: ReadContext) -> int:
    global _WORKER_CONN
    from migration_pipeline.stores.registry import get_store

    if _WORKER_CONN is None or _WORKER_CONN.closed:
        assert _WORKER_URL is not None
        _WORKER_CONN = connect(_WORKER_URL)
    load_unit(_WORKER_CONN, get_store(store), plan_id, run_id, unit, context)
    return unit.number


def _load_parallel(pool: ProcessPoolExecutor, workers: int, store: str, plan_id: str, run_id: str,
                   units: list[Unit], context: ReadContext) -> None:
    pending: set[Future[int]] = set()
    for unit in units:
        pending.add(pool.submit(_worker_load, store, plan_id, run_id, unit, context))
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
                   SELECT count(*) FILTER (WHERE status = 'mapped'), count(*) FILTER (WHERE status = 'unmapped')
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
