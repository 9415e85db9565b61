"""How many items a JSON array (or object) file holds, counted without the reader that loads it.

Reconciliation proves `source = loaded + quarantined`. If the source side were the reader's own count,
a reader that lost records would shrink both sides together and the gate would pass. This module
counts the items of a file by another method, over its own pass of the bytes, following the item
rules of `json_array` (its module docstring): strings are replaced by a placeholder, every other byte
but brackets and commas is dropped or becomes the placeholder, and innermost bracket groups are
collapsed until only the container's own level is left, where the commas are counted. All of it is
done by regular expressions and `bytes.translate` on whole blocks; no token is looked at one by one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

_BLOCK = 1 << 20
_WS = b" \t\r\n"
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_VALUE_RUN = re.compile(rb"x{2,}")
_GROUP = re.compile(rb"[\[{][^\[\]{}]*+[\]}]")      # an innermost group, either kind of bracket
_NESTED_CONTENT = re.compile(rb"([\[{])[^\[\]{}]+")  # what an open group holds: not on the container's level
_FIRST_BRACKET = re.compile(rb"[\[\]{}]")
# Brackets and commas stay; JSON whitespace goes; any other byte is value text: "x".
_TABLE = bytes(c if c in b"[]{}," else ord("x") for c in range(256))


def count_items(path: Path, container: Literal["array", "object"] = "array") -> int:
    """The number of items (elements, or the quarantined stand-ins for a broken file) in the file."""
    opener = b"[" if container == "array" else b"{"
    with open(path, "rb") as handle:
        head = handle.read(_BLOCK)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        head = head.lstrip(_WS)
        while not head:
            block = handle.read(_BLOCK)
            if not block:
                return 1  # an empty file
            head = block.lstrip(_WS)
        if head[:1] != opener:
            return 1      # not the container
        counter = _Counter()
        counter.feed(head[1:])
        while block := handle.read(_BLOCK):
            counter.feed(block)
        return counter.total(ord("]" if container == "array" else "}"))


_PASSES = 32


def _collapse(level: bytes) -> bytes:
    """`level` with every closed group collapsed to "x" and the content of open ones dropped, in one
    linear pass: what the regular expressions give, for a nesting too deep for them."""
    out = bytearray()
    depth = 0
    for i, char in enumerate(level):
        if char in b"[{":
            depth += 1
            out.append(char)
        elif char in b"]}":
            if not depth:
                return bytes(out) + level[i:]
            depth -= 1
            del out[-1]
            if not depth:
                out.append(ord("x"))
        elif not depth:
            out.append(char)
    return bytes(out)


class _Counter:
    def __init__(self) -> None:
        self.carry = b""        # an unterminated string's start, carried into the next block
        self.level = b""        # the open groups left after collapsing (the container's own level is spent)
        self.commas = 0
        self.nonempty = False
        self.closer: int | None = None
        self.junk = False

    def feed(self, block: bytes) -> None:
        if self.closer is not None:
            self.junk = self.junk or bool(block.strip(_WS))
            return
        chunk = self.carry + block
        self.carry = b""
        text = _STRING.sub(b"x", chunk)
        cut = text.find(b'"')
        if cut >= 0:  # a string not closed in this chunk: nothing after its quote was replaced
            start = len(chunk) - (len(text) - cut)
            body_end = _STRING_BODY.match(chunk, start + 1).end()  # type: ignore[union-attr]
            self.carry = b'"' + (b"\\" if body_end < len(chunk) else b"")  # a pending escape
            text = text[:cut]
        level = self.level + _VALUE_RUN.sub(b"x", text.translate(_TABLE, _WS))
        for _ in range(_PASSES):
            level, n = _GROUP.subn(b"x", level)
            if not n:
                break
        else:  # nested deeper than the passes: one pass per level would be quadratic
            level = _collapse(level)
        first = _FIRST_BRACKET.search(level)
        own = level if first is None else level[: first.start()]
        self.commas += own.count(b",")
        self.nonempty = self.nonempty or bool(own)
        rest = level[len(own):]
        if rest[:1] in (b"]", b"}"):
            self.closer = rest[0]
            self.junk = len(rest) > 1 or bool(self.carry)
            self.carry = b""
            self.level = b""
        else:
            self.level = _NESTED_CONTENT.sub(rb"\1", rest)

    def total(self, closer: int) -> int:
        if self.closer is None:  # the file ends inside the container: its last slot is an item too
            return self.commas + 1
        slots = self.commas + 1 if self.nonempty else 0
        return slots + (1 if self.junk or self.closer != closer else 0)
