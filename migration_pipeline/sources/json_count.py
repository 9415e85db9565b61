"""How many items a JSON array (or object) file holds, counted without the reader that loads it.

Reconciliation proves `source = loaded + quarantined`. If the source side were the reader's own count,
a reader that lost records would shrink both sides together and the gate would pass. This module
counts the items of a file by another method, over its own pass of the bytes, following the item
rules of `json_array` (its module docstring): strings are removed, then every byte but brackets and
commas, and innermost bracket groups are collapsed until only the container's own level is left, where
the commas are counted. All of it is done by `bytes.split`, `bytes.translate` and regular expressions
on whole blocks; no token is looked at one by one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

_BLOCK = 1 << 20
_WS = b" \t\r\n"
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_GROUP = re.compile(rb"[\[{][^\[\]{}]*+[\]}]")  # an innermost group, either kind of bracket
_FIRST_BRACKET = re.compile(rb"[\[\]{}]")
_STRUCTURE = b"[]{},"
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in _STRUCTURE)
_PASSES = 32


def count_items(path: Path, container: Literal["array", "object"] = "array", block_size: int = _BLOCK) -> int:
    """The number of items (elements, or the quarantined stand-ins for a broken file) in the file."""
    opener, closer = (b"[", ord("]")) if container == "array" else (b"{", ord("}"))
    with open(path, "rb") as handle:
        head = handle.read(max(block_size, 3))  # the whole BOM, if any
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        head = head.lstrip(_WS)
        while not head:
            block = handle.read(block_size)
            if not block:
                return 1  # an empty file
            head = block.lstrip(_WS)
        if head[:1] != opener:
            return 1      # not the container
        counter = _Counter()
        first = head[1:].lstrip(_WS)
        while not first and (block := handle.read(block_size)):
            first = block.lstrip(_WS)
        if first[:1] in (b"]", b"}"):  # closed at once: no slot
            counter.closer, counter.commas, counter.last = first[0], -1, first[0]
            first = first[1:]
        counter.feed(first)
        while block := handle.read(block_size):
            counter.feed(block)
        return counter.total(closer)


class _Counter:
    def __init__(self) -> None:
        self.carry = b""        # an unterminated string's start, carried into the next block
        self.level = b""        # the groups still open (the container's own level is spent)
        self.commas = 0         # on the container's own level; -1: the container is empty
        self.closer: int | None = None
        self.junk = False
        self.last = 0           # the last byte of the file that is not whitespace

    def feed(self, block: bytes) -> None:
        significant = block.rstrip(_WS)
        if significant:
            self.last = significant[-1]
        if self.closer is not None:
            self.junk = self.junk or bool(significant.lstrip(_WS))
            return
        chunk = self.carry + block
        self.carry = b""
        if b"\\" in chunk:
            text = _STRING.sub(b"", chunk)
            cut = text.find(b'"')
            if cut >= 0:  # a string not closed in this chunk: nothing after its quote was removed
                start = len(chunk) - (len(text) - cut)
                body_end = _STRING_BODY.match(chunk, start + 1).end()  # type: ignore[union-attr]
                self.carry = b'"' + (b"\\" if body_end < len(chunk) else b"")  # a pending escape
                text = text[:cut]
        else:  # no escapes: strings are exactly what lies between pairs of quotes
            parts = chunk.split(b'"')
            if len(parts) % 2 == 0:
                self.carry = b'"'
                parts.pop()
            text = b"".join(parts[0::2])
        level = self.level + text.translate(None, _NOT_STRUCTURE)
        for _ in range(_PASSES):
            level, n = _GROUP.subn(b"x", level)  # "x": a closed group, which keeps what follows the container
            if not n:
                break
        else:  # nested deeper than the passes: one pass per level would be quadratic
            level = _collapse(level)
        first = _FIRST_BRACKET.search(level)
        own = len(level) if first is None else first.start()
        self.commas += level.count(b",", 0, own)
        rest = level[own:]
        if rest[:1] in (b"]", b"}"):
            self.closer = rest[0]
            self.junk = len(rest) > 1 or bool(self.carry)
            self.carry = self.level = b""
        else:
            self.level = rest.translate(None, b",x")  # what open groups hold does not count

    def total(self, closer: int) -> int:
        if self.closer is None:  # the file ends inside the container: its last slot is an item too
            return max(self.commas, 0) + 1
        # Whitespace only after the container: its closer is the last significant byte of the file.
        junk = self.junk or self.last != self.closer
        return self.commas + 1 + (1 if junk or self.closer != closer else 0)


def _collapse(level: bytes) -> bytes:
    """`level` with every closed group an "x" and only the brackets of open ones kept, in one linear
    pass: what the regular expressions give, for a nesting too deep for them."""
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
