"""The Pend store's file kinds, one reader each: what a file holds as items (locator, value or a reason).

Files are split into their top-level elements by `sources.json_array`'s byte-level splitter (one element in
memory at a time; a bad element never moves the next one's boundaries), and each element is parsed strictly
with every number exact (`json_array.parse_exact`: integers as int, anything with a fraction or an exponent
as Decimal, never a float; amounts and wei values must keep their digits, and their sums must equal the
source's to the last one). Messages say what is wrong and where, never a source value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from migration_pipeline.sources.json_array import JsonRejected, split_items
from migration_pipeline.sources.json_array import parse_exact as loads_exact

_BOM = b"\xef\xbb\xbf"
_USERS_PREFIX = re.compile(rb'\s*\{\s*"users"\s*:\s*(?=\{)')


@dataclass(frozen=True, slots=True)
class Item:
    """One record of a file: its value, or why it cannot be read (then `value` is None)."""

    locator: str
    value: Any
    reason: str | None = None
    message: str = ""


def _items(handle: IO[bytes], container: Any, locator: str) -> Iterator[Item]:
    for index, slot in enumerate(split_items(handle, container)):
        where = locator.format(index)
        if slot.raw is None:
            assert slot.problem is not None
            yield Item(where, None, *slot.problem)
            continue
        try:
            raw = slot.raw if container == "array" else b"{" + slot.raw + b"}"
            value = loads_exact(raw)
            if container == "object":
                if not isinstance(value, dict) or len(value) != 1:
                    raise JsonRejected("invalid_json", "an object member is not one key and its value")
                value = next(iter(value.items()))
        except JsonRejected as exc:
            yield Item(where, None, exc.reason, exc.message)
            continue
        yield Item(where, value)


def read_array(path: Path) -> Iterator[Item]:
    """A top-level JSON array (admin-*.json, an explorer day file): one item per element, `[i]`. Its items
    are the ones `sources.json_count.count_items` counts."""
    with open(path, "rb") as handle:
        yield from _items(handle, "array", "[{}]")


class _Window:
    """A file read from `start` to `end` (the users object inside wallet-db.json's outer object)."""

    def __init__(self, handle: IO[bytes], start: int, end: int) -> None:
        self.handle = handle
        self.left = end - start
        handle.seek(start)

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data


def read_users(path: Path) -> Iterator[Item]:
    """wallet-db.json's `users` object: one item per member, `users[i]`, its value (key, record), streamed.

    The file is `{"users": {...}}`: its users object is split member by member, as the shared reader splits
    an object file. A file of another shape is read whole (the shared strict parser), and its `users` taken."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
        start = 3 if head.startswith(_BOM) else 0
        prefix = _USERS_PREFIX.match(head, start)
        handle.seek(0, 2)
        size = handle.tell()
        end = _last_significant(handle, size)
        if prefix is not None and end is not None and end[1] == b"}":
            yield from _items(_Window(handle, prefix.end(), end[0]), "object", "users[{}]")  # type: ignore[arg-type]
            return
        handle.seek(0)
        data = handle.read()
    try:
        document = loads_exact(data)
    except JsonRejected as exc:
        yield Item("users[0]", None, exc.reason, exc.message)
        return
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, dict):
        yield Item("users[0]", None, "not_an_object", "the file holds no users object")
        return
    for index, member in enumerate(users.items()):
        yield Item(f"users[{index}]", member)


def _last_significant(handle: IO[bytes], size: int) -> tuple[int, bytes] | None:
    """(offset, byte) of the file's last byte that is not whitespace."""
    position = size
    while position > 0:
        step = min(4096, position)
        handle.seek(position - step)
        block = handle.read(step)
        stripped = block.rstrip(b" \t\r\n")
        if stripped:
            return position - step + len(stripped) - 1, stripped[-1:]
        position -= step
    return None
