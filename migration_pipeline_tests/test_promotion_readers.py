"""Promotion while applications read, with real concurrent connections (issue 14, items 10-12).

- A reader whose snapshot is older than the staged data either keeps reading the complete old version
  or gets an error it can retry; it never reads the swapped-in tables as empty.
- A READ COMMITTED statement sees one version whole.
- Promotion takes its locks under lock_timeout, retries with backoff and then fails alone, leaving the
  staged data for a later promotion that reloads nothing.
- Cutover approves the promoted version that is live, whatever later runs were blocked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance

from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import PromotionBlockedError
from migration_pipeline.core.promote import get_phase, promote
from migration_pipeline.core.reconcile import current_plan
from migration_pipeline.core.report import build_report
from migration_pipeline.definitions import defs, job_name
from migration_pipeline.stores.factory import live_keys

from .test_lifecycle import SPEC, failure_text, history, set_env, snapshot, stage_and_gate, stage_gate_promote

# A: 50 users / 100 wallets, B: 60 users / 120 wallets (see test_lifecycle.roots).
OLD = (50, 100)
NEW = (60, 120)
COUNTS = "SELECT (SELECT count(*) FROM wallet.users), (SELECT count(*) FROM wallet.wallets)"
FAST: dict[str, Any] = {"lock_timeout": 0.2, "attempts": 3, "backoff": 0.05}


def reader(url: str) -> psycopg.Connection:
    """An application's connection (not the pipeline's: no application_name of ours)."""
    return psycopg.connect(url, autocommit=True, application_name="wallet-app")


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return (row[0], row[1])


def promote_in_thread(url: str, run_id: str, **kwargs: Any) -> tuple[threading.Thread, list[object]]:
    """Promote on a connection of its own; the outcome (the plan id or the exception) lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            with connect(url) as conn:
                outcome.append(promote(conn, SPEC, run_id, actor="tester", **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# --- 10. readers with a snapshot older than the staged data ---------------------------------------


def test_a_reader_whose_snapshot_predates_the_staged_data_gets_a_retryable_error_never_empty_tables(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    app = reader(database_url)
    app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    app.execute("SELECT count(*) FROM migration.store_phase")  # its snapshot; no live table read yet
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)

    with connect(database_url) as conn:
        plan_b = promote(conn, SPEC, "run-b", actor="tester", **FAST)
    # Waited for through the attempts, then disconnected: its next query fails (retryable), it never
    # reads the swapped-in tables, whose rows its snapshot cannot see, as empty.
    with pytest.raises(psycopg.OperationalError):
        app.execute(COUNTS).fetchone()
    assert app.closed or app.info.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN
    app.close()
    # A reader that starts after promotion sees the new version.
    with reader(database_url) as fresh:
        assert counts(fresh) == NEW
    with connect(database_url) as conn:
        assert current_plan(conn, "wallet") == (plan_b, "promoted")


def test_promotion_told_not_to_disconnect_old_snapshots_fails_alone_and_the_reader_keeps_the_old_version(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    app = reader(database_url)
    app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    app.execute("SELECT count(*) FROM migration.store_phase")
    app_pid = app.info.backend_pid
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    with connect(database_url) as conn:
        staged = snapshot(conn, SPEC.staging_schema)
        with pytest.raises(PromotionBlockedError) as blocked:
            promote(conn, SPEC, "run-b", actor="tester", terminate_stale_readers=False, **FAST)
    assert str(blocked.value) == (
        f"wallet: promotion gave up after 3 attempts: 1 transaction still reads with a snapshot older than the "
        f"staged data (pid {app_pid} 'wallet-app', idle in transaction) and would see the new tables empty; "
        "nothing was changed: end it (or let promotion disconnect it: terminate_stale_readers) and re-materialize "
        "wallet/live, "
        "nothing is reloaded")
    # Every query of the reader returns the complete old version.
    assert counts(app) == OLD
    app.execute("COMMIT")
    assert counts(app) == OLD
    with connect(database_url) as conn:
        assert snapshot(conn, SPEC.staging_schema) == staged
        assert current_plan(conn, "wallet")[1] == "staged"
        promote(conn, SPEC, "run-b", actor="tester", terminate_stale_readers=False, **FAST)
    assert counts(app) == NEW
    app.close()


def test_a_repeatable_read_reader_that_read_the_live_tables_keeps_the_old_version_until_it_ends(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    app = reader(database_url)
    app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert app.execute("SELECT count(*) FROM wallet.wallets").fetchone() == (100,)
    thread, outcome = promote_in_thread(database_url, "run-b", lock_timeout=0.2, attempts=20, backoff=0.05)
    seen: list[object] = []
    for _ in range(5):
        time.sleep(0.1)
        try:
            seen.append(counts(app))
        except psycopg.errors.DeadlockDetected:  # retryable; the reader's transaction is over
            seen.append("deadlock")
            break
    app.execute("ROLLBACK")
    thread.join(60)
    assert set(seen) <= {OLD, "deadlock"} and seen[0] == OLD, seen
    assert isinstance(outcome[0], str), outcome
    assert counts(app) == NEW
    app.close()


def test_a_read_committed_statement_never_mixes_versions(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    app = reader(database_url)
    seen: set[tuple[int, int]] = set()
    thread, outcome = promote_in_thread(database_url, "run-b", **FAST)
    while thread.is_alive():
        seen.add(counts(app))
    seen.add(counts(app))
    thread.join()
    assert isinstance(outcome[0], str), outcome
    assert seen <= {OLD, NEW} and NEW in seen, seen
    app.close()


# --- 11. locks under lock_timeout, retries, failing alone -----------------------------------------


def test_promotion_that_cannot_lock_fails_alone_after_its_attempts_and_promotes_later_without_reloading(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    holder = reader(database_url)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE wallet.wallets IN ACCESS SHARE MODE")
    with connect(database_url) as conn:
        staged = snapshot(conn, SPEC.staging_schema)
        live = snapshot(conn)
        conn.commit()
        started = time.monotonic()
        with pytest.raises(PromotionBlockedError) as blocked:
            promote(conn, SPEC, "run-b", actor="tester", lock_timeout=0.2, attempts=3, backoff=0.1)
        elapsed = time.monotonic() - started
        assert str(blocked.value) == (
            f"wallet: promotion gave up after 3 attempts: could not lock wallet.wallets within 0.2 s (held by pid "
            f"{holder.info.backend_pid} 'wallet-app', idle in transaction); nothing was changed: end it and "
            "re-materialize wallet/live, nothing is reloaded")
        # 3 lock waits of 0.2 s and back-offs of 0.1 s and 0.2 s between them.
        assert 0.9 <= elapsed < 5, elapsed
        assert snapshot(conn, SPEC.staging_schema) == staged
        assert snapshot(conn) == live
        assert current_plan(conn, "wallet")[1] == "staged"
        assert get_phase(conn, "wallet").run_id == "run-a"
        conn.commit()
    holder.execute("COMMIT")
    with connect(database_url) as conn:
        promote(conn, SPEC, "run-b", actor="tester", lock_timeout=0.2, attempts=3, backoff=0.1)
        assert snapshot(conn) == staged
        assert get_phase(conn, "wallet").run_id == "run-b"
    holder.close()


def test_the_live_step_fails_alone_and_re_materializing_live_promotes_the_validated_run(
    database_url: str, roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, database_url, roots["A"], tmp_path)
    instance = DagsterInstance.ephemeral()
    holder = reader(database_url)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE wallet.users IN ACCESS SHARE MODE")
    config = {"ops": {"wallet__live": {"config": {"lock_timeout_seconds": 0.2, "attempts": 2,
                                                   "backoff_seconds": 0.05}}}}
    result = defs.resolve_job_def(job_name("wallet")).execute_in_process(
        instance=instance, run_config=config, raise_on_error=False)
    assert not result.success
    assert "could not lock wallet.users within 0.2 s" in failure_text(result)
    assert "re-materialize wallet/live, nothing is reloaded" in failure_text(result)
    with connect(database_url) as conn:
        assert current_plan(conn, "wallet")[1] == "staged"
        assert get_phase(conn, "wallet").phase == "validated"
        units = conn.execute("SELECT count(*) FROM migration.unit_progress").fetchone()
    holder.execute("COMMIT")
    holder.close()

    again = defs.resolve_job_def(job_name("wallet")).get_subset(asset_selection=set(live_keys(SPEC)))
    second = again.execute_in_process(instance=instance, raise_on_error=False)
    assert second.success, failure_text(second)
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM wallet.users").fetchone() == (50,)
        assert conn.execute("SELECT count(*) FROM migration.unit_progress").fetchone() == units  # nothing reloaded
        phase = get_phase(conn, "wallet")
        # The version promoted is the first run's: its gates and its report are the ones a reviewer approves.
        assert (phase.phase, phase.run_id) == ("promoted", result.run_id)
        assert history(conn)[-1] == ("validated", "promoted", "dagster", result.run_id,
                                     f"promoted by run {second.run_id}")


# --- 12. cutover after a blocked run --------------------------------------------------------------


def test_cutover_after_a_blocked_run_approves_the_live_version(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    stage_gate_promote(database_url, roots["A"], "run-1", tmp_path)
    with connect(database_url) as conn:
        plan_1 = get_phase(conn, "wallet").plan_id
        build_report(conn, SPEC, "run-1", reports, outcome="promoted")
        live = snapshot(conn)
    # Run 2 stages B but a gate fails (the row-loss limit set to 0: B adds rows, so it passes; a wrong
    # secret instead fails key_verification); its report is written, as the gates asset does.
    outcomes = stage_and_gate(database_url, roots["B"], "run-2", tmp_path, secret="not-the-secret")
    assert [o.name for o in outcomes if not o.passed] == ["key_verification"]
    with connect(database_url) as conn:
        build_report(conn, SPEC, "run-2", reports, outcome="blocked")
        assert get_phase(conn, "wallet").report_path == str((reports / "wallet" / "run-2" / "report.html").resolve())

        conn.commit()
    # The runbook's command (what a reviewer runs) says which version it approved.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(tmp_path / "dagster_home"), "MIGRATION_SOURCE_ROOT": str(roots["B"]),
                "MIGRATION_REPORT_DIR": str(reports)})
    done = subprocess.run(
        [sys.executable, "-m", "migration_pipeline.cli", "cutover", "--store", "wallet", "--approved-by", "alice",
         "--database-url", database_url], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    report = reports / "wallet" / "run-1" / "report.html"
    assert done.stdout == f"wallet: cut over the live version, plan {plan_1} of run run-1, approved by alice; " \
                          f"report {report}\n"
    with connect(database_url) as conn:
        phase = get_phase(conn, "wallet")
        assert (phase.phase, phase.run_id, phase.plan_id, phase.approved_by) == ("cut_over", "run-1", plan_1, "alice")
        assert history(conn)[-1] == ("promoted", "cut_over", "alice", None,
                                     f"approved by alice: the live version, plan {plan_1} of run run-1")
        assert snapshot(conn) == live
        assert "approved by <b>alice</b>" in report.read_text(encoding="utf-8")


def test_a_reader_that_began_after_staging_is_not_disconnected_though_an_old_transaction_drags_its_xmin(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    """A snapshot's xmin is the oldest transaction running when it was taken: an old writer makes a new
    reader's xmin older than the staged data, yet the reader sees every staged row."""
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    writer = reader(database_url)
    writer.execute("BEGIN")
    writer.execute("SELECT pg_current_xact_id()")  # an xid older than the staged data, kept running
    stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    app = reader(database_url)
    app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    app.execute("SELECT count(*) FROM migration.store_phase")
    with connect(database_url) as conn:
        assert conn.execute(
            "SELECT age(backend_xmin) >= age(xmin) FROM pg_stat_activity, migration.staging WHERE pid = %s",
            (app.info.backend_pid,)).fetchone() == (True,)
        promote(conn, SPEC, "run-b", actor="tester", attempts=1, lock_timeout=0.2, backoff=0)
    assert counts(app) == NEW  # its snapshot sees the staged rows: the new version, whole
    app.execute("COMMIT")
    writer.execute("COMMIT")
    app.close()
    writer.close()
