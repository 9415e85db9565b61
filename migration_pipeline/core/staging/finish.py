"""Step 3 of staging: finish the loaded tables in SQL, then count what the plan staged.

Three steps, each of which can run again after a crash:
1. one transaction: the store's own SQL and notes, the integrity rules on the loaded tables (dedupe, CHECKs,
   orphans; what fails goes to the quarantine), their keys, their bookkeeping columns dropped; status
   `finishing`;
2. on `workers` connections: each derived table filled from the loaded ones, and every table's indexes,
   triggers, identity and statistics built;
3. the foreign keys, added NOT VALID, then validated on `workers` connections; status `staged`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.bookkeeping import checks, plans, units
from migration_pipeline.core.database import connect
from migration_pipeline.core.reconcile import file_counts
from migration_pipeline.core.spec import StoreSpec, TableSpec, Unit
from migration_pipeline.core.staging.plan import BOOKKEEPING

# (database_url, spec, table, run_id): fill (if derived) and finish one staged table, committed
TableFinisher = Callable[[str, StoreSpec, TableSpec, str], None]
# (database_url, schema, table, constraint): validate one foreign key, committed
KeyValidator = Callable[[str, str, str, str], None]


def finish_table(database_url: str, spec: StoreSpec, table: TableSpec, run_id: str) -> None:
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


def validate_key(database_url: str, schema: str, table: str, constraint: str) -> None:
    with connect(database_url) as conn:
        ddl.validate_constraint(conn, schema, table, constraint)
        conn.commit()


def finish_staging(
    database_url: str, spec: StoreSpec, plan_id: str, run_id: str, workers: int = 2, *,
    finish_one: TableFinisher = finish_table, validate: KeyValidator = validate_key,
) -> dict[str, float]:
    """Finish the loaded staging (the module's three steps); return the seconds of each (`sql_integrity`,
    `sql_tables`, `sql_foreign_keys`)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with connect(database_url) as conn:
        if plans.plan_status(conn, spec.name) == "loading":
            apply_integrity_rules(conn, spec, plan_id, run_id)
            plans.set_plan_status(conn, spec.name, "finishing")
        else:  # resumed: the derived tables are filled again, which their referencing keys would forbid
            ddl.drop_foreign_keys(conn, spec.staging_schema)
        conn.commit()
    seconds["sql_integrity"] = time.perf_counter() - started
    started = time.perf_counter()
    # Loaded tables first: theirs are the longest chains (the largest indexes), and start at once.
    chains = sorted(spec.tables, key=lambda t: not t.loaded)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="finish") as pool:
        for done in [pool.submit(finish_one, database_url, spec, table, run_id) for table in chains]:
            done.result()
        seconds["sql_tables"] = time.perf_counter() - started
        started = time.perf_counter()
        with connect(database_url) as conn:
            to_validate = ddl.add_foreign_keys(conn, spec)
            conn.commit()
        for done in [pool.submit(validate, database_url, spec.staging_schema, table, name)
                     for table, name in to_validate]:
            done.result()
    with connect(database_url) as conn:
        plans.mark_staged(conn, spec.name, plan_id, run_id)
        conn.commit()
    seconds["sql_foreign_keys"] = time.perf_counter() - started
    return seconds


def apply_integrity_rules(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str) -> None:
    staging = spec.staging_schema
    for statement in spec.post_load_sql:
        conn.execute(sql.SQL(statement).format(schema=sql.Identifier(staging)))
    checks.adjust_for_notes(conn, spec.name, plan_id)
    loaded = [t for t in spec.tables if t.loaded]
    for position, table in enumerate(loaded):
        enforced = ddl.enforce_unique_keys(conn, spec, table)
        ddl.quarantine_duplicates(conn, spec, table, plan_id, run_id, enforced)
        ddl.add_missing_constraints(conn, spec, table.name, "pu")  # the keys that had duplicates
        ddl.quarantine_check_violations(conn, spec, table, plan_id, run_id)
        ddl.resolve_orphans(conn, spec, table, plan_id, run_id, earlier={t.name for t in loaded[:position]})
    units.drop_flags_of_quarantined(conn, spec.name, plan_id)
    # Dropped here, under this transaction's lock: in step 2 no statement on a loaded table may block the
    # derived tables that read it.
    for table in loaded:
        ddl.drop_bookkeeping(conn, spec, table.name, BOOKKEEPING)


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


def summarize(conn: psycopg.Connection, spec: StoreSpec, plan_id: str, run_id: str) -> StageSummary:
    """Counts of the current plan, read back from the database."""
    mapped, unmapped = file_counts(conn, spec.name, plan_id)
    staged = {
        t.name: conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(spec.staging_schema), sql.Identifier(t.name))
        ).fetchone()[0]  # type: ignore[index]
        for t in spec.tables
    }
    return StageSummary(
        store=spec.name, plan_id=plan_id, run_id=run_id, resumed_units=0, units=plans.units_total(conn, spec.name),
        files_mapped=mapped, files_unmapped=unmapped, seen=units.records_read(conn, spec.name, plan_id),
        staged=staged, quarantined=units.quarantined_per_reason(conn, spec.name, plan_id),
        flagged=units.flagged_count(conn, spec.name, plan_id),
    )
