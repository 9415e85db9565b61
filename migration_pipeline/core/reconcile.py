"""The blocking gates: row-count and checksum reconciliation, store gates and the GX suites.

Every outcome is recorded in migration.check_results for the run; promotion reads them there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping import checks, plans
from migration_pipeline.core.bookkeeping import units as unit_records  # `units` is a parameter below
from migration_pipeline.core.names import gx_check_name, reconciliation_check_name
from migration_pipeline.core.rows import sql_row_hash
from migration_pipeline.core.spec import StoreSpec, Unit


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def current_plan(conn: psycopg.Connection, store: str) -> tuple[str, str]:
    return plans.current_plan(conn, store)


def file_counts(conn: psycopg.Connection, store: str, plan_id: str) -> tuple[int, int]:
    """(mapped, unmapped) source files of a plan: as recorded when its staging finished, else counted."""
    recorded = plans.recorded_file_counts(conn, store, plan_id)
    if recorded:
        return recorded
    counted = unit_records.manifest_status_counts(conn, store, plan_id)
    return counted.get("mapped", 0), sum(n for status, n in counted.items() if status != "mapped")


def _count(conn: psycopg.Connection, schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    ).fetchone()
    return int(row[0]) if row else 0


def table_counts(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, schema: str | None = None
) -> dict[str, dict[str, int]]:
    """Per table: source records (counted apart from the reader where the store did so, else as read),
    staged rows, quarantined records and the rows expected.

    `schema` is where the plan's tables are now: the staging schema until promoted, then the live one."""
    schema = schema or spec.staging_schema
    seen = unit_records.source_records(conn, spec.name, plan_id)
    quarantined = unit_records.quarantined_per_table(conn, spec.name, plan_id)
    counts: dict[str, dict[str, int]] = {}
    for table in spec.tables:
        staged = _count(conn, schema, table.name)
        q = int(quarantined.get(table.name, 0))
        if table.loaded:
            source = int(seen.get(table.name, 0))
            expected = source - q
        else:
            assert table.expected_rows_sql is not None
            row = conn.execute(
                sql.SQL(table.expected_rows_sql).format(schema=sql.Identifier(schema))
            ).fetchone()
            expected = int(row[0]) if row else 0
            source = expected
        counts[table.name] = {"source": source, "staged": staged, "quarantined": q, "expected": expected}
    return counts


def row_count_gate(counts: dict[str, dict[str, int]]) -> CheckOutcome:
    bad = {t: c for t, c in counts.items() if c["staged"] != c["expected"]}
    if bad:
        text = "; ".join(f"{t}: {c['source']} source ≠ {c['staged']} staged + {c['quarantined']} quarantined"
                         for t, c in bad.items())
        return CheckOutcome("row_count_reconciliation", False, text, {"tables": counts})
    total = sum(c["staged"] for c in counts.values())
    return CheckOutcome(
        "row_count_reconciliation", True,
        f"source = staged + quarantined for all {len(counts)} tables ({total} rows staged)", {"tables": counts},
    )


DEFAULT_MAX_ROW_LOSS_PERCENT = 10.0


def live_row_loss_gate(
    conn: psycopg.Connection, spec: StoreSpec, counts: dict[str, dict[str, int]], max_loss_percent: float
) -> CheckOutcome:
    """Blocks a version that would drop more than `max_loss_percent` of any live table's rows. Every other gate
    proves the staged tables true to the source; this one asks whether the source is the whole store: an
    emptied folder or an unmounted share stages, reconciles and validates as an empty store."""
    tables = {t.name: {"live": _count(conn, spec.schema, t.name), "staged": counts[t.name]["staged"]}
              for t in spec.tables}
    details = {"max_row_loss_percent": max_loss_percent, "tables": tables}
    keep = 1 - max_loss_percent / 100
    losing = {t: c for t, c in tables.items() if c["staged"] < c["live"] * keep}
    if not losing:
        return CheckOutcome("live_row_loss", True,
                            f"no table drops more than {max_loss_percent:g}% of its live rows", details)
    lost = "; ".join(f"{t}: {c['live']} live rows would become {c['staged']} ({c['staged'] / c['live'] - 1:.0%})"
                     for t, c in losing.items())
    return CheckOutcome(
        "live_row_loss", False,
        f"{lost}, more than the {max_loss_percent:g}% a run may drop: check that the source root holds the whole "
        "store (an unmounted share, a wrong path); to promote anyway, run again with --allow-row-loss",
        details)


def checksum_gate(conn: psycopg.Connection, spec: StoreSpec, plan_id: str) -> CheckOutcome:
    """Sum of row hashes computed while reading = the same sum over staged rows in SQL, plus rows the
    engine moved to the quarantine after loading, plus recorded adjustments."""
    per_table: dict[str, dict[str, str]] = {}
    mismatched = []
    for table in (t for t in spec.tables if t.loaded):
        staged_row = conn.execute(
            sql.SQL("SELECT coalesce(sum({}), 0) FROM {}.{}").format(
                sql_row_hash(table.columns), sql.Identifier(spec.staging_schema), sql.Identifier(table.name))
        ).fetchone()
        assert staged_row
        source, staged = unit_records.source_hash_sum(conn, spec.name, plan_id, table.name), int(staged_row[0])
        target = (staged + unit_records.moved_hash_sum(conn, spec.name, plan_id, table.name)
                  + checks.adjusted_hash_sum(conn, spec.name, plan_id, table.name))
        per_table[table.name] = {"source": _short(source), "target": _short(target)}
        if source != target:
            mismatched.append(table.name)
    if mismatched:
        return CheckOutcome("checksum_reconciliation", False,
                            f"checksum differs for {', '.join(mismatched)}", {"tables": per_table})
    loaded = ", ".join(per_table)
    return CheckOutcome("checksum_reconciliation", True,
                        f"order-independent checksums match for every table loaded from files ({loaded}); derived "
                        "tables are proven by row counts and their GX suites", {"tables": per_table})


def _short(value: int) -> str:
    """A checksum sum as 16 hex digits (mod 2^64), the form shown to reviewers."""
    return f"{value % (1 << 64):016x}"


def reconcile_units(
    conn: psycopg.Connection, spec: StoreSpec, plan_id: str, units: Sequence[Unit], label: str
) -> CheckOutcome:
    """Gate for a subset of a store's units (a partition) while staging is still open: every unit is
    committed, source records (as in `table_counts`) = rows loaded + quarantined, and the row-hash sum
    of the staged rows (recomputed in SQL) equals the sum computed while reading. A unit's staged rows are
    those from the files its load recorded in the manifest, so this holds for any store's units."""
    numbers = [u.number for u in units]
    files = unit_records.unit_files(conn, spec.name, plan_id, numbers)
    committed = len(unit_records.committed_units(conn, spec.name, plan_id, numbers))
    problems: list[str] = []
    details: dict[str, Any] = {"units": len(numbers), "units_committed": committed}
    if details["units_committed"] != len(numbers):
        problems.append(f"{len(numbers) - details['units_committed']} of {len(numbers)} units not loaded")
    for table in (t for t in spec.tables if t.loaded):
        seen, emitted, source_hash = unit_records.units_progress(conn, spec.name, plan_id, table.name, numbers)
        quarantined = unit_records.quarantined_in_units(conn, spec.name, plan_id, table.name, numbers)
        staged = conn.execute(
            sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}.{} WHERE _source_file = ANY(%s)").format(
                sql_row_hash(table.columns), sql.Identifier(spec.staging_schema), sql.Identifier(table.name)),
            (files,)).fetchone()
        assert staged
        details[table.name] = {"source": seen, "staged": int(staged[0]), "quarantined": quarantined,
                               "checksum_source": _short(source_hash), "checksum_target": _short(int(staged[1]))}
        if seen != int(staged[0]) + quarantined or emitted != int(staged[0]):
            problems.append(f"{table.name}: {seen} source ≠ {staged[0]} staged + {quarantined} quarantined")
        if source_hash != int(staged[1]):
            problems.append(f"{table.name}: checksum differs")
    if problems:
        return CheckOutcome(reconciliation_check_name(label), False, "; ".join(problems), details)
    rows = sum(v["staged"] for k, v in details.items() if isinstance(v, dict))
    return CheckOutcome(reconciliation_check_name(label), True,
                        f"{len(numbers)} units, {rows} rows: counts and checksums reconcile", details)


class SuiteOutcome(Protocol):
    """What the gates read of one table's expectation suite."""

    @property
    def passed(self) -> bool: ...
    @property
    def evaluated(self) -> int: ...
    @property
    def failed(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def docs_index(self) -> Path | None: ...


# (database_url, spec, expected rows per table, docs folder) -> the outcome of each table's suite
SuiteRunner = Callable[[str, StoreSpec, dict[str, int], Path], Mapping[str, SuiteOutcome]]


def evaluate_gates(
    conn: psycopg.Connection, database_url: str, spec: StoreSpec, run_id: str, docs_dir: Path,
    max_row_loss_percent: float = DEFAULT_MAX_ROW_LOSS_PERCENT, *, run_suites: SuiteRunner,
) -> list[CheckOutcome]:
    """Run every gate of the store's current staged plan and record the outcomes. The per-table suites come
    from `run_suites` (the quality package's Great Expectations runner): the engine knows no GX."""
    plan_id, status = current_plan(conn, spec.name)
    if status != "staged":
        outcome = CheckOutcome("staging_complete", False, f"staging is {status}, not staged: run the load first")
        return record_outcomes(conn, spec.name, plan_id, run_id, [outcome])
    counts = table_counts(conn, spec, plan_id)
    # The GX suites (their own connection, mostly waiting on PostgreSQL) run while this connection
    # computes the checksums and the store's gates: the two halves overlap on the server's cores.
    with ThreadPoolExecutor(1, thread_name_prefix="gx") as pool:
        suites_running = pool.submit(
            run_suites, database_url, spec, {t: c["expected"] for t, c in counts.items()}, docs_dir)
        outcomes = [row_count_gate(counts), checksum_gate(conn, spec, plan_id),
                    live_row_loss_gate(conn, spec, counts, max_row_loss_percent)]
        for gate in spec.gates:
            passed, summary, details = gate.evaluate(conn, spec.name, plan_id)
            outcomes.append(CheckOutcome(gate.name, passed, summary, details))
        suites = suites_running.result()
    for table in spec.tables:
        suite = suites[table.name]
        failures = "; ".join(f"{f['expectation']}({f['column']}): {f['unexpected']}" for f in suite.failed)
        outcomes.append(CheckOutcome(
            gx_check_name(table.name), suite.passed,
            f"{suite.evaluated} expectations passed" if suite.passed else f"failed: {failures}",
            {"evaluated": suite.evaluated, "failed": list(suite.failed),
             "data_docs": str(suite.docs_index) if suite.docs_index else ""},
        ))
    return record_outcomes(conn, spec.name, plan_id, run_id, outcomes)


def record_outcomes(
    conn: psycopg.Connection, store: str, plan_id: str, run_id: str, outcomes: list[CheckOutcome]
) -> list[CheckOutcome]:
    for o in outcomes:
        checks.record_check(conn, run_id, store, plan_id, o.name, o.passed, o.summary, o.details)
    conn.commit()
    return outcomes
