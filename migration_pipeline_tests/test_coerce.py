"""The coercers of sources/coerce.py: exact values at the edges, and an Invalid (never a crash) for the rest."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from migration_pipeline.sources import coerce
from migration_pipeline.sources.coerce import EnumValue, Invalid, Timestamp

from .conftest import SAMPLES


def _reason(value: Any) -> str | None:
    return value.reason if isinstance(value, Invalid) else None


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (1, 1), (2**63 - 1, 2**63 - 1), (2**63, 2**63), (18446744073709551615, 18446744073709551615)])
def test_u64_keeps_every_value_of_its_range_exactly(value: int, expected: int) -> None:
    out = coerce.u64(value)
    assert out == expected and type(out) is int


@pytest.mark.parametrize(("value", "message"), [
    (-1, "is negative"),
    (18446744073709551616, "is an integer of 20 digits, over u64's maximum 18446744073709551615"),
    (1.5, "is a JSON number with a fraction, not an integer (u64)"),
    (1.0, "is a JSON number with a fraction or an exponent, not an integer (u64)"),
    (1e3, "is a JSON number with a fraction or an exponent, not an integer (u64)"),
    ("5", "is a JSON string where an integer (u64) is expected"),
    (True, "is a JSON boolean where an integer (u64) is expected"),
    (None, "is a JSON null where an integer (u64) is expected"),
])
def test_u64_refuses_what_is_no_u64(value: Any, message: str) -> None:
    assert coerce.u64(value) == Invalid("invalid_value", message)


def test_u32_and_i64_bounds() -> None:
    assert coerce.u32(4294967295) == 4294967295
    assert _reason(coerce.u32(4294967296)) == "invalid_value"
    assert coerce.i64(-(2**63)) == -(2**63)
    assert _reason(coerce.i64(2**63)) == "invalid_value"


@pytest.mark.parametrize(("text", "expected", "lost"), [
    # nine digits ending in 9: 789 ns above the microsecond rounds up, 211 ns away
    ("2025-10-11T12:00:00.123456789Z", datetime(2025, 10, 11, 12, 0, 0, 123457, tzinfo=UTC), 211),
    # nine digits ending in 5: 5 ns rounds down
    ("2025-10-11T12:00:00.000000005Z", datetime(2025, 10, 11, 12, 0, 0, 0, tzinfo=UTC), 5),
    ("2025-10-11T12:00:00.123456785Z", datetime(2025, 10, 11, 12, 0, 0, 123457, tzinfo=UTC), 215),
    # exact ties: half to even
    ("2025-10-11T12:00:00.123456500Z", datetime(2025, 10, 11, 12, 0, 0, 123456, tzinfo=UTC), 500),
    ("2025-10-11T12:00:00.123457500Z", datetime(2025, 10, 11, 12, 0, 0, 123458, tzinfo=UTC), 500),
    ("2025-10-11T12:00:00.1234565Z", datetime(2025, 10, 11, 12, 0, 0, 123456, tzinfo=UTC), 500),
    # rounding carries into the next second, across an offset
    ("2025-10-11T09:00:00.999999999-03:00", datetime(2025, 10, 11, 12, 0, 1, 0, tzinfo=UTC), 1),
    ("2025-10-11T12:00:00.123456Z", datetime(2025, 10, 11, 12, 0, 0, 123456, tzinfo=UTC), 0),
    ("2025-10-11T12:00:00Z", datetime(2025, 10, 11, 12, 0, 0, tzinfo=UTC), 0),
    ("2025-10-11T12:00:00", datetime(2025, 10, 11, 12, 0, 0, tzinfo=UTC), 0),  # no zone: UTC
    ("2025-10-11T14:00:00.5+02:00", datetime(2025, 10, 11, 12, 0, 0, 500000, tzinfo=UTC), 0),
])
def test_timestamps_round_half_to_even_at_the_microsecond(text: str, expected: datetime, lost: int) -> None:
    assert coerce.timestamp(text) == Timestamp(expected, lost)


@pytest.mark.parametrize("text", [
    "9999-12-31T23:59:59.9999995Z",       # rounds into year 10000
    "0001-01-01T00:00:00+01:00",          # before year 1 in UTC
    "2025-10-11T12:00:00.1234567891Z",    # ten fractional digits
    "2025-02-30T12:00:00Z", "2025-10-11T24:00:00Z", "2025-10-11T23:59:60Z", "yesterday", "2025-10-11",
    "２０２５-10-11T12:00:00Z",
])
def test_timestamps_that_are_no_datetime_utc(text: str) -> None:
    assert _reason(coerce.timestamp(text)) == "invalid_value"
    assert text not in coerce.timestamp(text).message  # type: ignore[union-attr]


def test_round_ns_to_us_never_moves_more_than_half_a_microsecond() -> None:
    for ns in range(0, 3000):
        micros, lost = coerce.round_ns_to_us(ns)
        assert abs(micros * 1000 - ns) == lost <= coerce.MAX_LOSS_NS


VARIANTS: dict[str, coerce.Shape] = {"Active": "unit", "Merged": "data", "MergedInto": "data"}


@pytest.mark.parametrize(("value", "expected"), [
    ("Active", EnumValue("Active", None, True)),
    ({"Active": None}, EnumValue("Active", None, True)),
    ({"Merged": {"into": "DFID-20251011-000001-A1B2"}}, EnumValue("Merged", {"into": "DFID-20251011-000001-A1B2"}, True)),
    ({"MergedInto": "DFID-20251011-000001-A1B2"}, EnumValue("MergedInto", "DFID-20251011-000001-A1B2", True)),
    ("Frozen", EnumValue("Frozen", None, False)),
    ({"Frozen": {"by": "x"}}, EnumValue("Frozen", {"by": "x"}, False)),
])
def test_externally_tagged_enum_shapes(value: Any, expected: EnumValue) -> None:
    assert coerce.tagged_enum(value, VARIANTS) == expected


@pytest.mark.parametrize(("value", "message"), [
    (["Active"], "is a JSON array, not an externally tagged enum (a variant name, or an object of one key)"),
    ({"Active": None, "Merged": {}}, "is an object of 2 keys, not an externally tagged enum (a variant name, or an"
                                     " object of one key)"),
    ({}, "is an object of 0 keys, not an externally tagged enum (a variant name, or an object of one key)"),
    (7, "is a JSON integer, not an externally tagged enum (a variant name, or an object of one key)"),
    ("", "has an empty variant name"),
    ({"Active": {"since": 1}}, "names a unit variant but carries data"),
    ("Merged", "names a data variant but carries no data"),
])
def test_enum_of_the_wrong_shape_is_invalid(value: Any, message: str) -> None:
    assert coerce.tagged_enum(value, VARIANTS) == Invalid("invalid_value", message)


def test_uuid_and_dfid() -> None:
    assert coerce.uuid_text("A0000000-0000-4000-8000-00000000000F") == "a0000000-0000-4000-8000-00000000000f"
    assert coerce.uuid_text("a00000000000400080000000000000ff") == "a0000000-0000-4000-8000-0000000000ff"
    for bad in ("not-a-uuid", "a0000000-0000-4000-8000-00000000000", "a0000000-00004000-8000-0000-00000000000f", 5):
        assert _reason(coerce.uuid_text(bad)) == "invalid_value"
    assert coerce.dfid("DFID-20251011-000001-A1B2") == "DFID-20251011-000001-A1B2"
    for bad in ("DFID-2025-1-X", "DFID-20251311-000001-A1B2", "dfid-20251011-000001-A1B2", "DFID-20251011-000001-a1b2",
                "DFID-20251011-0000001-A1B2", "LID-0b6f3f8e", None):
        assert _reason(coerce.dfid(bad)) == "invalid_value"


def test_messages_describe_never_quote() -> None:
    secret = "sk_live_0123456789abcdefSECRET"
    for out in (coerce.uuid_text(secret), coerce.dfid(secret), coerce.timestamp(secret), coerce.u64(secret),
                coerce.tagged_enum([secret], VARIANTS)):
        assert isinstance(out, Invalid) and secret not in out.message


def test_the_readme_type_table_is_the_one_the_code_declares() -> None:
    """EXPECTED.md carries the table the lead copies into the README: rendered from RUST_TYPES, so it cannot drift."""
    for page in (SAMPLES / "defarm" / "EXPECTED.md", SAMPLES.parent / "README.md"):
        copy = re.search(r"<!-- mapping:start -->\n(.*?)<!-- mapping:end -->", page.read_text(encoding="utf-8"), re.S)
        assert copy is not None, page
        assert copy.group(1) == coerce.mapping_table(), page


def test_every_declared_rust_type_has_its_coercer_and_kind() -> None:
    from migration_pipeline.stores.defarm import store

    declared = {t.rust: t for t in coerce.RUST_TYPES}
    names = {"String": "String", "Dfid": "String (DFID)", "bool": "bool", "i64": "i64", "u32": "u32", "u64": "u64, usize",
             "usize": "u64, usize", "f64": "f64", "DateTime<Utc>": "DateTime<Utc>", "Uuid": "Uuid",
             "Vec<String>": "Vec<String>", "Vec<Record>": "Vec<T> (records)", "HashMap": "HashMap<String, V>",
             "Value": "serde_json::Value"}
    assert set(names) == set(store._SCALARS)
    for short, rust in names.items():
        assert store._SCALARS[short] is declared[rust].coerce
        assert store._KINDS[short] == declared[rust].kind


def test_numbers_the_strict_parser_keeps_as_decimals() -> None:
    from decimal import Decimal

    assert coerce.u64(Decimal("18446744073709551616")) == Invalid(
        "invalid_value", "is an integer of 20 digits, over u64's maximum 18446744073709551615")
    assert coerce.u64(Decimal("-9223372036854775809")) == Invalid("invalid_value", "is negative")
    assert _reason(coerce.u64(Decimal("1E+400000000"))) == "invalid_value"  # compared, never converted
    assert _reason(coerce.u64(Decimal("0.12345678901234567"))) == "invalid_value"
    assert coerce.f64(Decimal("0.12345678901234567")) == Decimal("0.12345678901234567")
    assert coerce.f64(Decimal("1E+400")) == Invalid("invalid_value", "is a JSON number beyond the range of f64")
