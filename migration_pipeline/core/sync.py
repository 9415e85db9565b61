"""Incremental sync during the parallel run: read only the files that were added, changed or
deleted since the live version, carry every other row from the live tables, and stage the result
as a new version that goes through the same gates and the same atomic promotion.

A deleted file's record is kept with its soft-delete column set (seed 000: "soft delete
(recommended)"). Carried rows are accounted for as one unit whose checksum is recomputed in SQL
from the live rows: they were proven when the live version was promoted; the new rows are proven now.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.bookkeeping import plans, units
from migration_pipeline.core.changes import ChangeSet
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.manifest import describe_file, iter_files, recorded_path
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import ReadContext, StoreSpec
from migration_pipeline.core.stage import (
    BOOKKEEPING,
    StageSummary,
    discard_unkept_bookkeeping,
    finish_staging,
    load_units,
    loader_pool,
    summarize,
)

CARRIED_UNIT = -1


@dataclass
class SyncSummary:
    changes: ChangeSet
    files_read: int
    rows_carried: int
    soft_deleted: int
    stage: StageSummary


def sync_store(
    database_url: str, spec: StoreSpec, source_root: Path, changes: ChangeSet, run_id: str, secret: str | None,
    workers: int = 2,
) -> SyncSummary:
    rules = spec.sync
    if rules is None:
        raise MigrationError(f"{spec.name} has no incremental sync; run a full migration")
    table = spec.table(rules.table)
    store_dir = source_root / spec.folder
    timings: dict[str, float] = {}
    started = time.perf_counter()

    touched = set(changes.added) | set(changes.changed) | set(changes.deleted)
    touched_keys = {k for p in touched if (k := rules.key_of(p)) is not None}
    # Every current file holding one of the touched keys is read again (a key may have several files).
    to_read = []
    on_disk: dict[str, str] = {}  # the name on disk of each recorded path that differs from it (not UTF-8)
    for path in iter_files(store_dir):
        if (k := rules.key_of(path)) is not None and k in touched_keys:
            to_read.append(path)
        elif (recorded := recorded_path(path)) != path:
            on_disk[recorded] = path
    to_read.sort()
    reloaded_keys = {k for p in to_read if (k := rules.key_of(p)) is not None}
    deleted_keys = touched_keys - reloaded_keys

    live, staging = sql.Identifier(spec.schema), sql.Identifier(spec.staging_schema)
    keys = sql.SQL(", ").join(map(sql.Identifier, rules.key_columns))
    with connect(database_url) as conn:
        plan_id = _begin_sync_plan(conn, spec, changes, run_id)
        conn.execute(sql.SQL("CREATE TEMP TABLE sync_keys ({}) ON COMMIT DROP").format(
            sql.SQL(", ").join(sql.SQL("{} " + t).format(sql.Identifier(c))
                               for c, t in zip(rules.key_columns, rules.key_types, strict=True))))
        with conn.cursor().copy(sql.SQL("COPY sync_keys ({}) FROM STDIN").format(keys)) as copy:
            for key in reloaded_keys:
                copy.write_row(key)
        excluded = sql.SQL("NOT EXISTS (SELECT 1 FROM sync_keys k WHERE ({}) = ({}))").format(
            sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in rules.key_columns),
            sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(c)) for c in rules.key_columns))
        carried = conn.execute(sql.SQL("INSERT INTO {}.{} SELECT x.*, {} FROM {}.{} x WHERE {}").format(
            staging, sql.Identifier(table.name), sql.SQL(", ").join(sql.SQL("NULL") for _ in BOOKKEEPING),
            live, sql.Identifier(table.name), excluded)).rowcount
        soft_deleted = 0
        if deleted_keys:
            conn.execute("TRUNCATE sync_keys")
            with conn.cursor().copy(sql.SQL("COPY sync_keys ({}) FROM STDIN").format(keys)) as copy:
                for key in deleted_keys:
                    copy.write_row(key)
            soft_deleted = conn.execute(sql.SQL("UPDATE {}.{} x SET {} = now() WHERE {} IS NULL AND NOT {}").format(
                staging, sql.Identifier(table.name), sql.Identifier(rules.soft_delete_column),
                sql.Identifier(rules.soft_delete_column), excluded)).rowcount
        _carry_bookkeeping(conn, spec, store_dir, changes, plan_id, touched | set(to_read), on_disk)
        hashed = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}.{}").format(
            sql_row_hash(table.columns), staging, sql.Identifier(table.name))).fetchone()
        assert hashed
        moved = units.quarantine_totals(conn, spec.name, plan_id, table.name)
        units.record_unit_progress(conn, spec.name, plan_id, run_id, CARRIED_UNIT, table.name, hashed[0] + moved[1],
                                   hashed[0] + moved[0], int(hashed[1]) + moved[2])
        max_id = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}.{}").format(
            live, sql.Identifier(table.name))).fetchone()
        conn.commit()
    timings["carry"] = time.perf_counter() - started

    started = time.perf_counter()
    to_load = rules.units_for(to_read, (max_id[0] if max_id else 0) + 1)
    with loader_pool(database_url, spec, workers) as pool:
        load_units(database_url, spec, plan_id, run_id, list(to_load), ReadContext(store_dir=store_dir, secret=secret),
                   pool, workers)
    timings["read_and_copy"] = time.perf_counter() - started

    started = time.perf_counter()
    with connect(database_url) as conn:
        for statement in rules.after_load_sql:
            conn.execute(sql.SQL(statement).format(staging=staging, live=live))
        conn.commit()
    timings.update(finish_staging(database_url, spec, plan_id, run_id, workers))
    with connect(database_url) as conn:
        summary = summarize(conn, spec, plan_id, run_id)
    timings["finish_sql"] = time.perf_counter() - started
    summary.seconds = timings
    return SyncSummary(changes, len(to_read), carried, soft_deleted, summary)


def _begin_sync_plan(conn: psycopg.Connection, spec: StoreSpec, changes: ChangeSet, run_id: str) -> str:
    plans.lock_plans(conn, spec.name)
    plan_id = uuid.uuid4().hex[:16]
    ddl.create_staging_tables(conn, spec, BOOKKEEPING)
    discard_unkept_bookkeeping(conn, spec)
    plans.open_plan(conn, spec.name, plan_id, f"sync:{changes.key()}", run_id, 0)
    return plan_id


def _carry_bookkeeping(
    conn: psycopg.Connection, spec: StoreSpec, store_dir: Path, changes: ChangeSet, plan_id: str, reread: set[str],
    on_disk: dict[str, str],
) -> None:
    """Quarantine, flags and manifest rows of every file that is not read again move to the new plan."""
    units.carry_file_records(conn, spec.name, changes.live_plan, plan_id, CARRIED_UNIT, sorted(reread))
    rules = spec.sync
    assert rules is not None
    unmapped_now = [p for p in changes.added + changes.changed if rules.key_of(p) is None]
    units.copy_manifest(conn.cursor(), spec.name, plan_id,
                        [describe_file(store_dir, on_disk.get(p, p), mapped=False) for p in unmapped_now])
