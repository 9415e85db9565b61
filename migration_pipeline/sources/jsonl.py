"""JSON Lines, streamed: one record per line, each parsed strictly, its line number its locator.

A line is read as bytes and never altered; what strict JSON (RFC 8259) or PostgreSQL cannot hold is
refused with the reasons of every JSON reader (`sources.json_array.parse_json`, the one strict parser):
`invalid_json` (not JSON; NaN / Infinity; invalid UTF-8; a lone surrogate), `nul_character` (`\\u0000`
in a string or key) and `too_deep` (nesting deeper than `MAX_DEPTH`). Every number is exact: an integer
beyond 64 bits, or a non-integer a float would not give back, arrives as a `Decimal` of its digits.

- a blank line (only whitespace) is skipped and counted; a last line without a newline is read;
  a UTF-8 BOM before the first line and a CR before a line's LF are not part of the record;
- most lines are parsed by orjson, which is exact and strict for them; a line that holds a NUL
  escape, many brackets, or a number orjson could round (17 or more digits and dots, an exponent)
  goes to the strict parser, which also says precisely why a line orjson refused is bad.

`count_lines` counts the non-blank lines of a file without parsing them: reconciliation's source side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from migration_pipeline.sources.json_array import DEFAULT_MAX_DEPTH, JsonRejected, parse_json

MAX_DEPTH = DEFAULT_MAX_DEPTH
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
# A number orjson may not keep exactly: 17 or more digits and dots (an integer beyond 64 bits, a fraction
# of more than 15 significant digits) or an exponent (a float out of range, or underflowing to 0). Only
# where a number can start (after a colon, a comma or a bracket): hex hashes and UUIDs in strings are
# no numbers; a string that looks like one only costs the strict parser.
_INEXACT_NUMBER = re.compile(rb"[:,\[]\s*-?(?:[0-9.]{17}|[0-9.]+[eE])")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a line is not a record: a quarantine reason and a message that never quotes the line."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its number (1-based) and its value, or the problem that stopped it."""

    number: int
    value: Any = None
    problem: Problem | None = None

    @property
    def locator(self) -> str:
        return f"line {self.number}"


@dataclass(slots=True)
class JsonLines:
    """An iterator over a file's non-blank lines; `blank_lines` and `lines` are final once it is exhausted."""

    path: Path
    max_depth: int = MAX_DEPTH
    lines: int = 0        # physical lines read, blank ones included
    blank_lines: int = 0
    _started: bool = field(default=False, repr=False)

    def __iter__(self) -> Iterator[Line]:
        if self._started:
            raise RuntimeError("a JsonLines is read once")
        self._started = True
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                self.lines = number
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                body = raw.strip(_WHITESPACE)
                if not body:
                    self.blank_lines += 1
                    continue
                value = parse_line(body, self.max_depth)
                if isinstance(value, Problem):
                    yield Line(number, None, value)
                else:
                    yield Line(number, value)


def count_lines(path: Path) -> int:
    """The records a file holds by its bytes alone: its lines that are not only whitespace (a last line
    without a newline counts). Independent of the parser, so reconciliation can compare with it."""
    records = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if raw.strip(_WHITESPACE):
                records += 1
    return records


def parse_line(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of one line (without its line end), or the Problem that makes it no record."""
    if (b"\\u0000" not in body and body.count(b"[") + body.count(b"{") <= max_depth
            and _INEXACT_NUMBER.search(body) is None):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the strict parser says precisely what is wrong
    try:
        return parse_json(body, max_depth)
    except JsonRejected as exc:
        return Problem(exc.reason, exc.message)
