"""The backup: a zstd-compressed tar archive of a store's source files with a SHA-256 manifest, verified by
re-reading the archive, written the first time a store is staged, beside its load (`backup_beside`): the load
only reads the source, and the gates (so promotion) wait for both. Side by side, a store read from the disk
is read from it once: whichever of the two reaches a file second finds it in the page cache.

Both passes run on every core (beside a load, in the load's own worker processes): workers turn chunks of
files into tar blocks compressed as one zstd frame each (plus manifest lines) that the parent appends in
order to one archive, then workers re-read byte ranges of the written archive and of the written manifest
and decompress them: a chunk is checked against the SHA-256 of the blocks and lines that were written, and
only one that differs is walked member by member to name the file that does. Concatenated frames are one
zstd stream (`zstd -d`, `tar --zstd -x` and `open_archive` read it whole). Memory stays flat: a few chunks
are in flight at a time, a chunk is remembered by its byte ranges only, and no file is ever held whole
beyond LARGE_FILE bytes: a larger one is streamed into a frame of its own, and the frames of a chunk beyond
FRAME_BYTES go through temporary files, as a legacy store may hold a dump or a log of gigabytes beside its
small records.

Why compressed: small wallet files are mostly tar padding (a 330-byte file takes 1,024 bytes), and
writing, hashing and re-reading those zeros cost the parent more than the workers spend compressing.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import multiprocessing
import os
import re
import shutil
import stat as stat_mode
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import zstandard

from migration_pipeline.core.archive_format import (
    NAMES,
    STREAM_BLOCK,
    block_members,
    first_difference,
    member_header,
    sum_entries,
    sum_line,
    tar_members,
)

# What readers of a backup use, here beside the writer.
from migration_pipeline.core.archive_format import open_archive as open_archive
from migration_pipeline.core.archive_format import plain_entry as _plain_entry  # noqa: F401 (test_core's handle)
from migration_pipeline.core.archive_format import read_manifest as read_manifest
from migration_pipeline.core.archive_format import verify_archive as verify_archive
from migration_pipeline.core.bookkeeping import backups
from migration_pipeline.core.bookkeeping.backups import RecordedBackup as RecordedBackup
from migration_pipeline.core.database import connect
from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.manifest import READ_FLAGS, is_link_error, read_unless_larger, recorded_path, stream_folders

CHUNK_FILES = 5000
FRAME_BYTES = 32 * 2**20  # a chunk's frame is closed at this many bytes of tar blocks
LARGE_FILE = 16 * 2**20  # a file larger than this is streamed from disk into a frame of its own
_END_OF_ARCHIVE = bytes(2 * tarfile.BLOCKSIZE)
ZSTD_LEVEL = 1  # 7x smaller than the tar, for an eighth of the time it takes to build its blocks
T = TypeVar("T")


@dataclass(frozen=True)
class Backup:
    archive: Path
    sha256: str
    files: int
    bytes: int
    manifest: Path


@dataclass(frozen=True)
class _Chunk:
    start: int  # byte range of one frame's members in the archive
    end: int
    manifest_start: int  # byte range of its `sha256sum` lines in the manifest (read back to verify)
    manifest_end: int
    streamed: bool = False  # a frame too large to hold: verified as a stream
    blocks_sha256: bytes | None = None  # of the tar blocks compressed into the frame, as they were built
    lines_sha256: bytes | None = None  # of its manifest lines, as they were written


@dataclass(frozen=True)
class _Frame:
    """One zstd frame of tar blocks built by a worker: in memory, or in a temporary file when large."""

    blocks: bytes | None
    spilled: str | None  # the temporary file holding the frame when `blocks` is None
    lines: str  # its members' manifest lines
    size: int  # its members' content bytes
    streamed: bool = False  # one file too large to hold, verified as a stream
    blocks_sha256: bytes | None = None  # of the tar blocks before compression (None when streamed)


def _archive_chunk(store_dir: str, segments: list[tuple[str, list[str]]], spill_dir: str, frame_bytes: int,
                   large_file: int) -> list[_Frame]:
    """The frames of some files, given as (folder relative to `store_dir` with its trailing "/", names in it)
    segments: tar blocks (no end-of-archive marker) compressed as zstd frames, with their manifest lines. At
    most the last frame is returned in memory: the others, and any file over `large_file` bytes (a frame of
    its own, streamed), are written to temporary files in `spill_dir`."""
    frames: list[_Frame] = []
    parts: list[bytes] = []
    lines: list[str] = []
    held = total = 0

    def close_frame(in_memory: bool) -> None:
        nonlocal held, total
        if parts:
            tar_blocks = b"".join(parts)
            built = hashlib.sha256(tar_blocks).digest()
            blocks = _compress(tar_blocks)
            frames.append(_Frame(blocks, None, "".join(lines), total, blocks_sha256=built) if in_memory
                          else _Frame(None, _spill(blocks, spill_dir), "".join(lines), total, blocks_sha256=built))
        parts.clear()
        lines.clear()
        held = total = 0

    for relative in (prefix + name for prefix, names in segments for name in names):
        path = f"{store_dir}/{relative}"
        try:
            data, stat = read_unless_larger(path, large_file)
            if data is None:
                close_frame(in_memory=False)
                frames.append(_stream_large_file(path, relative, stat, spill_dir))
                continue
        except OSError as exc:  # a symbolic link (never read through), vanished since it was listed, no permission
            if is_link_error(exc, path) and (link := _link_header(path, relative)) is not None:
                parts.append(link)  # no content, no manifest line: `sha256sum -c` would follow it
                held += tarfile.BLOCKSIZE
                continue
            raise MigrationError(
                f"backup: {recorded_path(relative)} cannot be read ({exc.strerror}) and a backup must hold every file: "
                "restore or remove it (or stop the application's writes if the store is changing), then re-run") from None
        lines.append(sum_line(hashlib.sha256(data).hexdigest(), relative))
        total += len(data)
        parts += (member_header(relative, len(data), int(stat.st_mtime), stat.st_mode), data,
                  bytes(-len(data) % tarfile.BLOCKSIZE))
        held += len(data) + 2 * tarfile.BLOCKSIZE
        if held >= frame_bytes:
            close_frame(in_memory=False)
    close_frame(in_memory=True)
    return frames


def _link_header(path: str, relative: str) -> bytes | None:
    """The tar member of a symbolic link: its target as written, no content (restored as the same link).
    None when it is no longer a link."""
    try:
        stat = os.lstat(path)
        target = os.readlink(path)
    except OSError:
        return None
    if not stat_mode.S_ISLNK(stat.st_mode):
        return None
    info = tarfile.TarInfo(relative)
    info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, target, int(stat.st_mtime), 0o777
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _spill(blocks: bytes, spill_dir: str) -> str:
    with tempfile.NamedTemporaryFile(dir=spill_dir, suffix=".zst", delete=False) as out:
        out.write(blocks)
    return out.name


def _stream_large_file(path: str, relative: str, stat: os.stat_result, spill_dir: str) -> _Frame:
    """One member in a frame of its own, read and compressed a block at a time into a temporary file: the
    `stat.st_size` bytes the header announces (what a writer appends meanwhile is left for the next backup)."""
    digest = hashlib.sha256()
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    with open(path, "rb", opener=_no_follow) as source, \
            tempfile.NamedTemporaryFile(dir=spill_dir, suffix=".zst", delete=False) as out:
        with compressor.stream_writer(out, closefd=False) as frame:
            frame.write(member_header(relative, stat.st_size, int(stat.st_mtime), stat.st_mode))
            left = stat.st_size
            while left:
                block = source.read(min(left, STREAM_BLOCK))
                if not block:
                    raise MigrationError(
                        f"backup: {recorded_path(relative)} became shorter while it was read: stop the application's "
                        "writes to the store, then re-run")
                digest.update(block)
                frame.write(block)
                left -= len(block)
            frame.write(bytes(-stat.st_size % tarfile.BLOCKSIZE))
    return _Frame(None, out.name, sum_line(digest.hexdigest(), relative), stat.st_size, streamed=True)


def _no_follow(path: str, flags: int) -> int:
    # Replaced by a link since it was read: not read through (see core/manifest.py).
    return os.open(path, flags | os.O_NOFOLLOW)


def _compress(blocks: bytes) -> bytes:
    # The frame records its content size and checksum: a corrupt frame fails to decompress.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(blocks)


def _read_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


def _verify_chunk(archive: str, manifest: str, chunk: _Chunk) -> str | None:
    """Re-read one chunk's byte range of the written archive and its lines of the written manifest;
    the first member that differs, or None.

    A frame that decompresses to exactly the tar blocks its worker built, beside exactly the lines it wrote, is
    what the writer made of the bytes it read: the blocks and the lines' SHA-256 came from the same bytes. Compared
    as two hashes, not member by member (a third of the backup's CPU at 200k files); only a chunk that differs
    is walked member by member, to name the first file that does."""
    listed = _read_range(manifest, chunk.manifest_start, chunk.manifest_end)
    expected = sum_entries(listed.decode("utf-8", NAMES))
    if chunk.streamed:
        return _verify_streamed(archive, chunk, expected)
    try:
        data = zstandard.ZstdDecompressor().decompress(_read_range(archive, chunk.start, chunk.end))
    except zstandard.ZstdError:
        return f"the compressed chunk that starts with {next(expected, ('', ''))[1]}"
    if chunk.blocks_sha256 is not None and hashlib.sha256(data).digest() == chunk.blocks_sha256 \
            and hashlib.sha256(listed).digest() == chunk.lines_sha256:
        return None
    first = next(sum_entries(listed.decode("utf-8", NAMES)), ("", ""))[1]
    try:
        differs = first_difference(block_members(data), expected)
    except tarfile.TarError:  # a header that no longer parses: the member it should have been is the bad one
        return next(expected, ("", ""))[1] or "the end of a chunk"
    if differs is None and chunk.blocks_sha256 is not None:  # every member and line as listed, yet not as built
        return f"the chunk that starts with {first}"
    return differs


def _verify_streamed(archive: str, chunk: _Chunk, expected: Iterator[tuple[str, str]]) -> str | None:
    """`_verify_chunk` of a frame too large to hold, decompressed and hashed a block at a time."""
    with open(archive, "rb") as raw:
        raw.seek(chunk.start)
        try:
            # Bounded: past its frame's end, a zstd stream reader goes on into the next frame.
            with zstandard.ZstdDecompressor().stream_reader(io.BufferedReader(_Range(raw, chunk.end - chunk.start))) as frame, \
                    tarfile.open(fileobj=frame, mode="r|") as tar:
                return first_difference(tar_members(tar), expected)
        except (zstandard.ZstdError, tarfile.TarError, EOFError):
            return next(expected, ("", ""))[1] or "the end of a chunk"


class _Range(io.RawIOBase):
    """The next `length` bytes of a file, as a file."""

    def __init__(self, raw: io.BufferedReader, length: int) -> None:
        self._raw = raw
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        read = self._raw.readinto(memoryview(buffer)[: self._left]) if self._left else 0
        self._left -= read
        return read


@contextmanager
def _in_order(pool: Executor | None, function: Callable[..., T], jobs: Iterable[tuple[Any, ...]]) -> Iterator[Iterator[T]]:
    """Results of `function(*job)` in job order, at most a few jobs in flight (flat memory). On leaving, the jobs
    not yet started are cancelled and the running ones waited for: the pool may be shared with the load and
    outlive the backup, so none of the backup's jobs may go on writing after it."""
    pending: list[Future[T]] = []

    def results() -> Iterator[T]:
        if pool is None:
            yield from (function(*job) for job in jobs)
            return
        for job in jobs:
            pending.append(pool.submit(function, *job))
            if len(pending) >= 4:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()

    try:
        yield results()
    finally:
        for future in pending:
            future.cancel()
        wait(pending)


class _ReadAhead:
    """Threads that ask the kernel to read the chunks' files into the page cache ahead of the chunks' jobs:
    opening a file reads its inode (the slow part of a small file on a cold disk), and the advice queues its
    blocks. Once a chunk's files opened at page-cache speed, the store is taken to be in memory and nothing more
    is read ahead (warm, it would only cost three system calls a file)."""

    WARM_SECONDS_PER_FILE = 20e-6  # a cold open reads an inode from the disk: ~100 µs here, a warm one 2-3 µs

    def __init__(self, store_dir: str, threads: int, store: str) -> None:
        self.store_dir = store_dir
        self.warm = threading.Event()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"read-ahead-{store}")

    def ahead_of(self, chunks: Iterable[list[tuple[str, list[str]]]]) -> Iterator[list[tuple[str, list[str]]]]:
        """The chunks, each read ahead as it is handed on."""
        for chunk in chunks:
            if not self.warm.is_set():
                self.pool.submit(self._read_ahead, chunk)
            yield chunk

    def _read_ahead(self, segments: list[tuple[str, list[str]]]) -> None:
        if self.warm.is_set():
            return
        started, files = time.perf_counter(), 0
        for relative in (prefix + name for prefix, names in segments for name in names):
            files += 1
            try:
                fd = os.open(f"{self.store_dir}/{relative}", READ_FLAGS)
            except OSError:
                continue  # the chunk's own read says what is wrong with it
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
        if files and (time.perf_counter() - started) / files < self.WARM_SECONDS_PER_FILE:
            self.warm.set()



class _Counted:
    """The chunks of a listing as it is read, counting their files; the first two are read ahead, to tell
    whether the store fills more than one chunk (worth a pool of workers) before any is archived."""

    def __init__(self, chunks: Iterator[list[tuple[str, list[str]]]]) -> None:
        self._ahead = list(itertools.islice(chunks, 2))
        self._rest = chunks
        self.files = 0

    def more_than_one(self) -> bool:
        return len(self._ahead) > 1

    def __iter__(self) -> Iterator[list[tuple[str, list[str]]]]:
        for chunk in itertools.chain(self._ahead, self._rest):
            self.files += sum(len(names) for _, names in chunk)
            yield chunk


def _chunks(folders: Iterable[tuple[str, list[str]]]) -> Iterator[list[tuple[str, list[str]]]]:
    """CHUNK_FILES files at a time, as (folder, names) segments: a chunk may span small folders."""
    files = ((prefix, name) for prefix, names in folders for name in names)
    while chunk := list(itertools.islice(files, CHUNK_FILES)):
        yield [(prefix, [name for _, name in group]) for prefix, group in itertools.groupby(chunk, key=itemgetter(0))]


def write_backup(store_dir: Path, backup_dir: Path, store: str, workers: int = 2,
                 cancel: threading.Event | None = None, *, threads: bool = False,
                 pool: ProcessPoolExecutor | None = None) -> Backup:
    """Archive every file under `store_dir` with a `sha256sum`-format manifest beside it, then re-read
    the archive and compare every member with the manifest. Both are written under temporary names
    (`.<name>.part`), fsynced and verified, then renamed: a run killed meanwhile leaves no file that looks like
    a backup, and `prune_strays` deletes what it left. Once `cancel` is set, it stops at the next chunk
    (raising BackupCancelled) and leaves nothing. With `threads`, the `workers` are threads of this process
    rather than processes: as many reads in flight, no process's memory added (GIL-bound where warm). With a
    `pool` (the load's worker processes), its workers build and verify the chunks between the load's units and it
    is left running: no process is added, and no thread contends with the caller's for one interpreter."""
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MigrationError(f"backup: the folder {backup_dir} cannot be created ({exc.strerror}): point "
                             "MIGRATION_BACKUP_DIR at a writable folder, then re-run") from None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    archive = backup_dir / f"{store}-{stamp}.tar.zst"
    manifest_path = backup_dir / f"{store}-{stamp}.sha256"
    partial, partial_manifest = (path.with_name(f".{path.name}{_PARTIAL}") for path in (archive, manifest_path))
    listed = _Counted(_chunks(stream_folders(store_dir, CHUNK_FILES)))
    own_pool: Executor | None = None
    if pool is None and workers > 1 and listed.more_than_one():
        # spawn: the parent may be a threaded Dagster process, where fork is unsafe.
        own_pool = ThreadPoolExecutor(workers, thread_name_prefix=f"backup-{store}") if threads else \
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    runner: Executor | None = pool or own_pool
    # In the load's processes, the chunks are read one file at a time per process, between the load's own reads:
    # a store on the disk gets more reads in flight from threads that read ahead.
    read_ahead = _ReadAhead(str(store_dir), workers, store) if pool is not None else None
    spill_dir = backup_dir / f".{archive.name}{_FRAMES}"  # the workers' large frames, until appended
    try:
        spill_dir.mkdir()
        chunks: list[_Chunk] = []
        digest = hashlib.sha256()
        total = 0
        try:
            with open(partial, "wb") as out, open(partial_manifest, "wb") as manifest:
                to_archive = listed if read_ahead is None else read_ahead.ahead_of(listed)
                jobs = ((str(store_dir), chunk, str(spill_dir), FRAME_BYTES, LARGE_FILE) for chunk in to_archive)
                with _in_order(runner, _archive_chunk, jobs) as built:
                    for frames in built:
                        _stop_if_cancelled(cancel, store)
                        for frame in frames:
                            start, manifest_start = out.tell(), manifest.tell()
                            _append_frame(frame, out, digest)
                            lines = frame.lines.encode("utf-8", NAMES)
                            manifest.write(lines)
                            chunks.append(_Chunk(start, out.tell(), manifest_start, manifest.tell(), frame.streamed,
                                                 frame.blocks_sha256, hashlib.sha256(lines).digest()))
                            total += frame.size
                end = _compress(_END_OF_ARCHIVE)
                out.write(end)
                digest.update(end)
                for written in (out, manifest):
                    written.flush()
                    os.fsync(written.fileno())
            checks = ((str(partial), str(partial_manifest), chunk) for chunk in chunks)
            with _in_order(runner, _verify_chunk, checks) as verified:
                for bad in verified:
                    _stop_if_cancelled(cancel, store)
                    if bad is not None:
                        raise MigrationError(f"backup {archive} does not verify at {recorded_path(bad)}; check the disk "
                                             "and re-run")
            # The manifest first: an archive under its final name always has its manifest beside it.
            os.replace(partial_manifest, manifest_path)
            os.replace(partial, archive)
            _fsync_folder(backup_dir)
        except BaseException as exc:  # no half-written archive is left to be mistaken for a backup
            for path in (partial, partial_manifest, archive, manifest_path):
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # The preflight weighs a store only when its disk might not hold it; this is the check that holds.
                raise MigrationError(f"backup of {store}: the disk of {backup_dir} is full ({exc.strerror}), so "
                                     "nothing was kept: free space there or point MIGRATION_BACKUP_DIR at a larger "
                                     "disk, then re-run") from None
            raise
    finally:
        for executor in (own_pool, read_ahead.pool if read_ahead else None):
            if executor is not None:
                executor.shutdown(cancel_futures=True)
        shutil.rmtree(spill_dir, ignore_errors=True)
    return Backup(archive.resolve(), digest.hexdigest(), listed.files, total, manifest_path.resolve())


class BackupCancelled(MigrationError):
    """The backup was stopped before it was complete (its load failed): it left nothing."""


def _stop_if_cancelled(cancel: threading.Event | None, store: str) -> None:
    if cancel is not None and cancel.is_set():
        raise BackupCancelled(f"backup of {store}: cancelled, as the load beside it failed")


@dataclass(frozen=True)
class StoreBackup:
    """The backup a store's run relies on: kept from an earlier run, or written by this one."""

    archive: Path
    sha256: str
    written: Backup | None  # None: an earlier run's backup, kept
    seconds: float


def ensure_backup(database_url: str, store_dir: Path, backup_dir: Path, store: str, workers: int,
                  cancel: threading.Event | None = None, *, threads: bool = False,
                  pool: ProcessPoolExecutor | None = None) -> StoreBackup:
    """The store's newest recorded backup whose archive is still there, else a new one written and recorded.
    Call it holding the store's lock: what a killed backup of the store left is deleted first."""
    started = time.perf_counter()
    with connect(database_url) as conn:
        prune_strays(conn, backup_dir, store)
        existing = latest_backup(conn, store)
        if existing:
            return StoreBackup(Path(existing[0]), existing[1], None, time.perf_counter() - started)
    made = write_backup(store_dir, backup_dir, store, workers, cancel, threads=threads, pool=pool)
    with connect(database_url) as conn:  # not held open meanwhile: a backup of millions of files takes minutes
        record_backup(conn, store, made)
    return StoreBackup(made.archive, made.sha256, made, time.perf_counter() - started)


@contextmanager
def backup_beside(database_url: str, store_dir: Path, backup_dir: Path, store: str, workers: int,
                  pool: ProcessPoolExecutor | None = None) -> Iterator[Future[StoreBackup]]:
    """`ensure_backup` in a thread while the caller loads the store: the future of its outcome, which the caller
    waits for (its `result()` raises what stopped the backup). If the caller fails first, the backup is
    cancelled and waited for, so that no worker outlives the step. Enter it inside the `pool`'s lifetime.

    Its chunks are built and verified by the load's own worker processes (`pool`), between the load's units, and
    read ahead by threads while the store is not in memory: no process is added to the step (at 2M files the peak
    was 966 MiB with two processes of the backup's own), and no thread contends for this process's interpreter
    (200k wallet files, stage and backup in alternating pairs: 1-3 client CPU-s less than with two backup
    threads warm, 28-34 s instead of 36-41 s cold). A store read from the disk is read from it once: whichever of
    the two reaches a file second finds it in the page cache. Without a pool (a store loaded in one process),
    `workers` threads do it."""
    cancel = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix=f"backup-{store}") as thread:
        outcome = thread.submit(ensure_backup, database_url, store_dir, backup_dir, store, workers, cancel,
                                threads=True, pool=pool)
        try:
            yield outcome
        except BaseException:
            cancel.set()
            raise


_PARTIAL = ".part"  # an archive or manifest being written: `.<final name>.part`
_FRAMES = ".frames"  # a folder of spilled frames being written: `.<archive name>.frames`


def _fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable: a crash right after must not bring back the temporary names."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_strays(conn: psycopg.Connection, backup_dir: Path, store: str) -> list[Path]:
    """Delete what killed backups of `store` left in `backup_dir`: temporary archives, manifests and frame
    folders, and archives or manifests under a final name that `migration.backups` does not hold (killed
    between the rename and the insert). Only names of this store's backups are touched (`<store>-<UTC
    stamp>.tar.zst` and `.sha256`, with their temporary forms). Call it holding the store's lock: a run that
    is writing a backup has its temporary files here. Returns what was deleted."""
    if not backup_dir.is_dir():
        return []
    stamp = re.escape(store) + r"-\d{8}T\d{12}Z"
    final = re.compile(rf"{stamp}\.(?:tar\.zst|sha256)")
    temporary = re.compile(rf"\.{stamp}\.(?:tar\.zst|sha256){re.escape(_PARTIAL)}|\.{stamp}\.tar\.zst{re.escape(_FRAMES)}")
    # By name (a stamp to the microsecond): the folder may be reached by another path than when it was recorded.
    registered = backups.registered_names(conn, store)
    pruned = []
    for entry in sorted(backup_dir.iterdir()):
        if temporary.fullmatch(entry.name) or (final.fullmatch(entry.name) and entry.name not in registered):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            pruned.append(entry)
    return pruned


def _append_frame(frame: _Frame, out: io.BufferedWriter, digest: Any) -> None:
    if frame.blocks is not None:
        out.write(frame.blocks)
        digest.update(frame.blocks)
        return
    assert frame.spilled is not None
    with open(frame.spilled, "rb") as spilled:
        while block := spilled.read(STREAM_BLOCK):
            out.write(block)
            digest.update(block)
    os.unlink(frame.spilled)


def record_backup(conn: psycopg.Connection, store: str, backup: Backup) -> None:
    """Register a written backup (committed: its files exist now)."""
    backups.insert_backup(conn, store, backup.archive, backup.sha256, backup.files, backup.bytes, backup.manifest)
    conn.commit()


def latest_backup(conn: psycopg.Connection, store: str) -> tuple[str, str] | None:
    """(archive path, sha256) of the store's newest backup, if its archive is still there."""
    newest = backups.newest_backup(conn, store)
    return newest if newest and Path(newest[0]).is_file() else None


def recorded_backups(conn: psycopg.Connection) -> list[RecordedBackup]:
    """Every backup ever written, per store newest first."""
    return backups.all_backups(conn)


def prune_expired(conn: psycopg.Connection) -> list[RecordedBackup]:
    """Delete the archive and manifest of every backup past its keep_until, except each store's newest (a
    store always keeps one); their rows stay, marked pruned. Returns what was pruned."""
    expired = backups.expired_backups(conn)
    for backup in expired:
        backup.archive.unlink(missing_ok=True)
        backup.manifest.unlink(missing_ok=True)
        backups.mark_pruned(conn, backup.store, backup.archive)
        conn.commit()  # one at a time: a row says pruned once its files are gone
    return expired
