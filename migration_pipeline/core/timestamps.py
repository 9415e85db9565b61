"""Timestamps as the legacy stores write them: ISO-8601 (Z, offset, or none = UTC), epoch ms or s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    """A timezone-aware UTC datetime, or InvalidTimestamp (whose message names the type, not the value)."""
    if isinstance(value, bool):
        raise InvalidTimestamp("a boolean is not a timestamp")
    if isinstance(value, int | float):
        seconds = float(value)
        if epoch_unit == "ms" or (epoch_unit == "auto" and abs(value) >= _MS_THRESHOLD):
            seconds = value / 1000
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidTimestamp("epoch number out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_timestamp(int(text), epoch_unit)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTimestamp("not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if not 1 <= parsed.astimezone(UTC).year <= 9999:
            raise InvalidTimestamp("year out of range")
        return parsed.astimezone(UTC)
    raise InvalidTimestamp(f"{type(value).__name__} is not a timestamp")
