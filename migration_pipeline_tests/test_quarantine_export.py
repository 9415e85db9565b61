"""`migration-pipeline quarantine`: the current plan's quarantine by reason, or its rows as CSV / Parquet
for whoever fixes the records, with messages that describe values and never quote them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from migration_pipeline.core.stage import stage_store
from migration_pipeline.stores.wallet.store import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(cwd)}  # platformdirs warns without one; not what is tested here
    return subprocess.run([sys.executable, "-m", "migration_pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def test_quarantine_counts_and_exports_as_csv_and_parquet(database_url: str, tmp_path: Path) -> None:
    stage_store(database_url, WALLET_STORE, SAMPLES, "q", SAMPLE_SECRET, workers=1)
    listed = _cli("quarantine", "--store", "wallet", "--database-url", database_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.splitlines()) == sorted(f"wallets\t{r}\t1" for r in (
        "bad_checksum", "duplicate_key", "empty_file", "fid_mismatch", "invalid_address", "invalid_iv",
        "invalid_json", "not_an_object"))

    done = _cli("quarantine", "--store", "wallet", "--database-url", database_url, "--out", "q.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote 8 quarantined records of wallet to ")
    with (tmp_path / "q.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["locator"] for r in rows} == {"file"}
    assert {r["source_file"] for r in rows if r["reason"] == "invalid_iv"} == {"storage/wallets/wallet_18_ethereum.json"}

    done = _cli("quarantine", "--store", "wallet", "--database-url", database_url, "--reason", "invalid_json",
                "--format", "parquet", "--out", "q.parquet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "q.parquet")
    assert table.num_rows == 1 and table.column("reason").to_pylist() == ["invalid_json"]
    assert table.column_names == ["table_name", "source_file", "locator", "reason", "message", "run_id", "plan_id"]


def test_quarantine_of_a_store_never_staged_is_one_line(database_url: str, tmp_path: Path) -> None:
    done = _cli("quarantine", "--store", "metagauge", "--database-url", database_url, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: store metagauge has not been staged yet: run it first"


def test_version(tmp_path: Path) -> None:
    done = _cli("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("migration-pipeline 0.")


def test_stop_ends_the_embedded_server_of_the_folder_and_status_says_whether_it_runs(tmp_path: Path) -> None:
    """`migration-pipeline stop`, and the status line of the embedded server (started here in the folder's
    .pgdata, as `make demo` does)."""
    from migration_pipeline.core.database import embedded_server_running, start_embedded_server

    start_embedded_server(tmp_path / ".pgdata", keep_running=True)
    assert embedded_server_running(tmp_path / ".pgdata")
    env_less = {"DATABASE_URL": ""}
    status = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "status"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**_environ(), **env_less})
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1].startswith("embedded PostgreSQL: running (data in ")
    stopped = _cli("stop", cwd=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped the embedded PostgreSQL (data kept in ")
    assert not embedded_server_running(tmp_path / ".pgdata")
    again = _cli("stop", cwd=tmp_path)
    assert again.stdout.startswith("the embedded PostgreSQL is not running")


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
