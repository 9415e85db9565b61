"""What is special about the metagauge store: five JSON arrays, legacy ids, nested objects.

`data/{users,contracts,analyses,chat_sessions,chat_messages}.json` (LEGACY_FORMATS section 2), each
one top-level JSON array rewritten whole by the Node app. Every file is one unit, read streaming
element by element by `sources.json_array` (files can be hundreds of MB), in parent-before-child order;
an element that is not valid JSON is quarantined with its index and the rest of the file loads. The
file's elements are also counted by an independent pass (`sources.json_count`): reconciliation takes
that count as the source side of its table. Numbers that a float would not keep exactly arrive as
`Decimal`, and are stored with their exact digits in numeric and jsonb columns. Duplicates, CHECK
violations and dangling references are the engine's job (core.ddl) after the load; this module
only turns records into rows and rejects what cannot become a row.

Ids: a UUID is kept (lower case); any other id becomes uuid5(NAMESPACE, "<table>:<legacy id>") with
the original in `legacy_id`, so re-runs give the same ids and `userId` / `configId` / `sessionId`
references map to the same UUIDs as the records they point to. Child rows get
uuid5(NAMESPACE, "<child table>:<parent uuid>[:<chain or position>]").

Absent keys take the seed's column DEFAULT (tier 'free', counters 0, flags ...), except timestamps,
which stay NULL rather than becoming the migration's time. Unknown keys go to `extra`
(`custom_settings` / `custom_params` for preferences / analysis params); unknown keys of nested
objects without a JSONB column of their own go to the parent's `extra` as "<object>.<key>".
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from migration_pipeline.core.manifest import describe_file, walk_files
from migration_pipeline.core.report import sql_section
from migration_pipeline.core.serving import Lookup, serving_gate
from migration_pipeline.core.spec import (
    Batch,
    Column,
    Discovery,
    Generator,
    ReadContext,
    SampleRecords,
    StoreSpec,
    TableSpec,
    Unit,
)
from migration_pipeline.core.timestamps import InvalidTimestamp, parse_timestamp
from migration_pipeline.sources.json_array import read_json_array
from migration_pipeline.sources.json_count import count_items
from migration_pipeline.stores import expectations as ex

# Fixed forever: changing it changes every id derived from a legacy id.
NAMESPACE = uuid.UUID("5b0d3c8e-8f3a-5f1e-9c6b-3d0a6e7f4b21")

DATA_DIR = "data"
# (table fed, file) in load order; a file's position is its unit number and the high bits of its seq.
FILES: tuple[tuple[str, str], ...] = (
    ("users", f"{DATA_DIR}/users.json"),
    ("contracts", f"{DATA_DIR}/contracts.json"),
    ("analyses", f"{DATA_DIR}/analyses.json"),
    ("chat_sessions", f"{DATA_DIR}/chat_sessions.json"),
    ("chat_messages", f"{DATA_DIR}/chat_messages.json"),
)
BATCH_RECORDS = 2000
BATCH_BYTES = 4 << 20  # flush earlier when the JSONB payload of a batch grows past this
SEQ_SHIFT = 40
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

TIERS = ("free", "starter", "pro", "enterprise")
ANALYSIS_TYPES = ("single", "quick_scan", "competitive", "comparative")
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ROLES = ("user", "assistant", "system")


def _cols(spec: str) -> tuple[Column, ...]:
    """'name:kind' items separated by spaces; a trailing '!' marks a secret column."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        secret = kind.endswith("!")
        out.append(Column(name, kind.rstrip("!"), secret=secret))  # type: ignore[arg-type]
    return tuple(out)


USERS_COLUMNS = _cols(
    "id:uuid legacy_id:text email:text password:text! name:text tier:text api_key:text! is_active:bool"
    " email_verified:bool analysis_count:int monthly_analysis_count:int last_analysis:timestamptz"
    " monthly_reset_date:timestamptz extra:jsonb created_at:timestamptz updated_at:timestamptz"
)
ONBOARDING_COLUMNS = _cols(
    "id:uuid user_id:uuid completed:bool website:text twitter:text discord:text telegram:text logo:text"
    " contract_address:text contract_chain:text contract_abi:text contract_name:text contract_purpose:text"
    " contract_category:text contract_start_date:date is_indexed:bool indexing_progress:int"
    " last_analysis_id:uuid last_update:timestamptz current_step:text continuous_sync:bool has_errors:bool"
    " completion_reason:text continuous_sync_stopped:timestamptz created_at:timestamptz updated_at:timestamptz"
)
PREFERENCES_COLUMNS = _cols(
    "id:uuid user_id:uuid email_notifications:bool analysis_notifications:bool default_chain:text"
    " custom_settings:jsonb created_at:timestamptz updated_at:timestamptz"
)
CONTRACTS_COLUMNS = _cols(
    "id:uuid legacy_id:text user_id:uuid name:text description:text target_address:text target_chain:text"
    " target_name:text target_abi:text tags:text[] is_active:bool is_default:bool last_analyzed:timestamptz"
    " analysis_count:int extra:jsonb created_at:timestamptz updated_at:timestamptz"
)
COMPETITORS_COLUMNS = _cols(
    "id:uuid contract_id:uuid address:text chain:text name:text abi:text created_at:timestamptz"
)
RPC_COLUMNS = _cols(
    "id:uuid contract_id:uuid chain:text rpc_urls:text[] created_at:timestamptz updated_at:timestamptz"
)
PARAMS_COLUMNS = _cols(
    "id:uuid contract_id:uuid block_range:int whale_threshold:numeric max_concurrent_requests:int"
    " failover_timeout:int max_retries:int output_formats:text[] custom_params:jsonb created_at:timestamptz"
    " updated_at:timestamptz"
)
ANALYSES_COLUMNS = _cols(
    "id:uuid legacy_id:text user_id:uuid config_id:uuid analysis_type:text status:text progress:int"
    " results:jsonb metadata:jsonb error_message:text has_errors:bool logs:text[] completed_at:timestamptz"
    " created_at:timestamptz updated_at:timestamptz last_update:timestamptz current_step:text extra:jsonb"
)
SESSIONS_COLUMNS = _cols(
    "id:uuid legacy_id:text user_id:uuid title:text contract_address:text contract_chain:text"
    " contract_name:text is_active:bool message_count:int last_message_at:timestamptz extra:jsonb"
    " created_at:timestamptz updated_at:timestamptz"
)
MESSAGES_COLUMNS = _cols(
    "id:uuid legacy_id:text session_id:uuid role:text content:text components:jsonb tokens_used:int"
    " model:text processing_time:int extra:jsonb created_at:timestamptz"
)


# --- discovery ---------------------------------------------------------------------------------------


def discover(store_dir: Path) -> Discovery:
    """One unit per present data file, in load order; every other file is unmapped."""
    # A link is never read through (core/manifest.py): a data file that is a link is listed as a link.
    present = [(n, table, rel) for n, (table, rel) in enumerate(FILES)
               if (store_dir / rel).is_file() and not (store_dir / rel).is_symlink()]
    mapped = {rel for _, _, rel in present}
    everything = walk_files(store_dir) if store_dir.is_dir() else []
    digest = hashlib.sha256()
    for rel in everything:
        st = os.lstat(store_dir / rel)  # a dangling or looping link has no stat through it
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return Discovery(
        units=tuple(Unit(number=n, payload=(n, table, rel)) for n, table, rel in present),
        unmapped=tuple(rel for rel in everything if rel not in mapped),
        fingerprint=digest.hexdigest(),
    )


# --- field conversion ----------------------------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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


def _exact_number(value: Any) -> orjson.Fragment:
    """orjson's `default`: a Decimal (a number a float would not keep) written with its exact digits."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_exact_number)


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


# --- records → rows ----------------------------------------------------------------------------------------

Emit = Callable[[str, tuple[Any, ...], str], None]          # (table, row, locator)
Reject = Callable[[str, str, str, str], None]               # (table, locator, reason, message)

USER_KEYS = frozenset({"id", "email", "password", "name", "tier", "apiKey", "isActive", "emailVerified", "usage",
                       "onboarding", "preferences", "createdAt", "updatedAt"})
USAGE_KEYS = frozenset({"analysisCount", "monthlyAnalysisCount", "lastAnalysis", "monthlyResetDate"})
ONBOARDING_KEYS = frozenset({"completed", "socialLinks", "logo", "defaultContract"})
SOCIAL_KEYS = frozenset({"website", "twitter", "discord", "telegram"})
DEFAULT_CONTRACT_KEYS = frozenset({"address", "chain", "abi", "name", "purpose", "category", "startDate", "isIndexed",
                                   "indexingProgress", "lastAnalysisId", "lastUpdate", "currentStep",
                                   "continuousSync", "hasErrors", "completionReason", "continuousSyncStopped"})
PREFERENCE_KEYS = frozenset({"emailNotifications", "analysisNotifications", "defaultChain"})
CONTRACT_KEYS = frozenset({"id", "userId", "name", "description", "targetContract", "competitors", "rpcConfig",
                           "analysisParams", "tags", "isActive", "isDefault", "lastAnalyzed", "analysisCount",
                           "createdAt", "updatedAt"})
TARGET_KEYS = frozenset({"address", "chain", "name", "abi"})
PARAM_KEYS = frozenset({"blockRange", "whaleThreshold", "maxConcurrentRequests", "failoverTimeout", "maxRetries",
                        "outputFormats"})
ANALYSIS_KEYS = frozenset({"id", "userId", "configId", "analysisType", "status", "progress", "results", "metadata",
                           "errorMessage", "hasErrors", "logs", "completedAt", "createdAt", "updatedAt", "lastUpdate",
                           "currentStep"})
SESSION_KEYS = frozenset({"id", "userId", "title", "contractAddress", "contractChain", "contractName", "isActive",
                          "messageCount", "lastMessageAt", "createdAt", "updatedAt"})
MESSAGE_KEYS = frozenset({"id", "sessionId", "role", "content", "components", "tokensUsed", "model",
                          "processingTime", "createdAt"})


def _user(r: dict[str, Any], loc: str, emit: Emit, reject: Reject, js: _Json) -> None:
    uid, legacy = record_id(r.get("id"), "users")
    email = _text(r.get("email"), "email", required=True)
    password = _text(r.get("password"), "password", required=True)
    name = _text(r.get("name"), "name", required=True)
    api_key = _text(r.get("apiKey"), "apiKey", required=True)
    tier = r.get("tier")
    if tier is None:
        tier = "free"
    elif not isinstance(tier, str) or tier.strip().lower() not in TIERS:
        raise _invalid("tier", f"is not one of {', '.join(TIERS)}")
    else:
        tier = tier.strip().lower()
    is_active = _bool(r.get("isActive"), "isActive", True)
    email_verified = _bool(r.get("emailVerified"), "emailVerified", False)
    usage = _object(r.get("usage"), "usage") or {}
    analysis_count = _int(usage.get("analysisCount"), "usage.analysisCount", 0)
    monthly_count = _int(usage.get("monthlyAnalysisCount"), "usage.monthlyAnalysisCount", 0)
    last_analysis = _timestamp(usage.get("lastAnalysis"), "usage.lastAnalysis")
    monthly_reset = _timestamp(usage.get("monthlyResetDate"), "usage.monthlyResetDate")
    created_at = _timestamp(r.get("createdAt"), "createdAt")
    updated_at = _timestamp(r.get("updatedAt"), "updatedAt")
    onboarding = _object(r.get("onboarding"), "onboarding")
    preferences = _object(r.get("preferences"), "preferences")

    extra: dict[str, Any] = {}
    _unknown(r, USER_KEYS, extra)
    _unknown(usage, USAGE_KEYS, extra, "usage.")
    children: list[tuple[str, tuple[Any, ...], str]] = []
    if onboarding is not None:
        child_loc = f"{loc}.onboarding"
        try:
            children.append(("user_onboarding", _onboarding(uid, onboarding, extra, created_at, updated_at), child_loc))
        except _Reject as exc:
            reject("user_onboarding", child_loc, exc.reason, exc.message)
    if preferences is not None:
        custom = {k: v for k, v in preferences.items() if k not in PREFERENCE_KEYS}
        child_loc = f"{loc}.preferences"
        try:
            children.append(("user_preferences", (
                child_uuid("user_preferences", uid), uid,
                _bool(preferences.get("emailNotifications"), "preferences.emailNotifications", True),
                _bool(preferences.get("analysisNotifications"), "preferences.analysisNotifications", True),
                _text(preferences.get("defaultChain"), "preferences.defaultChain", default="ethereum"),
                js(custom, "preferences"), created_at, updated_at,
            ), child_loc))
        except _Reject as exc:
            reject("user_preferences", child_loc, exc.reason, exc.message)
    emit("users", (uid, legacy, email, password, name, tier, api_key, is_active, email_verified, analysis_count,
                   monthly_count, last_analysis, monthly_reset, js(extra, "extra"), created_at, updated_at), loc)
    for table, row, child_loc in children:
        emit(table, row, child_loc)


def _onboarding(
    uid: str, o: dict[str, Any], extra: dict[str, Any], created_at: datetime | None, updated_at: datetime | None
) -> tuple[Any, ...]:
    social = _object(o.get("socialLinks"), "onboarding.socialLinks") or {}
    dc = _object(o.get("defaultContract"), "onboarding.defaultContract") or {}
    p = "onboarding.defaultContract."
    row = (
        child_uuid("user_onboarding", uid), uid,
        _bool(o.get("completed"), "onboarding.completed", False),
        *(_text(social.get(k), f"onboarding.socialLinks.{k}") for k in ("website", "twitter", "discord", "telegram")),
        _text(o.get("logo"), "onboarding.logo"),
        _text(dc.get("address"), p + "address"),
        _text(dc.get("chain"), p + "chain"),
        _json_text(dc.get("abi"), p + "abi"),
        _text(dc.get("name"), p + "name"),
        _text(dc.get("purpose"), p + "purpose"),
        _text(dc.get("category"), p + "category"),
        _date(dc.get("startDate"), p + "startDate"),
        _bool(dc.get("isIndexed"), p + "isIndexed", False),
        _int(dc.get("indexingProgress"), p + "indexingProgress", 0),
        reference(dc.get("lastAnalysisId"), "analyses", p + "lastAnalysisId", required=False),
        _timestamp(dc.get("lastUpdate"), p + "lastUpdate"),
        _text(dc.get("currentStep"), p + "currentStep"),
        _bool(dc.get("continuousSync"), p + "continuousSync", False),
        _bool(dc.get("hasErrors"), p + "hasErrors", False),
        _text(dc.get("completionReason"), p + "completionReason"),
        _timestamp(dc.get("continuousSyncStopped"), p + "continuousSyncStopped"),
        created_at, updated_at,
    )
    _unknown(o, ONBOARDING_KEYS, extra, "onboarding.")
    _unknown(social, SOCIAL_KEYS, extra, "onboarding.socialLinks.")
    _unknown(dc, DEFAULT_CONTRACT_KEYS, extra, p)
    return row


def _contract(r: dict[str, Any], loc: str, emit: Emit, reject: Reject, js: _Json) -> None:
    cid, legacy = record_id(r.get("id"), "contracts")
    user_id = reference(r.get("userId"), "users", "userId", required=True)
    name = _text(r.get("name"), "name", required=True)
    target = _object(r.get("targetContract"), "targetContract")
    if target is None:
        raise _missing("targetContract")
    target_address = _text(target.get("address"), "targetContract.address", required=True)
    target_chain = _text(target.get("chain"), "targetContract.chain", required=True)
    competitors = r.get("competitors")
    if competitors is not None and not isinstance(competitors, list):
        raise _invalid("competitors", "is not an array")
    rpc = _object(r.get("rpcConfig"), "rpcConfig")
    params = _object(r.get("analysisParams"), "analysisParams")
    created_at = _timestamp(r.get("createdAt"), "createdAt")
    updated_at = _timestamp(r.get("updatedAt"), "updatedAt")
    row_head = (
        cid, legacy, user_id, name, _text(r.get("description"), "description"), target_address, target_chain,
        _text(target.get("name"), "targetContract.name"), _json_text(target.get("abi"), "targetContract.abi"),
        _text_list(r.get("tags"), "tags"), _bool(r.get("isActive"), "isActive", True),
        _bool(r.get("isDefault"), "isDefault", False), _timestamp(r.get("lastAnalyzed"), "lastAnalyzed"),
        _int(r.get("analysisCount"), "analysisCount", 0),
    )
    extra: dict[str, Any] = {}
    _unknown(r, CONTRACT_KEYS, extra)
    _unknown(target, TARGET_KEYS, extra, "targetContract.")
    children: list[tuple[str, tuple[Any, ...], str]] = []
    for j, comp in enumerate(competitors or ()):
        child_loc = f"{loc}.competitors[{j}]"
        if not isinstance(comp, dict):
            reject("contract_competitors", child_loc, "not_an_object", f"competitors[{j}] is not an object")
            continue
        try:
            f = f"competitors[{j}]."
            children.append(("contract_competitors", (
                child_uuid("contract_competitors", cid, j), cid,
                _text(comp.get("address"), f + "address", required=True),
                _text(comp.get("chain"), f + "chain", required=True),
                _text(comp.get("name"), f + "name"), _json_text(comp.get("abi"), f + "abi"), created_at,
            ), child_loc))
        except _Reject as exc:
            reject("contract_competitors", child_loc, exc.reason, exc.message)
            continue
        _unknown(comp, TARGET_KEYS, extra, f"competitors[{j}].")
    for chain, urls in (rpc or {}).items():
        child_loc = f"{loc}.rpcConfig.{chain}"
        try:
            children.append(("contract_rpc_config", (
                child_uuid("contract_rpc_config", cid, chain), cid, _clean(chain, "rpcConfig key"),
                _text_list(urls, f"rpcConfig.{chain}"), created_at, updated_at,
            ), child_loc))
        except _Reject as exc:
            reject("contract_rpc_config", child_loc, exc.reason, exc.message)
    if params is not None:
        child_loc = f"{loc}.analysisParams"
        try:
            children.append(("contract_analysis_params", (
                child_uuid("contract_analysis_params", cid), cid,
                _int(params.get("blockRange"), "analysisParams.blockRange", 1000),
                _numeric(params.get("whaleThreshold"), "analysisParams.whaleThreshold", Decimal(10)),
                _int(params.get("maxConcurrentRequests"), "analysisParams.maxConcurrentRequests", 10),
                _int(params.get("failoverTimeout"), "analysisParams.failoverTimeout", 30000),
                _int(params.get("maxRetries"), "analysisParams.maxRetries", 2),
                _text_list(params.get("outputFormats"), "analysisParams.outputFormats", ["json", "csv", "markdown"]),
                js({k: v for k, v in params.items() if k not in PARAM_KEYS}, "analysisParams"),
                created_at, updated_at,
            ), child_loc))
        except _Reject as exc:
            reject("contract_analysis_params", child_loc, exc.reason, exc.message)
    emit("contracts", (*row_head, js(extra, "extra"), created_at, updated_at), loc)
    for table, row, child_loc in children:
        emit(table, row, child_loc)


def _analysis(r: dict[str, Any], loc: str, emit: Emit, reject: Reject, js: _Json) -> None:
    aid, legacy = record_id(r.get("id"), "analyses")
    user_id = reference(r.get("userId"), "users", "userId", required=True)
    config_id = reference(r.get("configId"), "contracts", "configId", required=False)
    analysis_type = _text(r.get("analysisType"), "analysisType", required=True)
    if analysis_type not in ANALYSIS_TYPES:
        raise _invalid("analysisType", f"is not one of {', '.join(ANALYSIS_TYPES)}")
    status = _text(r.get("status"), "status", default="pending")
    if status not in STATUSES:
        raise _invalid("status", f"is not one of {', '.join(STATUSES)}")
    progress = _int(r.get("progress"), "progress", 0, 0, 100)
    logs = _text_list(r.get("logs"), "logs", [])
    metadata = r.get("metadata")
    extra: dict[str, Any] = {}
    _unknown(r, ANALYSIS_KEYS, extra)
    emit("analyses", (
        aid, legacy, user_id, config_id, analysis_type, status, progress, js(r.get("results"), "results"),
        js({} if metadata is None else metadata, "metadata"), _text(r.get("errorMessage"), "errorMessage"),
        _bool(r.get("hasErrors"), "hasErrors", False), logs, _timestamp(r.get("completedAt"), "completedAt"),
        _timestamp(r.get("createdAt"), "createdAt"), _timestamp(r.get("updatedAt"), "updatedAt"),
        _timestamp(r.get("lastUpdate"), "lastUpdate"), _text(r.get("currentStep"), "currentStep"),
        js(extra, "extra"),
    ), loc)


def _session(r: dict[str, Any], loc: str, emit: Emit, reject: Reject, js: _Json) -> None:
    sid, legacy = record_id(r.get("id"), "chat_sessions")
    extra: dict[str, Any] = {}
    _unknown(r, SESSION_KEYS, extra)
    emit("chat_sessions", (
        sid, legacy, reference(r.get("userId"), "users", "userId", required=True),
        _text(r.get("title"), "title", default="New Chat"), _text(r.get("contractAddress"), "contractAddress"),
        _text(r.get("contractChain"), "contractChain"), _text(r.get("contractName"), "contractName"),
        _bool(r.get("isActive"), "isActive", True), _int(r.get("messageCount"), "messageCount", 0),
        _timestamp(r.get("lastMessageAt"), "lastMessageAt"), js(extra, "extra"),
        _timestamp(r.get("createdAt"), "createdAt"), _timestamp(r.get("updatedAt"), "updatedAt"),
    ), loc)


def _message(r: dict[str, Any], loc: str, emit: Emit, reject: Reject, js: _Json) -> None:
    mid, legacy = record_id(r.get("id"), "chat_messages")
    session_id = reference(r.get("sessionId"), "chat_sessions", "sessionId", required=True)
    role = _text(r.get("role"), "role", required=True)
    if role not in ROLES:
        raise _invalid("role", f"is not one of {', '.join(ROLES)}")
    content = r.get("content")
    if content is None:
        raise _missing("content")
    extra: dict[str, Any] = {}
    _unknown(r, MESSAGE_KEYS, extra)
    emit("chat_messages", (
        mid, legacy, session_id, role, _text(content, "content"), js(r.get("components"), "components"),
        _int(r.get("tokensUsed"), "tokensUsed"), _text(r.get("model"), "model"),
        _int(r.get("processingTime"), "processingTime"), js(extra, "extra"),
        _timestamp(r.get("createdAt"), "createdAt"),
    ), loc)


NORMALIZERS: dict[str, Callable[[dict[str, Any], str, Emit, Reject, _Json], None]] = {
    "users": _user, "contracts": _contract, "analyses": _analysis, "chat_sessions": _session,
    "chat_messages": _message,
}


# --- reading a file -----------------------------------------------------------------------------------------


def read_unit(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    """Stream one file's top-level array; yield a Batch every BATCH_RECORDS records (or BATCH_BYTES of JSON)."""
    file_no, table, relative = unit.payload
    normalize = NORMALIZERS[table]
    path = context.store_dir / relative
    batch = Batch()
    batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))  # first pass: size + sha256
    batch.counted[table] = count_items(path)  # second pass, independent of the reader below
    seq = file_no << SEQ_SHIFT
    js = _Json()

    def emit(target: str, row: tuple[Any, ...], locator: str) -> None:
        nonlocal seq
        seq += 1
        batch.add_row(target, (*row, relative, locator, seq))

    def reject(target: str, locator: str, reason: str, message: str) -> None:
        batch.quarantine(target, relative, locator, reason, message)

    pending = 0
    for element in read_json_array(path):
        record, locator = element.value, element.locator
        if element.reason is not None:
            reject(table, locator, element.reason, element.message)
        elif not isinstance(record, dict):
            reject(table, locator, "not_an_object", f"the record is a JSON {type(record).__name__}, not an object")
        else:
            try:
                normalize(record, locator, emit, reject, js)
            except _Reject as exc:
                reject(table, locator, exc.reason, exc.message)
        pending += 1
        if pending >= BATCH_RECORDS or js.bytes >= BATCH_BYTES:
            yield batch
            batch = Batch()
            pending = 0
            js.bytes = 0
    yield batch


# --- the spec ------------------------------------------------------------------------------------------------

_TS = ("created_at",)


def _table(name: str, description: str, columns: tuple[Column, ...], *expectations: Any,
           unique_keys: tuple[tuple[str, ...], ...] = (("id",),), unique_ci: tuple[str, ...] = ()) -> TableSpec:
    flat: list[Any] = []
    for e in expectations:
        flat.extend(e if isinstance(e, tuple) else (e,))
    return TableSpec(name=name, description=description, columns=columns, unique_keys=unique_keys,
                     unique_ci=unique_ci, expectations=(ex.rows(name), *flat))


def _write_arrays(store_dir: Path, records: Mapping[str, Sequence[bytes]]) -> None:
    """Each entity's records as the JSON array of its file."""
    for entity, relative in FILES:
        path = store_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"[" + b",\n".join(records.get(entity, ())) + b"]")


_USER = "8f14e45f-ceea-467f-a0e1-a47f2c0d9a11"
_WHEN = "2024-05-02T08:00:00Z"
METAGAUGE_SAMPLES = SampleRecords(
    valid={
        "users": {"id": _USER, "email": "ada@example.com", "password": "$2b$10$" + "h" * 53, "name": "Ada",
                  "tier": "pro", "apiKey": "mg_live_0001", "isActive": True, "emailVerified": True,
                  "preferences": {"emailNotifications": True, "theme": "dark"}, "createdAt": _WHEN, "updatedAt": _WHEN},
        "contracts": {"id": "c0ffee00-1111-4222-8333-444455556666", "userId": _USER, "name": "Ada main",
                      "targetContract": {"address": "0x" + "1" * 40, "chain": "ethereum", "name": "AdaToken"},
                      "rpcConfig": {"ethereum": ["https://eth.example/rpc"]}, "analysisParams": {"blockRange": 5000},
                      "tags": ["defi"], "isActive": True, "isDefault": True, "analysisCount": 1,
                      "createdAt": _WHEN, "updatedAt": _WHEN},
        "analyses": {"id": "a0000000-0000-4000-8000-000000000001", "userId": _USER,
                     "configId": "c0ffee00-1111-4222-8333-444455556666", "analysisType": "single",
                     "status": "completed", "progress": 100, "results": {"tx": 42}, "logs": ["started"],
                     "createdAt": _WHEN, "updatedAt": _WHEN},
        "chat_sessions": {"id": "session_1697040000789_q1", "userId": _USER, "title": "Ada chat", "isActive": True,
                          "messageCount": 1, "createdAt": _WHEN, "updatedAt": _WHEN},
        "chat_messages": {"id": "message_1697040000790_a1", "sessionId": "session_1697040000789_q1", "role": "user",
                          "content": "hello", "tokensUsed": 3, "createdAt": _WHEN},
    },
    write=_write_arrays,
)


def _generate(out: Path, sizes: Mapping[str, int], seed: int, secret: str | None) -> str:
    from migration_pipeline.stores.metagauge.generate import generate_metagauge_store

    made = generate_metagauge_store(out, users=sizes["users"], seed=seed)
    return f"wrote a metagauge store for {made.users} users under {out / 'metagauge'}: {sum(made.files.values())} bytes"


METAGAUGE_STORE = StoreSpec(
    name="metagauge",
    description="Metagauge JSON documents: users, contracts, analyses and chats (seed 003).",
    folder="metagauge",
    tables=(
        _table(
            "users", "One row per user record; usage flattened; password hash and API key moved as stored.",
            USERS_COLUMNS,
            ex.not_null("id", "email", "password", "name", "api_key", "extra"),
            ex.unique("id", "api_key", "legacy_id"),
            ex.in_set("tier", TIERS), ex.matches("tier", "^[a-z]+$"),
            ex.unexpected_rows("email is unique case-insensitively",
                               # hashes, so that no e-mail address reaches the results or Data Docs
                               "SELECT md5(lower(email COLLATE \"C\")) AS email_hash, count(*) AS n FROM {batch}"
                               " GROUP BY 1 HAVING count(*) > 1"),
            ex.unexpected_rows("legacy ids are never UUIDs (a UUID id is kept as the id)",
                               # no regex quantifier braces: GX formats the query with str.format
                               "SELECT id FROM {batch} WHERE length(legacy_id) = 36 AND legacy_id ~* '^[0-9a-f-]+$'"),
            unique_keys=(("id",), ("api_key",)),  # API keys are case-sensitive
            unique_ci=("email",),
        ),
        _table(
            "user_onboarding", "A user's onboarding object: social links and default contract, one row per user.",
            ONBOARDING_COLUMNS,
            ex.not_null("id", "user_id"), ex.unique("id", "user_id"), ex.orphans("user_id", "users", "id"),
            unique_keys=(("id",), ("user_id",)),
        ),
        _table(
            "user_preferences", "A user's preferences; keys other than the three known ones in custom_settings.",
            PREFERENCES_COLUMNS,
            ex.not_null("id", "user_id", "custom_settings"), ex.unique("id", "user_id"),
            ex.orphans("user_id", "users", "id"),
            unique_keys=(("id",), ("user_id",)),
        ),
        _table(
            "contracts", "One row per contract configuration; targetContract flattened.",
            CONTRACTS_COLUMNS,
            ex.not_null("id", "user_id", "name", "target_address", "target_chain", "extra"),
            ex.unique("id", "legacy_id"), ex.orphans("user_id", "users", "id"),
        ),
        _table(
            "contract_competitors", "One row per entry of a contract's competitors array.",
            COMPETITORS_COLUMNS,
            ex.not_null("id", "contract_id", "address", "chain"), ex.unique("id"),
            ex.orphans("contract_id", "contracts", "id"),
        ),
        _table(
            "contract_rpc_config", "One row per chain of a contract's rpcConfig, with its URLs.",
            RPC_COLUMNS,
            ex.not_null("id", "contract_id", "chain"), ex.unique("id"),
            ex.compound_unique(("contract_id", "chain")), ex.orphans("contract_id", "contracts", "id"),
        ),
        _table(
            "contract_analysis_params", "A contract's analysisParams; unknown keys in custom_params.",
            PARAMS_COLUMNS,
            ex.not_null("id", "contract_id", "custom_params"), ex.unique("id", "contract_id"),
            ex.orphans("contract_id", "contracts", "id"),
        ),
        _table(
            "analyses", "One row per analysis; configId to a missing contract is set NULL.",
            ANALYSES_COLUMNS,
            ex.not_null("id", "user_id", "analysis_type", "extra"), ex.unique("id", "legacy_id"),
            ex.in_set("analysis_type", ANALYSIS_TYPES), ex.in_set("status", STATUSES),
            ex.between("progress", 0, 100),
            ex.orphans("user_id", "users", "id"), ex.orphans("config_id", "contracts", "id"),
        ),
        _table(
            "chat_sessions", "One row per chat session.",
            SESSIONS_COLUMNS,
            ex.not_null("id", "user_id", "extra"), ex.unique("id", "legacy_id"),
            ex.between("message_count", 0), ex.orphans("user_id", "users", "id"),
        ),
        _table(
            "chat_messages", "One row per chat message.",
            MESSAGES_COLUMNS,
            ex.not_null("id", "session_id", "role", "content", "extra"), ex.unique("id", "legacy_id"),
            ex.in_set("role", ROLES), ex.orphans("session_id", "chat_sessions", "id"),
        ),
    ),
    discover=discover,
    read_unit=read_unit,
    parallel=False,
    needs_secret=False,
    source_files=tuple(rel for _, rel in FILES),
    gates=(serving_gate((
        Lookup("user by e-mail, any ASCII case", "users", 'lower(email COLLATE "C") = lower(%s COLLATE "C")', ("email",)),
        Lookup("user by API key", "users", "api_key = %s", ("api_key",)),
        Lookup("contracts of a user", "contracts", "user_id = %s", ("user_id",)),
        Lookup("analyses of a user", "analyses", "user_id = %s", ("user_id",)),
        Lookup("messages of a chat session", "chat_messages", "session_id = %s", ("session_id",)),
    )),),
    samples=METAGAUGE_SAMPLES,
    report_sections=(sql_section(
        "Analyses by type and status", "The analyses loaded, per analysis type and status (counts only).",
        ("analysis type", "status", "analyses"),
        "SELECT analysis_type, coalesce(status, '(none)'), count(*) FROM {schema}.analyses GROUP BY 1, 2 ORDER BY 1, 2"),),
    generator=Generator(run=_generate, options={"users": ("users to generate (with contracts, analyses, chats)", None)}),
)
