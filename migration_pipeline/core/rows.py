"""Row encoding shared by the loader and the checksum gate.

Each row is written to COPY as text and hashed from a canonical text of its values; the same
canonical text is produced by SQL (`sql_row_hash`) so that an order-independent sum of row
hashes computed while reading can be compared with one computed over the staged table.
JSONB columns are not part of the hash (PostgreSQL re-serialises JSON, so their text differs), nor
are surrogate ids the engine may renumber (`Column.hashed=False`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from psycopg import sql

from migration_pipeline.core.spec import Column, ColumnKind

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"
_SEPARATOR = "\x1f"


def _text(value: Any) -> str:
    return str(value)


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _date(value: date) -> str:
    return value.isoformat()


def _numeric(value: Any) -> str:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


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
    return orjson.dumps(value).decode()


_HASH_TEXT: dict[ColumnKind, Callable[[Any], str]] = {
    "int": _text,
    "numeric": _numeric,
    "text": _text,
    "bool": _bool,
    "timestamptz": _timestamp,
    "date": _date,
    "uuid": _uuid,
    "text[]": _text_array_hash,
}

_COPY_TEXT: dict[ColumnKind, Callable[[Any], str]] = {
    "int": _text,
    "numeric": _numeric,
    "text": _text,
    "bool": _bool,
    "timestamptz": lambda v: v.isoformat(),
    "date": _date,
    "uuid": _uuid,
    "text[]": _array_literal,
    "jsonb": _jsonb,
}


def hashed(columns: Sequence[Column]) -> list[int]:
    """Positions of the columns that take part in the row hash."""
    return [i for i, c in enumerate(columns) if c.kind != "jsonb" and c.hashed]


class RowEncoder:
    """Turns rows of one table into COPY text and row hashes (built once per table and process)."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self._copy = [_COPY_TEXT[c.kind] for c in columns]
        self._hash_positions = hashed(columns)
        self._hash = [_HASH_TEXT[columns[i].kind] for i in self._hash_positions]
        self.width = len(columns)

    def copy_line(self, values: Sequence[Any], extra: Sequence[Any]) -> str:
        parts = [NULL if v is None else f(v).translate(_COPY_ESCAPES) for f, v in zip(self._copy, values, strict=True)]
        parts.extend(NULL if v is None else str(v).translate(_COPY_ESCAPES) for v in extra)
        return "\t".join(parts) + "\n"

    def row_hash(self, values: Sequence[Any]) -> int:
        text = _SEPARATOR.join(
            NULL if values[i] is None else f(values[i]) for i, f in zip(self._hash_positions, self._hash, strict=True)
        )
        return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big", signed=True)


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
        case _:
            raise ValueError(f"column {column.name} of kind {column.kind} is not hashed")
    return sql.SQL("coalesce({}, {})").format(expr, sql.Literal(NULL))


def sql_row_hash(columns: Sequence[Column]) -> sql.Composable:
    """SQL expression computing `RowEncoder.row_hash` of a row of the table."""
    parts = [_sql_hash_text(columns[i]) for i in hashed(columns)]
    text = sql.SQL("concat_ws(chr(31), {})").format(sql.SQL(", ").join(parts))
    return sql.SQL("('x' || substr(md5({}), 1, 16))::bit(64)::bigint").format(text)
