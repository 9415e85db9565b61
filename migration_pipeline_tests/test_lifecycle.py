"""The lifecycle of a store against a real PostgreSQL: every phase transition is recorded, the backup
is written first and verifies, promotion refuses what it must, rollback restores the previous live
version exactly, cutover needs a promotion and a report and then protects the live tables.

Core functions are called directly wherever the test is not about Dagster (fast); the Dagster jobs
(`migrate_wallet`, `cutover_store`) run in-process where the behaviour under test is theirs."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance
from psycopg import sql

from migration_pipeline.core.backup import open_archive, read_manifest
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import PromotionBlockedError
from migration_pipeline.core.promote import get_phase, promote, rollback, set_phase
from migration_pipeline.core.reconcile import CheckOutcome, current_plan, record_outcomes
from migration_pipeline.core.report import build_report
from migration_pipeline.core.stage import stage_store
from migration_pipeline.definitions import defs, job_name
from migration_pipeline.lifecycle import cut_over_with_report
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.wallet import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES

SPEC = WALLET_STORE
REPO = Path(__file__).resolve().parents[1]


# --- helpers ---------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(conn: psycopg.Connection, schema: str = SPEC.schema) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of `schema` as its full rows (every column), in a total order."""
    tables = [t for (t,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)).fetchall()]
    assert tables, f"schema {schema} has no tables"
    out = {}
    for table in tables:
        rows = conn.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        out[table] = sorted(rows.fetchall(), key=repr)
    return out


def stage_and_gate(url: str, root: Path, run_id: str, docs: Path, secret: str = SAMPLE_SECRET) -> list[CheckOutcome]:
    stage_store(url, SPEC, root, run_id, secret, workers=1)
    with connect(url) as conn:
        return evaluate_gates(conn, url, SPEC, run_id, docs / run_id)


def stage_gate_promote(url: str, root: Path, run_id: str, docs: Path, actor: str = "tester") -> None:
    outcomes = stage_and_gate(url, root, run_id, docs)
    assert [o.name for o in outcomes if not o.passed] == []
    with connect(url) as conn:
        promote(conn, SPEC, run_id, actor=actor)


def history(conn: psycopg.Connection, store: str = SPEC.name) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT from_phase, to_phase, actor, run_id, note FROM migration.phase_history WHERE store = %s ORDER BY id",
        (store,)).fetchall()


def set_env(monkeypatch: pytest.MonkeyPatch, url: str, root: Path, tmp_path: Path) -> tuple[Path, Path]:
    reports, backups = tmp_path / "reports", tmp_path / "backups"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MIGRATION_SOURCE_ROOT", str(root))
    monkeypatch.setenv("MIGRATION_REPORT_DIR", str(reports))
    monkeypatch.setenv("MIGRATION_BACKUP_DIR", str(backups))
    monkeypatch.setenv("ENCRYPTION_SECRET", SAMPLE_SECRET)
    return reports, backups


def failure_text(result: Any) -> str:
    """Every message of every step failure, including the chained causes (the op's own exception)."""
    texts = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(f"{error.cls_name}: {error.message}")
                error = error.cause
    return "\n".join(texts)


def test_no_gate_runs_until_the_backup_written_beside_the_load_verified(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup is written beside the load, in its step: a backup that fails fails the step, so the gates and
    the promotion never run; the load it ran beside is kept, and the next run only writes the backup."""
    _, backups = set_env(monkeypatch, database_url, SAMPLES, tmp_path)
    backups.write_text("a file where the backup folder should be\n")
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def(job_name("wallet"))
    failed = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    assert f"Failure: dagster._core.definitions.events.Failure: backup: the folder {backups} cannot be created " \
           "(File exists): point MIGRATION_BACKUP_DIR at a writable folder, then re-run" in failure_text(failed).splitlines()
    ran = {e.step_key for e in failed.all_events if e.event_type_value == "STEP_START"}
    assert ran == {"wallet__staged"}  # no gate, no promotion
    with connect(database_url) as conn:
        assert history(conn) == []
        assert conn.execute("SELECT count(*) FROM migration.backups").fetchone() == (0,)
        assert conn.execute("SELECT status FROM migration.staging WHERE store = 'wallet'").fetchone() == ("staged",)

    backups.unlink()
    done = job.execute_in_process(instance=instance, raise_on_error=False)
    assert done.success
    staged = instance.get_latest_materialization_event(AssetKey(["wallet", "staged", "wallets"]))
    assert staged is not None and staged.run_id == done.run_id
    assert staged.asset_materialization.metadata["units_resumed"].value == 16  # type: ignore[union-attr]
    backup = instance.get_latest_materialization_event(AssetKey(["wallet", "backup"]))
    assert backup is not None and backup.run_id == done.run_id
    assert backup.asset_materialization.metadata["written_now"].value is True  # type: ignore[union-attr]
    with connect(database_url) as conn:
        assert [h[:2] for h in history(conn)] == [("not_started", "staged"), ("staged", "validated"),
                                                  ("validated", "promoted")]
        assert conn.execute("SELECT count(*) FROM migration.backups").fetchone() == (1,)


def test_a_source_that_lost_rows_blocks_promotion_until_allowed(database_url: str, roots: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """A store of 60 users is live; a source of 50 users (a sixth of the files gone) stages and reconciles
    cleanly, and only live_row_loss stops it from replacing the live tables."""
    stage_gate_promote(database_url, roots["B"], "run-b", tmp_path)
    outcomes = {o.name: o for o in stage_and_gate(database_url, roots["A"], "run-a", tmp_path)}
    assert [name for name, o in outcomes.items() if not o.passed] == ["live_row_loss"]
    assert outcomes["live_row_loss"].summary == (
        "wallets: 120 live rows would become 100 (-17%); users: 60 live rows would become 50 (-17%); "
        "wallet_metadata: 120 live rows would become 100 (-17%); wallet_audit_log: 120 live rows would become 100 "
        "(-17%), more than the 10% a run may drop: check that the source root holds the whole store (an unmounted "
        "share, a wrong path); to promote anyway, run again with --allow-row-loss")
    assert outcomes["live_row_loss"].details["tables"]["users"] == {"live": 60, "staged": 50}
    with connect(database_url) as conn:
        before = snapshot(conn)
        # The reviewer sees what promotion would replace: live rows beside the loaded ones.
        html = build_report(conn, SPEC, "run-a", tmp_path / "reports", outcome="blocked").read_text(encoding="utf-8")
        assert "<th>quarantined</th><th>live before</th>" in html
        assert "<tr><td><code>users</code></td><td class='n'>50</td><td class='n'>50</td><td class='n'>0</td>" \
               "<td class='n'>60</td>" in html
        with pytest.raises(PromotionBlockedError, match="live_row_loss"):
            promote(conn, SPEC, "run-a", actor="tester")
        assert snapshot(conn) == before
        # Allowed a larger loss, the same staging passes every gate and is promoted.
        allowed = evaluate_gates(conn, database_url, SPEC, "run-a", tmp_path / "again", max_row_loss_percent=20)
        assert [o.name for o in allowed if not o.passed] == []
        assert next(o for o in allowed if o.name == "live_row_loss").summary == (
            "no table drops more than 20% of its live rows")
        promote(conn, SPEC, "run-a", actor="tester")
        assert conn.execute("SELECT count(*) FROM wallet.users").fetchone() == (50,)


# --- 1. the real Dagster job: every transition recorded, backup first and verified -----------------


def test_migrate_job_records_every_transition_and_a_verified_backup(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports, backups = set_env(monkeypatch, database_url, SAMPLES, tmp_path)

    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def(job_name("wallet")).execute_in_process(instance=instance)
    assert result.success
    run_id = result.run_id
    # The load's progress reaches the event log (the UI's run page) as it goes, ending with the loaded counts.
    progress = [e.user_message for e in instance.all_logs(run_id)
                if e.dagster_event is None and e.user_message.startswith(("wallet: b", "wallet: l"))]
    # The step starts the backup and lists the store side by side: whichever the first poll sees.
    assert re.match(r"wallet: (backing up(, \d+ MiB written)?|listing files), elapsed 0:", progress[0]), progress
    assert re.fullmatch(r"wallet: loaded 16/16 units, 28 files, \d+ rows in \d+\.\d s( \([\d,]+ rows/s\))?; "
                        r"elapsed \d+:\d\d", progress[-1]), progress

    with connect(database_url) as conn:
        assert [h[:4] for h in history(conn)] == [
            ("not_started", "staged", "dagster", run_id),
            ("staged", "validated", "dagster", run_id),
            ("validated", "promoted", "dagster", run_id),
        ]
        assert history(conn, "metagauge") == []
        phase = get_phase(conn, "wallet")
        assert (phase.phase, phase.run_id, phase.approved_by) == ("promoted", run_id, None)
        rows = conn.execute(
            "SELECT archive_path, sha256, files, bytes, manifest_path FROM migration.backups WHERE store = 'wallet'"
        ).fetchall()

    # Exactly one backup; its archive exists in the backup dir and its recorded SHA-256 is the file's.
    assert len(rows) == 1
    archive_path, sha, files, size, manifest_path = rows[0]
    archive = Path(archive_path)
    assert archive.is_file()
    assert archive.parent == backups.resolve()
    assert sha == _sha256(archive)

    # The manifest lists every file under data_samples/wallet with its SHA-256, and nothing else.
    store_dir = SAMPLES / "wallet"
    expected = {p.relative_to(store_dir).as_posix(): _sha256(p) for p in store_dir.rglob("*") if p.is_file()}
    assert "EXPECTED.md" in expected and "storage/wallets/.DS_Store" in expected
    manifest = read_manifest(Path(manifest_path))  # sha256sum format: `sha256sum -c` checks an extraction
    assert manifest == expected
    assert files == len(expected)
    assert size == sum((store_dir / rel).stat().st_size for rel in expected)
    # ... and the archive holds exactly those files, byte for byte.
    with open_archive(archive) as tar:
        members = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar}  # type: ignore[union-attr]
    assert members == expected

    # The report of the run shows the backup's SHA-256 and the phase history.
    report = Path(phase.report_path or "")
    assert report == (reports / "wallet" / run_id / "report.html").resolve()
    text = report.read_text(encoding="utf-8")
    assert f"SHA-256 <code>{sha}</code>" in text
    assert str(archive) in text
    assert "<td>validated</td><td>promoted</td><td>dagster</td>" in text
    assert "<tr><td><code>wallets</code></td><td class='n'>24</td><td class='n'>16</td><td class='n'>8</td>" in text
    # The counts are the ones the row-count gate saw: a row deleted after it is not counted again.
    with connect(database_url) as conn:
        conn.execute("DELETE FROM wallet.wallet_audit_log WHERE id = (SELECT min(id) FROM wallet.wallet_audit_log)")
        assert build_report(conn, SPEC, run_id, reports, outcome="promoted") == report
    text = report.read_text(encoding="utf-8")
    assert "<tr><td><code>wallet_audit_log</code></td><td class='n'>16</td><td class='n'>16</td>" in text


# --- 2. rollback ----------------------------------------------------------------------------------


def test_rollback_restores_previous_exactly_and_a_second_rollback_swaps_back(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    with connect(database_url) as conn:
        live_a = snapshot(conn)
    assert len(live_a["users"]) == 50

    stage_gate_promote(database_url, roots["B"], "run-b", tmp_path)
    with connect(database_url) as conn:
        live_b = snapshot(conn)
        assert live_b != live_a
        assert len(live_b["users"]) == 60
        assert snapshot(conn, SPEC.previous_schema) == live_a

        rollback(conn, SPEC, actor="alice")
        assert snapshot(conn) == live_a
        assert snapshot(conn, SPEC.previous_schema) == live_b
        phase = get_phase(conn, "wallet")
        assert phase.phase == "rolled_back"
        last = history(conn)[-1]
        assert last[:4] == ("promoted", "rolled_back", "alice", None)
        assert phase.plan_id and phase.plan_id in last[4]

        # A second rollback swaps the two versions again: B is live once more (documented behaviour).
        rollback(conn, SPEC, actor="bob", run_id="r-2")
        assert snapshot(conn) == live_b
        assert snapshot(conn, SPEC.previous_schema) == live_a
        assert history(conn)[-1][:4] == ("rolled_back", "rolled_back", "bob", "r-2")
        assert [h[1] for h in history(conn)] == ["promoted", "promoted", "rolled_back", "rolled_back"]


def test_rollback_without_a_previous_version_is_refused(database_url: str) -> None:
    with connect(database_url) as conn:
        before = snapshot(conn)
        with pytest.raises(PromotionBlockedError, match="no previous version to roll back to"):
            rollback(conn, SPEC, actor="alice")
        assert snapshot(conn) == before
        assert history(conn) == []


# --- 3. cutover -----------------------------------------------------------------------------------


def test_cutover_needs_promotion_and_report_then_protects_live_until_forced(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    with connect(database_url) as conn:
        with pytest.raises(PromotionBlockedError, match="wallet is not_started: only a promoted store can be cut over"):
            cut_over_with_report(conn, "wallet", "alice", None, reports)
        assert get_phase(conn, "wallet").phase == "not_started"
        assert history(conn) == []

    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    with connect(database_url) as conn:
        # Promoted, but the run's report is missing: refused.
        with pytest.raises(PromotionBlockedError, match="validation report of run run-a is missing"):
            cut_over_with_report(conn, "wallet", "alice", None, reports)
        assert get_phase(conn, "wallet").phase == "promoted"
        build_report(conn, SPEC, "run-a", reports, outcome="promoted")

        report = cut_over_with_report(conn, "wallet", "alice", None, reports)
        phase = get_phase(conn, "wallet")
        assert (phase.phase, phase.approved_by, phase.run_id) == ("cut_over", "alice", "run-a")
        assert history(conn)[-1] == ("promoted", "cut_over", "alice", None,
                                     f"approved by alice: the live version, plan {phase.plan_id} of run run-a")
        assert report == reports / "wallet" / "run-a" / "report.html"
        assert "approved by <b>alice</b>" in report.read_text(encoding="utf-8")
        live_a = snapshot(conn)

    # A new run re-stages and passes every gate, but may not overwrite a cut-over store's tables.
    outcomes = stage_and_gate(database_url, roots["B"], "run-b", tmp_path)
    assert all(o.passed for o in outcomes)
    with connect(database_url) as conn:
        with pytest.raises(PromotionBlockedError, match="--force") as blocked:
            promote(conn, SPEC, "run-b", actor="bob")
        assert "wallet is cut over" in str(blocked.value)
        assert snapshot(conn) == live_a
        assert get_phase(conn, "wallet").phase == "cut_over"
        assert current_plan(conn, "wallet")[1] == "staged"

        promote(conn, SPEC, "run-b", actor="bob", force=True)
        live_b = snapshot(conn)
        assert len(live_b["users"]) == 60
        assert snapshot(conn, SPEC.previous_schema) == live_a
        assert history(conn)[-1] == ("cut_over", "promoted", "bob", "run-b", "forced over cut_over")
        phase = get_phase(conn, "wallet")
        assert (phase.phase, phase.run_id, phase.approved_by) == ("promoted", "run-b", None)

        # The report on record is run-a's: it does not approve run-b's promotion.
        with pytest.raises(PromotionBlockedError, match="validation report of run run-b is missing"):
            cut_over_with_report(conn, "wallet", "carol", None, reports)
        build_report(conn, SPEC, "run-b", reports, outcome="promoted")
        cut_over_with_report(conn, "wallet", "carol", None, reports)
        assert get_phase(conn, "wallet").phase == "cut_over"

        # Rollback from cut_over restores the version cut over before (A) exactly.
        rollback(conn, SPEC, actor="carol")
        assert snapshot(conn) == live_a
        assert history(conn)[-1][:3] == ("cut_over", "rolled_back", "carol")
        assert [h[1] for h in history(conn)] == ["promoted", "cut_over", "promoted", "cut_over", "rolled_back"]


# --- 4. the Dagster cutover job -------------------------------------------------------------------


def test_cutover_job_with_config(
    database_url: str, roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports, _ = set_env(monkeypatch, database_url, roots["A"], tmp_path)
    job = defs.resolve_job_def("cutover_store")
    config = {"ops": {"cut_over_store": {"config": {"store": "wallet", "approved_by": "bob"}}}}

    # Not promoted: the run fails, the phase is unchanged.
    refused = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not refused.success
    assert "only a promoted store can be cut over" in failure_text(refused)
    with connect(database_url) as conn:
        assert get_phase(conn, "wallet").phase == "not_started"
        assert history(conn) == []

    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    with connect(database_url) as conn:
        build_report(conn, SPEC, "run-a", reports, outcome="promoted")

    result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success, failure_text(result)
    with connect(database_url) as conn:
        phase = get_phase(conn, "wallet")
        assert (phase.phase, phase.approved_by, phase.run_id) == ("cut_over", "bob", "run-a")
        assert history(conn)[-1] == ("promoted", "cut_over", "bob", None, f"approved by bob in run {result.run_id}: "
                                     f"the live version, plan {phase.plan_id} of run run-a")
    assert "approved by <b>bob</b>" in (reports / "wallet" / "run-a" / "report.html").read_text(encoding="utf-8")

    # And the rollback job, with its config, from cut_over.
    back = defs.resolve_job_def("rollback_store").execute_in_process(
        run_config={"ops": {"roll_back_store": {"config": {"store": "wallet", "requested_by": "carol"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert back.success, failure_text(back)
    with connect(database_url) as conn:
        assert get_phase(conn, "wallet").phase == "rolled_back"
        assert history(conn)[-1][:4] == ("cut_over", "rolled_back", "carol", back.run_id)
        assert conn.execute("SELECT count(*) FROM wallet.users").fetchone() == (0,)


# --- 5. promotion refusals ------------------------------------------------------------------------


def test_promotion_refused_when_a_gate_of_this_run_failed(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    # A recorded failing outcome of this run blocks, even though every real gate passed.
    outcomes = stage_and_gate(database_url, roots["A"], "run-a", tmp_path)
    assert all(o.passed for o in outcomes)
    with connect(database_url) as conn:
        before = snapshot(conn)
        plan_id, _ = current_plan(conn, "wallet")
        record_outcomes(conn, "wallet", plan_id, "run-a",
                        [CheckOutcome("checksum_reconciliation", False, "checksum differs for wallets")])
        with pytest.raises(PromotionBlockedError,
                           match="wallet: promotion blocked by gate checksum_reconciliation: checksum differs for "
                                 "wallets$"):
            promote(conn, SPEC, "run-a", actor="tester")
        assert snapshot(conn) == before
        assert current_plan(conn, "wallet") == (plan_id, "staged")
        assert get_phase(conn, "wallet").phase == "not_started"

    # A wrong secret: key verification fails, promotion is blocked by it.
    outcomes = stage_and_gate(database_url, roots["A"], "run-w", tmp_path, secret="not-the-secret")
    assert [o.name for o in outcomes if not o.passed] == ["key_verification"]
    with connect(database_url) as conn:
        with pytest.raises(PromotionBlockedError, match="promotion blocked by gate key_verification"):
            promote(conn, SPEC, "run-w", actor="tester")
        assert snapshot(conn) == before
        assert history(conn) == []


def test_promotion_refused_when_another_run_staged_the_data(
    database_url: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    outcomes = stage_and_gate(database_url, roots["B"], "run-1", tmp_path)
    assert all(o.passed for o in outcomes)
    stage_store(database_url, SPEC, roots["B"], "run-2", SAMPLE_SECRET, workers=1)  # restaged by another run
    with connect(database_url) as conn:
        before = snapshot(conn)
        with pytest.raises(PromotionBlockedError, match="the staged data belongs to run run-2, not run-1"):
            promote(conn, SPEC, "run-1", actor="tester")
        # run-2 staged but never ran its gates: refused too, naming a gate that did not run.
        with pytest.raises(PromotionBlockedError, match="blocked by gate row_count_reconciliation: did not run"):
            promote(conn, SPEC, "run-2", actor="tester")
        assert snapshot(conn) == before
        assert before["users"] == [] and before["wallets"] == []  # the live tables as sql/ created them
        assert current_plan(conn, "wallet")[1] == "staged"
        assert history(conn) == []


# --- 6. status ------------------------------------------------------------------------------------


def test_status_command_prints_every_store_with_its_phase(database_url: str, tmp_path: Path) -> None:
    with connect(database_url) as conn:
        set_phase(conn, "wallet", "validated", run_id="run-xyz", actor="tester")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(tmp_path / "dagster_home"), "MIGRATION_SOURCE_ROOT": str(SAMPLES),
                "MIGRATION_REPORT_DIR": str(tmp_path / "reports")})
    done = subprocess.run(
        [sys.executable, "-m", "migration_pipeline.cli", "status", "--database-url", database_url],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["store", "phase", "last", "run", "changed", "approved", "by", "last", "report"]
    by_store = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert set(by_store) == {"wallet", "metagauge", "pend", "defarm"}
    assert by_store["wallet"][1:3] == ["validated", "run-xyz"]
    assert by_store["metagauge"][1:3] == ["not_started", "-"]


# --- 6. the Launchpad's config and what the UI shows of each phase change ---------------------------


def test_cutover_config_refuses_an_unknown_store_before_the_run_and_an_empty_approver_in_one_line(
    database_url: str, roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInvalidConfigError

    set_env(monkeypatch, database_url, roots["A"], tmp_path)
    job = defs.resolve_job_def("cutover_store")
    instance = DagsterInstance.ephemeral()
    with pytest.raises(DagsterInvalidConfigError, match="not in enum type StoreName got walet"):
        job.execute_in_process(run_config={"ops": {"cut_over_store": {"config": {"store": "walet", "approved_by": "b"}}}},
                               instance=instance)
    assert instance.get_runs() == []  # refused before any run was created

    empty = job.execute_in_process(
        run_config={"ops": {"cut_over_store": {"config": {"store": "wallet", "approved_by": "   "}}}},
        instance=instance, raise_on_error=False)
    assert not empty.success
    (failure,) = [e for e in empty.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert (error.cls_name, error.message.strip(), error.cause) == (
        "Failure", "dagster._core.definitions.events.Failure: approved_by is empty: give the name of the person "
        "(it is recorded)", None)
    with connect(database_url) as conn:
        assert history(conn) == []


def test_cutover_and_rollback_are_recorded_on_the_live_tables_with_who_when_and_run(
    database_url: str, roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import AssetKey

    reports, _ = set_env(monkeypatch, database_url, roots["A"], tmp_path)
    stage_gate_promote(database_url, roots["A"], "run-a", tmp_path)
    with connect(database_url) as conn:
        build_report(conn, SPEC, "run-a", reports, outcome="promoted")
    instance = DagsterInstance.ephemeral()
    config = {"ops": {"cut_over_store": {"config": {"store": "wallet", "approved_by": "  Alice Reviewer "}}}}
    cut = defs.resolve_job_def("cutover_store").execute_in_process(run_config=config, instance=instance)
    assert instance.get_run_by_id(cut.run_id).tags["migration/store"] == "wallet"  # type: ignore[union-attr]
    # What is approved is logged before it is: the plan, the validated run, the rows per table, the report.
    with connect(database_url) as conn:
        plan_id = get_phase(conn, "wallet").plan_id
    messages = [e.user_message for e in instance.all_logs(cut.run_id) if e.user_message]
    about = next(m for m in messages if "about to approve" in m)
    report_path = (reports / "wallet" / "run-a" / "report.html").resolve()
    assert about == (f"wallet: about to approve plan {plan_id} of run run-a (350 live rows: wallets 100, users 50, "
                     f"wallet_metadata 100, wallet_audit_log 100); report {report_path}; approver Alice Reviewer")
    for table in ("wallets", "users", "wallet_metadata", "wallet_audit_log"):
        observed = instance.fetch_observations(AssetKey(["wallet", table]), limit=1).records[0]
        metadata = observed.asset_observation.metadata  # type: ignore[union-attr]
        assert (metadata["phase"].value, metadata["phase_by"].value, metadata["approved_by"].value) == (
            "cut_over", "Alice Reviewer", "Alice Reviewer")
        assert metadata["phase_at"].value > 0 and observed.event_log_entry.run_id == cut.run_id
    report = instance.get_latest_materialization_event(AssetKey(["wallet", "validation_report"]))
    assert report is not None and report.run_id == cut.run_id
    assert report.asset_materialization.metadata["approved_by"].value == "Alice Reviewer"  # type: ignore[union-attr]

    # A second cutover is refused in one line.
    again = defs.resolve_job_def("cutover_store").execute_in_process(run_config=config, instance=instance,
                                                                     raise_on_error=False)
    (failure,) = [e for e in again.all_events if e.is_step_failure]
    assert failure.step_failure_data.error.message.strip() == (
        "dagster._core.definitions.events.Failure: wallet is cut_over: only a promoted store can be cut over "
        "(promote it first)")

    back = defs.resolve_job_def("rollback_store").execute_in_process(
        run_config={"ops": {"roll_back_store": {"config": {"store": "wallet", "requested_by": "carol"}}}},
        instance=instance)
    for table, rows in (("wallets", 0), ("users", 0)):
        event = instance.get_latest_materialization_event(AssetKey(["wallet", table]))
        assert event is not None and event.run_id == back.run_id
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        assert (metadata["phase"].value, metadata["phase_by"].value, metadata["dagster/row_count"].value) == (
            "rolled_back", "carol", rows)
    report = instance.get_latest_materialization_event(AssetKey(["wallet", "validation_report"]))
    assert report is not None and report.run_id == back.run_id
    assert "rolled_back" in (reports / "wallet" / "run-a" / "report.html").read_text(encoding="utf-8")
