"""A resumed plan is exact: units whose files changed since an interrupted run read them are loaded
again, and a run killed during its gates resumes at the gates instead of reloading."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.core import stage
from migration_pipeline.core.bookkeeping.units import committed_units
from migration_pipeline.core.database import connect
from migration_pipeline.core.promote import promote
from migration_pipeline.core.stage import stage_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.stores.wallet.store import WALLET_STORE

from .conftest import SAMPLE_SECRET, SAMPLES
from .killing import stage_killed_after


def _wallet_rows(database_url: str, schema: str) -> list[tuple[Any, ...]]:
    with connect(database_url) as conn:
        return conn.execute(
            f'SELECT fid, chain, address, iv, created_at FROM "{schema}".wallets ORDER BY fid, chain').fetchall()


def _rewrite_created_at(wallet_dir: Path, when: str) -> int:
    """Version 2 of the store: the same names, every parseable wallet with another createdAt."""
    changed = 0
    for path in sorted(wallet_dir.glob("wallet_*.json")):
        try:
            record = json.loads(path.read_bytes())
        except ValueError:
            continue
        if isinstance(record, dict):
            record["createdAt"] = when
            path.write_text(json.dumps(record))
            changed += 1
    return changed


def test_resume_after_the_source_was_replaced_promotes_the_files_on_disk(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14.1: v2 is killed mid-load, v1 (same names, other contents, old mtimes) is put back, the
    run resumes: every gate passes and the promoted rows are v1's, none of v2's."""
    v1 = tmp_path / "v1"
    shutil.copytree(SAMPLES / "wallet", v1 / "wallet", symlinks=True)
    stage_store(database_url, WALLET_STORE, v1, "clean-v1", SAMPLE_SECRET, workers=1)
    expected = _wallet_rows(database_url, "wallet__staging")

    source = tmp_path / "source"
    shutil.copytree(v1, source, symlinks=True)  # copy2: v1's mtimes come along
    wallet_dir = source / "wallet" / "storage" / "wallets"
    assert _rewrite_created_at(wallet_dir, "2020-02-02T02:02:02.000Z") == 22

    stage_killed_after(2, monkeypatch, database_url, WALLET_STORE, source, "v2", SAMPLE_SECRET)
    with connect(database_url) as conn:
        kept_v2 = conn.execute("SELECT count(*) FROM wallet__staging.wallets"
                               " WHERE created_at = '2020-02-02T02:02:02Z'").fetchone()
    assert kept_v2 is not None and kept_v2[0] > 0

    shutil.rmtree(source / "wallet")
    shutil.copytree(v1 / "wallet", source / "wallet", symlinks=True)  # v1 again, same names, v1's mtimes
    resumed = stage_store(database_url, WALLET_STORE, source, "resume", SAMPLE_SECRET, workers=1)
    # Of the two committed units, the one whose file v2 rewrote was loaded again; the other (an unparseable file
    # v2 left as it was) hashes as it did and is kept.
    assert resumed.resumed_units == 1
    assert _wallet_rows(database_url, "wallet__staging") == expected

    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, WALLET_STORE, "resume", tmp_path / "docs")
        assert [o.name for o in outcomes if not o.passed] == []
        promote(conn, WALLET_STORE, "resume", actor="test")
    assert _wallet_rows(database_url, "wallet") == expected


def test_a_unit_whose_files_are_unchanged_is_resumed_not_reloaded(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(SAMPLES / "wallet", tmp_path / "wallet", symlinks=True)
    stage_killed_after(2, monkeypatch, database_url, WALLET_STORE, tmp_path, "first", SAMPLE_SECRET)
    # Touching a file without changing its bytes proves nothing changed: its unit is kept.
    some_file = next((tmp_path / "wallet" / "storage" / "wallets").glob("wallet_1_ethereum.json"))
    os.utime(some_file, ns=(1, 1))
    resumed = stage_store(database_url, WALLET_STORE, tmp_path, "second", SAMPLE_SECRET, workers=1)
    assert resumed.resumed_units == 2
    assert resumed.staged["wallets"] == 16


def test_a_partitions_step_hashes_only_its_own_units_and_the_whole_load_hashes_every_one(
    database_url: str, tmp_path: Path
) -> None:
    """A fan-out's shard step re-hashed every unit the steps before it had committed: 16 shards read the store
    7.5 times over, each step slower than the last. A step hashes only its partition's units; the load that
    finishes the staging hashes every one, so a file changed between two steps is still loaded again."""
    shutil.copytree(SAMPLES / "wallet", tmp_path / "wallet", symlinks=True)
    units = WALLET_STORE.discover(tmp_path / "wallet").units
    first = {u.number for u in units if u.partition == "03"}
    second = {u.number for u in units if u.partition == "04"}
    assert len(first) == len(second) == 1
    loaded = stage_store(database_url, WALLET_STORE, tmp_path, "fan-out", SAMPLE_SECRET, workers=1, partitions={"03"})
    path = tmp_path / "wallet" / "storage" / "wallets" / "wallet_3_ethereum.json"
    record = json.loads(path.read_bytes())
    record["createdAt"] = "2020-02-02T02:02:02.000Z"  # same name, other contents: the listing is unchanged
    path.write_text(json.dumps(record))

    step = stage_store(database_url, WALLET_STORE, tmp_path, "fan-out", SAMPLE_SECRET, workers=1, partitions={"04"})
    assert step.plan_id == loaded.plan_id and step.resumed_units == 0
    with connect(database_url) as conn:  # the first partition's unit was not hashed by the second's step
        assert committed_units(conn, "wallet", step.plan_id) == first | second

    whole = stage_store(database_url, WALLET_STORE, tmp_path, "fan-out", SAMPLE_SECRET, workers=1)
    assert whole.plan_id == loaded.plan_id
    assert whole.resumed_units == 1  # the second partition's unit; the first's was loaded again
    with connect(database_url) as conn:
        assert conn.execute("SELECT created_at = '2020-02-02T02:02:02Z' FROM wallet__staging.wallets"
                            " WHERE fid = 3 AND chain = 'ethereum'").fetchall() == [(True,)]


def test_a_run_killed_during_its_gates_resumes_at_the_gates(database_url: str, tmp_path: Path) -> None:
    """Issue 14.21: staged, then killed before the gates recorded anything: the next run reloads nothing."""
    first = stage_store(database_url, WALLET_STORE, SAMPLES, "killed", SAMPLE_SECRET, workers=1)
    again = stage_store(database_url, WALLET_STORE, SAMPLES, "next", SAMPLE_SECRET, workers=1, reuse_staged=True)
    assert again.plan_id == first.plan_id
    assert again.resumed_units == again.units > 0
    with connect(database_url) as conn:
        outcomes = evaluate_gates(conn, database_url, WALLET_STORE, "next", tmp_path / "docs")
        assert all(o.passed for o in outcomes)
        promote(conn, WALLET_STORE, "next", actor="test")  # the resuming run owns the plan
    # Gates completed on that plan: a later run stages anew, as a re-run after a verdict should.
    third = stage_store(database_url, WALLET_STORE, SAMPLES, "third", SAMPLE_SECRET, workers=1, reuse_staged=True)
    assert third.plan_id != first.plan_id


def test_a_changed_secret_is_a_new_plan(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys were verified with the secret of the run that loaded them: another secret never resumes them."""
    with monkeypatch.context() as patched:
        patched.setattr(stage, "finish_staging", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            stage_store(database_url, WALLET_STORE, SAMPLES, "a", SAMPLE_SECRET, workers=1)
    other = stage_store(database_url, WALLET_STORE, SAMPLES, "b", "another-secret", workers=1)
    assert other.resumed_units == 0
    assert other.flagged == 13  # EXPECTED.md: every one of the 13 keys fails under another secret
