"""Phases of a store and the moves between them: promote (atomic swap), rollback, cutover.

Live tables are `<store>.*`, the staged version `<store>__staging.*` and the version replaced by
the last promotion `<store>__previous.*`. A promotion renames schemas inside one transaction that
first locks every live table, so readers see the old tables or the new, never a mix.

What a reader sees while a store is promoted (PostgreSQL resolves a table's name afresh at each
statement, but reads its rows with the transaction's snapshot):

- A READ COMMITTED statement locks every table it names before it takes its snapshot, so it runs
  wholly before the swap or wholly after it: one version, never a mix.
- A transaction that has read a live table holds its lock until it ends; promotion cannot lock that
  table, so the transaction keeps reading the old version. Promotion waits for its locks under
  `lock_timeout`, rolls back, backs off and tries again (`attempts`, doubling `backoff`), and then
  fails alone with the table and the session that holds it: nothing changed, the staged data stays,
  and re-materializing `<store>/live` promotes it without reloading anything.
- A transaction whose snapshot is older than the staged data (REPEATABLE READ or SERIALIZABLE, or an
  open cursor) and that has not read the live tables yet would, after the swap, find the new tables
  by name and see none of their rows (they were written after its snapshot). Before the swap,
  promotion (holding the locks) looks for such sessions: client backends of this database, other than
  the pipeline's own (`application_name` migration-pipeline), whose role may use the store's schema,
  whose transaction began before the data was marked staged (`xact_start`; every staged row was
  committed before that) and whose `backend_xmin` is at or before the transaction that marked it
  (a later xmin means a snapshot that sees every staged row). It waits for them through its
  attempts; on the last one it disconnects them (`pg_terminate_backend`, waiting for them to exit),
  so such a reader's next query fails with a connection error it can retry and never returns zero
  rows. With `terminate_stale_readers=False` it fails alone instead and they keep reading the old
  version. A transaction whose snapshot already sees the staged rows and has read no live table
  reads the new version whole. This needs a role that sees other sessions' `pg_stat_activity` rows and may signal
  them (superuser, or `pg_read_all_stats` and `pg_signal_backend`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.bookkeeping import checks, phases, plans
from migration_pipeline.core.bookkeeping.phases import PhaseRow as PhaseRow
from migration_pipeline.core.bookkeeping.phases import set_report_path as set_report_path
from migration_pipeline.core.errors import PromotionBlockedError
from migration_pipeline.core.names import gx_check_name, swap_schema
from migration_pipeline.core.spec import StoreSpec

PHASES = ("not_started", "staged", "validated", "promoted", "cut_over", "rolled_back")
EXPECTED_CHECKS = ("row_count_reconciliation", "checksum_reconciliation")
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds one attempt waits for each lock
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0  # seconds before the second attempt, doubled before each next one
PIPELINE_APPLICATION = "migration-pipeline"  # database.connect's application_name


def get_phase(conn: psycopg.Connection, store: str) -> PhaseRow:
    """The store's phase (`not_started` before its first promotion or cutover)."""
    return phases.phase_of(conn, store)


def set_phase(
    conn: psycopg.Connection, store: str, phase: str, *, run_id: str | None, actor: str, note: str = "",
    plan_id: str | None = None, approved_by: str | None = None,
) -> None:
    """Record a transition (and its history row) in the caller's transaction."""
    assert phase in PHASES
    before = phases.phase_of(conn, store)
    phases.record_phase(conn, store, phase, from_phase=before.phase, run_id=run_id, actor=actor, note=note,
                        plan_id=plan_id, approved_by=approved_by)


def failed_checks(conn: psycopg.Connection, spec: StoreSpec, run_id: str, plan_id: str) -> list[tuple[str, str]]:
    """Checks of this run and plan that did not pass, or that never ran."""
    rows = checks.check_summaries(conn, run_id, spec.name, plan_id)
    required = list(EXPECTED_CHECKS) + [g.name for g in spec.gates] + [gx_check_name(t.name) for t in spec.tables]
    missing = [(name, "did not run") for name in required if name not in rows]
    return missing + [(name, summary) for name, summary in rows.items() if summary]


def _lock_live(conn: psycopg.Connection, spec: StoreSpec, schema: str) -> None:
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)).fetchall()
    if tables:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(t)) for (t,) in tables)))


def _rename(conn: psycopg.Connection, old: str, new: str) -> None:
    conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


class _Busy(Exception):
    """One attempt could not go ahead (a lock or an old snapshot); its transaction was rolled back."""

    def __init__(self, reason: str, remedy: str = "end it") -> None:
        super().__init__(reason)
        self.remedy = remedy


def _session(row: tuple[object, object, object]) -> str:
    pid, application, state = row
    return f"pid {pid} '{application or '-'}', {state or 'state unknown'}"


def _lock_holders(conn: psycopg.Connection, table: str) -> str:
    """The sessions holding a lock on `table` (pid, application, state: never their query text)."""
    rows = conn.execute(
        """SELECT a.pid, a.application_name, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass(%s)
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.pid <> pg_backend_pid() ORDER BY a.pid""", (table,)).fetchall()
    return "; ".join(_session(r) for r in rows) or "by a session that has ended since"


def _lock_each(conn: psycopg.Connection, schema: str, lock_timeout: float) -> None:
    """ACCESS EXCLUSIVE on every table of `schema`, one at a time so that a timeout names its table."""
    tables = [t for (t,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)).fetchall()]
    for table in tables:
        name = f"{schema}.{table}"
        try:
            with conn.transaction():
                conn.execute(sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(schema), sql.Identifier(table)))
        except psycopg.errors.LockNotAvailable:
            raise _Busy(f"could not lock {name} within {lock_timeout:g} s (held by "
                        f"{_lock_holders(conn, name)})") from None
        except psycopg.errors.DeadlockDetected:
            raise _Busy(f"deadlocked waiting to lock {name} (held by {_lock_holders(conn, name)})") from None


@dataclass(frozen=True)
class _Staged:
    xid: str  # the transaction that marked the data staged: every staged row was committed before it began
    at: object  # its start (now()), so after every staged row was committed


def _stale_readers(conn: psycopg.Connection, spec: StoreSpec, staged: _Staged) -> list[tuple[object, object, object]]:
    """Sessions whose snapshot may not see every staged row and that may read the store's schema.

    Both conditions are needed: a snapshot's xmin is the oldest transaction running anywhere when it was
    taken, so one long transaction drags every newer snapshot's xmin below the staged data; a
    transaction that began after the data was staged took all its snapshots after it was committed."""
    conn.execute("SELECT pg_stat_clear_snapshot()")  # pg_stat_activity is otherwise frozen per transaction
    return conn.execute(
        """SELECT pid, application_name, state FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
             AND application_name IS DISTINCT FROM %s AND backend_xmin IS NOT NULL
             AND age(backend_xmin) >= age(%s::xid) AND coalesce(xact_start <= %s, true)
             AND has_schema_privilege(usesysid, %s, 'USAGE')
           ORDER BY pid""", (PIPELINE_APPLICATION, staged.xid, staged.at, spec.schema)).fetchall()


def _no_stale_readers(conn: psycopg.Connection, spec: StoreSpec, staged: _Staged, terminate: float | None) -> None:
    stale = _stale_readers(conn, spec, staged)
    if stale and terminate is not None:
        for pid, _, _ in stale:
            conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, max(1, int(terminate * 1000))))
        stale = _stale_readers(conn, spec, staged)
    if stale:
        many = f"{len(stale)} transactions still read" if len(stale) > 1 else "1 transaction still reads"
        raise _Busy(f"{many} with a snapshot older than the staged data ({'; '.join(_session(r) for r in stale)}) "
                    "and would see the new tables empty", "end it (or let promotion disconnect it: terminate_stale_readers)")


def promote(
    conn: psycopg.Connection, spec: StoreSpec, run_id: str, actor: str, *, force: bool = False,
    adopt_staged: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF, terminate_stale_readers: bool = True,
) -> str:
    """Swap the staged tables in as live, keeping the replaced version for rollback.

    Refuses (PromotionBlockedError, nothing changed) unless this run staged the current plan (or,
    with `adopt_staged`, whichever run staged it: a promotion re-run on its own) and every gate of
    that run passed, or when the store is cut over and `force` is not set. Locks are waited for
    `lock_timeout` seconds per attempt; see the module docstring for the attempts and the readers.
    """
    if attempts < 1 or lock_timeout <= 0 or backoff < 0:
        raise ValueError("promotion needs attempts >= 1, lock_timeout > 0 and backoff >= 0")
    for attempt in range(1, attempts + 1):
        try:
            return _promote_once(conn, spec, run_id, actor, force=force, adopt_staged=adopt_staged,
                                 lock_timeout=lock_timeout,
                                 terminate=lock_timeout if terminate_stale_readers and attempt == attempts else None)
        except _Busy as busy:
            last = busy
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    raise PromotionBlockedError(
        f"{spec.name}: promotion gave up after {attempts} attempts: {last}; nothing was changed: {last.remedy} and "
        f"re-materialize {spec.name}/live, nothing is reloaded")


def _promote_once(
    conn: psycopg.Connection, spec: StoreSpec, run_id: str, actor: str, *, force: bool, adopt_staged: bool,
    lock_timeout: float, terminate: float | None,
) -> str:
    with conn.transaction():
        before = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, int(lock_timeout * 1000))}ms",))
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('promote:' || %s))", (spec.name,))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            raise _Busy(f"another promotion or rollback of {spec.name} held its lock for {lock_timeout:g} s",
                        "wait for it") from None
        # xmin and staged_at: the transaction that marked the data staged, after every staged row was committed.
        staging = plans.staged_plan_for_update(conn, spec.name)
        if staging is None or staging.status != "staged":
            raise PromotionBlockedError(f"{spec.name}: nothing staged to promote (run the load first)")
        plan_id, staged_by, staged_xid, staged_at = staging.plan_id, staging.run_id, staging.xmin, staging.staged_at
        if staged_by != run_id and not adopt_staged:
            raise PromotionBlockedError(
                f"{spec.name}: the staged data belongs to run {staged_by}, not {run_id}; another run restaged "
                "the store, so this run may not promote it")
        failures = failed_checks(conn, spec, staged_by, plan_id)
        if failures:
            name, why = failures[0]
            more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
            raise PromotionBlockedError(f"{spec.name}: promotion blocked by gate {name}: {why}{more}")
        phase = get_phase(conn, spec.name)
        if phase.phase == "cut_over" and not force:
            raise PromotionBlockedError(
                f"{spec.name} is cut over: the application owns its live tables now; re-run with --force to "
                "overwrite them (recorded)")
        _lock_each(conn, spec.schema, lock_timeout)
        _lock_each(conn, spec.previous_schema, lock_timeout)
        _no_stale_readers(conn, spec, _Staged(staged_xid, staged_at), terminate)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(spec.previous_schema)))
                _rename(conn, spec.schema, spec.previous_schema)
                _rename(conn, spec.staging_schema, spec.schema)
                ddl.enable_autovacuum(conn, spec.schema)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            raise _Busy(f"could not take the locks of the schema swap within {lock_timeout:g} s "
                        f"(the tables of {spec.staging_schema} or the schemas themselves are in use)",
                        "end the sessions using them") from None
        plans.set_plan_status(conn, spec.name, "promoted")
        notes = ["forced over cut_over"] if phase.phase == "cut_over" else []
        if staged_by != run_id:
            notes.append(f"promoted by run {run_id}")
        # The run that staged and validated the data: its gates and its report are the ones cutover approves.
        set_phase(conn, spec.name, "promoted", run_id=staged_by, actor=actor, plan_id=plan_id, note="; ".join(notes))
        assert before is not None
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (before[0],))
    return str(plan_id)


def rollback(conn: psycopg.Connection, spec: StoreSpec, actor: str, run_id: str | None = None) -> None:
    """Swap the previous live version back in (the rolled-back one becomes the previous)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('promote:' || %s))", (spec.name,))
        phase = get_phase(conn, spec.name)
        if phase.phase not in ("promoted", "cut_over", "rolled_back") or not _schema_exists(conn, spec.previous_schema):
            raise PromotionBlockedError(f"{spec.name}: there is no previous version to roll back to")
        _lock_live(conn, spec, spec.schema)
        _lock_live(conn, spec, spec.previous_schema)
        swap = swap_schema(spec.name)
        _rename(conn, spec.schema, swap)
        _rename(conn, spec.previous_schema, spec.schema)
        _rename(conn, swap, spec.previous_schema)
        set_phase(conn, spec.name, "rolled_back", run_id=run_id, actor=actor,
                  note=f"restored the version replaced by the promotion of plan {phase.plan_id}")


def cutover(
    conn: psycopg.Connection, spec: StoreSpec, approved_by: str, run_id: str | None = None,
    report_root: Path | None = None,
) -> str:
    """Approve the version that is live: the promoted run's, whose last validation must have passed and
    whose report (`<report_root>/<store>/<run_id>/report.html`) must exist. Later runs that were blocked
    changed nothing live and are not what is approved. Returns what was approved, in one line."""
    with conn.transaction():
        phase = get_phase(conn, spec.name)
        if phase.phase != "promoted":
            raise PromotionBlockedError(
                f"{spec.name} is {phase.phase}: only a promoted store can be cut over (promote it first)")
        if phase.run_id is None or failed_checks(conn, spec, phase.run_id, phase.plan_id or ""):
            raise PromotionBlockedError(f"{spec.name}: the latest validation did not pass; cutover refused")
        # store_phase.report_path is the newest report (a blocked run's, say); the promoted run's sits beside it.
        if report_root is not None:
            report: Path | None = report_root / spec.name / phase.run_id / "report.html"
        elif phase.report_path:
            report = Path(phase.report_path).parent.parent / phase.run_id / "report.html"
        else:
            report = None
        if report is None or not report.is_file():
            raise PromotionBlockedError(
                f"{spec.name}: the validation report of run {phase.run_id} is missing; regenerate it first")
        version = f"the live version, plan {phase.plan_id} of run {phase.run_id}"
        # store_phase keeps the promoted run (its report is the one approved); the history names this run.
        set_phase(conn, spec.name, "cut_over", run_id=None, actor=approved_by, approved_by=approved_by,
                  note=f"approved by {approved_by}" + (f" in run {run_id}" if run_id else "") + f": {version}")
    return f"{spec.name}: cut over {version}, approved by {approved_by}"
