"""Pend records → rows, in the column order of `store.py`'s tables; a record that cannot become a row raises
`Reject` with a quarantine reason and a message that describes, never quotes, the value."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from migration_pipeline.core.timestamps import InvalidTimestamp, parse_timestamp
from migration_pipeline.core.values import describe_value
from migration_pipeline.sources.records import Reject as Reject

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?[0-9]{1,78}(\.[0-9]{1,78})?", re.ASCII)
_WEI = re.compile(r"[0-9]{1,78}", re.ASCII)
MAX_EXPONENT = 1000  # a JSON number like 1e999999 would be a million digits in a numeric column
KYC_STATUSES = ("none", "pending", "approved", "rejected")
_INT32 = 2**31
_INT64 = 2**63


def _invalid(field: str, value: Any, what: str) -> Reject:
    return Reject("invalid_value", f"{field} ({describe_value(value)}) {what}")


def _clean(text: str, field: str) -> str:
    if "\x00" in text:
        raise Reject("invalid_value", f"{field} holds a NUL character, which PostgreSQL text cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject("invalid_value", f"{field} holds a lone surrogate, which is not Unicode text") from None
    return text


def text(value: Any, field: str, required: bool = False) -> str | None:
    if value is None or (required and value == ""):
        if required:
            raise Reject("missing_field", f"{field} is missing")
        return None
    if isinstance(value, str):
        return _clean(value, field)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise _invalid(field, value, "is not a string")


def number(value: Any, field: str, required: bool = False) -> int | Decimal | None:
    """An exact number from a JSON number (int or Decimal, never a float) or a decimal string."""
    if value is None or value == "":
        if required:
            raise Reject("missing_field", f"{field} is missing")
        return None
    if isinstance(value, bool):
        raise _invalid(field, value, "is a boolean, not a number")
    if isinstance(value, int):
        if abs(value).bit_length() > 3400:  # beyond MAX_EXPONENT digits
            raise Reject("out_of_range", f"{field} has more than {MAX_EXPONENT} digits")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
            raise Reject("out_of_range", f"{field} is beyond {MAX_EXPONENT} digits")
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return Decimal(value.strip())
    raise _invalid(field, value, "is not a decimal number")


def wei(value: Any, field: str) -> int | None:
    """A non-negative integer of at most 78 digits (uint256), from a decimal string or a JSON integer."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _WEI.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**78:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**78:
        raise Reject("out_of_range", f"{field} has more than 78 digits (beyond uint256)")
    raise _invalid(field, value, "is not a non-negative whole number of wei")


def integer(value: Any, field: str, bound: int, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise Reject("missing_field", f"{field} is missing")
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 20:
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(field, value, "is not an integer")
    if not -bound <= value < bound:
        raise Reject("out_of_range", f"{field} is outside its column's range")
    return value


def timestamp(value: Any, field: str, epoch_unit: Any = "auto") -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):  # an epoch with a fraction: exact through Decimal, never a float
        raise Reject("invalid_timestamp", f"{field}: a number with a fraction is not a timestamp here")
    try:
        return parse_timestamp(value, epoch_unit)
    except InvalidTimestamp as exc:
        raise Reject("invalid_timestamp", f"{field}: {exc}") from None


def day(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii():
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise _invalid(field, value, "is not a date (YYYY-MM-DD)")


def _encode_json(value: Any, out: list[str], field: str, depth: int = 0) -> None:
    if depth > 200:
        raise Reject("invalid_value", f"{field} is nested deeper than 200 levels")
    if isinstance(value, dict):
        out.append("{")
        for n, (k, v) in enumerate(value.items()):
            if n:
                out.append(",")
            out.append(json.dumps(_clean(str(k), field)))
            out.append(":")
            _encode_json(v, out, field, depth + 1)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for n, v in enumerate(value):
            if n:
                out.append(",")
            _encode_json(v, out, field, depth + 1)
        out.append("]")
    elif isinstance(value, str):
        out.append(json.dumps(_clean(value, field)))
    elif isinstance(value, Decimal):
        if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
            raise Reject("out_of_range", f"{field} holds a number beyond {MAX_EXPONENT} digits")
        out.append(str(value))  # the exact digits as JSON has them (1.50, 1E+30), as jsonb keeps them
    elif value is None or isinstance(value, bool | int):
        out.append(json.dumps(value))
    else:
        raise _invalid(field, value, "cannot be written as JSON")


def jsonb(value: Any, field: str) -> orjson.Fragment | None:
    """A JSON value as a Fragment of its exact text (Decimals digit for digit); None stays NULL."""
    if value is None:
        return None
    out: list[str] = []
    _encode_json(value, out, field)
    return orjson.Fragment("".join(out).encode("utf-8"))


def obj(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Reject("not_an_object", f"{field} is a JSON {type(value).__name__}, not an object")
    return value


def extra(record: dict[str, Any], known: frozenset[str], unknown: list[str]) -> orjson.Fragment:
    """Fields no column holds, kept in `extra`; their names are reported (as `unknown`) too."""
    surplus = {k: v for k, v in record.items() if k not in known}
    unknown.extend(surplus)
    fragment = jsonb(surplus, "extra")
    assert fragment is not None
    return fragment


def address(value: Any, field: str) -> str:
    if value is None or value == "":
        raise Reject("missing_field", f"{field} is missing")
    if not isinstance(value, str) or not ADDRESS.fullmatch(value):
        raise Reject("invalid_address", f"{field} is not 0x followed by 40 hex characters")
    return value


# --- records ------------------------------------------------------------------------------------------------

Emit = Callable[[str, tuple[Any, ...], str], None]     # (table, row, locator)
Refuse = Callable[[str, str, str, str], None]          # (table, locator, reason, message)

USER_KEYS = frozenset({"address", "email", "name", "role", "createdAt", "lastLogin", "profile", "kycStatus",
                       "investments"})
PROFILE_KEYS = frozenset({"displayName", "avatarUrl", "country", "riskProfile"})
INVESTMENT_KEYS = frozenset({"id", "assetId", "amount", "txHash", "status", "timestamp"})
ASSET_KEYS = frozenset({"id", "name", "symbol", "assetType", "description", "targetRaise", "minInvestment", "apy",
                        "status", "tokenAddress", "createdAt", "updatedAt"})
LOG_KEYS = frozenset({"id", "adminAddress", "action", "targetType", "targetId", "details", "ip", "timestamp"})
EVENT_KEYS = frozenset({"txHash", "logIndex", "blockNumber", "blockTimestamp", "chain", "contractAddress",
                        "eventName", "from", "to", "value", "assetId", "args"})
APPLICATION_KEYS = frozenset({"address", "fullName", "dateOfBirth", "country", "documentType", "documentNumber",
                              "status", "submittedAt", "reviewedAt", "reviewedBy", "rejectionReason"})


def user(key: str, record: Any, loc: str, emit: Emit, refuse: Refuse, unknown: dict[str, list[str]]) -> None:
    """A member of wallet-db.json's users: its user row, its profile and its investments."""
    record = obj(record, "the user")
    assert record is not None
    user_address = address(_clean(key, "the user's key"), "the user's key")
    inner = record.get("address")
    if inner not in (None, "") and (not isinstance(inner, str) or inner.lower() != user_address.lower()):
        raise Reject("address_mismatch", f"address inside the record ({describe_value(inner)}) is not its key's")
    status = text(record.get("kycStatus"), "kycStatus")
    if status is not None and status not in KYC_STATUSES:
        raise _invalid("kycStatus", status, f"is not one of {', '.join(KYC_STATUSES)}")
    profile = record.get("profile")
    investments = record.get("investments")
    if investments is not None and not isinstance(investments, list):
        raise Reject("not_an_object", "investments is not an array")
    row = (user_address, text(record.get("email"), "email"), text(record.get("name"), "name"),
           text(record.get("role"), "role"), status, timestamp(record.get("createdAt"), "createdAt"),
           timestamp(record.get("lastLogin"), "lastLogin"), extra(record, USER_KEYS, unknown["users"]))
    emit("users", row, loc)
    if profile is not None:
        child = f"{loc}.profile"
        try:
            p = obj(profile, "profile")
            assert p is not None
            emit("user_profiles", (user_address, text(p.get("displayName"), "displayName"),
                                   text(p.get("avatarUrl"), "avatarUrl"), text(p.get("country"), "country"),
                                   text(p.get("riskProfile"), "riskProfile"),
                                   extra(p, PROFILE_KEYS, unknown["user_profiles"])), child)
        except Reject as exc:
            refuse("user_profiles", child, exc.reason, exc.message)
    for j, inv in enumerate(investments or ()):
        child = f"{loc}.investments[{j}]"
        try:
            i = obj(inv, f"investments[{j}]")
            assert i is not None
            emit("investments", (text(i.get("id"), "id", required=True), user_address,
                                 text(i.get("assetId"), "assetId"), number(i.get("amount"), "amount", required=True),
                                 text(i.get("txHash"), "txHash"), text(i.get("status"), "status"),
                                 timestamp(i.get("timestamp"), "timestamp"),
                                 extra(i, INVESTMENT_KEYS, unknown["investments"])), child)
        except Reject as exc:
            refuse("investments", child, exc.reason, exc.message)


def asset(record: Any, unknown: list[str]) -> tuple[Any, ...]:
    r = obj(record, "the asset")
    assert r is not None
    return (text(r.get("id"), "id", required=True), text(r.get("name"), "name"), text(r.get("symbol"), "symbol"),
            text(r.get("assetType"), "assetType"), text(r.get("description"), "description"),
            number(r.get("targetRaise"), "targetRaise"), number(r.get("minInvestment"), "minInvestment"),
            number(r.get("apy"), "apy"), text(r.get("status"), "status"), text(r.get("tokenAddress"), "tokenAddress"),
            timestamp(r.get("createdAt"), "createdAt"), timestamp(r.get("updatedAt"), "updatedAt"),
            extra(r, ASSET_KEYS, unknown))


def admin_log(record: Any, unknown: list[str]) -> tuple[Any, ...]:
    r = obj(record, "the log entry")
    assert r is not None
    return (text(r.get("id"), "id", required=True), text(r.get("adminAddress"), "adminAddress"),
            text(r.get("action"), "action"), text(r.get("targetType"), "targetType"),
            text(r.get("targetId"), "targetId"), jsonb(r.get("details"), "details"), text(r.get("ip"), "ip"),
            timestamp(r.get("timestamp"), "timestamp"), extra(r, LOG_KEYS, unknown))


def event(record: Any, day_of_file: date, chain: str, unknown: list[str]) -> tuple[Any, ...]:
    r = obj(record, "the event")
    assert r is not None
    inner = r.get("chain")
    if inner not in (None, "", chain):
        raise Reject("chain_mismatch", f"chain inside the event ({describe_value(inner)}) differs from {chain!r}"
                     " in its file name")
    return (day_of_file, chain, text(r.get("txHash"), "txHash", required=True),
            integer(r.get("logIndex"), "logIndex", _INT32, required=True),
            integer(r.get("blockNumber"), "blockNumber", _INT64),
            timestamp(r.get("blockTimestamp"), "blockTimestamp", "s"),
            text(r.get("contractAddress"), "contractAddress"), text(r.get("eventName"), "eventName"),
            text(r.get("from"), "from"), text(r.get("to"), "to"), wei(r.get("value"), "value"),
            text(r.get("assetId"), "assetId"), jsonb(r.get("args"), "args"), extra(r, EVENT_KEYS, unknown))


def application(record: Any, folder_address: str, unknown: list[str]) -> tuple[Any, ...]:
    r = obj(record, "application.json")
    assert r is not None
    inner = r.get("address")
    if inner not in (None, "") and (not isinstance(inner, str) or inner.lower() != folder_address.lower()):
        raise Reject("address_mismatch", f"address inside application.json ({describe_value(inner)}) is not its"
                     " folder's")
    return (folder_address, text(r.get("fullName"), "fullName"), day(r.get("dateOfBirth"), "dateOfBirth"),
            text(r.get("country"), "country"), text(r.get("documentType"), "documentType"),
            text(r.get("documentNumber"), "documentNumber"), text(r.get("status"), "status"),
            timestamp(r.get("submittedAt"), "submittedAt"), timestamp(r.get("reviewedAt"), "reviewedAt"),
            text(r.get("reviewedBy"), "reviewedBy"), text(r.get("rejectionReason"), "rejectionReason"),
            extra(r, APPLICATION_KEYS, unknown))


# --- documents ------------------------------------------------------------------------------------------------

_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"%PDF-", "application/pdf"))
OCTET_STREAM = "application/octet-stream"
_BY_EXTENSION = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "pdf": "application/pdf"}


def sniff(head: bytes) -> str:
    """The content type of a file from its first bytes (JPEG, PNG, PDF), else application/octet-stream."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), OCTET_STREAM)


def type_of_name(name: str) -> str:
    """The content type a file's name claims (its extension), application/octet-stream for any other."""
    return _BY_EXTENSION.get(name.rpartition(".")[2].lower() if "." in name else "", OCTET_STREAM)
