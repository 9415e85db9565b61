"""`migration-pipeline serve-bench`: concurrent readers run every lookup a store declares on its promoted tables,
with existing keys, beside a primary-key floor of the same table; the table gives throughput, p50/p95/p99 and the
ratio to the floor."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migration_pipeline.core.database import connect
from migration_pipeline.core.promote import promote
from migration_pipeline.core.spec import StoreSpec
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.serve_bench import HEADERS, build_probes, declared_lookups, primary_key
from migration_pipeline.stores.pend.store import PEND_STORE
from migration_pipeline.stores.wallet.store import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES


def _promote_samples(database_url: str, spec: StoreSpec, tmp_path: Path) -> None:
    stage_store(database_url, spec, SAMPLES, "served", SAMPLE_SECRET if spec.needs_secret else None, workers=1)
    with connect(database_url) as conn:
        assert all(o.passed for o in evaluate_gates(conn, database_url, spec, "served", tmp_path / "docs"))
        promote(conn, spec, "served", actor="test")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _serve_bench(database_url: str, store: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "serve-bench", "--store", store,
                           "--database-url", database_url, "--readers", "2", "--seconds", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def _check_table(done: subprocess.CompletedProcess[str], spec: StoreSpec, floors: list[str]) -> None:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| readers"))
    assert _cells(lines[header]) == list(HEADERS)
    rows = {cells[1]: cells for cells in (_cells(line) for line in lines[header + 2:] if line.startswith("|"))}
    lookups = [lookup.name for lookup in declared_lookups(spec)]
    assert sorted(rows) == sorted(lookups + floors)
    for name, cells in rows.items():
        assert cells[0] == "2"
        assert int(cells[2].replace(",", "")) > 0 and cells[9] == "0"  # queries ran, none failed
        p50, p95, p99 = (float(c) for c in cells[4:7])
        assert 0 < p50 <= p95 <= p99 and not math.isnan(p99)
        assert (cells[7] == "") == name.startswith("floor: ")  # every lookup is compared with its table's floor
        if not name.startswith("floor: "):
            assert float(cells[7]) > 0
    assert lines[-2].startswith("goal: every lookup >= 80% of its floor's q/s at 2 readers: ")
    assert lines[-1].startswith("goal: every lookup p99 <= 2 ms at 2 readers: ")


def test_serve_bench_measures_every_declared_wallet_lookup_against_its_floor(database_url: str, tmp_path: Path) -> None:
    _promote_samples(database_url, WALLET_STORE, tmp_path)
    done = _serve_bench(database_url, "wallet", tmp_path)
    _check_table(done, WALLET_STORE, ["floor: primary key of wallets", "floor: primary key of users"])


@pytest.mark.slow
def test_serve_bench_measures_every_declared_pend_lookup_against_its_floor(database_url: str, tmp_path: Path) -> None:
    _promote_samples(database_url, PEND_STORE, tmp_path)
    done = _serve_bench(database_url, "pend", tmp_path)
    _check_table(done, PEND_STORE, [
        "floor: primary key of users", "floor: primary key of investments",
        "floor: unique key (chain, tx_hash, log_index) of blockchain_events", "floor: primary key of kyc_documents",
        "floor: primary key of admin_logs"])


def test_probes_sample_existing_keys_and_the_floor_is_the_primary_key(database_url: str, tmp_path: Path) -> None:
    _promote_samples(database_url, WALLET_STORE, tmp_path)
    with connect(database_url) as conn:
        assert primary_key(conn, "wallet", "wallets") == (("id",), True)
        probes = build_probes(conn, WALLET_STORE, keys_per_probe=1000)
        assert [p.name for p in probes] == ["floor: primary key of wallets", "wallet by user and chain",
                                            "wallet by address, any case", "wallets of a user",
                                            "floor: primary key of users", "user by fid"]
        for probe in probes:  # every sampled key finds its row(s): keys are existing ones, all distinct rows
            assert probe.keys
            assert all(conn.execute(probe.query, key).fetchall() for key in probe.keys)
        wallets = conn.execute("SELECT count(*) FROM wallet.wallets").fetchone()
        assert wallets is not None and len(probes[0].keys) == wallets[0]


def test_too_many_readers_for_the_server_is_one_line(database_url: str, tmp_path: Path) -> None:
    _promote_samples(database_url, WALLET_STORE, tmp_path)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "migration_pipeline.cli", "serve-bench", "--store", "wallet",
                           "--database-url", database_url, "--readers", "100000", "--seconds", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 100000 readers need as many connections, the server has ")
    assert last.endswith(" free (max_connections): raise it, or put a pooler (PgBouncer) in front")
