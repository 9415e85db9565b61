"""Metagauge field conversion: a JSON value of a record → a column value, or `_Reject` with the quarantine
reason; and the store's ids.

Ids: a UUID is kept (lower case); any other id becomes uuid5(NAMESPACE, "<table>:<legacy id>") with
the original in `legacy_id`, so re-runs give the same ids and `userId` / `configId` / `sessionId`
references map to the same UUIDs as the records they point to. Child rows get
uuid5(NAMESPACE, "<child table>:<parent uuid>[:<chain or position>]").

Numbers that a float would not keep exactly arrive as `Decimal`, and are stored with their exact digits in
numeric and jsonb columns.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from migration_pipeline.core.timestamps import InvalidTimestamp, parse_timestamp
from migration_pipeline.sources.coerce import dumps_exact
from migration_pipeline.sources.records import Reject as _Reject

# Fixed forever: changing it changes every id derived from a legacy id.
NAMESPACE = uuid.UUID("5b0d3c8e-8f3a-5f1e-9c6b-3d0a6e7f4b21")

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1



def _missing(field: str) -> _Reject:
    return _Reject("missing_field", f"{field} is missing")


def _invalid(field: str, what: str) -> _Reject:
    return _Reject("invalid_value", f"{field} {what}")


def legacy_uuid(entity: str, legacy: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{entity}:{legacy}"))


def child_uuid(table: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([table, *map(str, parts)])))


def _key(value: Any, field: str) -> str:
    if value is None or value == "":
        raise _missing(field)
    if isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        value = int(value)  # an integer id beyond 64 bits
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(field, "is neither a string nor an integer")
    return _clean(str(value), field)


def record_id(value: Any, entity: str, field: str = "id") -> tuple[str, str | None]:
    """(uuid, legacy id or None) for a record's own id."""
    text = _key(value, field)
    if _UUID_RE.fullmatch(text):
        return text.lower(), None
    return legacy_uuid(entity, text), text


def reference(value: Any, entity: str, field: str, required: bool) -> str | None:
    """The uuid a reference maps to (the same mapping as the referenced record's own id)."""
    if value is None or value == "":
        if required:
            raise _missing(field)
        return None
    return record_id(value, entity, field)[0]


def _clean(text: str, field: str) -> str:
    if "\x00" in text:
        raise _invalid(field, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, "is not valid Unicode (lone surrogate)") from None
    return text


def _text(value: Any, field: str, required: bool = False, default: str | None = None) -> str | None:
    if value is None or (required and isinstance(value, str) and not value.strip()):
        if required:
            raise _missing(field)
        return default
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise _invalid(field, f"is a {type(value).__name__}, not a string")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _clean(str(value), field)


_dumps = dumps_exact


def _json_text(value: Any, field: str) -> str | None:
    """A text column that may receive JSON (an ABI as an array or as a JSON string)."""
    if value is None or isinstance(value, str):
        return None if value is None else _clean(value, field)
    try:
        return _clean(_dumps(value).decode(), field)
    except orjson.JSONEncodeError:
        raise _invalid(field, "cannot be encoded as JSON") from None


def _bool(value: Any, field: str, default: bool | None = None) -> bool | None:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(field, "is not a boolean")


def _int(value: Any, field: str, default: int | None = None, low: int = _INT_MIN, high: int = _INT_MAX) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool):
        raise _invalid(field, "is a boolean, not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise _invalid(field, "is not an integer")
        value = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise _invalid(field, "is not an integer")
        if not low <= value <= high:  # compared as a Decimal: int() of 1E+400000000 would take minutes
            raise _Reject("out_of_range", f"{field} is outside {low}..{high}")
        value = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise _invalid(field, "is not an integer")
    if not low <= value <= high:
        raise _Reject("out_of_range", f"{field} is outside {low}..{high}")
    return value


def _numeric(value: Any, field: str, default: Decimal | None = None) -> Decimal | None:
    """numeric(20, 8): rounded to 8 decimals here so that the checksum matches what PostgreSQL keeps."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _invalid(field, "is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(field, "is not a finite number")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        if number.is_finite() and abs(number) >= Decimal("1e12"):  # before quantize, which fails on 1E+400
            raise _Reject("out_of_range", f"{field} does not fit numeric(20, 8)")
        number = number.quantize(Decimal("1e-8"))
    except (InvalidOperation, ValueError):
        raise _invalid(field, "is not a number") from None
    if not number.is_finite() or abs(number) >= Decimal("1e12"):
        raise _Reject("out_of_range", f"{field} does not fit numeric(20, 8)")
    return number


def _timestamp(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except InvalidTimestamp as exc:
        raise _Reject("invalid_timestamp", f"{field}: {exc}") from None


def _date(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    try:
        return parse_timestamp(value).date()
    except InvalidTimestamp as exc:
        raise _Reject("invalid_timestamp", f"{field}: {exc}") from None


def _text_list(value: Any, field: str, default: list[str | None] | None = None) -> list[str | None] | None:
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _invalid(field, "is not an array")
    out: list[str | None] = []
    for item in value:
        if item is None or isinstance(item, str):
            out.append(None if item is None else _clean(item, field))
        else:
            out.append(_json_text(item, field))
    return out


class _Json:
    """JSONB values serialised once (checked for what PostgreSQL rejects), passed to COPY as Fragments."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self, value: Any, field: str) -> orjson.Fragment | None:
        if value is None:
            return None
        try:
            data = _dumps(value)
        except orjson.JSONEncodeError:
            raise _invalid(field, "cannot be encoded as JSON") from None
        if b"\\u0000" in data:
            raise _invalid(field, "contains a NUL character (not storable in jsonb)")
        self.bytes += len(data)
        return orjson.Fragment(data)


def _object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(field, "is not an object")
    return value


def _unknown(record: dict[str, Any], known: frozenset[str], extra: dict[str, Any], prefix: str = "") -> None:
    for k, v in record.items():
        if k not in known:
            extra[prefix + k] = v


