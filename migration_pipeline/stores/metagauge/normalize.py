"""Metagauge records → rows: one function per file kind, which emits the record's row and its children's.

Absent keys take the seed's column DEFAULT (tier 'free', counters 0, flags ...), except timestamps,
which stay NULL rather than becoming the migration's time. Unknown keys go to `extra`
(`custom_settings` / `custom_params` for preferences / analysis params); unknown keys of nested
objects without a JSONB column of their own go to the parent's `extra` as "<object>.<key>".
A child that cannot become a row is rejected on its own (its parent loads); a parent that cannot
raises `_Reject`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from migration_pipeline.stores.metagauge.fields import (
    _bool,
    _clean,
    _date,
    _int,
    _invalid,
    _Json,
    _json_text,
    _missing,
    _numeric,
    _object,
    _Reject,
    _text,
    _text_list,
    _timestamp,
    _unknown,
    child_uuid,
    record_id,
    reference,
)

TIERS = ("free", "starter", "pro", "enterprise")
ANALYSIS_TYPES = ("single", "quick_scan", "competitive", "comparative")
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ROLES = ("user", "assistant", "system")

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


