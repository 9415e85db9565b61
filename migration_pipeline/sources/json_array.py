"""A top-level JSON array (or object of members) read one element at a time, each parsed on its own.

The file is read in blocks and split into the slots of its top-level container at the byte level
(strings and their backslash escapes are skipped; any of `[{` opens a level and any of `]}` closes
one), so that a bad token inside one element never moves the boundaries of the next: every element
is parsed strictly on its own, and a bad one is quarantined while the rest load. Only the element
being read is in memory.

The items of a file, which `json_count.count_items` counts independently of this module:
- a file that is empty (nothing but a BOM and whitespace), or whose first significant byte does not
  open the container, is one item, `[0]`, quarantined;
- else each slot of the container is one item: none when it is closed at once (`[]`), else one more
  than the commas on its own level. An empty slot (`[1,,2]`, `[1,]`) is quarantined; so is the last
  slot when the file ends before the container is closed (`unexpected end of file: N bytes unread`);
- a container closed by the other kind of bracket, or followed by anything but whitespace, adds one
  trailer item, quarantined, at the index after the last slot.

Parsing is strict RFC 8259: NaN and Infinity, invalid UTF-8 and lone surrogates (escaped or not) are
quarantined as `invalid_json`, never replaced. Every valid number is accepted: integers stay exact
(a `Decimal` beyond 64 bits, which orjson cannot write), and a non-integer that a float would not give
back exactly (too many digits, an exponent beyond the float range) is a `Decimal` of its exact digits.
An element nesting deeper than `max_depth` is quarantined as `too_deep` by the splitter, before
anything is built from it, with flat memory.

`\\u0000` (NUL) anywhere in an element (a value or a key) quarantines it as `nul_character`:
PostgreSQL text and jsonb cannot store it, and altering or dropping it would load what is not in the
source. This is the one rule for NUL in every JSON reader.

Messages describe what is wrong and where (a byte offset within the element), never a source value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

DEFAULT_MAX_DEPTH = 512
BLOCK_SIZE = 1 << 20
Container = Literal["array", "object"]

_BOM = b"\xef\xbb\xbf"
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_CLOSER_OF = {ord("["): ord("]"), ord("{"): ord("}")}
_NOT_WS = re.compile(rb"[^ \t\r\n]")
# Runs of bytes that cannot change the level: everything but brackets (and commas on the container's
# own level), complete strings included. Possessive: a string cut by the end of the buffer is left whole.
_SKIP_NESTED = re.compile(rb'[^"\[\]{}]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"\[\]{}]*+)*+', re.DOTALL)
# The same, also skipping whole groups that hold no other group (most of the brackets of a record).
_SKIP_FLAT_GROUPS = re.compile(
    rb'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[{](?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+[\]}])*+',
    re.DOTALL)
_SKIP_TOP = re.compile(rb'[^"\[\]{},]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"\[\]{},]*+)*+', re.DOTALL)
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)


class JsonRejected(Exception):
    """An element that cannot be loaded: a quarantine reason code and a message without source values."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Element:
    """One item of a file: its parsed value, or the reason it is quarantined (then `value` is None)."""

    index: int
    locator: str          # `[index]`, or the member's key for an object
    value: Any
    reason: str | None    # None when the element parsed
    message: str
    offset: int           # byte offset of the element in the file
    size: int             # its length in bytes

    @property
    def ok(self) -> bool:
        return self.reason is None


# --- the strict parser --------------------------------------------------------------------------------

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_SUSPECT = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_int(text: str) -> int | Decimal:
    if len(text) <= 18:
        return int(text)
    if len(text) <= 4000:  # int() refuses more than 4300 digits
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return Decimal(text)


def _parse_float(text: str) -> float | Decimal:
    value = float(text)
    mantissa = text.lower().partition("e")[0]
    digits = len(mantissa) - ("-" in mantissa) - ("." in mantissa)
    # At most 15 significant digits in the normal range: the float's shortest repr is the same number.
    if digits <= 15 and 1e-300 < abs(value) < 1e300:
        return value
    exact = Decimal(text)
    if value == value and abs(value) != float("inf") and Decimal(repr(value)) == exact:
        return value
    return exact


def _reject_constant(name: str) -> Any:
    raise JsonRejected("invalid_json", f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int, parse_constant=_reject_constant)
_EXACT = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def check_strings(value: Any) -> None:
    """NUL and lone surrogates, which only `\\u` escapes can put into a string that decoded from UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: list[str] = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if "\x00" in text:
                raise JsonRejected("nul_character", "a string holds \\u0000 (NUL), which PostgreSQL cannot store")
            if found := _SURROGATE.search(text):
                raise JsonRejected("invalid_json", f"lone surrogate \\u{ord(found.group()):04x} in a string")


def parse_json(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH, *, _shift: int = 0) -> Any:
    """One JSON text (RFC 8259), strictly: the value, or JsonRejected. A leading UTF-8 BOM is allowed.

    For a file that holds one record (e.g. one JSON object per file)."""
    if raw.startswith(_BOM):
        raw = raw[3:]
        _shift += 3
    if depth_exceeds(raw, max_depth):
        raise JsonRejected("too_deep", f"the record nests deeper than {max_depth} levels")
    return _parse(raw, _shift)


def parse_exact(raw: bytes) -> Any:
    """One JSON text parsed strictly (a leading BOM allowed) with every number exact and of one kind: integers
    as int, anything with a fraction or an exponent as Decimal, never a float (for amounts whose sums must
    equal the source's to the last digit); raises JsonRejected."""
    return _parse(raw.removeprefix(_BOM), 0, _EXACT)


def _parse(raw: bytes, shift: int = 0, decoder: json.JSONDecoder | None = None) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRejected("invalid_json", f"invalid UTF-8 at byte offset {exc.start + shift} of the record") from None
    try:
        value = (decoder or _DECODER).decode(text)
    except json.JSONDecodeError as exc:
        what = exc.msg.removesuffix(" at")
        at = len(text[: exc.pos].encode()) + shift
        raise JsonRejected("invalid_json", f"{what} at byte offset {at} of the record") from None
    except RecursionError:
        raise JsonRejected("too_deep", "the record nests deeper than the parser can follow") from None
    except ValueError:  # an integer of more than 4300 digits (the exact decoder's int())
        raise JsonRejected("invalid_json", "a number has more digits than can be read") from None
    if _SUSPECT.search(text):
        check_strings(value)
    return value


def depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether brackets outside strings nest deeper than `max_depth` (a malformed text may say False)."""
    depth, pos, end = 0, 0, len(raw)
    while True:
        pos = _SKIP_NESTED.match(raw, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return False
        char = raw[pos]
        if char == _QUOTE:  # a string the skip could not close: the text ends inside it
            return False
        if char in _OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
        pos += 1


# --- the splitter -------------------------------------------------------------------------------------


class Slot(NamedTuple):
    """One slot of the container: where it starts, and its bytes or why it was rejected."""

    offset: int
    raw: bytes | None           # None when rejected by the splitter
    problem: tuple[str, str] | None


class _Blocks:
    """The bytes of the file from `base` on; earlier bytes are dropped as the scan leaves them."""

    def __init__(self, handle: IO[bytes], block_size: int) -> None:
        self.handle = handle
        self.block_size = block_size
        self.data = bytearray()
        self.base = 0
        self.eof = False

    def more(self, keep_from: int) -> int:
        """Drop the bytes before `keep_from`, read one more block; return how far positions moved."""
        if keep_from:
            del self.data[:keep_from]
            self.base += keep_from
        block = self.handle.read(self.block_size)
        if block:
            self.data += block
        else:
            self.eof = True
        return keep_from


def _what(container: Container) -> str:
    return "a JSON array" if container == "array" else "a JSON object"


def split_items(handle: IO[bytes], container: Container, max_depth: int = DEFAULT_MAX_DEPTH,
                block_size: int = BLOCK_SIZE) -> Iterator[Slot]:
    """The slots of the top-level container read from `handle` (see the module docstring), each its raw bytes
    (a member's `"key": value` for an object) or, when the splitter rejects it, its problem; nothing is
    parsed, so that a reader may parse the slots as it needs (e.g. `parse_exact`)."""
    buf = _Blocks(handle, block_size)
    while len(buf.data) < 3 and not buf.eof:
        buf.more(0)
    pos = 3 if buf.data.startswith(_BOM) else 0
    opener = ord("[") if container == "array" else ord("{")
    while not (found := _NOT_WS.search(buf.data, pos)):
        if buf.eof:
            yield Slot(buf.base + len(buf.data), None, ("invalid_json", "the file is empty"))
            return
        pos -= buf.more(len(buf.data))
    pos = found.start()
    if buf.data[pos] != opener:
        yield Slot(buf.base + pos, None, ("invalid_json", f"the file does not hold {_what(container)}"))
        return
    pos += 1
    index = 0
    after_comma = False
    closer = None
    while closer is None:
        # Between slots: the next significant byte.
        while not (found := _NOT_WS.search(buf.data, pos)):
            if buf.eof:
                end = buf.base + len(buf.data)
                yield Slot(end, None, ("invalid_json", f"unexpected end of file: {_what(container)} is not closed"
                                                        " (0 bytes unread)"))
                return
            pos -= buf.more(len(buf.data))
        pos = found.start()
        char = buf.data[pos]
        if char in _CLOSERS:
            if index or after_comma:
                yield Slot(buf.base + pos, None, ("invalid_json", "empty element: a comma before the closing bracket"))
            closer = char
            pos += 1
            break
        if char == _COMMA:
            yield Slot(buf.base + pos, None, ("invalid_json", "empty element: two commas with nothing between"))
            index += 1
            after_comma = True
            pos += 1
            continue
        # An element: scan to the comma or closer on the container's level.
        start = pos
        offset = buf.base + start
        depth = 0
        too_deep = False
        in_string = False
        while True:
            data = buf.data
            if in_string:
                pos = _STRING_BODY.match(data, pos).end()  # type: ignore[union-attr]
                if pos < len(data) and data[pos] == _QUOTE:
                    in_string = False
                    pos += 1
                    continue
            else:
                skip = _SKIP_TOP if not depth else _SKIP_FLAT_GROUPS if depth < max_depth else _SKIP_NESTED
                pos = skip.match(data, pos).end()  # type: ignore[union-attr]
                if pos < len(data):
                    char = data[pos]
                    if char == _QUOTE:
                        in_string = True
                    elif char in _OPENERS:
                        depth += 1
                        if depth > max_depth:
                            too_deep = True
                    elif depth:  # a closer inside the element (of either kind: the parser judges pairs)
                        depth -= 1
                    else:  # the comma or closer that ends the element
                        break
                    pos += 1
                    continue
            # The buffer ends inside the element: read on (an element too deep is not kept).
            if buf.eof:
                unread = buf.base + len(buf.data) - offset
                yield Slot(offset, None, ("invalid_json", f"unexpected end of file: {_what(container)} is not"
                                                           f" closed ({unread} byte{'s' * (unread != 1)} of this"
                                                           " element unread)"))
                return
            moved = buf.more(pos if too_deep else start)
            pos -= moved
            start -= moved
        if too_deep:
            yield Slot(offset, None, ("too_deep", f"the element nests deeper than {max_depth} levels"))
        else:
            yield Slot(offset, bytes(buf.data[start:pos]), None)
        index += 1
        if buf.data[pos] == _COMMA:
            after_comma = True
        else:
            closer = buf.data[pos]
        pos += 1
    # After the container: only whitespace may follow.
    problems = []
    if closer != _CLOSER_OF[opener]:
        problems.append(f"{_what(container)} is closed by the wrong kind of bracket")
    trailer_offset = buf.base + pos
    junk_at = None
    while True:
        found = _NOT_WS.search(buf.data, pos)
        if found and junk_at is None:
            junk_at = buf.base + found.start()
        if buf.eof:
            break
        pos -= buf.more(len(buf.data))
    if junk_at is not None:
        unread = buf.base + len(buf.data) - junk_at
        problems.append(f"{unread} bytes after the closing bracket were not read")
    if problems:
        yield Slot(trailer_offset, None, ("invalid_json", "; ".join(problems)))


def _member_key(raw: bytes) -> str | None:
    """The key of an object member that did not parse, when the key itself is a valid string."""
    found = re.match(rb'\s*("[^"\\]*+(?:\\.[^"\\]*+)*+")', raw, re.DOTALL)
    if not found:
        return None
    try:
        key = _parse(found.group(1))
    except JsonRejected:
        return None
    return key if isinstance(key, str) else None


def read_json(
    path: Path, container: Container = "array", max_depth: int = DEFAULT_MAX_DEPTH, block_size: int = BLOCK_SIZE
) -> Iterator[Element]:
    """Every item of the file at `path` (see the module docstring), in order, parsed or with its reason.

    `container="object"` reads a top-level object of members (`{"key": {...}, ...}`): each member is
    an item whose locator is its key and whose value is the member's value."""
    with open(path, "rb") as handle:
        index = -1
        for index, slot in enumerate(split_items(handle, container, max_depth, block_size)):  # noqa: B007
            locator = f"[{index}]"
            size = len(slot.raw) if slot.raw is not None else 0
            if slot.raw is None:
                assert slot.problem is not None
                yield Element(index, locator, None, slot.problem[0], slot.problem[1], slot.offset, size)
                continue
            try:
                if container == "array":
                    value = _parse(slot.raw)
                else:
                    member = _parse(b"{" + slot.raw + b"}", -1)
                    if len(member) != 1:
                        raise JsonRejected("invalid_json", "an object member is not one key and its value")
                    (locator, value), = member.items()
            except JsonRejected as exc:
                if container == "object":
                    locator = _member_key(slot.raw) or locator
                yield Element(index, locator, None, exc.reason, exc.message, slot.offset, size)
                continue
            yield Element(index, locator, value, None, "", slot.offset, size)


def read_json_array(path: Path, max_depth: int = DEFAULT_MAX_DEPTH, block_size: int = BLOCK_SIZE) -> Iterator[Element]:
    """Every item of a file holding one top-level JSON array (see `read_json`)."""
    return read_json(path, "array", max_depth, block_size)
