"""The Pend store's file kinds, one reader each: what a file holds as items (locator, value or a reason).

Every number is read exactly: integers as int, anything with a fraction or an exponent as Decimal (never a
float), so amounts and wei values reach their numeric columns digit for digit. NaN and Infinity are not JSON
and are refused. Messages say what is wrong and where, never a source value (a parser's message quotes the
text around the error, so it is never passed on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import ijson

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Item:
    """One record of a file: its value, or why it cannot be read (then `value` is None)."""

    locator: str
    value: Any
    reason: str | None = None
    message: str = ""


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def loads_exact(data: bytes) -> Any:
    """A small JSON document (an application.json) parsed strictly: exact numbers, no NaN; raises ValueError
    (also for invalid UTF-8 and nesting too deep to parse)."""
    try:
        return json.loads(data.removeprefix(_BOM), parse_float=Decimal, parse_constant=_constant)
    except RecursionError:
        raise _NotJson("nested too deep") from None


def _first_byte(handle: IO[bytes]) -> bytes:
    """The first significant byte (after a BOM and whitespace), the handle left at the start of the JSON."""
    if handle.read(3) != _BOM:
        handle.seek(0)
    start = handle.tell()
    while block := handle.read(4096):
        stripped = block.lstrip()
        if stripped:
            handle.seek(start)
            return stripped[:1]
        start = handle.tell()
    return b""


def _streamed(handle: IO[bytes], items: Iterator[Any], locator_of: Any, what: str) -> Iterator[Item]:
    index = 0
    while True:
        try:
            value = next(items)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - any parser error: its message quotes the source, so it is not kept
            yield Item(locator_of(index, None), None, "invalid_json",
                       f"the {what} is not valid JSON from this record on (truncated, NaN or a syntax error);"
                       " records before it were read")
            return
        yield Item(locator_of(index, value), value)
        index += 1


def read_array(path: Path) -> Iterator[Item]:
    """A top-level JSON array (admin-*.json, an explorer day file): one item per element, `[i]`."""
    with open(path, "rb") as handle:
        first = _first_byte(handle)
        if first != b"[":
            what = "the file is empty" if not first else "the file does not hold a JSON array"
            yield Item("[0]", None, "invalid_json", what)
            return
        yield from _streamed(handle, ijson.items(handle, "item", use_float=False),
                             lambda i, _v: f"[{i}]", "array")


def read_users(path: Path) -> Iterator[Item]:
    """wallet-db.json's `users` object: one item per member, `users[i]`, its value (key, record)."""
    with open(path, "rb") as handle:
        first = _first_byte(handle)
        if first != b"{":
            what = "the file is empty" if not first else "the file does not hold a JSON object"
            yield Item("users[0]", None, "invalid_json", what)
            return
        yield from _streamed(handle, ijson.kvitems(handle, "users", use_float=False),
                             lambda i, _v: f"users[{i}]", "users object")
