"""Row encoding shared by the loader and the checksum gate.

Each row is written to COPY as text and hashed from a canonical text of its values; the same
canonical text is produced by SQL (`sql_row_hash`) so that an order-independent sum of row
hashes computed while reading can be compared with one computed over the staged table.
JSONB columns are not part of the hash (PostgreSQL re-serialises JSON, so their text differs), nor
are surrogate ids the engine may renumber (`Column.hashed=False`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

import orjson
from psycopg import sql

from migration_pipeline.core.spec import Column, ColumnKind

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"
_SEPARATOR = "\x1f"


def copy_field(value: Any) -> str:
    """One value as a field of COPY's text format: \\N for NULL, else its text with \\, tab, LF, CR escaped."""
    return NULL if value is None else _escaped(str(value))


def _escaped(text: str) -> str:
    # Nearly every text needs no escaping, and these two scans cost a fraction of a translate.
    return text if text.isprintable() and "\\" not in text else text.translate(_COPY_ESCAPES)


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _timestamp(value: datetime) -> str:
    # isoformat, unlike strftime("%Y"), zero-pads years below 1000 as to_char's YYYY does.
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:26]


def _date(value: date) -> str:
    return value.isoformat()


# normalize() rounds to its context's precision (28 digits by default): a 36-digit amount or a 78-digit wei
# value would be stored rounded, and hashed rounded too, so no gate would see it. This context never rounds.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _numeric(value: Any) -> str:
    if type(value) is int:
        return str(value)
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format(number.normalize(_EXACT), "f")
    return "0" if text in ("-0", "0") else text


def _bytea(value: bytes) -> str:
    """The bytes' SHA-256 (hex): what the checksum gate compares, computed in SQL by sha256() on the stored bytes."""
    return hashlib.sha256(value).hexdigest()


def _uuid(value: Any) -> str:
    return str(value).lower()


def _text_array_hash(value: Sequence[str | None]) -> str:
    return orjson.dumps(list(value)).decode()


def _array_literal(value: Sequence[str | None]) -> str:
    items = []
    for item in value:
        if item is None:
            items.append("NULL")
        else:
            items.append('"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _jsonb(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson stops at integers beyond 64 bits, which JSON and jsonb hold exactly
        if _has_unstorable_text(value):
            raise ValueError("a string in the value is not storable in jsonb") from None
        return json.dumps(value, separators=(",", ":"), allow_nan=False)


def json_strings(value: Any) -> Iterator[str]:
    """Every key and string inside a JSON value, depth first, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str):
            yield item


def _has_unstorable_text(value: Any) -> bool:
    """A NUL or a lone surrogate in any key or string of a JSON value: jsonb refuses both."""
    return any("\x00" in text or not (text.isascii() or _utf8(text)) for text in json_strings(value))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Per kind: the canonical text (hashed, and the base of the COPY text), and how the COPY text follows
# from it. Each value is formatted once and serves both the row hash and the COPY line.
_CANONICAL: dict[ColumnKind, Callable[[Any], str]] = {
    "int": str,
    "numeric": _numeric,
    "text": str,
    "bool": _bool,
    "timestamptz": _timestamp,
    "date": _date,
    "uuid": _uuid,
    "text[]": _text_array_hash,
    "jsonb": _jsonb,
    "bytea": _bytea,
}
jsonb_text = _jsonb


# How the COPY text follows from the canonical text `t` of value `v`. Kinds whose canonical text can
# hold a tab, newline or backslash are escaped; the rest are formatted by us and never do.
_COPY_FROM_CANONICAL: dict[ColumnKind, str] = {
    "int": "{t}",
    "numeric": "{t}",
    "text": "_escaped({t})",
    "bool": "{t}",
    "timestamptz": '{t} + "+00"',
    "date": "{t}",
    "uuid": "_escaped({t})",  # a uuid may arrive as any string from a source
    "text[]": "_escaped(_array_literal({v}))",
    "jsonb": "_escaped({t})",
    "bytea": '"\\\\\\\\x" + {v}.hex()',  # COPY text doubles the backslash of bytea's hex input form
}


_COSTLY: frozenset[ColumnKind] = frozenset({"timestamptz", "numeric", "date"})


def hashed(columns: Sequence[Column]) -> list[int]:
    """Positions of the columns that take part in the row hash."""
    return [i for i, c in enumerate(columns) if c.kind != "jsonb" and c.hashed]


def _encode_source(columns: Sequence[Column]) -> str:
    """Source of `encode(values, extra)` unrolled for these columns: one formatting per value, no loop
    and no per-column call (it runs once per source record, millions of times)."""
    names = [f"v{i}" for i in range(len(columns))]
    lines = ["def encode(values, extra):", f"    {', '.join(names)}, = values"]
    for i, column in enumerate(columns):
        canonical = "str" if _CANONICAL[column.kind] is str else f"_canonical_{i}"
        copy_text = _COPY_FROM_CANONICAL[column.kind].format(t=f"t{i}", v=f"v{i}")
        lines.append(f"    if v{i} is None:")
        lines.append(f"        t{i} = c{i} = NULL")
        # A value object already formatted in an earlier column (updated_at = created_at) is not formatted again.
        for j in (j for j in range(i) if columns[j].kind == column.kind and column.kind in _COSTLY):
            lines.append(f"    elif v{i} is v{j}:")
            lines.append(f"        t{i}, c{i} = t{j}, c{j}")
        lines.append("    else:")
        lines.append(f"        t{i} = {canonical}(v{i})")
        lines.append(f"        c{i} = {copy_text}")
    copy_parts = ", ".join(f"c{i}" for i in range(len(columns)))
    hash_parts = "".join(f"t{i}, " for i in hashed(columns))
    lines.append(f"    line = '\\t'.join(({copy_parts}, *map(copy_field, extra))) + '\\n'")
    lines.append(f"    digest = _md5(_SEPARATOR.join(({hash_parts})).encode('utf-8')).digest()")
    lines.append("    return line, int.from_bytes(digest[:8], 'big', signed=True)")
    return "\n".join(lines)


class RowEncoder:
    """Turns rows of one table into COPY text and row hashes (built once per table and process)."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.width = len(columns)
        namespace: dict[str, Any] = {
            "NULL": NULL, "_COPY_ESCAPES": _COPY_ESCAPES, "_SEPARATOR": _SEPARATOR, "_md5": hashlib.md5,
            "_array_literal": _array_literal, "copy_field": copy_field, "_escaped": _escaped,
            **{f"_canonical_{i}": _CANONICAL[c.kind] for i, c in enumerate(columns)},
        }
        exec(_encode_source(columns), namespace)  # noqa: S102 - source built above from column kinds only
        self._encode: Callable[[Sequence[Any], Sequence[Any]], tuple[str, int]] = namespace["encode"]

    def encode(self, values: Sequence[Any], extra: Sequence[Any]) -> tuple[str, int]:
        """(the COPY text line of `values` followed by `extra`, the row hash of `values`)."""
        try:
            return self._encode(values, extra)
        except ValueError:
            if len(values) != self.width:
                raise ValueError(f"row has {len(values)} values, the table {self.width} columns") from None
            raise

    def copy_line(self, values: Sequence[Any], extra: Sequence[Any]) -> str:
        return self.encode(values, extra)[0]

    def row_hash(self, values: Sequence[Any]) -> int:
        return self.encode(values, ())[1]


def _sql_hash_text(column: Column) -> sql.Composable:
    ident = sql.Identifier(column.name)
    match column.kind:
        case "int" | "uuid" | "text":
            expr = sql.SQL("{}::text").format(ident)
        case "numeric":
            expr = sql.SQL("trim_scale({})::text").format(ident)
        case "bool":
            expr = sql.SQL("{}::text").format(ident)
        case "timestamptz":
            expr = sql.SQL("""to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')""").format(ident)
        case "date":
            expr = sql.SQL("to_char({}, 'YYYY-MM-DD')").format(ident)
        case "text[]":
            expr = sql.SQL("array_to_json({})::text").format(ident)
        case "bytea":
            expr = sql.SQL("encode(sha256({}), 'hex')").format(ident)
        case _:
            raise ValueError(f"column {column.name} of kind {column.kind} is not hashed")
    return sql.SQL("coalesce({}, {})").format(expr, sql.Literal(NULL))


def sql_row_hash(columns: Sequence[Column]) -> sql.Composable:
    """SQL expression computing `RowEncoder.row_hash` of a row of the table."""
    parts = [_sql_hash_text(columns[i]) for i in hashed(columns)]
    text = sql.SQL("concat_ws(chr(31), {})").format(sql.SQL(", ").join(parts))
    return sql.SQL("('x' || substr(md5({}), 1, 16))::bit(64)::bigint").format(text)
