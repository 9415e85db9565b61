"""The backup under faults: two runs at once, a run killed mid-archive, links of every kind in a store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetsDefinition, DagsterInstance, materialize

from migration_pipeline.core.database import connect
from migration_pipeline.resources import MigrationResource
from migration_pipeline.stores.factory import build_store_assets
from migration_pipeline.stores.wallet import WALLET_STORE
from migration_pipeline.stores.wallet.generate import generate_wallet_store

from .conftest import REPO


def _store_with_a_big_file(root: Path, megabytes: int = 48) -> Path:
    """A small wallet store plus one incompressible file: its backup takes a second or so."""
    store = root / "wallet" / "storage" / "wallets"
    store.mkdir(parents=True)
    for fid in range(1, 30):
        (store / f"wallet_{fid}_ethereum.json").write_text(f'{{"fid": {fid}}}')
    with open(root / "wallet" / "dump.bin", "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(2**20))
    return root / "wallet"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_SECRET", "kill-secret")


def _materialize_backup(database_url: str, root: Path, backups: Path, run: str) -> object:
    """The step that writes the backup: the store's load, beside which it is written."""
    (staged,) = [a for a in build_store_assets(WALLET_STORE)[0]
                 if isinstance(a, AssetsDefinition) and AssetKey(["wallet", "backup"]) in a.keys]
    resource = MigrationResource(database_url=database_url, source_root=str(root), backup_dir=str(backups), workers=1)
    with DagsterInstance.ephemeral() as instance:  # disposed in the thread that made it (SQLite objects are per thread)
        return materialize([staged], resources={"migration": resource}, instance=instance, raise_on_error=False)


def _backup_rows(database_url: str) -> list[tuple[str, ...]]:
    with connect(database_url) as conn:
        return conn.execute("SELECT archive_path FROM migration.backups ORDER BY created_at").fetchall()


# --- 18: two runs of a store at once -------------------------------------------------------------------------


def test_two_concurrent_backups_of_a_store_write_one(database_url: str, tmp_path: Path) -> None:
    """Both runs wrote a backup before one was refused (the lock was taken by the load, after the backup).
    The backup takes the store's lease first: one run writes, the other writes nothing (refused, or it finds
    the backup the first one recorded)."""
    _store_with_a_big_file(tmp_path / "src")
    backups = tmp_path / "backups"
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def run(name: str) -> None:
        start.wait()
        results[name] = _materialize_backup(database_url, tmp_path / "src", backups, name)

    threads = [threading.Thread(target=run, args=(f"0000000{i}-0000-0000-0000-000000000000",)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    archives = sorted(p.name for p in backups.iterdir() if p.name.endswith(".tar.zst"))
    assert len(archives) == 1, archives
    assert [Path(r[0]).name for r in _backup_rows(database_url)] == archives
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM migration.store_leases").fetchone() == (0,)  # both released


def test_a_backup_while_another_run_holds_the_store_is_refused_before_writing(database_url: str, tmp_path: Path) -> None:
    from migration_pipeline.core.lease import StoreLease

    _store_with_a_big_file(tmp_path / "src", megabytes=1)
    backups = tmp_path / "backups"
    other = StoreLease.take(database_url, "wallet", "other-run", holder="elsewhere:42:abcd")
    try:
        result = _materialize_backup(database_url, tmp_path / "src", backups, "00000003-0000-0000-0000-000000000000")
    finally:
        other.release()
    assert not result.success  # type: ignore[attr-defined]
    (failure,) = [e for e in result.all_events if e.is_step_failure]  # type: ignore[attr-defined]
    assert failure.step_failure_data.error.cause.message.strip() == (
        "migration_pipeline.core.errors.StoreBusyError: store wallet is being migrated by another run (other-run, "
        "process elsewhere:42:abcd); wait for it to finish (or for its lease to expire if it crashed), then run again")
    assert not backups.exists() or list(backups.iterdir()) == []
    assert _backup_rows(database_url) == []


def test_the_lease_is_shared_by_a_run_and_expires_after_a_crash(database_url: str) -> None:
    """Per-step executors: each step of a run is a process of its own, and each takes the lease for the same
    run. A process killed without releasing stops renewing: its row no longer counts once it expired."""
    from migration_pipeline.core.errors import StoreBusyError
    from migration_pipeline.core.lease import StoreLease, take_lease

    first = StoreLease.take(database_url, "wallet", "run-a", holder="host:1:a", seconds=30, heartbeat=0.2)
    second = StoreLease.take(database_url, "wallet", "run-a", holder="host:2:b", seconds=30, heartbeat=0.2)
    with pytest.raises(StoreBusyError, match=r"^store wallet is being migrated by another run \(run-a, process host:1:a\)"):
        StoreLease.take(database_url, "wallet", "run-b")
    first.release()
    with pytest.raises(StoreBusyError, match=r"\(run-a, process host:2:b\)"):
        StoreLease.take(database_url, "wallet", "run-b")
    time.sleep(0.5)  # a few heartbeats: the lease is renewed, not lost
    assert not second.lost
    second.release()
    with connect(database_url, autocommit=True) as conn:
        take_lease(conn, "wallet", "run-crashed", "host:3:c", seconds=0.5)  # no heartbeat: as if killed
        with pytest.raises(StoreBusyError, match=r"\(run-crashed, process host:3:c\)"):
            take_lease(conn, "wallet", "run-b", "host:4:d")
        time.sleep(0.7)
        take_lease(conn, "wallet", "run-b", "host:4:d")
        assert conn.execute("SELECT run_id, holder FROM migration.store_leases").fetchall() == [("run-b", "host:4:d")]


# --- 17: a backup killed mid-archive -------------------------------------------------------------------------

_BACKUP_SCRIPT = """
import sys
from pathlib import Path
from migration_pipeline.core.backup import write_backup
write_backup(Path(sys.argv[1]), Path(sys.argv[2]), "wallet", workers=1)
"""


def test_a_backup_killed_mid_archive_leaves_nothing_the_next_one_keeps(database_url: str, tmp_path: Path) -> None:
    """SIGKILL while the archive was written left a truncated `wallet-<stamp>.tar.zst` that no row of
    migration.backups names and no prune ever deleted. The archive is written under a temporary name and
    renamed once verified; the next backup deletes what the killed one left."""
    from migration_pipeline.core.backup import read_manifest, verify_archive

    generate_wallet_store(tmp_path / "src", users=2000, secret="kill-secret", seed=9, processes=1)
    with open(tmp_path / "src" / "wallet" / "dump.bin", "wb") as out:  # seconds more to archive
        for _ in range(256):
            out.write(os.urandom(2**20))
    backups = tmp_path / "backups"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _BACKUP_SCRIPT, str(tmp_path / "src" / "wallet"), str(backups)],
                            env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        # Killed as soon as the archive is being written: a fast machine finished and renamed it within a
        # fixed wait.
        while not (backups.is_dir() and any(p.name.endswith(".part") for p in backups.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, "the backup ended before it could be killed"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in backups.iterdir())
    assert left and not any(name.endswith((".tar.zst", ".sha256")) for name in left), left  # only temporary names

    result = _materialize_backup(database_url, tmp_path / "src", backups, "")
    assert result.success  # type: ignore[attr-defined]
    (row,) = _backup_rows(database_url)
    archive = Path(row[0])
    manifest = archive.with_name(archive.name.removesuffix(".tar.zst") + ".sha256")
    assert sorted(backups.iterdir()) == sorted([archive, manifest])
    assert verify_archive(archive, manifest) is None
    assert len(read_manifest(manifest)) == 4005  # 4000 wallets, the duplicate, three unmapped files, dump.bin


def test_a_full_backup_disk_is_said_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """The preflight weighs a store only when its disk might not hold it; a disk that fills while the archive is
    written (another writer, a quota) is said in one line, and no partial archive is left."""
    from migration_pipeline.core.backup import write_backup
    from migration_pipeline.core.errors import MigrationError

    store = tmp_path / "store"
    store.mkdir()
    for n in range(3):
        (store / f"f{n}.bin").write_bytes(os.urandom(2**20))  # 3 MiB that do not compress
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a 1 MiB disk needs mount (root): {mounted.stderr.decode().strip()}")
    try:
        for workers in (1, 2):
            with pytest.raises(MigrationError) as info:
                write_backup(store, small / "backups", "wallet", workers=workers)
            assert str(info.value) == (
                f"backup of wallet: the disk of {small / 'backups'} is full (No space left on device), so nothing "
                "was kept: free space there or point MIGRATION_BACKUP_DIR at a larger disk, then re-run")
            assert info.value.__cause__ is None and info.value.__suppress_context__
            assert sorted(p.name for p in (small / "backups").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_load_that_fails_cancels_the_backup_beside_it_which_leaves_nothing(database_url: str,
                                                                             tmp_path: Path) -> None:
    from migration_pipeline.core.backup import backup_beside

    store = _store_with_a_big_file(tmp_path / "src", megabytes=32)
    backups = tmp_path / "backups"
    with connect(database_url) as conn:
        from migration_pipeline.core.schema import apply_migrations

        apply_migrations(conn)
    with pytest.raises(RuntimeError, match="^the load failed$"), \
            backup_beside(database_url, store, backups, "wallet", workers=1) as outcome:
        raise RuntimeError("the load failed")
    assert outcome.exception() is not None
    assert str(outcome.exception()) == "backup of wallet: cancelled, as the load beside it failed"
    assert list(backups.iterdir()) == []
    assert _backup_rows(database_url) == []
    # Not cancelled, the same backup is written, recorded and verified.
    with backup_beside(database_url, store, backups, "wallet", workers=1) as outcome:
        pass
    made = outcome.result()
    assert made.written is not None and made.written.files == 30
    assert [Path(r[0]) for r in _backup_rows(database_url)] == [made.archive]


def test_a_backup_in_the_loads_pool_cancelled_leaves_nothing_and_the_pool_running(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup's chunks go to the load's worker processes, which outlive it: once cancelled, none of its jobs
    is left queued or writing, nothing is left in the folder, and the pool goes on loading."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from migration_pipeline.core import backup
    from migration_pipeline.core.schema import apply_migrations

    store = tmp_path / "src"
    store.mkdir()
    for i in range(400):
        (store / f"{i:03d}.json").write_bytes(b'{"i": %d}' % i)
    monkeypatch.setattr(backup, "CHUNK_FILES", 4)  # 100 chunks: far more than are ever in flight
    backups = tmp_path / "backups"
    with connect(database_url) as conn:
        apply_migrations(conn)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(RuntimeError, match="^the load failed$"), \
                backup.backup_beside(database_url, store, backups, "wallet", 2, pool) as outcome:
            raise RuntimeError("the load failed")
        assert str(outcome.exception()) == "backup of wallet: cancelled, as the load beside it failed"
        assert list(backups.iterdir()) == [] and _backup_rows(database_url) == []
        assert not pool._pending_work_items  # CPython's queue of the pool's jobs: none of the backup's is left
        assert pool.submit(pow, 2, 5).result() == 32
        with backup.backup_beside(database_url, store, backups, "wallet", 2, pool) as outcome:
            pass
        made = outcome.result()
    assert made.written is not None and made.written.files == 400
    assert backup.verify_archive(made.archive, made.written.manifest) is None


def test_stray_final_names_not_recorded_are_pruned_and_recorded_ones_kept(database_url: str, tmp_path: Path) -> None:
    """Killed between the rename and the insert: an archive under its final name that no row names. Only
    this store's names are touched."""
    from migration_pipeline.core.backup import prune_strays, record_backup, write_backup

    store = tmp_path / "store"
    store.mkdir()
    (store / "a.json").write_text("{}")
    backups = tmp_path / "backups"
    with connect(database_url) as conn:
        kept = write_backup(store, backups, "wallet", workers=1)
        record_backup(conn, "wallet", kept)
        stray = write_backup(store, backups, "wallet", workers=1)
        (backups / ".wallet-20260101T000000000000Z.tar.zst.frames").mkdir()
        (backups / ".wallet-20260101T000000000000Z.tar.zst.frames" / "x.zst").write_bytes(b"x")
        others = ["wallet-x-20260101T000000000000Z.tar.zst", "notes.txt", "wallet-20260101.tar.zst",
                  ".metagauge-20260101T000000000000Z.sha256.part"]
        for name in others:
            (backups / name).write_bytes(b"not ours")
        pruned = prune_strays(conn, backups, "wallet")
    assert sorted(p.name for p in pruned) == sorted([".wallet-20260101T000000000000Z.tar.zst.frames",
                                                     stray.archive.name, stray.manifest.name])
    assert sorted(p.name for p in backups.iterdir()) == sorted([kept.archive.name, kept.manifest.name, *others])


# --- 9: symbolic links of every kind in a store ---------------------------------------------------------------


def _store_with_links(root: Path, outside: Path) -> Path:
    """A wallet store whose root holds a link of every kind beside its files."""
    store = root / "wallet"
    (store / "storage" / "wallets").mkdir(parents=True)
    (store / "storage" / "wallets" / "wallet_1_ethereum.json").write_text('{"fid": 1}')
    (store / "sub").mkdir()
    (store / "sub" / "c.json").write_text("[1]")
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE-THE-STORE")
    (store / "to_inside.json").symlink_to(store / "sub" / "c.json")
    (store / "to_outside.txt").symlink_to(outside / "secret.txt")
    (store / "to_device").symlink_to("/dev/zero")
    (store / "dangling.json").symlink_to(store / "nowhere.json")
    (store / "loop_a").symlink_to("loop_b")
    (store / "loop_b").symlink_to("loop_a")
    (store / "to_folder").symlink_to(store / "sub")
    (store / "to_outside_folder").symlink_to(outside)
    (store / "sub" / "up").symlink_to("..")  # a walk through it would go round forever
    return store


_LINKS = {"dangling.json", "loop_a", "loop_b", "sub/up", "to_device", "to_folder", "to_inside.json",
          "to_outside.txt", "to_outside_folder"}
_FILES = {"storage/wallets/wallet_1_ethereum.json", "sub/c.json"}


@pytest.mark.parametrize("workers", [1, 2])
def test_links_of_every_kind_are_archived_as_links_never_followed(tmp_path: Path, workers: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A dangling or looping link failed the backup ("cannot be read"), and a link out of the store had its
    target's content archived. Every link is now a member of its own (its target as written), never read."""
    import tarfile

    from migration_pipeline.core import backup
    from migration_pipeline.core.manifest import iter_stats, walk_files

    store = _store_with_links(tmp_path / "src", tmp_path / "outside")
    assert set(walk_files(store)) == _LINKS | _FILES
    assert {path for path, size, mtime in iter_stats(store) if (size, mtime) == (0, None)} == _LINKS
    monkeypatch.setattr(backup, "CHUNK_FILES", 2)  # with 2 workers: chunks cross the process pool
    made = backup.write_backup(store, tmp_path / "out", "wallet", workers=workers)
    assert (made.files, made.bytes) == (11, len('{"fid": 1}') + 3)
    assert set(backup.read_manifest(made.manifest)) == _FILES  # `sha256sum -c` would follow a link
    assert backup.verify_archive(made.archive, made.manifest) is None
    checked = subprocess.run(["sha256sum", "--check", "--strict", made.manifest], cwd=store, capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with backup.open_archive(made.archive) as tar:
        members = {m.name: (m.type, m.linkname) for m in tar}
    assert {name: link for name, (kind, link) in members.items() if kind == tarfile.SYMTYPE} == {
        name: os.readlink(store / name) for name in _LINKS}
    assert {name for name, (kind, _) in members.items() if kind == tarfile.REGTYPE} == _FILES
    restored = tmp_path / "restored"
    restored.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", made.archive, "-C", restored], check=True)
    assert {name: os.readlink(restored / name) for name in _LINKS} == {name: os.readlink(store / name) for name in _LINKS}
    assert (restored / "sub" / "c.json").read_text() == "[1]"


def test_links_are_listed_in_the_manifest_as_links(database_url: str, tmp_path: Path) -> None:
    """Staging listed a link as the file it reaches (a link out of the store was hashed there) or as an
    unreadable file, and a link to a folder was in no manifest. Each is a `symlink` row with its target."""
    from migration_pipeline.core.manifest import iter_stats
    from migration_pipeline.core.stage import stage_store

    store = _store_with_links(tmp_path / "src", tmp_path / "outside")
    summary = stage_store(database_url, WALLET_STORE, tmp_path / "src", "links", None, workers=1)
    assert (summary.files_mapped, summary.files_unmapped) == (1, 10)
    with connect(database_url) as conn:
        rows = conn.execute("SELECT path, status, size_bytes, sha256, mtime_ns, link_target"
                            " FROM migration.source_manifest WHERE status = 'symlink' ORDER BY path").fetchall()
    assert rows == [(name, "symlink", 0, "", None, os.readlink(store / name)) for name in sorted(_LINKS)]
    stats = {path: (size, mtime) for path, size, mtime in iter_stats(store)}
    assert all(stats[path] == (size, mtime) for path, _, size, _, mtime, _ in rows)  # change detection agrees


def test_discovery_lists_links_and_never_reads_through_them(tmp_path: Path) -> None:
    """metagauge's discovery stat'ed every file through its links: a dangling or looping link was a
    FileNotFoundError traceback, and a data file that is a link was read wherever it led."""
    from migration_pipeline.stores.metagauge.store import DATA_DIR, discover

    store = _store_with_links(tmp_path / "src", tmp_path / "outside")
    (store / DATA_DIR).mkdir(parents=True)
    (store / DATA_DIR / "contracts.json").write_text("[]")
    (store / DATA_DIR / "users.json").symlink_to(tmp_path / "outside" / "secret.txt")
    found = discover(store)
    assert [unit.payload for unit in found.units] == [(1, "contracts", f"{DATA_DIR}/contracts.json")]
    assert set(found.unmapped) == _LINKS | _FILES | {f"{DATA_DIR}/users.json"}


_HOLD_SCRIPT = """
import sys, time
from migration_pipeline.core.lease import StoreLease
StoreLease.take(sys.argv[1], "wallet", "run-killed", holder="killed:1:k")
print("held", flush=True)
time.sleep(120)
"""


def test_a_killed_holder_does_not_block_the_next_run_until_its_lease_expires(database_url: str) -> None:
    """A run killed by SIGKILL leaves its lease row: its holder's mark (an advisory lock of its connection)
    goes with the process, and the next run takes the store at once, not a lease (60 s) later."""
    from migration_pipeline.core.errors import StoreBusyError
    from migration_pipeline.core.lease import StoreLease

    proc = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, database_url], env={**os.environ, "PYTHONPATH": str(REPO)},
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(StoreBusyError, match=r"\(run-killed, process killed:1:k\)"):
            StoreLease.take(database_url, "wallet", "run-next")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10  # until PostgreSQL has seen the killed process's connection close
    while True:
        try:
            lease = StoreLease.take(database_url, "wallet", "run-next")
            break
        except StoreBusyError:
            assert time.monotonic() < deadline, "the killed holder's lease still counts"
            time.sleep(0.1)
    with connect(database_url) as conn:
        assert conn.execute("SELECT run_id FROM migration.store_leases").fetchall() == [("run-next",)]
    lease.release()
