"""The source manifest: every file under a store folder with its size and SHA-256."""

from __future__ import annotations

import errno
import hashlib
import os
import stat as stat_mode
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from migration_pipeline.core.errors import MigrationError
from migration_pipeline.core.spec import ManifestEntry

# O_NONBLOCK: a named pipe in a store would otherwise block its reader forever (it reads as empty now);
# regular files ignore the flag. O_NOFOLLOW: a symbolic link is never read through (see `describe_link`); opening
# one fails with ELOOP.
READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
WHOLE_FILE_BYTES = 16 << 20  # a file up to this size is hashed from one read

# Symbolic links in a store. A link is never followed, wherever it points: out of the store root (another
# disk, /dev/zero, /etc), nowhere (dangling), to itself (a loop), to a folder (a walk could go round forever),
# or to a file inside the store (that file is listed and read under its own name; checking that a link
# stays inside and then opening it would race a writer re-pointing it). Every listing gives a link as one
# entry, never descended into; the manifest records it with status `symlink` and its target as text, and,
# as an unreadable file is recorded (what a loader records for a mapped name that is a link), size 0, no
# hash, no mtime: change detection sees a link as unchanged while it stays a link. The backup archives it
# as a link.


def read_whole(path: str) -> tuple[bytes, os.stat_result]:
    """A file's bytes and its stat, read with bare system calls: Python's buffered `open()` costs twice
    as much per file (~13 µs against ~7), which counts at millions of files. Raises OSError."""
    data, stat = read_unless_larger(path, None)
    assert data is not None
    return data, stat


def read_unless_larger(path: str, limit: int | None) -> tuple[bytes | None, os.stat_result]:
    """`read_whole`, except that a file of more than `limit` bytes is not read: (None, its stat)."""
    fd = os.open(path, READ_FLAGS)
    try:
        stat = os.fstat(fd)
        if _is_stream(stat):
            return b"", stat
        if limit is not None and stat.st_size > limit:
            return None, stat
        data = os.read(fd, stat.st_size + 1)
        # Exactly the stat's size means the end was reached (one byte more was asked for). Anything else is
        # a file that changed since the stat, or a short read (one read returns at most ~2 GiB): read on.
        if len(data) != stat.st_size:
            parts = [data]
            while part := os.read(fd, 1 << 20):
                parts.append(part)
            data = b"".join(parts)
        return data, stat
    finally:
        os.close(fd)


def _is_stream(stat: os.stat_result) -> bool:
    """A named pipe or a device (a link to /dev/zero, say) is read as an empty file: its bytes are
    a stream, not stored content. Read, a pipe gave whatever a writer had sent so far (or blocked, with a
    writer holding it open), and /dev/zero never ended."""
    mode = stat.st_mode
    return stat_mode.S_ISFIFO(mode) or stat_mode.S_ISCHR(mode) or stat_mode.S_ISBLK(mode)


def recorded_path(path: str) -> str:
    """A path as the database and reports hold it: valid UTF-8, each byte of a name that is not UTF-8
    written as `\\xNN`. Linux names are bytes, and a legacy application may have written Latin-1 ones;
    Python lists such a byte as a lone surrogate, which no UTF-8 text (nor PostgreSQL) accepts."""
    return path if path.isascii() else os.fsencode(path).decode("utf-8", "backslashreplace")


def is_link_error(error: OSError, path: str | Path) -> bool:
    """Whether opening `path` with the read flags failed because it is a symbolic link (not read through)."""
    return error.errno == errno.ELOOP and os.path.islink(path)


def describe_link(path: str | Path, relative_path: str, *, mapped: bool) -> ManifestEntry | None:
    """The manifest entry of a symbolic link (status `symlink`): its target as `recorded_path` text; size 0,
    no hash, no mtime. None when `path` is not a link (any more)."""
    try:
        target = os.readlink(path)
    except OSError:  # gone, or replaced by a file or folder, since it was listed
        return None
    return ManifestEntry(recorded_path(relative_path), 0, "", mapped, None, recorded_path(target))


def describe_file(store_dir: Path, relative_path: str, *, mapped: bool) -> ManifestEntry:
    """Hash a file (read whole with bare system calls up to 16 MiB, in 1 MiB blocks beyond: any size works);
    its entry holds its `recorded_path`. A symbolic link is described as a link (`describe_link`), not read. A
    file that cannot be read (gone since it was listed) is recorded as the loaders record one, size 0 and no
    hash, and as change detection sees it, without an mtime."""
    path = os.path.join(store_dir, relative_path)  # a string: a Path per file cost microseconds
    try:
        data, stat = read_unless_larger(path, WHOLE_FILE_BYTES)
    except OSError as error:
        link = describe_link(path, relative_path, mapped=mapped) if is_link_error(error, path) else None
        return link or _unreadable(relative_path, mapped)
    if data is not None:
        return ManifestEntry(recorded_path(relative_path), len(data), hashlib.sha256(data).hexdigest(), mapped,
                             stat.st_mtime_ns)
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:  # gone between the two opens
        return _unreadable(relative_path, mapped)
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(fd)
        while not _is_stream(stat) and (block := handle.read(1 << 20)):
            digest.update(block)
            size += len(block)
    return ManifestEntry(recorded_path(relative_path), size, digest.hexdigest(), mapped, stat.st_mtime_ns)


def _unreadable(relative_path: str, mapped: bool) -> ManifestEntry:
    """A file that could not be read, as the loaders record one: size 0, no hash, no mtime."""
    return ManifestEntry(recorded_path(relative_path), 0, "", mapped, None)


def iter_stats(store_dir: Path) -> Iterator[tuple[str, int, int | None]]:
    """(recorded path, size, mtime_ns) of every file below `store_dir`, read with stat only (no file is
    opened), one at a time: the files `walk_files` lists, with (0, None) for a symbolic link and for one that
    cannot be stat'ed, as the manifest records them. Paths are joined as strings: a `Path` per file cost 10 µs."""
    for path, entry in _entries(store_dir):
        if entry.is_symlink():
            yield recorded_path(path), 0, None
            continue
        try:
            st = entry.stat()
        except OSError:  # a dangling link, or gone since it was listed
            yield recorded_path(path), 0, None
        else:
            yield recorded_path(path), st.st_size, st.st_mtime_ns


def iter_files(store_dir: Path) -> Iterator[str]:
    """The paths `walk_files` lists, one at a time and unsorted (no stat, nothing held)."""
    return (path for path, _ in _entries(store_dir))


def stream_folders(store_dir: Path, batch: int) -> Iterator[tuple[str, list[str]]]:
    """Every file below `store_dir` (links included, as in `walk_files`) as (its folder relative to `store_dir` with
    a trailing "/", "" for `store_dir` itself; at most `batch` of the folder's file names), in the order the
    folders give them: at most `batch` names are held, where a sorted listing holds every name (172 MiB for 2M
    files in one folder). Names are not joined to their folder here (190 MB more at 2M files)."""
    if not store_dir.is_dir():
        scan_folder(store_dir).close()  # says in one line why it cannot be listed
    names: list[str] = []
    current = ""
    for prefix, entry in _folder_entries(store_dir):
        if names and (prefix != current or len(names) == batch):
            yield current, names
            names = []
        current = prefix
        names.append(entry.name)
    if names:
        yield current, names


def _entries(store_dir: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    return ((prefix + entry.name, entry) for prefix, entry in _folder_entries(store_dir))


def _folder_entries(store_dir: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(folder relative to `store_dir` with a trailing "/", entry) of every file and symbolic link below it."""
    if not store_dir.is_dir():
        return
    pending = [(str(store_dir), "")]
    while pending:
        folder, prefix = pending.pop()
        with scan_folder(folder) as entries:
            try:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                    else:  # a file, or a symbolic link wherever it points
                        yield prefix, entry
            except OSError as error:  # the folder went away or broke while it was read
                _unlistable(error)


def walk_files(store_dir: Path, skip: str | None = None) -> list[str]:
    """Every file below `store_dir` (a symbolic link, wherever it points, is one, never descended into) as
    sorted POSIX paths relative to it, not descending into the relative folder `skip` (a store's bulk
    folder, listed by the store itself)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(store_dir, onerror=_unlistable):
        relative = Path(folder).relative_to(store_dir).as_posix()
        prefix = "" if relative == "." else relative + "/"
        files += _links_to_folders(folder, dirs)
        if skip is not None:
            dirs[:] = [d for d in dirs if prefix + d != skip]
        found.extend(prefix + name for name in files)
    return sorted(found)


def _links_to_folders(folder: str, dirs: list[str]) -> list[str]:
    """os.walk lists a link to a folder among the folders (and does not descend into it): moved out of `dirs`
    and returned, as it is a store's entry like any link."""
    links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
    if links:
        dirs[:] = [d for d in dirs if d not in links]
    return links


def _unlistable(error: OSError) -> NoReturn:
    # os.walk skips a folder it cannot list unless told otherwise: its files would silently be in no
    # manifest and no backup.
    raise MigrationError(f"cannot list the folder {error.filename} ({error.strerror}): every file of a store must be "
                         "read; fix its permissions (or remove it), then re-run") from None


def scan_folder(folder: str | Path) -> os._ScandirIterator[str]:  # noqa: SLF001 - the type os.scandir returns
    """`os.scandir`, with a folder that cannot be listed said in one line."""
    try:
        return os.scandir(folder)
    except OSError as error:
        _unlistable(error)
