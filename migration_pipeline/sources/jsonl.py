"""JSON Lines, streamed: one record per line, each parsed strictly, its line number its locator.

A line is read as bytes and never altered: what strict JSON (RFC 8259) or PostgreSQL cannot hold is
refused with a precise reason, and the rest of the file is read on.

- a blank line (only whitespace) is skipped and counted; a last line without a newline is read;
  a UTF-8 BOM before the first line and a CR before a line's LF are not part of the record;
- `invalid_json`: not JSON, including NaN / Infinity (JSON has neither) and a number beyond f64;
- `invalid_unicode`: bytes that are not UTF-8, or a lone surrogate escape (`\\ud800`);
- `nul_character`: a `\\u0000` in a string or key (PostgreSQL's text and jsonb cannot hold it);
- `too_deep`: arrays / objects nested deeper than `MAX_DEPTH`;
- integers of any size are exact (orjson would turn one beyond 64 bits into a float: such lines are
  parsed by the standard library instead).

`count_lines` counts the non-blank lines of a file without parsing them, for reconciliation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MAX_DEPTH = 512
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_LONG_INTEGER = re.compile(rb"\d{19}")  # may not fit 64 bits: orjson would return a float


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


class _Constant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Constant(name)


def parse_line(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of one line (without its line end), or the Problem that makes it no record."""
    if _LONG_INTEGER.search(body) is None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _slow_parse(body, max_depth)  # the standard library says precisely what is wrong
        # orjson refuses lone surrogates and overflowing numbers itself; NUL and depth are checked here
        if body.count(b"[") + body.count(b"{") > max_depth or b"\\u0000" in body:
            return _check(value, max_depth)
        return value
    return _slow_parse(body, max_depth)


def _slow_parse(body: bytes, max_depth: int) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem("invalid_unicode", f"not valid UTF-8 (byte {exc.start + 1} of the line)")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except _Constant as exc:
        return Problem("invalid_json", f"holds {exc}, which JSON does not allow")
    except json.JSONDecodeError as exc:
        return Problem("invalid_json", f"not valid JSON ({exc.msg}, character {exc.pos + 1})")
    except RecursionError:
        return Problem("too_deep", f"nested deeper than {max_depth} levels")
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        return Problem("invalid_json", "holds a number too long to convert")
    return _check(value, max_depth)


def _check(value: Any, max_depth: int) -> Any:
    """What a parser accepted but the line may not hold: depth, NUL, lone surrogates, infinite floats."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            if level > depth:
                depth = level
            for key, child in item.items():
                problem = _check_text(key)
                if problem is not None:
                    return problem
                stack.append((child, level + 1))
        elif isinstance(item, list):
            if level > depth:
                depth = level
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, str):
            problem = _check_text(item)
            if problem is not None:
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return Problem("invalid_json", "holds a number beyond the range of f64")
    if depth > max_depth:
        return Problem("too_deep", f"nested {depth} levels deep, deeper than {max_depth}")
    return value


def _check_text(text: str) -> Problem | None:
    if "\x00" in text:
        return Problem("nul_character", "a string holds \\u0000, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return Problem("invalid_unicode", "a string holds a lone surrogate escape (such as \\ud800)")
    return None
