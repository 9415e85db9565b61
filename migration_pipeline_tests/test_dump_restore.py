"""`dump` and `restore-check`: the promoted schema as a pg_dump with a SHA-256 manifest, restored into a
scratch database and compared with live table by table (seed 002: a full backup, a tested recovery)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from migration_pipeline.core.database import connect
from migration_pipeline.core.promote import promote
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.wallet.store import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(cwd)}  # platformdirs warns without one; not what is tested here
    return subprocess.run([sys.executable, "-m", "migration_pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_dump_restores_every_table_exactly_and_a_damaged_one_is_refused(database_url: str, tmp_path: Path) -> None:
    stage_store(database_url, WALLET_STORE, SAMPLES, "dumped", SAMPLE_SECRET, workers=1)
    with connect(database_url) as conn:
        assert all(o.passed for o in evaluate_gates(conn, database_url, WALLET_STORE, "dumped", tmp_path / "docs"))
        promote(conn, WALLET_STORE, "dumped", actor="test")

    made = _cli("dump", "--store", "wallet", "--database-url", database_url, "--out", "dumps", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (dump,) = (tmp_path / "dumps").glob("wallet-*.dump")
    assert (dump.parent / (dump.name + ".sha256")).read_text().endswith(f"  {dump.name}\n")

    checked = _cli("restore-check", "--store", "wallet", "--database-url", database_url, "--dump", str(dump),
                   cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert [line.split() for line in lines[2:6]] == [
        ["wallets", "16", "16", "equal"], ["users", "12", "12", "equal"], ["wallet_metadata", "16", "16", "equal"],
        ["wallet_audit_log", "16", "16", "equal"]]
    assert lines[-1] == "wallet: the dump restores every table exactly (60 rows)"
    with connect(database_url) as conn:  # the scratch database is gone
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'mp_restore_%'").fetchone() == (0,)

    with dump.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00damage")
    refused = _cli("restore-check", "--store", "wallet", "--database-url", database_url, "--dump", str(dump),
                   cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"error: {dump.name} does not match its SHA-256 manifest: the dump is damaged,"
                                      " take a new one")


def test_a_store_whose_triggers_call_the_bookkeeping_schema_restores_alone(database_url: str, tmp_path: Path) -> None:
    """Metagauge's tables have triggers calling `migration.set_updated_at()`: a dump of its schema alone did not
    restore ("schema migration does not exist"). The dump carries the bookkeeping schema's definitions, no rows."""
    from migration_pipeline.core.dump import dump_store, restore_check
    from migration_pipeline.stores.metagauge.store import METAGAUGE_STORE

    stage_store(database_url, METAGAUGE_STORE, SAMPLES, "dumped", None, workers=1)
    with connect(database_url) as conn:
        assert all(o.passed for o in evaluate_gates(conn, database_url, METAGAUGE_STORE, "dumped", tmp_path / "docs"))
        promote(conn, METAGAUGE_STORE, "dumped", actor="test")
    dump = dump_store(database_url, METAGAUGE_STORE, tmp_path / "dumps")
    compared = restore_check(database_url, METAGAUGE_STORE, dump.path)
    assert [(c.table, c.live_rows, c.equal) for c in compared] == [
        (t.name, c.restored_rows, True) for t, c in zip(METAGAUGE_STORE.tables, compared, strict=True)]
    assert sum(c.live_rows for c in compared) > 0
