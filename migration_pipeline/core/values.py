"""Whether a row's values fit its table's columns, checked before COPY.

PostgreSQL refuses a whole COPY for one value it cannot store (a text over its varchar width, an
integer beyond its type, a NUL character, a lone surrogate), and its message quotes the value. Each
row is therefore checked against the column types read from the catalog, so that such a row becomes
one quarantine row with the column and the reason, and the rest of its unit loads.

The common case costs one generated function call per row (widths and ranges only); the precise
diagnosis runs only for a row that failed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from migration_pipeline.core.rows import json_strings, jsonb_text

_INT_RANGES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
# What a value must be for the column's type, for the types whose COPY text is formatted from the value.
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "smallint": int, "integer": int, "bigint": int, "numeric": (int, float, Decimal), "boolean": bool}
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class ColumnType:
    """What the catalog says a column can store."""

    name: str
    data_type: str                 # information_schema's name: integer, character varying, numeric, jsonb …
    max_length: int | None = None  # varchar(n) / char(n)
    precision: int | None = None   # numeric(p, s)
    scale: int | None = None


@dataclass(frozen=True, slots=True)
class Unstorable:
    """Why a value cannot be stored: a quarantine reason and a message that describes, never quotes, it."""

    reason: str
    message: str


def describe_value(value: Any) -> str:
    """A source value as a message may show it: its JSON type, length and a short hash, never the value
    itself (any field of a hand-edited file can hold a pasted key or a person's data)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Decimal):  # how the strict reader keeps a number exact: the number the file wrote
        text = str(value)
    else:
        try:
            text = orjson.dumps(value, default=str).decode()
        except (TypeError, ValueError):  # an integer beyond 64 bits, a lone surrogate
            text = repr(value)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    kind = {str: "string", bool: "boolean", int: "number", float: "number", Decimal: "number", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)
    return f"a {kind} of {len(text)} characters, sha256 {digest}…"


def column_types(conn: psycopg.Connection, schema: str, table: str, names: Sequence[str]) -> list[ColumnType]:
    """The catalog types of `names` in `schema.table`, in that order."""
    rows = conn.execute(
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale"
        " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s", (schema, table)).fetchall()
    found = {r[0]: r for r in rows}
    types = []
    for name in names:
        _, data_type, max_length, precision, scale = found[name]
        numeric = data_type == "numeric"
        types.append(ColumnType(name, data_type, max_length, precision if numeric else None,
                                scale if numeric else None))
    return types


def fast_check(types: Sequence[ColumnType]) -> Callable[[Sequence[Any]], bool]:
    """A function telling whether a row's values fit the bounded columns (widths, integer and numeric
    ranges, uuid form); True for every column without a bound. Built as one expression: it runs per row."""
    terms: list[str] = []
    namespace: dict[str, Any] = {"_fits_numeric": _fits_numeric, "_UUID": _UUID, "str": str, "int": int,
                                 "type": type}
    for i, column in enumerate(types):
        v = f"v[{i}]"
        if column.max_length is not None:
            terms.append(f"({v} is None or len({v}) <= {column.max_length})")
        elif column.data_type in _INT_RANGES:
            bound = _INT_RANGES[column.data_type]
            terms.append(f"({v} is None or (type({v}) is int and -{bound} <= {v} < {bound}))")
        elif column.data_type == "numeric" and column.precision is not None:
            terms.append(f"({v} is None or _fits_numeric({v}, {column.precision}, {column.scale or 0}))")
        elif column.data_type == "uuid":
            terms.append(f"({v} is None or _UUID.fullmatch(str({v})) is not None)")
    source = f"def check(v):\n    return {' and '.join(terms) or 'True'}\n"
    exec(source, namespace)  # noqa: S102 - built above from catalog types only, never from data
    check: Callable[[Sequence[Any]], bool] = namespace["check"]
    return check


def _fits_numeric(value: Any, precision: int, scale: int) -> bool:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        return False
    digits = number.adjusted() + 1  # digits before the point
    return digits <= precision - scale


def diagnose(types: Sequence[ColumnType], values: Sequence[Any]) -> Unstorable | None:
    """The first value of the row that its column cannot store, or None if every one can."""
    for column, value in zip(types, values, strict=False):
        problem = _diagnose_value(column, value)
        if problem is not None:
            return problem
    return None


def _diagnose_value(column: ColumnType, value: Any) -> Unstorable | None:
    if value is None:
        return None
    name = column.name
    if column.data_type == "jsonb":
        return _diagnose_json(name, value)
    texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list | tuple) else []
    for text in texts:
        if "\x00" in text:
            return Unstorable("nul_character", f"column {name}: holds a NUL character (\\u0000), which PostgreSQL text"
                              " cannot store")
        if not _encodes(text):
            return Unstorable("invalid_unicode", f"column {name}: holds a lone surrogate, which is not Unicode text")
    if column.max_length is not None and isinstance(value, str) and len(value) > column.max_length:
        return Unstorable("value_too_long", f"column {name}: {len(value)} characters, over the column's "
                          f"{column.max_length}")
    expected = _PYTHON_TYPES.get(column.data_type)
    if expected is not None and (not isinstance(value, expected) or isinstance(value, bool) != (expected is bool)):
        return Unstorable("invalid_value", f"column {name}: a {type(value).__name__} where {column.data_type} is"
                          " expected")
    if column.data_type in _INT_RANGES and isinstance(value, int):
        bound = _INT_RANGES[column.data_type]
        if not -bound <= value < bound:
            return Unstorable("out_of_range", f"column {name}: an integer of {len(str(abs(value)))} digits, outside"
                              f" {column.data_type}")
    if column.data_type == "numeric" and column.precision is not None and isinstance(value, int | float | Decimal):
        if not _fits_numeric(value, column.precision, column.scale or 0):
            return Unstorable("out_of_range", f"column {name}: a number beyond numeric({column.precision},"
                              f"{column.scale or 0})")
    if column.data_type == "uuid" and _UUID.fullmatch(str(value)) is None:
        return Unstorable("invalid_value", f"column {name}: a {type(value).__name__} of {len(str(value))} characters"
                          " that is not a UUID")
    return None


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _diagnose_json(name: str, value: Any) -> Unstorable | None:
    for text in json_strings(value):
        if "\x00" in text:
            return Unstorable("nul_character", f"column {name}: holds a NUL character (\\u0000), which PostgreSQL"
                              " jsonb cannot store")
        if not _encodes(text):
            return Unstorable("invalid_unicode", f"column {name}: holds a lone surrogate, which is not Unicode")
    if isinstance(value, orjson.Fragment):
        return None
    try:
        jsonb_text(value)
    except (TypeError, ValueError):
        return Unstorable("invalid_value", f"column {name}: a {type(value).__name__} that cannot be written as JSON")
    return None
