"""Text summaries for the command line, read from the bookkeeping tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from migration_pipeline.core.backup import RecordedBackup
from migration_pipeline.core.bookkeeping.checks import run_checks
from migration_pipeline.core.bookkeeping.units import quarantined_per_reason
from migration_pipeline.core.database import connect
from migration_pipeline.core.promote import failed_checks, get_phase
from migration_pipeline.core.reconcile import current_plan, file_counts, table_counts
from migration_pipeline.core.spec import StoreSpec


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _step_failure(result: Any) -> str | None:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            while error.cause is not None and "dagster" in error.cls_name.lower():
                error = error.cause
            return error.message.strip().splitlines()[0].split(": ", 1)[-1]
    return None


def print_store_summary(database_url: str, spec: StoreSpec, run_id: str, result: Any) -> str | None:
    """Print what the run did to the store; return a one-line problem, or None when it was promoted."""
    with connect(database_url) as conn:
        phase = get_phase(conn, spec.name)
        try:
            plan_id, status = current_plan(conn, spec.name)
        except LookupError:
            plan_id, status = "", "none"
        promoted = phase.phase == "promoted" and phase.run_id == run_id and status == "promoted"
        print(f"\n== {spec.name} ==  run {run_id}")
        if plan_id and status in ("staged", "promoted"):
            schema = spec.schema if status == "promoted" else spec.staging_schema
            counts = table_counts(conn, spec, plan_id, schema)
            mapped, unmapped = file_counts(conn, spec.name, plan_id)
            print(f"files seen {mapped + unmapped}, mapped {mapped}, unmapped {unmapped}")
            print(_table(["table", "source", "loaded", "quarantined"],
                         [[t, c["source"], c["staged"], c["quarantined"]] for t, c in counts.items()]))
            reasons = sorted(quarantined_per_reason(conn, spec.name, plan_id).items(), key=lambda r: (-r[1], r[0]))
            if reasons:
                print(_table(["quarantine reason", "records"], [list(r) for r in reasons]))
        checks = [(n, p, s) for n, p, s, _details in run_checks(conn, run_id, spec.name)]
        if checks:
            print(_table(["check", "outcome", "summary"],
                         [[n, "passed" if p else "FAILED", s[:90]] for n, p, s in checks]))
        report = get_phase(conn, spec.name).report_path
        print(f"promotion: {'PROMOTED' if promoted else 'BLOCKED (live tables unchanged)'}")
        if report:
            print(f"report: {report}")
        if promoted:
            return None
        failures = failed_checks(conn, spec, run_id, plan_id) if plan_id else []
        real = [f for f in failures if f[1] != "did not run"]
        if real:
            name, why = real[0]
            return f"{spec.name}: promotion blocked by gate {name}: {why}"
        failure = _step_failure(result)
        return f"{spec.name}: run failed: {failure or 'see the run in the Dagster UI'}"


def print_status(database_url: str) -> None:
    from migration_pipeline.stores.registry import all_stores

    rows = []
    with connect(database_url) as conn:
        for spec in all_stores():
            phase = get_phase(conn, spec.name)
            rows.append([spec.name, phase.phase, phase.run_id or "-", str(phase.changed_at or "-")[:19],
                         phase.approved_by or "-", phase.report_path or "-"])
    print(_table(["store", "phase", "last run", "changed", "approved by", "last report"], rows))


def backup_table(backups: list[RecordedBackup], verdicts: dict[Path, str]) -> str:
    """The backups as a table; `verdicts` (archive -> outcome of a verification) adds a column."""
    if not backups:
        return "no backup recorded yet: the first run of a store writes one"
    rows = []
    for b in backups:
        state = f"pruned {b.pruned_at:%Y-%m-%d}" if b.pruned_at else ("kept" if b.archive.is_file() else "MISSING")
        row = [b.store, f"{b.created_at:%Y-%m-%d %H:%M}", f"{b.keep_until:%Y-%m-%d}", b.files, f"{b.bytes / 2**20:.1f}",
               state, str(b.archive)]
        rows.append(row + [verdicts.get(b.archive, "-")] if verdicts else row)
    headers = ["store", "written", "keep until", "files", "MiB", "state", "archive"]
    return _table(headers + (["verification"] if verdicts else []), rows)


def database_line(database_url: str, source: str) -> str:
    """Which PostgreSQL the command used: the embedded server (running or not, its data folder and address),
    or the one --database-url / DATABASE_URL names (its password left out)."""
    from migration_pipeline.core.database import EMBEDDED_DATA_DIR, embedded_server_running, redact_dsn

    if source == "the embedded PostgreSQL":
        state = "running" if embedded_server_running(EMBEDDED_DATA_DIR) else "stopped"
        return (f"embedded PostgreSQL: {state} (data in {EMBEDDED_DATA_DIR.resolve()}, at {redact_dsn(database_url)};"
                " `migration-pipeline stop` stops it)")
    return f"database: {redact_dsn(database_url)} (from {source}; the embedded PostgreSQL is not used)"
