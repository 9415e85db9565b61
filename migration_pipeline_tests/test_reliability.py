"""The command line as a data engineer uses it, on a real PostgreSQL and a real Dagster instance:
re-runs, a crash and its resume, two runs at once, blocked promotions, clear errors, no key leaks.

Every `migration-pipeline run` here is a subprocess (~10-25 s each), so each test does as few as it can.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migration_pipeline.core.database import connect, drop_database, ensure_database
from migration_pipeline.core.errors import shorten
from migration_pipeline.stores.wallet import WALLET_STORE
from migration_pipeline.stores.wallet.generate import generate_wallet_store

from .conftest import REPO, SAMPLES

# End-to-end through the command line (real Dagster runs, ~15 s each): CI runs them once, embedded.
pytestmark = pytest.mark.slow

SAMPLE_ENV = str(SAMPLES / "sample.env")
LIVE_TABLES = ("users", "wallets", "wallet_metadata", "wallet_audit_log")
RUN_ID = re.compile(r"^== wallet ==  run (\S+)$", re.M)
CLI_TIMEOUT = 240


# --- helpers ----------------------------------------------------------------------------------------------


def _env(tmp_path: Path, secret: str | None = None) -> dict[str, str]:
    """The environment of one CLI run: its own Dagster home and report folder, no inherited settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ENCRYPTION_SECRET", "DATABASE_URL", "MIGRATION_SOURCE_ROOT", "DAGSTER_PG_URL")}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    env["MIGRATION_REPORT_DIR"] = str(tmp_path / "reports")
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # platformdirs warns without it; not what these tests are about
    if secret is not None:
        env["ENCRYPTION_SECRET"] = secret
    return env


def _args(database_url: str, root: Path | str, *, env_file: bool = True) -> list[str]:
    args = [sys.executable, "-m", "migration_pipeline.cli", "run", "--store", "wallet",
            "--database-url", database_url, "--source-root", str(root)]
    return args + (["--env-file", SAMPLE_ENV] if env_file else [])


def _run(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def _run_id(stdout: str) -> str:
    ids = RUN_ID.findall(stdout)
    assert len(ids) == 1, stdout
    return ids[0]


def _stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _live(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every live wallet table, full rows in key order."""
    with connect(database_url) as conn:
        return {
            t: conn.execute(sql.SQL("SELECT * FROM wallet.{} ORDER BY id").format(sql.Identifier(t))).fetchall()
            for t in LIVE_TABLES
        }


def _one(database_url: str, query: str, params: Sequence[Any] = ()) -> Any:
    with connect(database_url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _wait_for_backends_to_go(database_url: str, timeout: float = 30) -> None:
    """After a SIGKILL, wait until PostgreSQL has ended the killed process's sessions (and locks)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True, application_name="reliability-test") as conn:
        while time.monotonic() < deadline:
            left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND pid <> pg_backend_pid() AND application_name <> 'reliability-test'"
                                " AND backend_type = 'client backend'").fetchone()
            if left == (0,):
                return
            time.sleep(0.1)
    raise AssertionError("the killed run's sessions are still open")


def _assert_promoted(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "promotion: PROMOTED" in proc.stdout
    assert "Traceback" not in proc.stderr
    return _run_id(proc.stdout)


# --- re-runs, blocked promotions -----------------------------------------------------------------------------


def test_rerun_is_idempotent_and_blocked_runs_leave_live_unchanged(database_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = _assert_promoted(_run(_args(database_url, SAMPLES), env))
    after_first = _live(database_url)
    second = _assert_promoted(_run(_args(database_url, SAMPLES), env))
    after_second = _live(database_url)
    assert first != second

    assert [len(after_second[t]) for t in LIVE_TABLES] == [12, 16, 16, 16]
    for table in ("users", "wallets", "wallet_metadata"):
        assert after_second[table] == after_first[table], table
    wallet_ids = [w[0] for w in after_second["wallets"]]
    assert len(set(wallet_ids)) == 16
    assert _one(database_url, "SELECT count(DISTINCT (fid, chain)) FROM wallet.wallets") == 16
    assert _one(database_url, "SELECT count(DISTINCT fid) FROM wallet.users") == 12
    # one audit row per wallet, written by the run that promoted the current version
    audit = sorted((r[1], r[2], r[3]) for r in after_second["wallet_audit_log"])
    assert audit == [(wid, "migrated", second) for wid in sorted(wallet_ids)]
    assert _one(database_url, "SELECT count(*) FROM migration.phase_history WHERE to_phase = 'promoted'") == 2

    # A wrong ENCRYPTION_SECRET: every key fails, promotion is blocked, the live tables stay as they were.
    wrong = _run(_args(database_url, SAMPLES, env_file=False), _env(tmp_path, secret="not-the-secret"))
    assert wrong.returncode == 1, (wrong.stdout, wrong.stderr)
    assert "Traceback" not in wrong.stderr
    last = _stderr_lines(wrong.stderr)[-1]
    assert last.startswith("wallet: promotion blocked by gate key_verification: 13 of 13 wallet keys fail"), last
    assert "promotion: BLOCKED (live tables unchanged)" in wrong.stdout
    assert _live(database_url) == after_second

    # The right secret, but one key derives another address: blocked, and the report names the file.
    generated = generate_wallet_store(tmp_path / "mismatch", users=40, secret="mismatch-secret", seed=5,
                                      mismatched_keys=1)
    (fid,) = generated.mismatched_fids
    blocked = _run(_args(database_url, tmp_path / "mismatch", env_file=False), _env(tmp_path, "mismatch-secret"))
    assert blocked.returncode == 1, (blocked.stdout, blocked.stderr)
    assert "Traceback" not in blocked.stderr
    last = _stderr_lines(blocked.stderr)[-1]
    assert last.startswith("wallet: promotion blocked by gate key_verification: 1 of "), last
    assert last.endswith("wallet keys fail verification (1 key_address_mismatch)"), last
    report = tmp_path / "reports" / "wallet" / _run_id(blocked.stdout) / "report.html"
    html = report.read_text()
    assert f"storage/wallets/wallet_{fid}_ethereum.json" in html
    assert "Files that failed verification" in html
    assert _live(database_url) == after_second
    assert _one(database_url, "SELECT phase FROM migration.store_phase WHERE store = 'wallet'") == "promoted"
    assert _one(database_url, "SELECT count(*) FROM migration.phase_history WHERE to_phase = 'promoted'") == 2


def test_an_emptied_source_is_not_promoted_over_live_tables_unless_allowed(database_url: str, tmp_path: Path) -> None:
    """An unmounted share looks like an empty store folder: it stages, reconciles and validates as an empty
    store. The live_row_loss gate blocks it; --allow-row-loss promotes it, on purpose."""
    env = _env(tmp_path)
    _assert_promoted(_run(_args(database_url, SAMPLES), env))
    promoted = _live(database_url)
    empty = tmp_path / "unmounted"
    (empty / "wallet" / "storage" / "wallets").mkdir(parents=True)

    blocked = _run(_args(database_url, empty), env)
    assert blocked.returncode == 1, (blocked.stdout, blocked.stderr)
    assert "Traceback" not in blocked.stderr
    assert _stderr_lines(blocked.stderr)[-1] == (
        "wallet: promotion blocked by gate live_row_loss: wallets: 16 live rows would become 0 (-100%); users: 12 live "
        "rows would become 0 (-100%); wallet_metadata: 16 live rows would become 0 (-100%); wallet_audit_log: 16 "
        "live rows would become 0 (-100%), more than the 10% a run may drop: check that the source root holds the "
        "whole store (an unmounted share, a wrong path); to promote anyway, run again with --allow-row-loss")
    assert "promotion: BLOCKED (live tables unchanged)" in blocked.stdout
    assert _live(database_url) == promoted

    _assert_promoted(_run([*_args(database_url, empty), "--allow-row-loss"], env))
    assert _live(database_url) == {t: [] for t in LIVE_TABLES}


# --- crash and resume ---------------------------------------------------------------------------------------


def test_killed_run_resumes_without_loss_or_duplicates(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "crash-secret"
    generated = generate_wallet_store(tmp_path / "src", users=6000, secret=secret, seed=21)
    units_total = len(WALLET_STORE.discover(tmp_path / "src" / "wallet").units)
    assert units_total == 16  # 12001 files in 16 shards of ~750
    env = _env(tmp_path, secret)
    before = _live(database_url)
    assert before == {t: [] for t in LIVE_TABLES}

    proc = subprocess.Popen(_args(database_url, tmp_path / "src", env_file=False), env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first_run = None
    try:
        deadline = time.monotonic() + 120
        with psycopg.connect(database_url, autocommit=True, application_name="reliability-test") as conn:
            while time.monotonic() < deadline and proc.poll() is None:
                row = conn.execute(
                    """SELECT s.status, s.run_id, (SELECT count(DISTINCT unit_no) FROM migration.unit_progress u
                                                  WHERE u.store = s.store AND u.plan_id = s.plan_id)
                       FROM migration.staging s WHERE s.store = 'wallet'""").fetchone()
                if row and row[0] == "loading" and row[2] >= 1:
                    first_run = row[1]
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
    finally:
        if proc.poll() is None and first_run is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    assert first_run is not None, f"the run was not caught while loading (exit {proc.returncode}): {out}\n{err}"
    assert proc.returncode == -signal.SIGKILL
    _wait_for_backends_to_go(database_url)

    status, plan_id, units_done = _one(
        database_url, """SELECT s.status, s.plan_id, (SELECT count(DISTINCT unit_no) FROM migration.unit_progress u
                         WHERE u.store = s.store AND u.plan_id = s.plan_id) FROM migration.staging s""")
    assert status == "loading"
    assert 1 <= units_done < units_total
    assert _live(database_url) == before  # a crash never touches the live tables

    second = _run(_args(database_url, tmp_path / "src", env_file=False), env)
    second_run = _assert_promoted(second)
    assert second_run != first_run

    # The second run resumed the first's plan: its committed units were not read again.
    with connect(database_url) as conn:
        assert conn.execute("SELECT plan_id, status FROM migration.staging WHERE store = 'wallet'").fetchone() == (
            plan_id, "promoted")
        by_run = dict(conn.execute(
            "SELECT run_id, count(DISTINCT unit_no) FROM migration.unit_progress WHERE store = 'wallet'"
            " AND plan_id = %s GROUP BY 1", (plan_id,)).fetchall())
        assert by_run == {first_run: units_done, second_run: units_total - units_done}
        assert conn.execute("SELECT count(*), count(DISTINCT unit_no) FROM migration.unit_progress WHERE plan_id = %s",
                            (plan_id,)).fetchone() == (units_total, units_total)
        live = conn.execute("SELECT count(*), count(DISTINCT (fid, chain)), count(DISTINCT id) FROM wallet.wallets"
                            ).fetchone()
        assert live == (generated.expected_loaded,) * 3
        assert conn.execute("SELECT count(*) FROM wallet.users").fetchone() == (generated.expected_users,)
        assert conn.execute("SELECT count(*), count(DISTINCT wallet_id) FROM wallet.wallet_audit_log").fetchone() == (
            generated.expected_loaded, generated.expected_loaded)
        reasons = dict(conn.execute(
            "SELECT reason, count(*) FROM migration.quarantine WHERE store = 'wallet' AND plan_id = %s GROUP BY 1",
            (plan_id,)).fetchall())
        assert reasons == generated.expected_quarantined
        assert conn.execute("SELECT count(*) = count(DISTINCT source_file) FROM migration.quarantine"
                            " WHERE plan_id = %s", (plan_id,)).fetchone() == (True,)
        manifest = dict(conn.execute("SELECT status, count(*) FROM migration.source_manifest WHERE plan_id = %s"
                                     " GROUP BY 1", (plan_id,)).fetchall())
        assert manifest == {"mapped": generated.mapped_files, "unmapped": generated.unmapped_files}

    # Dagster recorded the resume in the staged asset's metadata.
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    from dagster import AssetKey, DagsterInstance

    from migration_pipeline.core.database import sqlalchemy_url

    monkeypatch.setenv("DAGSTER_PG_URL", sqlalchemy_url(database_url))
    with DagsterInstance.get() as instance:
        records = instance.fetch_materializations(AssetKey(["wallet", "staged", "wallets"]), limit=100).records
        metadata = {r.event_log_entry.run_id: r.asset_materialization.metadata for r in records
                    if r.asset_materialization}
    assert set(metadata) == {second_run}
    assert metadata[second_run]["units_resumed"].value == units_done
    assert metadata[second_run]["units"].value == units_total


# --- two runs at once ----------------------------------------------------------------------------------------


def test_two_concurrent_runs_promote_once(database_url: str, tmp_path: Path) -> None:
    secret = "concurrent-secret"
    generated = generate_wallet_store(tmp_path / "src", users=2500, secret=secret, seed=3)
    args = _args(database_url, tmp_path / "src", env_file=False)
    procs = [subprocess.Popen(args, env=_env(tmp_path / name, secret), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    results = [(p, *p.communicate(timeout=CLI_TIMEOUT)) for p in procs]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(p.returncode, o, e) for p, o, e in results]
    _, _, loser_err = losers[0]
    assert "Traceback" not in loser_err
    lines = _stderr_lines(loser_err)
    assert len(lines) == 1, loser_err
    assert "being migrated by another run" in lines[0] or "belongs to run" in lines[0], lines[0]
    assert _one(database_url, "SELECT count(*) FROM migration.phase_history WHERE to_phase = 'promoted'") == 1
    assert _one(database_url, "SELECT run_id FROM migration.store_phase WHERE store = 'wallet'") == _run_id(
        winners[0][1])
    assert _one(database_url, "SELECT count(*), count(DISTINCT (fid, chain)) FROM wallet.wallets") == (
        generated.expected_loaded, generated.expected_loaded)


# --- clear errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing_secret", "unreachable_database", "malformed_database_url",
                                  "missing_source_root", "source_root_is_a_file", "bad_workers"])
def test_configuration_errors_are_one_line(case: str, database_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path)
    if case == "malformed_database_url":  # libpq's own message for it ends in a line break
        args = _args("postgres:/bad", SAMPLES)
        expected = ('error: DATABASE_URL postgres:/bad is not a valid PostgreSQL URL (missing "=" after "postgres:/bad"'
                    " in connection info string)")
    elif case == "source_root_is_a_file":
        (tmp_path / "root.txt").write_text("not a folder")
        args = _args(database_url, tmp_path / "root.txt")
        expected = f"error: source root {shorten(str(tmp_path / 'root.txt'))} is a file, not a folder"
    elif case == "bad_workers":
        args = _args(database_url, SAMPLES)
        env["MIGRATION_WORKERS"] = "two"
        expected = "error: MIGRATION_WORKERS is 'two': set it to a whole number of processes"
    elif case == "missing_secret":
        args = _args(database_url, SAMPLES, env_file=False)
        expected = "error: ENCRYPTION_SECRET is not set"
    elif case == "unreachable_database":
        args = _args("postgresql://postgres@127.0.0.1:1/none", SAMPLES)
        expected = "error: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/none"
    else:
        args = _args(database_url, tmp_path / "no-such-root")
        expected = f"error: source root {shorten(str(tmp_path / 'no-such-root'))} does not exist"
    proc = _run(args, env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = _stderr_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert _live(database_url) == {t: [] for t in LIVE_TABLES}
    assert _one(database_url, "SELECT count(*) FROM migration.staging") == 0


def test_commands_on_a_database_that_never_ran_a_migration_answer_in_one_line(server_url: str, tmp_path: Path) -> None:
    """status, rollback and cutover read the bookkeeping tables: on a fresh database they were an
    UndefinedTable traceback. Each command now applies sql/ first, as run does."""
    name = f"mp_fresh_{os.getpid()}"
    url = ensure_database(server_url, name)
    try:
        env = _env(tmp_path)
        base = [sys.executable, "-m", "migration_pipeline.cli"]
        status = _run([*base, "status", "--database-url", url], env)
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
        assert [line.split()[:2] for line in status.stdout.splitlines()[2:-1]] == [
            ["wallet", "not_started"], ["metagauge", "not_started"], ["pend", "not_started"], ["defarm", "not_started"]]
        for command, expected in (
            (["rollback", "--store", "wallet"], "error: wallet: there is no previous version to roll back to"),
            (["cutover", "--store", "wallet", "--approved-by", "ann"],
             "error: wallet is not_started: only a promoted store can be cut over (promote it first)"),
        ):
            proc = _run([*base, *command, "--database-url", url], env)
            assert proc.returncode == 2, (proc.stdout, proc.stderr)
            assert _stderr_lines(proc.stderr) == [expected]
    finally:
        drop_database(server_url, name)


def test_env_file_is_read_as_dotenv_files_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-written reader kept `export ` in a key and a trailing comment in a value: the secret it set
    was wrong and every key failed verification. The environment still wins over the file."""
    from migration_pipeline.cli.environment import load_env_file
    from migration_pipeline.core.errors import ConfigurationError

    env_file = tmp_path / "migration.env"
    env_file.write_text("# the secret\nexport ENCRYPTION_SECRET='s3cret with spaces'  # rotate yearly\n"
                        'MIGRATION_WORKERS="3"\nDATABASE_URL=from-file\nEMPTY=\n')
    monkeypatch.delenv("ENCRYPTION_SECRET", raising=False)
    monkeypatch.delenv("MIGRATION_WORKERS", raising=False)
    monkeypatch.delenv("EMPTY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "from-environment")
    load_env_file(str(env_file))
    assert os.environ["ENCRYPTION_SECRET"] == "s3cret with spaces"
    assert os.environ["MIGRATION_WORKERS"] == "3"
    assert os.environ["DATABASE_URL"] == "from-environment"
    assert os.environ["EMPTY"] == ""
    with pytest.raises(ConfigurationError, match=f"env file {tmp_path / 'none.env'} does not exist"):
        load_env_file(str(tmp_path / "none.env"))


# --- no key leaks anywhere -------------------------------------------------------------------------------------


def _all_rows_as_text(database_url: str, schemas: Sequence[str] | None = None) -> dict[str, str]:
    """Every row of every table (lower-cased row text, so every column cast to text), by table."""
    out: dict[str, str] = {}
    with connect(database_url) as conn:
        tables = conn.execute(
            """SELECT schemaname, tablename FROM pg_tables
               WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""").fetchall()
        for schema, table in tables:
            if schemas is not None and schema not in schemas:
                continue
            rows = conn.execute(sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table))).fetchall()
            out[f"{schema}.{table}"] = "\n".join(r[0] for r in rows).lower()
    return out


def _files_as_text(root: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace").lower() for p in root.rglob("*") if p.is_file()}


def _hits(needles: Sequence[str], haystacks: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, needle) for where, text in haystacks.items() for needle in needles if needle in text]


def test_no_key_or_ciphertext_leaks(database_url: str, tmp_path: Path) -> None:
    secret = "leak-scan-secret-4f1c"
    generated = generate_wallet_store(tmp_path / "src", users=200, secret=secret, seed=9, return_keys=True)
    keys = generated.plaintext_keys_sample
    assert keys is not None and len(keys) >= 200
    bodies = [k.lower().removeprefix("0x") for k in keys]  # also finds "0x..." and upper/mixed case (lowered)
    assert all(re.fullmatch(r"[0-9a-f]{64}", b) for b in bodies)
    env = _env(tmp_path, secret)
    proc = _run(_args(database_url, tmp_path / "src", env_file=False), env)
    _assert_promoted(proc)

    database = _all_rows_as_text(database_url)
    assert "public.event_logs" in database and database["public.event_logs"]  # Dagster's event log is scanned
    assert len(database["wallet.wallets"].splitlines()) == generated.expected_loaded
    with connect(database_url) as conn:
        ciphertexts = [c.lower() for (c,) in conn.execute(
            "SELECT encrypted_private_key FROM wallet.wallets WHERE encrypted_private_key IS NOT NULL").fetchall()]
    assert len(ciphertexts) >= 200

    outputs = {"stdout": proc.stdout.lower(), "stderr": proc.stderr.lower()}
    reports = _files_as_text(tmp_path / "reports")
    assert any(p.endswith("report.html") for p in reports)
    dagster_files = _files_as_text(Path(env["DAGSTER_HOME"]))
    dagster_tables = {k: v for k, v in database.items() if k.startswith("public.")}

    # positive control: the scan does find the ciphertexts where they belong
    assert len(_hits(ciphertexts, {"wallet.wallets": database["wallet.wallets"]})) == len(ciphertexts)
    assert _hits(bodies, outputs) == []
    assert _hits(bodies, reports) == []
    assert _hits(bodies, dagster_files) == []
    assert _hits(bodies, database) == []
    assert _hits(ciphertexts, reports) == []
    assert _hits(ciphertexts, dagster_tables) == []
    assert _hits(ciphertexts, dagster_files) == []
    assert _hits(ciphertexts, outputs) == []
    everything = {**outputs, **reports, **dagster_files, **database}
    assert _hits([secret.lower()], everything) == []
