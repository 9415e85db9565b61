"""The parallel run: change detection by stat, an incremental sync that reads only the changed files,
soft deletes, stable ids, and the same gates and promotion. Real PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import orjson
from dagster import build_sensor_context

from migration_pipeline.core.changes import detect_changes
from migration_pipeline.core.database import connect
from migration_pipeline.core.manifest import iter_files
from migration_pipeline.core.promote import promote
from migration_pipeline.core.stage import stage_store
from migration_pipeline.core.sync import CARRIED_UNIT, sync_store
from migration_pipeline.quality.gates import evaluate_gates
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.wallet import WALLET_STORE
from migration_pipeline.stores.wallet.generate import generate_wallet_store

SECRET = "sync-secret"
WALLETS = "storage/wallets"


def _live(database_url: str) -> dict[tuple[int, str], tuple]:
    with connect(database_url) as conn:
        rows = conn.execute("SELECT fid, chain, id, address, created_at, deleted_at FROM wallet.wallets").fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _migrate_full(database_url: str, root: Path, run_id: str, docs: Path) -> None:
    stage_store(database_url, WALLET_STORE, root, run_id, SECRET, workers=1)
    with connect(database_url) as conn:
        assert all(o.passed for o in evaluate_gates(conn, database_url, WALLET_STORE, run_id, docs))
        promote(conn, WALLET_STORE, run_id, "test")


def test_incremental_sync_reads_only_changed_files(database_url: str, tmp_path: Path) -> None:
    root = tmp_path / "src"
    generate_wallet_store(root, users=150, secret=SECRET, seed=5, quirk_rate=0.0)
    wallets = root / "wallet" / WALLETS
    _migrate_full(database_url, root, "full", tmp_path / "docs")
    before = _live(database_url)
    assert len(before) == 300

    # The legacy application keeps writing: one file changed, one deleted, one added.
    changed = wallets / "wallet_3_ethereum.json"
    record = orjson.loads(changed.read_bytes())
    record["createdAt"] = "2030-01-02T03:04:05.000Z"
    changed.write_bytes(orjson.dumps(record))
    (wallets / "wallet_4_base-account.json").unlink()
    extra = tmp_path / "extra"
    generate_wallet_store(extra, users=1, secret=SECRET, seed=9, quirk_rate=0.0, start_fid=5000)
    shutil.copy(extra / "wallet" / WALLETS / "wallet_5000_ethereum.json", wallets / "wallet_5000_ethereum.json")

    with connect(database_url) as conn:
        changes = detect_changes(conn, WALLET_STORE, root)
    assert changes is not None
    assert (changes.added, changes.changed, changes.deleted) == (
        (f"{WALLETS}/wallet_5000_ethereum.json",), (f"{WALLETS}/wallet_3_ethereum.json",),
        (f"{WALLETS}/wallet_4_base-account.json",))

    synced = sync_store(database_url, WALLET_STORE, root, changes, "sync", SECRET, workers=1)
    assert synced.files_read == 2
    assert synced.rows_carried == 299  # every live wallet but the changed one (the deleted one is carried, marked)
    assert synced.soft_deleted == 1
    with connect(database_url) as conn:
        progress = conn.execute(
            "SELECT unit_no, records_seen, rows_emitted FROM migration.unit_progress WHERE plan_id = %s ORDER BY 1",
            (synced.stage.plan_id,)).fetchall()
        outcomes = evaluate_gates(conn, database_url, WALLET_STORE, "sync", tmp_path / "docs2")
        assert [o.name for o in outcomes if not o.passed] == []
        promote(conn, WALLET_STORE, "sync", "test")
        audit = conn.execute("SELECT action, count(*) FROM wallet.wallet_audit_log GROUP BY 1 ORDER BY 1").fetchall()
        manifest = conn.execute("SELECT count(*) FROM migration.source_manifest WHERE plan_id = %s",
                                (synced.stage.plan_id,)).fetchone()
    # Carried: 299 live rows + the generator's duplicate file, quarantined once and carried with its reason.
    assert progress == [(CARRIED_UNIT, 300, 300), (0, 2, 2)]

    after = _live(database_url)
    assert len(after) == 301
    for key, row in before.items():
        if key not in ((3, "ethereum"), (4, "base-account")):
            assert after[key] == row, key
    assert after[(3, "ethereum")][0] == before[(3, "ethereum")][0]  # same id
    assert after[(3, "ethereum")][2] == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert after[(4, "base-account")][:3] == before[(4, "base-account")][:3]
    assert after[(4, "base-account")][3] is not None  # soft deleted
    assert after[(5000, "ethereum")][0] > max(r[0] for r in before.values())  # new wallets numbered after
    assert audit == [("deleted", 1), ("migrated", 300)]
    assert manifest == (sum(1 for _ in iter_files(root / "wallet")),)  # every file now present, none twice


def test_change_sensor_requests_an_incremental_run(database_url: str, tmp_path: Path) -> None:
    from migration_pipeline.definitions import defs

    root = tmp_path / "src"
    generate_wallet_store(root, users=20, secret=SECRET, seed=3, quirk_rate=0.0)
    sensor = defs.get_sensor_def("wallet_source_changes")
    resource = MigrationResource(database_url=database_url, source_root=str(root))
    with build_sensor_context(resources={"migration": resource}) as context:
        assert sensor.evaluate_tick(context).skip_message == "wallet has no live version yet: run the migration first"
    _migrate_full(database_url, root, "full", tmp_path / "docs")
    with build_sensor_context(resources={"migration": resource}) as context:
        assert sensor.evaluate_tick(context).skip_message == "wallet: no source file changed since the live version"
    (root / "wallet" / WALLETS / "wallet_2_base-account.json").unlink()
    with build_sensor_context(resources={"migration": resource}) as context:
        requests = sensor.evaluate_tick(context).run_requests
    assert requests is not None and len(requests) == 1
    assert requests[0].run_config == {"ops": {"wallet__staged": {"config": {"incremental": True}}}}
    assert requests[0].tags["migration/changes"] == "0 added, 0 changed, 1 deleted"
    assert sensor.default_status.value == "STOPPED"


def test_linked_files_are_not_changes(database_url: str, tmp_path: Path) -> None:
    """A link is never read through (this one leads out of the store): a wallet file that is a link, to a
    file or nowhere, is listed in the manifest as a link, never loaded; change detection sees neither as changed."""
    root = tmp_path / "src"
    generate_wallet_store(root, users=20, secret=SECRET, seed=5, quirk_rate=0.0)
    wallets = root / "wallet" / WALLETS
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (wallets / "wallet_3_ethereum.json").rename(elsewhere / "wallet_3_ethereum.json")
    (wallets / "wallet_3_ethereum.json").symlink_to(elsewhere / "wallet_3_ethereum.json")
    (wallets / "wallet_99_ethereum.json").symlink_to(elsewhere / "gone.json")
    _migrate_full(database_url, root, "full", tmp_path / "docs")
    assert (3, "ethereum") not in _live(database_url)
    links = (f"{WALLETS}/wallet_3_ethereum.json", f"{WALLETS}/wallet_99_ethereum.json")
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM migration.quarantine WHERE source_file IN (%s, %s)", links
                            ).fetchone() == (0,)
        assert conn.execute("SELECT path, status, link_target FROM migration.source_manifest WHERE path IN (%s, %s)"
                            " ORDER BY 1", links).fetchall() == [
            (links[0], "symlink", str(elsewhere / "wallet_3_ethereum.json")),
            (links[1], "symlink", str(elsewhere / "gone.json"))]
        changes = detect_changes(conn, WALLET_STORE, root)
    assert changes is not None and changes.empty, changes.describe() if changes else None


def test_a_sync_records_names_that_are_not_utf8(database_url: str, tmp_path: Path) -> None:
    """A file whose name is not UTF-8, changed and another added during the parallel run: the sync finds
    each on disk from its recorded (\\xNN) name and records its new size; a second detection sees no change."""
    import os

    root = tmp_path / "src"
    generate_wallet_store(root, users=10, secret=SECRET, seed=5, quirk_rate=0.0)
    changed = root / "wallet" / os.fsdecode(b"r\xe9sum\xe9.txt")
    changed.write_bytes(b"v1")
    _migrate_full(database_url, root, "full", tmp_path / "docs")
    changed.write_bytes(b"version 2")
    (root / "wallet" / WALLETS / os.fsdecode(b"copie-\xe0.json")).write_bytes(b"{}")
    with connect(database_url) as conn:
        changes = detect_changes(conn, WALLET_STORE, root)
    assert changes is not None
    assert (changes.added, changes.changed, changes.deleted) == ((f"{WALLETS}/copie-\\xe0.json",), ("r\\xe9sum\\xe9.txt",), ())

    synced = sync_store(database_url, WALLET_STORE, root, changes, "sync", SECRET, workers=1)
    with connect(database_url) as conn:
        unmapped = conn.execute("SELECT path, size_bytes FROM migration.source_manifest WHERE plan_id = %s"
                                " AND status = 'unmapped' ORDER BY path", (synced.stage.plan_id,)).fetchall()
        assert all(o.passed for o in evaluate_gates(conn, database_url, WALLET_STORE, "sync", tmp_path / "docs2"))
        promote(conn, WALLET_STORE, "sync", "test")
        again = detect_changes(conn, WALLET_STORE, root)
    assert [u for u in unmapped if "\\x" in u[0]] == [("r\\xe9sum\\xe9.txt", 9), (f"{WALLETS}/copie-\\xe0.json", 2)]
    assert again is not None and again.empty, again.describe() if again else None
