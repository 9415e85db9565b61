"""The backup archive's format: a tar stream (GNU headers, built here for the common member) compressed as
zstd frames, beside a manifest in `sha256sum`'s own format; and reading an archive back to check it.

`core.backup` writes archives in this format; `open_archive`, `read_manifest` and `verify_archive` read any
archive it wrote (and the plain tar archives written before backups were compressed).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zstandard

from migration_pipeline.core.manifest import recorded_path

STREAM_BLOCK = 2**20  # what a member is read and hashed by when it is not held whole
# Names are bytes on disk: the manifest holds them as they are (what `sha256sum -c` expects), and Python
# reads a byte that is not UTF-8 back as the lone surrogate its listing gave the name.
NAMES = "surrogateescape"


# tarfile spends ~60 µs per member on TarInfo headers, more than reading the file: the common member (a
# regular file with a short ASCII name) gets its header built here from tarfile's own template bytes, and
# test_core checks the bytes equal TarInfo.tobuf's. Any other member goes through tarfile.
_TEMPLATE = tarfile.TarInfo("").tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
_OWNER = _TEMPLATE[108:124]  # uid and gid 0
_TAIL = _TEMPLATE[156:]  # type "0", no link name, GNU magic, no owner names
_TAIL_SUM = 8 * ord(" ") + sum(_TAIL)  # the checksum counts its own field as spaces
_OCTAL_LIMIT = 8**11  # size and mtime in 11 octal digits


def _is_plain(name: bytes, size: int, mtime: int) -> bool:
    return len(name) <= 100 and name.isascii() and 0 <= size < _OCTAL_LIMIT and 0 <= mtime < _OCTAL_LIMIT


def member_header(relative: str, size: int, mtime: int, mode: int) -> bytes:
    """The GNU tar header of a regular file, byte for byte what `TarInfo.tobuf(GNU_FORMAT)` writes."""
    name = relative.encode("utf-8", "surrogateescape")
    if not _is_plain(name, size, mtime):
        info = tarfile.TarInfo(relative)
        info.size, info.mtime, info.mode = size, mtime, mode
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    head = b"%s%07o\0%s%011o\0%011o\0" % (name.ljust(100, b"\0"), mode & 0o7777, _OWNER, size, mtime)
    return b"%s%06o\0 %s" % (head, sum(head) + _TAIL_SUM, _TAIL)


def plain_entry(header: bytes) -> tuple[str, int] | None:
    """Name and size from a header that member_header built itself (checksum included); else None."""
    if header[156:] != _TAIL or header[148:156] != b"%06o\0 " % (sum(header[:148]) + _TAIL_SUM):
        return None
    try:
        name, size, mtime = header[:100].rstrip(b"\0"), int(header[124:135], 8), int(header[136:147], 8)
    except ValueError:  # a base-256 number: tarfile's business
        return None
    return (name.decode("ascii"), size) if _is_plain(name, size, mtime) else None


def block_members(blocks: bytes) -> Iterator[tuple[str, str]]:
    """(name, SHA-256 of the content) of every member of some tar blocks; from the first header that is not
    plain on, tarfile reads the rest."""
    offset = 0
    while offset < len(blocks):
        entry = plain_entry(blocks[offset : offset + tarfile.BLOCKSIZE])
        if entry is None:
            with tarfile.open(fileobj=io.BytesIO(blocks[offset:]), mode="r|") as tar:
                yield from tar_members(tar)
            return
        name, size = entry
        start = offset + tarfile.BLOCKSIZE
        yield name, hashlib.sha256(blocks[start : start + size]).hexdigest()
        offset = start + size + (-size % tarfile.BLOCKSIZE)


def tar_members(tar: tarfile.TarFile) -> Iterator[tuple[str, str]]:
    """(name, SHA-256 of the content) of every member, each read a block at a time (any size)."""
    for member in tar:
        if member.issym():  # a symbolic link: no content, and no manifest line
            continue
        digest = hashlib.sha256()
        extracted = tar.extractfile(member)
        if extracted is not None:
            while block := extracted.read(STREAM_BLOCK):
                digest.update(block)
        yield member.name, digest.hexdigest()


# `sha256sum`'s own form for a name with a backslash, newline or carriage return: the line starts with a
# backslash and those characters are escaped (a newline in a name would otherwise end its line).
_SUM_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r"})
_SUM_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_SUM_UNESCAPED = {"n": "\n", "r": "\r"}


def sum_line(digest: str, name: str) -> str:
    """One manifest line, as `sha256sum` writes it."""
    if "\\" in name or "\n" in name or "\r" in name:
        return f"\\{digest}  {name.translate(_SUM_ESCAPES)}\n"
    return f"{digest}  {name}\n"


def sum_entries(text: str) -> Iterator[tuple[str, str]]:
    """(SHA-256, name) of each line of manifest text made of whole lines."""
    for line in text.split("\n"):  # not splitlines(): it also splits at \x0c, \x85, \u2028..., all allowed in names
        if not line:
            continue
        escaped = line.startswith("\\")
        digest, _, name = line[escaped:].partition("  ")
        if escaped:
            name = _SUM_ESCAPED.sub(lambda match: _SUM_UNESCAPED.get(match[1], match[1]), name)
        yield digest, name


def first_difference(members: Iterator[tuple[str, str]], entries: Iterator[tuple[str, str]]) -> str | None:
    """The first member (name, SHA-256) whose name or SHA-256 is not its manifest entry's, else the first
    listed file the members lack, else None. A member is read before its entry is taken: when reading it
    raises, the next entry names it."""
    for name, sha256 in members:
        digest, listed = next(entries, ("", ""))
        if name != listed or sha256 != digest:
            return name
    missing = next(entries, None)
    return missing[1] if missing else None


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@contextmanager
def open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """A backup archive as a streaming `tarfile` (members in order; `extractfile` before moving on). An
    archive written before backups were compressed is a plain tar, and is read as one."""
    with open(path, "rb") as raw:
        if raw.read(4) != _ZSTD_MAGIC:
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                yield tar
            return
        raw.seek(0)
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as stream, \
                tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar


def read_manifest(path: Path) -> dict[str, str]:
    """A backup manifest as {relative path: SHA-256}."""
    return {name: digest for digest, name in sum_entries(path.read_text(encoding="utf-8", errors=NAMES))}


def verify_archive(archive: Path, manifest: Path) -> str | None:
    """Read a whole backup archive again and compare its members, in order, with its manifest (a backup
    checked later: bit rot, a copy moved elsewhere); the first member (its recorded path) that differs or is
    missing, or None."""
    expected = sum_entries(manifest.read_text(encoding="utf-8", errors=NAMES))
    try:
        with open_archive(archive) as tar:
            bad = first_difference(tar_members(tar), expected)
        return None if bad is None else recorded_path(bad)
    except (zstandard.ZstdError, tarfile.TarError, EOFError):
        damaged = next(expected, ("", ""))[1] or "its end"
        return f"{recorded_path(damaged)} (the archive is damaged from there on)"
