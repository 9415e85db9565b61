"""The engine's building blocks against a real PostgreSQL: row encoding and hashing, versioned DDL,
the generic integrity rules and timestamps."""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migration_pipeline.core import ddl
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import SchemaDriftError
from migration_pipeline.core.rows import RowEncoder, copy_field, sql_row_hash
from migration_pipeline.core.schema import apply_migrations
from migration_pipeline.core.spec import Column
from migration_pipeline.core.stage import BOOKKEEPING
from migration_pipeline.core.timestamps import InvalidTimestamp, parse_timestamp
from migration_pipeline.stores.wallet import WALLET_STORE

AWKWARD_COLUMNS = (
    Column("i", "int"),
    Column("n", "numeric"),
    Column("t", "text"),
    Column("b", "bool"),
    Column("ts", "timestamptz"),
    Column("d", "date"),
    Column("u", "uuid"),
    Column("a", "text[]"),
    Column("j", "jsonb"),
)
AWKWARD_ROWS = [
    (1, Decimal("123456789012345678901234567890.123400"), "tab\there\nnew\\line \"q\" ünïcødé 🚀",
     True, datetime(2025, 10, 11, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5))), date(2024, 2, 29),
     "3F2504E0-4F89-11D3-9A0C-0305E82C3301", ["a", 'b"c', "d\\e", None, "ü, {x}"], {"k": [1, 2.5, None], "é": "x"}),
    (2, Decimal("0"), "", False, datetime(1970, 1, 1, tzinfo=UTC), date(1, 1, 1), None, [], None),
    (3, None, None, None, None, None, None, None, {"nested": {"deep": [{"a": None}]}}),
    (-9223372036854775808, Decimal("-1E+3"), "\x01\x1f control", True,
     datetime(2262, 4, 11, 23, 47, 16, 854775 // 1, tzinfo=UTC), date(9999, 12, 31),
     "00000000-0000-0000-0000-000000000000", ["", " "], [1, "two"]),
]


def test_copy_text_and_row_hash_agree_with_postgresql(database_url: str) -> None:
    encoder = RowEncoder(AWKWARD_COLUMNS)
    with connect(database_url) as conn:
        conn.execute("""CREATE TABLE awkward (i bigint, n numeric, t text, b boolean, ts timestamptz, d date, u uuid,
                        a text[], j jsonb)""")
        with conn.cursor().copy("COPY awkward FROM STDIN") as copy:
            for row in AWKWARD_ROWS:
                copy.write(encoder.copy_line(row, ()))
        stored = conn.execute(
            sql.SQL("SELECT i, {} FROM awkward ORDER BY i").format(sql_row_hash(AWKWARD_COLUMNS))).fetchall()
        values = conn.execute("SELECT i, n, t, b, ts, d, u::text, a, j FROM awkward WHERE i = 1").fetchone()
    python_hashes = sorted((row[0], encoder.row_hash(row)) for row in AWKWARD_ROWS)
    assert stored == python_hashes
    assert values is not None
    assert values[2] == AWKWARD_ROWS[0][2]
    assert values[4] == AWKWARD_ROWS[0][4]
    assert values[6] == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert values[7] == ["a", 'b"c', "d\\e", None, "ü, {x}"]
    assert values[8] == {"k": [1, 2.5, None], "é": "x"}


def test_copy_field_escapes_only_what_copy_text_needs() -> None:
    assert copy_field(None) == "\\N"
    assert copy_field(7) == "7"
    assert copy_field("storage/wallets/wallet_1_ethereum.json") == "storage/wallets/wallet_1_ethereum.json"
    assert copy_field("C:\\dir") == "C:\\\\dir"  # printable, but a backslash
    assert copy_field("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert copy_field("ünï \u2028 \x1f") == "ünï \u2028 \x1f"  # not printable, yet nothing to escape


def test_row_hash_changes_with_any_hashed_value() -> None:
    encoder = RowEncoder(AWKWARD_COLUMNS)
    base = encoder.row_hash(AWKWARD_ROWS[0])
    for position in range(len(AWKWARD_COLUMNS) - 1):  # the last column is jsonb, not hashed
        changed = list(AWKWARD_ROWS[0])
        changed[position] = None
        assert encoder.row_hash(changed) != base, AWKWARD_COLUMNS[position].name
    jsonb_changed = list(AWKWARD_ROWS[0])
    jsonb_changed[-1] = {"other": 1}
    assert encoder.row_hash(jsonb_changed) == base


def test_edited_applied_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "001_one.sql").write_text("CREATE TABLE drift_one (x int);")
    with connect(database_url) as conn:
        first = apply_migrations(conn, sql_dir)
        (sql_dir / "002_two.sql").write_text("CREATE TABLE drift_two (x int);")
        second = apply_migrations(conn, sql_dir)
        (sql_dir / "001_one.sql").write_text("CREATE TABLE drift_one (x bigint);")
        with pytest.raises(SchemaDriftError, match=r"sql/001_one.sql was edited after it was applied"):
            apply_migrations(conn, sql_dir)
    assert first.applied == ("001_one.sql",)
    assert second.applied == ("002_two.sql",) and second.already_applied == ("001_one.sql",)


def test_check_violations_are_quarantined_not_fatal(database_url: str) -> None:
    """A row that passed normalization but breaks a live CHECK constraint leaves the load intact."""
    table = WALLET_STORE.table("wallets")
    with connect(database_url) as conn:
        ddl.create_staging_tables(conn, WALLET_STORE, BOOKKEEPING)
        created = datetime(2025, 1, 1, tzinfo=UTC)
        good = (1, 5, "0x" + "a" * 40, None, None, "base-account", "base-account", created, created)
        key_without_iv = (2, 6, "0x" + "b" * 40, "00" * 16, None, "base-account", "base-account", created, created)
        bad_iv = (3, 6, "0x" + "c" * 40, "00" * 16, "zz", "ethereum", "trading", created, created)
        encoder = RowEncoder(table.columns)
        columns = ", ".join([c.name for c in table.columns] + list(BOOKKEEPING))
        with conn.cursor().copy(f'COPY "wallet__staging".wallets ({columns}) FROM STDIN') as copy:
            for seq, row in enumerate((good, key_without_iv, bad_iv), start=1):
                copy.write(encoder.copy_line(row, (f"f{seq}.json", "file", seq)))
        moved = ddl.quarantine_check_violations(conn, WALLET_STORE, table, "plan", "run")
        left = conn.execute('SELECT id FROM "wallet__staging".wallets').fetchall()
        quarantined = conn.execute(
            "SELECT source_file, reason, message, row_hash FROM migration.quarantine ORDER BY source_file").fetchall()
        checks = _constraints(conn, "wallet__staging", "wallets")
    assert moved == 2
    assert left == [(1,)]
    # After the quarantine, the live CHECKs hold on the staged table: they are in place for promotion.
    assert checks == [("wallets_address_check", "c"), ("wallets_iv_check", "c"), ("wallets_key_has_iv", "c")]
    assert quarantined == [
        ("f2.json", "constraint_violation", "violates CHECK constraint wallets_key_has_iv",
         encoder.row_hash(key_without_iv)),
        ("f3.json", "constraint_violation", "violates CHECK constraint wallets_iv_check", encoder.row_hash(bad_iv)),
    ]


def _constraints(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        # contype 'n' (NOT NULL, recorded as constraints since PostgreSQL 18) is left out: LIKE copies those.
        "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = (quote_ident(%s) || '.' || quote_ident(%s))"
        "::regclass AND contype <> 'n' ORDER BY conname", (schema, table)).fetchall()


def test_keys_and_checks_of_clean_rows_are_built_before_any_search(database_url: str) -> None:
    """Clean rows (the usual case): the live keys and CHECKs go straight onto the staged table, the keys
    need no duplicate search and nothing is quarantined; a key with a duplicate is left to the search."""
    table = WALLET_STORE.table("wallets")
    created = datetime(2025, 1, 1, tzinfo=UTC)
    with connect(database_url) as conn:
        ddl.create_staging_tables(conn, WALLET_STORE, BOOKKEEPING)
        encoder = RowEncoder(table.columns)
        columns = ", ".join([c.name for c in table.columns] + list(BOOKKEEPING))
        with conn.cursor().copy(f'COPY "wallet__staging".wallets ({columns}) FROM STDIN') as copy:
            for seq, (wallet_id, fid) in enumerate([(1, 5), (2, 6), (3, 6)], start=1):
                row = (wallet_id, fid, "0x" + "a" * 40, None, None, "base", "base", created, created)
                copy.write(encoder.copy_line(row, (f"f{seq}.json", "file", seq)))
        enforced = ddl.enforce_unique_keys(conn, WALLET_STORE, table)
        moved = ddl.quarantine_check_violations(conn, WALLET_STORE, table, "plan", "run")
        built = _constraints(conn, "wallet__staging", "wallets")
        quarantined = conn.execute("SELECT count(*) FROM migration.quarantine").fetchone()
    # (fid, chain) = (6, base) twice: that key is not built and stays with the duplicate search.
    assert enforced == {("id",)}
    assert moved == 0 and quarantined == (0,)
    assert built == [("wallets_address_check", "c"), ("wallets_iv_check", "c"), ("wallets_key_has_iv", "c"),
                     ("wallets_pkey", "p")]


def test_iter_stats_lists_every_file_below_with_its_size_and_mtime(tmp_path: Path) -> None:
    from migration_pipeline.core.manifest import iter_files, iter_stats, walk_files

    for relative, data in {"top.json": b"{}", "a/b/c.json": b"[1]", "a/d e.txt": b"x" * 7}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    (tmp_path / "empty").mkdir()
    os.utime(tmp_path / "top.json", ns=(1, 1_700_000_000_123_456_789))
    # A symbolic link, wherever it points, is one entry, never followed (to a file, nowhere, to a folder),
    # with size 0 and no mtime, as the manifest records it.
    (tmp_path / "a" / "link.json").symlink_to(tmp_path / "top.json")
    (tmp_path / "a" / "gone.json").symlink_to(tmp_path / "nowhere.json")
    (tmp_path / "a" / "again").symlink_to(tmp_path / "a" / "b")
    found = {path: (size, mtime) for path, size, mtime in iter_stats(tmp_path)}
    listed = {"top.json", "a/b/c.json", "a/d e.txt", "a/link.json", "a/gone.json", "a/again"}
    assert set(found) == set(iter_files(tmp_path)) == set(walk_files(tmp_path)) == listed
    assert found["top.json"] == (2, 1_700_000_000_123_456_789)
    assert (found["a/b/c.json"][0], found["a/d e.txt"][0]) == (3, 7)
    assert found["a/link.json"] == found["a/gone.json"] == found["a/again"] == (0, None)


def test_a_folder_that_cannot_be_listed_is_said_in_one_line_by_every_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.walk skips a folder it cannot list unless told otherwise: its files would be in no manifest
    and no backup. Every listing (backup, discovery, change detection) stops with one line instead.
    (Injected at os.scandir: the tests run as root, which no permission stops.)"""
    from migration_pipeline.core import manifest
    from migration_pipeline.core.errors import MigrationError
    from migration_pipeline.stores.wallet.store import discover

    (tmp_path / "storage" / "wallets" / "locked").mkdir(parents=True)
    (tmp_path / "storage" / "wallets" / "locked" / "wallet_1_ethereum.json").write_bytes(b"{}")
    (tmp_path / "top.json").write_bytes(b"{}")
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    expected = (f"cannot list the folder {tmp_path / 'storage' / 'wallets' / 'locked'} (Permission denied): every file"
                " of a store must be read; fix its permissions (or remove it), then re-run")
    listings = (lambda d: list(manifest.stream_folders(d, 1000)), manifest.walk_files,
                lambda d: list(manifest.iter_stats(d)), discover)
    for listing in listings:
        with pytest.raises(MigrationError) as failed:
            listing(tmp_path)
        assert str(failed.value) == expected


def test_stream_folders_lists_what_walk_files_lists_holding_at_most_a_batch_of_names(tmp_path: Path) -> None:
    """The backup's listing: every file and link `walk_files` lists, each once, in batches of at most `batch`
    names of one folder (a folder of 2,500 files comes as 1,000 + 1,000 + 500), links never descended into."""
    from migration_pipeline.core.errors import MigrationError
    from migration_pipeline.core.manifest import stream_folders, walk_files

    bulk = tmp_path / "storage" / "wallets"
    bulk.mkdir(parents=True)
    for i in range(2500):
        (bulk / f"wallet_{i}_ethereum.json").write_bytes(b"{}")
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "docs" / "deep" / "a.txt").write_bytes(b"a")
    (tmp_path / "top.json").write_bytes(b"{}")
    (tmp_path / "to_folder").symlink_to(tmp_path / "docs")  # a link to a folder: one entry, never descended into
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()

    batches = list(stream_folders(tmp_path, 1000))
    assert sorted(len(names) for prefix, names in batches if prefix == "storage/wallets/") == [500, 1000, 1000]
    others = [(prefix, sorted(names)) for prefix, names in batches if prefix != "storage/wallets/"]
    assert sorted(others) == [("", ["dangling", "to_folder", "top.json"]), ("docs/deep/", ["a.txt"])]
    listed = [prefix + name for prefix, names in batches for name in names]
    assert len(listed) == 2504 and sorted(listed) == walk_files(tmp_path)
    with pytest.raises(MigrationError) as missing:
        list(stream_folders(tmp_path / "gone", 1000))
    assert str(missing.value).startswith(f"cannot list the folder {tmp_path / 'gone'} (No such file or directory)")


def test_read_whole_returns_every_byte_of_a_file_that_grew_or_reads_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from migration_pipeline.core.manifest import read_whole

    small, empty, big = tmp_path / "small.json", tmp_path / "empty.json", tmp_path / "big.bin"
    small.write_bytes(b'{"fid": 7}')
    empty.write_bytes(b"")
    big.write_bytes(bytes(range(256)) * 12_000)  # 3 MB: more than one read after the first
    data, stat = read_whole(str(small))
    assert (data, stat.st_size, stat.st_mtime_ns) == (b'{"fid": 7}', 10, small.stat().st_mtime_ns)
    assert read_whole(str(empty))[0] == b""
    # A file that grows between the stat and the read: the stat is told 5 bytes, the read goes on to the end.
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 5, *real_fstat(fd)[7:])))
    assert read_whole(str(big))[0] == big.read_bytes()
    monkeypatch.undo()
    # Short reads (one read returns at most ~2 GiB on Linux): every byte is still returned, never a prefix.
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 1000)))
    assert read_whole(str(big))[0] == big.read_bytes()
    monkeypatch.undo()
    with pytest.raises(IsADirectoryError):
        read_whole(str(tmp_path))


@pytest.mark.parametrize("workers_are", ["processes", "threads", "the load's pool"])
def test_backup_in_parallel_chunks_is_one_verified_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           workers_are: str) -> None:
    """Chunks written by worker processes of its own, by threads, or by the load's worker processes form one
    compressed tar in file order; its manifest is sha256sum's format; a changed byte in a member, in a header or
    in the compressed bytes is caught by the re-read. The load's pool is left running."""
    import hashlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import zstandard

    from migration_pipeline.core import backup
    from migration_pipeline.core.manifest import stream_folders

    store = tmp_path / "store"
    (store / "a" / "b").mkdir(parents=True)
    contents = {f"a/b/f{i:02d}.json": f'{{"i": {i}}}'.encode() * (i + 1) for i in range(10)}
    contents["top.txt"] = b""
    contents["a/" + "long-name-" * 11 + ".json"] = b"{}"  # over 100 bytes and not ASCII: headers by tarfile itself
    contents["a/caf\u00e9.json"] = b"[]"
    for relative, data in contents.items():
        (store / relative).write_bytes(data)
    monkeypatch.setattr(backup, "CHUNK_FILES", 3)  # 5 chunks over 2 workers
    if workers_are == "the load's pool":
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            made = backup.write_backup(store, tmp_path / "out", "demo", workers=2, pool=pool)
            assert pool.submit(pow, 2, 5).result() == 32
    else:
        made = backup.write_backup(store, tmp_path / "out", "demo", workers=2, threads=workers_are == "threads")

    expected = {relative: hashlib.sha256(data).hexdigest() for relative, data in contents.items()}
    assert (made.files, made.bytes) == (13, sum(len(d) for d in contents.values()))
    assert made.archive.name.endswith(".tar.zst") and made.manifest.name.endswith(".sha256")
    assert made.sha256 == hashlib.sha256(made.archive.read_bytes()).hexdigest()
    assert backup.read_manifest(made.manifest) == expected
    with backup.open_archive(made.archive) as tar:
        members = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar}  # type: ignore[union-attr]
    # In the order of the listing, as the chunks were listed (whichever worker finished first), as in the manifest.
    listed_order = [prefix + name for prefix, names in stream_folders(store, 3) for name in names]
    assert list(members) == listed_order == list(backup.read_manifest(made.manifest)) and members == expected

    # One chunk (frame) holding every member, as the parallel writer would have written it, then altered.
    with made.archive.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z:
        blocks = bytearray(z.read()[: -backup.tarfile.BLOCKSIZE * 2])  # without the end-of-archive marker
    listed = made.manifest.stat().st_size

    def verify_frame(frame: bytes) -> str | None:
        made.archive.write_bytes(frame)
        return backup._verify_chunk(str(made.archive), str(made.manifest), backup._Chunk(0, len(frame), 0, listed))

    def verify(altered: bytes) -> str | None:
        return verify_frame(backup._compress(altered))

    assert verify(bytes(blocks)) is None
    blocks[blocks.index(b'{"i": 7}') + 1] ^= 0x01  # one flipped bit in the content of a/b/f07.json
    assert verify(bytes(blocks)) == "a/b/f07.json"
    # A flipped bit in a header (a/b/f02.json's name) is found as well, not raised as tarfile's ReadError.
    blocks[blocks.index(b"a/b/f02.json") + 5] ^= 0x01
    assert verify(bytes(blocks)) == "a/b/f02.json"
    # A flipped bit in the compressed bytes: the frame's checksum fails, and the chunk is named by its first file.
    frame = bytearray(backup._compress(bytes(blocks)))
    frame[len(frame) // 2] ^= 0x01
    assert verify_frame(bytes(frame)) == "the compressed chunk that starts with top.txt"


def test_a_chunk_verifies_by_the_hashes_of_what_its_worker_built(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifying walked every member of every chunk (a third of the backup's CPU at 200k files). A chunk that
    decompresses to the blocks its worker built, beside the lines it wrote, now verifies by those two hashes;
    any difference is still named: the member, or the chunk when only bytes outside the members differ."""
    import hashlib
    import tarfile

    import zstandard

    from migration_pipeline.core import backup

    store = tmp_path / "store"
    store.mkdir()
    for name, data in {"a.json": b'{"a": 1}', "b.json": b'{"b": 22}', "c.json": b'{"c": 333}'}.items():
        (store / name).write_bytes(data)
    [frame] = backup._archive_chunk(str(store), [("", ["a.json", "b.json", "c.json"])], str(tmp_path), 2**20, 2**20)
    assert frame.blocks is not None and frame.blocks_sha256 is not None
    blocks = bytearray(zstandard.ZstdDecompressor().decompress(frame.blocks))
    assert frame.blocks_sha256 == hashlib.sha256(blocks).digest()
    archive, manifest = tmp_path / "chunk.zst", tmp_path / "chunk.sha256"

    def verify(altered: bytes, lines: str = frame.lines) -> str | None:
        """The chunk as the writer recorded it, with `altered` blocks and `lines` on the disk instead."""
        archive.write_bytes(backup._compress(altered))
        manifest.write_text(lines)
        chunk = backup._Chunk(0, archive.stat().st_size, 0, len(lines), False, frame.blocks_sha256,
                              hashlib.sha256(frame.lines.encode()).digest())
        return backup._verify_chunk(str(archive), str(manifest), chunk)

    with monkeypatch.context() as walked:
        walked.setattr(backup, "first_difference", lambda *_: pytest.fail("an unchanged chunk was walked"))
        assert verify(bytes(blocks)) is None
    content = bytearray(blocks)
    content[content.index(b'{"b": 22}') + 6] ^= 0x01
    assert verify(bytes(content)) == "b.json"
    padding = bytearray(blocks)
    padding[tarfile.BLOCKSIZE + len(b'{"a": 1}')] = 0x20  # a byte of a.json's padding, outside every member
    assert verify(bytes(padding)) == "the chunk that starts with a.json"
    assert verify(bytes(blocks), frame.lines.replace(hashlib.sha256(b'{"c": 333}').hexdigest(), "0" * 64)) == "c.json"


def test_the_backup_reads_ahead_of_the_loads_processes_until_the_store_opens_at_page_cache_speed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the load's pool, the backup's chunks are read one file at a time per process: threads read the chunks
    ahead (a cold 200k-file store staged in 28-33 s instead of 41-42 s), and stop once a chunk's files open at
    page-cache speed (warm, reading ahead only cost CPU). A file gone meanwhile is left to the chunk's own read."""
    from migration_pipeline.core import backup

    store = tmp_path / "store"
    store.mkdir()
    for i in range(50):
        (store / f"{i:02d}.json").write_bytes(b"{}")
    chunks = [[("", [f"{i:02d}.json" for i in range(start, start + 10)] + ["gone.json"])] for start in range(0, 50, 10)]
    ahead = backup._ReadAhead(str(store), 2, "demo")
    submitted: list[object] = []
    monkeypatch.setattr(ahead.pool, "submit", lambda function, chunk: submitted.append(chunk))
    monkeypatch.setattr(backup._ReadAhead, "WARM_SECONDS_PER_FILE", 0.0)  # nothing opens that fast: all read ahead
    assert list(ahead.ahead_of(iter(chunks))) == chunks and submitted == chunks
    ahead._read_ahead(chunks[0])
    assert not ahead.warm.is_set()
    monkeypatch.setattr(backup._ReadAhead, "WARM_SECONDS_PER_FILE", 1.0)  # every open is fast enough: warm
    ahead._read_ahead(chunks[1])
    assert ahead.warm.is_set()
    submitted.clear()
    assert list(ahead.ahead_of(iter(chunks))) == chunks and submitted == []
    ahead.pool.shutdown()


@pytest.mark.parametrize("workers", [1, 2])
def test_large_files_are_streamed_into_frames_of_their_own(tmp_path: Path, workers: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A file was read whole into a worker's memory (a dump of gigabytes beside small records). Now a file
    over LARGE_FILE is streamed a block at a time into its own frame, a chunk's frames beyond FRAME_BYTES
    go through temporary files, and the archive is the same kind of archive."""
    import hashlib
    import shutil
    import subprocess

    from migration_pipeline.core import backup
    from migration_pipeline.core.manifest import stream_folders

    store = tmp_path / "store"
    (store / "logs").mkdir(parents=True)
    contents = {f"r{i}.json": b'{"record": %d}' % i * 40 for i in range(6)}  # 520-560 bytes each
    contents["logs/app.log"] = bytes(range(256)) * 30  # 7,680 bytes: streamed
    contents["logs/" + "caf\u00e9-" * 20 + ".dump"] = b"\x00\xff" * 2000  # streamed, with a header by tarfile
    for relative, data in contents.items():
        (store / relative).write_bytes(data)
    monkeypatch.setattr(backup, "LARGE_FILE", 3000)
    monkeypatch.setattr(backup, "FRAME_BYTES", 2500)  # 4 small files per frame
    monkeypatch.setattr(backup, "CHUNK_FILES", 5)
    made = backup.write_backup(store, tmp_path / "out", "demo", workers=workers)

    expected = {relative: hashlib.sha256(data).hexdigest() for relative, data in contents.items()}
    assert (made.files, made.bytes) == (8, sum(len(d) for d in contents.values()))
    assert backup.read_manifest(made.manifest) == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([made.archive.name, made.manifest.name])
    with backup.open_archive(made.archive) as tar:
        members = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar}  # type: ignore[union-attr]
    assert list(members) == [prefix + name for prefix, names in stream_folders(store, 5) for name in names]
    assert members == expected
    assert backup.verify_archive(made.archive, made.manifest) is None
    if shutil.which("tar") and shutil.which("zstd"):
        (tmp_path / "restored").mkdir()
        subprocess.run(["tar", "--zstd", "-xf", made.archive, "-C", tmp_path / "restored"], check=True)
        checked = subprocess.run(["sha256sum", "--check", "--strict", made.manifest], cwd=tmp_path / "restored",
                                 capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_streamed_frame_is_verified_as_a_stream(tmp_path: Path) -> None:
    from migration_pipeline.core import backup
    from migration_pipeline.core.errors import MigrationError

    big = tmp_path / "big.bin"
    big.write_bytes(b"0123456789" * 700)
    frame = backup._stream_large_file(str(big), "big.bin", big.stat(), str(tmp_path))
    assert frame.spilled is not None and frame.size == 7000
    archive, manifest = tmp_path / "frame.zst", tmp_path / "frame.sha256"
    manifest.write_text(frame.lines)
    chunk = backup._Chunk(0, Path(frame.spilled).stat().st_size, 0, len(frame.lines), streamed=True)

    def verify(blocks: bytes) -> str | None:
        archive.write_bytes(blocks)
        return backup._verify_chunk(str(archive), str(manifest), chunk)

    assert verify(Path(frame.spilled).read_bytes()) is None
    big.write_bytes(b"0123456789" * 699 + b"012345678X")  # same size, one byte changed since the manifest line
    altered = backup._stream_large_file(str(big), "big.bin", big.stat(), str(tmp_path))
    assert verify(Path(altered.spilled or "").read_bytes()) == "big.bin"
    flipped = bytearray(Path(frame.spilled).read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    assert verify(bytes(flipped)) == "big.bin"
    # A file that shrank between its stat and its read is not archived short.
    grown = os.stat_result((*big.stat()[:6], 8000, *big.stat()[7:]))
    with pytest.raises(MigrationError, match="big.bin became shorter while it was read"):
        backup._stream_large_file(str(big), "big.bin", grown, str(tmp_path))


def test_names_with_line_breaks_and_backslashes_are_backed_up_as_sha256sum_escapes_them(tmp_path: Path) -> None:
    """A newline in a name ended its manifest line: the backup failed its own check ("does not verify ...
    check the disk"). The manifest now escapes such names as `sha256sum` does, and `sha256sum -c` accepts it."""
    import hashlib
    import shutil
    import subprocess

    from migration_pipeline.core import backup

    store = tmp_path / "store"
    store.mkdir()
    names = ["odd\nname.txt", "back\\slash.txt", "carriage\rreturn.txt", "form\x0cfeed and\u2028separator.txt",
             "plain.txt"]
    for i, name in enumerate(names):
        (store / name).write_bytes(b"x" * i)
    made = backup.write_backup(store, tmp_path / "out", "demo", workers=1)

    assert backup.read_manifest(made.manifest) == {n: hashlib.sha256(b"x" * i).hexdigest() for i, n in enumerate(names)}
    assert backup.verify_archive(made.archive, made.manifest) is None
    lines = made.manifest.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(names) + 1
    assert f"\\{hashlib.sha256(b'x').hexdigest()}  back\\\\slash.txt".encode() in lines
    if shutil.which("sha256sum"):
        checked = subprocess.run(["sha256sum", "--check", "--strict", made.manifest], cwd=store, capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_cannot_be_read_fails_the_backup_in_one_line(tmp_path: Path, workers: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from migration_pipeline.core import backup
    from migration_pipeline.core.errors import MigrationError

    store = tmp_path / "store"
    store.mkdir()
    for i in range(8):
        (store / f"f{i}.json").write_bytes(b"{}")
    (store / "f5.json").unlink()  # listed, then unreadable: it vanished
    monkeypatch.setattr(backup, "stream_folders", lambda _folder, _batch: iter([("", [f"f{i}.json" for i in range(8)])]))
    monkeypatch.setattr(backup, "CHUNK_FILES", 3)  # with 2 workers: the error crosses the process pool
    with pytest.raises(MigrationError) as failed:
        backup.write_backup(store, tmp_path / "out", "demo", workers=workers)
    assert str(failed.value) == (
        "backup: f5.json cannot be read (No such file or directory) and a backup must hold every file: restore or "
        "remove it (or stop the application's writes if the store is changing), then re-run")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written is left behind


def test_a_kept_backup_is_verified_again_and_expired_ones_are_pruned(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migration-pipeline backups --verify` re-reads every kept archive against its manifest; `--prune`
    deletes the archives past keep_until except each store's newest, and keeps their rows."""
    from migration_pipeline import cli
    from migration_pipeline.core import backup
    from migration_pipeline.core.database import connect

    store = tmp_path / "store"
    store.mkdir()
    for i in range(5):
        (store / f"f{i}.json").write_bytes(b'{"i": %d}' % i)
    out = tmp_path / "backups"
    made = [backup.write_backup(store, out, "wallet", workers=1) for _ in range(3)]
    assert backup.verify_archive(made[0].archive, made[0].manifest) is None
    with connect(database_url) as conn:
        for b in made:
            backup.record_backup(conn, "wallet", b)
        # The two older backups are past their 30 days (the newest is too, but a store always keeps one);
        # ages are set apart so that "newest" is well defined.
        for days, b in zip((40, 35, 31), made, strict=True):
            conn.execute("UPDATE migration.backups SET created_at = now() - make_interval(days => %s),"
                         " keep_until = now() - make_interval(days => %s - 30) WHERE archive_path = %s",
                         (days, days, str(b.archive)))
        conn.commit()

    argv = ["backups", "--database-url", database_url, "--verify"]
    assert cli.main(argv) == 0
    listed = capsys.readouterr().out
    assert [line.rsplit("  ", 1)[-1] for line in listed.splitlines()[2:]] == ["verified"] * 3

    # A changed byte in the newest archive: its recorded SHA-256 no longer matches and the command fails.
    raw = bytearray(made[2].archive.read_bytes())
    raw[-5] ^= 0x01
    made[2].archive.write_bytes(bytes(raw))
    assert cli.main(argv) == 1
    assert "FAILS: the archive's SHA-256 is not the recorded one" in capsys.readouterr().out
    # The same archive rewritten as a valid one whose f3.json changed: found member by member.
    altered = tmp_path / "altered.tar"
    with backup.open_archive(made[0].archive) as tar, backup.tarfile.open(altered, "w") as copy:
        for member in tar:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            copy.addfile(member, io.BytesIO(data.replace(b"3", b"4")))
    made[2].archive.write_bytes(backup._compress(altered.read_bytes()))
    assert backup.verify_archive(made[2].archive, made[2].manifest) == "f3.json"
    made[2].archive.write_bytes(made[0].archive.read_bytes()[:-40])  # truncated: its frame checksum is cut off
    assert backup.verify_archive(made[2].archive, made[2].manifest) in {
        f"{name} (the archive is damaged from there on)" for name in ("f0.json", "f1.json", "f2.json", "f3.json",
                                                                     "f4.json", "its end")}

    assert cli.main(["backups", "--database-url", database_url, "--prune"]) == 0
    assert capsys.readouterr().out.count("pruned wallet backup") == 2
    assert [(b.archive.exists(), b.manifest.exists()) for b in made] == [(False, False), (False, False), (True, True)]
    with connect(database_url) as conn:
        rows = conn.execute("SELECT archive_path, pruned_at IS NOT NULL FROM migration.backups ORDER BY created_at"
                            ).fetchall()
        assert rows == [(str(made[0].archive), True), (str(made[1].archive), True), (str(made[2].archive), False)]
        assert backup.latest_backup(conn, "wallet") == (str(made[2].archive), made[2].sha256)
    assert backup.prune_expired(connect(database_url)) == []  # nothing left to prune

    # An archive from before backups were compressed (a plain tar) still verifies.
    plain = tmp_path / "plain.tar"
    with backup.tarfile.open(plain, "w") as tar:
        for name in backup.read_manifest(made[2].manifest):  # in the manifest's order, as the backup wrote them
            tar.add(store / name, arcname=name)
    assert backup.verify_archive(plain, made[2].manifest) is None


@pytest.mark.parametrize(
    ("name", "size", "mtime"),
    [("a", 0, 0), ("storage/wallets/wallet_7_ethereum.json", 312, 1_700_000_000), ("x" * 100, 8**11 - 1, 8**11 - 1),
     ("x" * 101, 1, 1), ("caf\u00e9", 1, 1), ("big", 8**11, 1), ("old", 1, -1)],
)
def test_member_header_is_byte_for_byte_tarfiles(name: str, size: int, mtime: int) -> None:
    import tarfile

    from migration_pipeline.core import backup

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o100640
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert backup.member_header(name, size, mtime, 0o100640) == expected
    # Only what member_header built itself is read back without tarfile.
    built_here = name.isascii() and len(name) <= 100 and 0 <= size < 8**11 and 0 <= mtime < 8**11
    assert backup._plain_entry(expected[:512]) == ((name, size) if built_here else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-09-14T10:22:31.123Z", datetime(2025, 9, 14, 10, 22, 31, 123000, tzinfo=UTC)),
        ("2025-09-14T10:22:31+02:00", datetime(2025, 9, 14, 8, 22, 31, tzinfo=UTC)),
        ("2025-09-14 10:22:31", datetime(2025, 9, 14, 10, 22, 31, tzinfo=UTC)),
        (1718000000123, datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC)),
        (1718000000, datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)),
        ("1718000000123", datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps(value: object, expected: datetime) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["yesterday", True, None, {"a": 1}, 10**20, "2025-13-01"])
def test_bad_timestamps_raise_without_echoing_the_value(value: object) -> None:
    with pytest.raises(InvalidTimestamp) as info:
        parse_timestamp(value)
    assert str(value) not in str(info.value) or value is None


def test_unreachable_database_is_one_line() -> None:
    from migration_pipeline.core.errors import DatabaseUnavailableError

    with pytest.raises(DatabaseUnavailableError) as info:
        connect("postgresql://postgres:hunter2@127.0.0.1:1/none")
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/none")
    assert isinstance(info.value.__cause__, type(None)) and not isinstance(info.value, psycopg.Error)


def test_a_value_of_the_wrong_type_is_quarantined_by_column_never_quoted(database_url: str) -> None:
    """If a store lets a value of the wrong type through, the row is quarantined before COPY, naming its
    column and describing the value, and the rest of the unit loads."""
    import dataclasses

    from migration_pipeline.core.spec import Batch, ReadContext, Unit
    from migration_pipeline.core.stage import load_unit

    def bad_reader(unit: Unit, context: ReadContext):  # type: ignore[no-untyped-def]
        batch = Batch()
        created = datetime(2025, 1, 1, tzinfo=UTC)
        batch.add_row("wallets", (1, "SECRET-0xdeadbeef", "0x" + "a" * 40, None, None, "x", "x", created, created,
                                  "f.json", "file", 1))
        batch.add_row("wallets", (2, 5, "0x" + "b" * 40, None, None, "x", "x", created, created, "g.json", "file", 2))
        yield batch

    spec = dataclasses.replace(WALLET_STORE, read_unit=bad_reader)
    with connect(database_url) as conn:
        ddl.create_staging_tables(conn, spec, BOOKKEEPING)
        conn.commit()
        seen = load_unit(conn, spec, "plan", "run", Unit(7, ()), ReadContext(Path("."), None))
        left = conn.execute('SELECT id FROM "wallet__staging".wallets').fetchall()
        quarantined = conn.execute("SELECT source_file, reason, message, unit_no FROM migration.quarantine").fetchall()
        progress = conn.execute("SELECT records_seen, rows_emitted FROM migration.unit_progress").fetchall()
    assert seen == {"wallets": 2} and left == [(2,)] and progress == [(2, 1)]
    assert quarantined == [("f.json", "invalid_value", "column fid: a str where bigint is expected", 7)]


def test_a_database_migrated_with_the_old_flat_file_names_upgrades_cleanly(database_url: str) -> None:
    """Before sql/ had a folder per schema, files were recorded by bare name: they are renamed, not re-run."""
    from migration_pipeline.core.schema import LEGACY_NAMES

    with connect(database_url) as conn:
        for old, new in LEGACY_NAMES.items():
            conn.execute("UPDATE migration.schema_migrations SET filename = %s WHERE filename = %s", (old, new))
        conn.commit()
        assert conn.execute("SELECT count(*) FROM migration.schema_migrations WHERE filename = ANY(%s)",
                            (list(LEGACY_NAMES),)).fetchone() == (len(LEGACY_NAMES),)
        report = apply_migrations(conn)
        conn.commit()
        names = {r[0] for r in conn.execute("SELECT filename FROM migration.schema_migrations")}
    assert report.applied == ()
    assert set(LEGACY_NAMES.values()) <= names and not set(LEGACY_NAMES) & names
    assert report.already_applied[0] == "migration/001_migration.sql"


def test_describe_file_hashes_small_files_whole_large_ones_in_blocks_and_never_reads_a_link_or_a_pipe(
        tmp_path: Path) -> None:
    import hashlib

    from migration_pipeline.core.manifest import WHOLE_FILE_BYTES, describe_file
    from migration_pipeline.core.spec import ManifestEntry

    small, large = b'{"a": 1}', os.urandom(WHOLE_FILE_BYTES + 12345)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "small.json").write_bytes(small)
    (tmp_path / "large.bin").write_bytes(large)
    (tmp_path / "empty").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")
    os.symlink("/etc/passwd", tmp_path / "link")

    def entry(name: str) -> ManifestEntry:
        return describe_file(tmp_path, name, mapped=True)

    def mtime(name: str) -> int:
        return os.lstat(tmp_path / name).st_mtime_ns

    empty = hashlib.sha256(b"").hexdigest()
    assert entry("d/small.json") == ManifestEntry("d/small.json", 8, hashlib.sha256(small).hexdigest(), True,
                                                  mtime("d/small.json"))
    assert entry("large.bin") == ManifestEntry("large.bin", len(large), hashlib.sha256(large).hexdigest(), True,
                                               mtime("large.bin"))
    assert entry("empty") == ManifestEntry("empty", 0, empty, True, mtime("empty"))
    assert entry("pipe") == ManifestEntry("pipe", 0, empty, True, mtime("pipe"))  # read as empty, never blocks
    assert entry("link") == ManifestEntry("link", 0, "", True, None, "/etc/passwd")
    assert entry("gone") == ManifestEntry("gone", 0, "", True, None)
