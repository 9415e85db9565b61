"""Timestamps as the legacy stores write them: ISO-8601 (Z, offset, or none = UTC), epoch ms or s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

EpochUnit = Literal["auto", "ms", "s"]
_MS_THRESHOLD = 100_000_000_000  # 1973 in ms, year 5138 in s: larger numbers are milliseconds


class InvalidTimestamp(ValueError):
    pass


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_ns(nanoseconds: int) -> datetime:
    """A file time (`st_mtime_ns`) truncated to the microsecond, in integers: through a float of seconds,
    one run could round it to one microsecond and a reader of `st_mtime` to the next."""
    return _EPOCH + timedelta(microseconds=nanoseconds // 1000)


def parse_timestamp(value: object, epoch_unit: EpochUnit = "auto") -> datetime:
    """A timezone-aware UTC datetime, or InvalidTimestamp (whose message names the type, not the value).

    A time that exists only outside years 1..9999 once in UTC (9999-12-31T23:00-05:00) is invalid, not clamped:
    clamping would load a value the source does not hold."""
    if isinstance(value, bool):
        raise InvalidTimestamp("a boolean is not a timestamp")
    if isinstance(value, Decimal):  # a number the strict reader kept exact
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, int | float):
        try:
            if epoch_unit == "ms" or (epoch_unit == "auto" and abs(value) >= _MS_THRESHOLD):
                return _EPOCH + timedelta(milliseconds=value)
            return _EPOCH + timedelta(seconds=value)
        except (OverflowError, ValueError):  # beyond datetime's years, or NaN / infinity
            raise InvalidTimestamp("epoch number out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():  # isdigit alone accepts '²' and other scripts' digits
            if len(text) > 20:
                raise InvalidTimestamp("epoch number out of range")
            return parse_timestamp(int(text), epoch_unit)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTimestamp("not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise InvalidTimestamp("out of range once converted to UTC (before year 1 or after 9999)") from None
    raise InvalidTimestamp(f"{type(value).__name__} is not a timestamp")
