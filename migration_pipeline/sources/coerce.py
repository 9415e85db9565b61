"""Coercers: one JSON value (as a strict parser produced it) to the value of one PostgreSQL column.

Each coercer returns the value to store, or an `Invalid` (a quarantine reason and a message that
describes the value, never quotes it). They are the one place where a Rust type meets a PostgreSQL
type: `RUST_TYPES` declares the mapping, and `mapping_table()` renders it for the README, so the
documentation is generated from what the code does.

Timestamps follow ONE rule: `DateTime<Utc>` carries up to nine fractional digits and PostgreSQL
keeps six, so the value is rounded half to even at the microsecond (…456500 → …456, …457500 → …458,
…456789 → …457); a value is never moved by more than 500 ns, and every value that lost digits is
counted by its caller.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import orjson

from migration_pipeline.core.spec import ColumnKind
from migration_pipeline.core.values import describe_value

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
U32_MAX = 2**32 - 1
MAX_LOSS_NS = 500  # round half to even at the microsecond moves a value by at most half of one


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a value cannot become its column's value: a quarantine reason and a message without the value."""

    reason: str
    message: str


def json_type(value: Any) -> str:
    """A value's JSON type name, for messages that describe a value without quoting it."""
    if value is None:
        return "null"
    return {str: "string", bool: "boolean", int: "integer", float: "number", Decimal: "number", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _wrong_type(value: Any, expected: str) -> Invalid:
    return Invalid("invalid_value", f"is a JSON {json_type(value)} where {expected} is expected")


# --- scalars ---------------------------------------------------------------------------------------------


def text(value: Any) -> str | Invalid:
    """`String`: a JSON string as it is."""
    return value if isinstance(value, str) else _wrong_type(value, "a string")


def boolean(value: Any) -> bool | Invalid:
    """`bool`: true or false only (serde accepts nothing else)."""
    return value if isinstance(value, bool) else _wrong_type(value, "true or false")


def integer(value: Any, low: int, high: int, rust: str) -> int | Invalid:
    """An integer of a Rust integer type: a JSON integer within [low, high]; a float (1.0, 1e3) is not one.
    The strict parser gives an integer beyond 64 bits as a Decimal of exponent 0, a long fraction as one
    with a negative exponent."""
    if type(value) is Decimal:
        if not value.is_finite() or value.as_tuple().exponent != 0:
            return Invalid("invalid_value", f"is a JSON number with a fraction or an exponent, not an integer ({rust})")
        if low <= value <= high:  # compared as a Decimal: int() of 1E+400000000 would take minutes
            return int(value)
        if value < low:
            return Invalid("invalid_value", "is negative" if low == 0 else f"is below {rust}'s minimum")
        return Invalid("invalid_value", f"is an integer of {len(value.as_tuple().digits)} digits, over {rust}'s"
                       f" maximum {high}")
    if type(value) is not int:  # bool is an int subclass, and a JSON true is no integer
        if isinstance(value, float):
            what = "a fraction" if not value.is_integer() else "a fraction or an exponent"
            return Invalid("invalid_value", f"is a JSON number with {what}, not an integer ({rust})")
        return _wrong_type(value, f"an integer ({rust})")
    if value < low:
        return Invalid("invalid_value", "is negative" if low == 0 else f"is below {rust}'s minimum")
    if value > high:
        return Invalid("invalid_value", f"is an integer of {len(str(value))} digits, over {rust}'s maximum {high}")
    return value


def u64(value: Any) -> int | Invalid:
    """`u64`: an exact integer in 0..2^64-1 (stored as numeric(20,0), never through a float)."""
    return integer(value, 0, U64_MAX, "u64")


def i64(value: Any) -> int | Invalid:
    return integer(value, I64_MIN, I64_MAX, "i64")


def u32(value: Any) -> int | Invalid:
    return integer(value, 0, U32_MAX, "u32")


_F64_MAX = Decimal("1.7976931348623157e308")


def f64(value: Any) -> int | float | Decimal | Invalid:
    """`f64`: a JSON number, kept with its digits as parsed (a Decimal where a float would not give them back);
    one beyond the range of f64 is invalid (serde refuses it too). NaN and Infinity are no JSON."""
    if type(value) is Decimal:
        if not value.is_finite() or abs(value) > _F64_MAX:
            return Invalid("invalid_value", "is a JSON number beyond the range of f64")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _wrong_type(value, "a number (f64)")
    return value


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", re.ASCII)


def uuid_text(value: Any) -> str | Invalid:
    """`Uuid`: hyphenated or simple (32 hex digits), any case; stored in canonical lower-case form."""
    if not isinstance(value, str):
        return _wrong_type(value, "a UUID string")
    if len(value) not in (32, 36) or not _UUID.fullmatch(value) or (len(value) == 36 and value.count("-") != 4):
        return Invalid("invalid_value", f"is {describe_value(value)}, not a UUID")
    return str(uuid.UUID(value))


_DFID = re.compile(r"DFID-(\d{4})(\d{2})(\d{2})-\d{6}-[0-9A-Z]{4}", re.ASCII)


def dfid(value: Any) -> str | Invalid:
    """A DeFarm id: `DFID-YYYYMMDD-NNNNNN-XXXX` with a real calendar date."""
    if not isinstance(value, str):
        return _wrong_type(value, "a DFID string")
    match = _DFID.fullmatch(value)
    if match is None:
        return Invalid("invalid_value", f"is {describe_value(value)}, not of the form DFID-YYYYMMDD-NNNNNN-XXXX")
    try:
        datetime(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return Invalid("invalid_value", "is of the form DFID-YYYYMMDD-NNNNNN-XXXX but its date does not exist")
    return value


# --- timestamps --------------------------------------------------------------------------------------------


class Timestamp(NamedTuple):
    value: datetime  # UTC, microseconds
    lost_ns: int     # how far rounding moved it (0..500)


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|([+-])(\d{2}):?(\d{2}))?", re.ASCII)


def round_ns_to_us(nanoseconds: int) -> tuple[int, int]:
    """(microseconds, nanoseconds lost) of a sub-second count of nanoseconds, rounded half to even."""
    micros, rest = divmod(nanoseconds, 1000)
    if rest > 500 or (rest == 500 and micros % 2 == 1):
        return micros + 1, 1000 - rest
    return micros, rest


def timestamp(value: Any) -> Timestamp | Invalid:
    """`DateTime<Utc>`: RFC 3339 with up to nine fractional digits and Z or an offset (none = UTC), rounded
    half to even to the microsecond. Outside years 1..9999 once in UTC (also after rounding) is invalid."""
    if not isinstance(value, str):
        return _wrong_type(value, "an RFC 3339 timestamp string")
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return Invalid("invalid_value", f"is {describe_value(value)}, not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, zone, sign, zh, zm = match.groups()
    if fraction is not None and len(fraction) > 9:
        return Invalid("invalid_value", f"has {len(fraction)} fractional digits, more than a DateTime<Utc>'s nine")
    micros, lost = round_ns_to_us(int(fraction.ljust(9, "0")) if fraction else 0)
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return Invalid("invalid_value", "is not a valid date and time (day, hour, minute or second out of range)")
    offset = timedelta(0)
    if sign is not None:
        if int(zh) > 23 or int(zm) > 59:
            return Invalid("invalid_value", "has an offset out of range")
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (1 if sign == "+" else -1)
    try:
        return Timestamp(local - offset + timedelta(microseconds=micros), lost)
    except OverflowError:
        return Invalid("invalid_value", "is outside years 1..9999 once in UTC and rounded to microseconds")


# --- compound values ---------------------------------------------------------------------------------------


def string_list(value: Any) -> list[str] | Invalid:
    """`Vec<String>`: an array of strings."""
    if not isinstance(value, list):
        return _wrong_type(value, "an array of strings")
    if not all(isinstance(item, str) for item in value):
        return Invalid("invalid_value", "is an array holding something other than strings")
    return value


def json_object(value: Any) -> dict[str, Any] | Invalid:
    """`HashMap<String, V>` / a struct kept whole: a JSON object, as it is."""
    return value if isinstance(value, dict) else _wrong_type(value, "an object")


def json_array(value: Any) -> list[Any] | Invalid:
    """`Vec<T>` of records kept whole: a JSON array, as it is."""
    return value if isinstance(value, list) else _wrong_type(value, "an array")


def json_value(value: Any) -> Any:
    """`serde_json::Value`: any JSON, as it is (a JSON null is stored as the JSON value null)."""
    return value


class EnumValue(NamedTuple):
    tag: str
    payload: Any      # None for a unit variant
    known: bool       # False: a variant the declared enum does not have (loaded, and counted)


Shape = Literal["unit", "data"]


def tagged_enum(value: Any, variants: Mapping[str, Shape]) -> EnumValue | Invalid:
    """An externally tagged enum (serde's default): a unit variant is its name as a string, a data variant
    an object of one key, its name, whose value is the payload. A known variant in the other shape, an
    object of several keys, an empty name or any other JSON type is invalid."""
    if isinstance(value, str):
        tag, payload = value, None
    elif isinstance(value, dict) and len(value) == 1:
        tag, payload = next(iter(value.items()))
    else:
        what = f"an object of {len(value)} keys" if isinstance(value, dict) else f"a JSON {json_type(value)}"
        return Invalid("invalid_value", f"is {what}, not an externally tagged enum (a variant name, or an object of"
                       " one key)")
    if not tag:
        return Invalid("invalid_value", "has an empty variant name")
    shape = variants.get(tag)
    if shape == "unit" and payload is not None:
        return Invalid("invalid_value", "names a unit variant but carries data")
    if shape == "data" and isinstance(value, str):
        return Invalid("invalid_value", "names a data variant but carries no data")
    return EnumValue(tag, payload, shape is not None)


# --- the mapping, declared once -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RustType:
    """How values of one Rust type are stored: the PostgreSQL type, the column kind and the rule."""

    rust: str
    postgres: str
    kind: ColumnKind
    rule: str
    coerce: Callable[[Any], Any] | None  # None: needs arguments (an enum's variants)


RUST_TYPES: tuple[RustType, ...] = (
    RustType("String", "text", "text", "a JSON string, as it is; any other JSON type is `invalid_value`", text),
    RustType("String (DFID)", "text", "text",
             "`DFID-YYYYMMDD-NNNNNN-XXXX` with a real date, else `invalid_value`", dfid),
    RustType("bool", "boolean", "bool", "`true` / `false` only, else `invalid_value`", boolean),
    RustType("i64", "bigint", "int", "a JSON integer in -2^63..2^63-1; a float (`1.0`, `1e3`) is `invalid_value`", i64),
    RustType("u32", "bigint", "int", "a JSON integer in 0..2^32-1 (too wide for `integer`); else `invalid_value`",
             u32),
    RustType("u64, usize", "numeric(20,0)", "numeric",
             "a JSON integer in 0..18446744073709551615, exact (parsed as an integer, never through a float);"
             " negative, fractional, exponent or larger is `invalid_value`", u64),
    RustType("f64", "numeric", "numeric",
             "the JSON number with its digits as written; beyond the range of f64 is `invalid_value` (NaN and Infinity are"
             " not JSON: the line is `invalid_json`)", f64),
    RustType("DateTime<Utc>", "timestamptz", "timestamptz",
             "RFC 3339, up to 9 fractional digits, `Z` or an offset (none = UTC); rounded half to even to the"
             " microsecond (moves a value by at most 500 ns; values that lost digits are counted); outside years"
             " 1..9999 is `invalid_value`", timestamp),
    RustType("Uuid", "uuid", "uuid", "hyphenated or 32 hex digits, any case, stored lower-case; else `invalid_value`",
             uuid_text),
    RustType("Option<T>", "T's type, nullable", "text",
             "`null` and a missing key are both NULL; a required (non-Option) field null or missing is"
             " `missing_field`", None),
    RustType("Vec<String>", "text[]", "text[]", "an array of strings, else `invalid_value`", string_list),
    RustType("Vec<T> (records)", "jsonb", "jsonb",
             "the array as it is (a child table only where seed 004 has one)", json_array),
    RustType("HashMap<String, V>", "jsonb", "jsonb",
             "the object as it is (every number with its exact digits), else `invalid_value`", json_object),
    RustType("serde_json::Value", "jsonb", "jsonb", "any JSON, as it is", json_value),
    RustType("enum (externally tagged)", "text + jsonb `<field>_payload`", "text",
             "`\"Active\"` → (`Active`, NULL); `{\"Merged\": {…}}` → (`Merged`, the payload); an unknown variant"
             " is loaded and counted; any other shape is `invalid_value`", None),
)


def mapping_table() -> str:
    """The Rust type → PostgreSQL type → rule table, in Markdown (the README's copy is tested against it)."""
    lines = ["| Rust type | PostgreSQL type | Rule |", "|---|---|---|"]
    lines += [f"| `{t.rust}` | {t.postgres} | {t.rule} |" for t in RUST_TYPES]
    return "\n".join(lines) + "\n"


def _exact_number(value: Any) -> orjson.Fragment:
    """orjson's `default`: a Decimal (a number the strict parser kept exactly) written with its digits."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps_exact(value: Any) -> bytes:
    """A parsed JSON value as JSON text, its numbers exact (PostgreSQL's jsonb keeps their digits too); raises
    orjson.JSONEncodeError for what JSON cannot hold."""
    return orjson.dumps(value, default=_exact_number)
