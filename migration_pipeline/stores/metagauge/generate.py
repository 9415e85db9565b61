"""A synthetic metagauge store of any size: `out/metagauge/data/*.json` as the Node app writes them.

Files are written record by record (never one big string), so an analyses.json of several GB can
be produced for memory tests. The same arguments always give the same bytes. With `messy=True`
every case of LEGACY_FORMATS section 2 is mixed in at about 2 % of users, and the summary states
exactly how many rows each table must load and how many records it must quarantine, per reason.

Known limitation kept on purpose: every analysis has a configId (see the report about the engine's
SET NULL checksum adjustment, which miscounts when NULL and dangling references meet in one table).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
BASE_MS = 1697040000000
CHAINS = ("ethereum", "polygon", "base", "arbitrum")
TIERS = ("free", "starter", "pro", "enterprise")
MISSING_USER = "00000000-dead-4bee-8f00-00000000beef"
MISSING_CONTRACT = "contract_0000000000000_gone"
MISSING_SESSION = "session_0000000000000_gone"

# Messy cases: user index modulo 50 → case (users 11, 23, 37, 41 are rejected and own nothing).
DUP_EMAIL, BAD_TIER, BAD_TS, NO_KEY = 11, 23, 37, 41
ORPHAN_CONTRACT, ORPHAN_ANALYSIS, DANGLING_CONFIG, BAD_STATUS, BAD_PROGRESS = 13, 17, 19, 29, 31
BAD_ROLE, ORPHAN_SESSION, UNKNOWN_KEYS, ORPHAN_MESSAGE = 33, 43, 45, 47
NOT_AN_OBJECT_EVERY = 500  # a bare string after user i when i % 500 == 250


@dataclass
class MetagaugeSummary:
    root: Path                       # the source root (pass it to stage_store)
    users: int
    files: dict[str, int] = field(default_factory=dict)            # relative path → bytes
    loaded: Counter[str] = field(default_factory=Counter)           # table → rows expected
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, reason) → records

    def quarantined_by_table(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (table, _reason), n in self.quarantined.items():
            out[table] += n
        return dict(out)

    def quarantined_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_table, reason), n in self.quarantined.items():
            out[reason] += n
        return dict(out)


class _ArrayWriter:
    """Writes one JSON array element by element."""

    def __init__(self, handle: IO[bytes], bom: bool = False) -> None:
        self.handle = handle
        self.first = True
        handle.write((b"\xef\xbb\xbf" if bom else b"") + b"[\n")

    def add(self, item: Any) -> None:
        self.handle.write((b"" if self.first else b",\n") + b"  " + orjson.dumps(item))
        self.first = False

    def close(self) -> None:
        self.handle.write(b"\n]\n")


def _ts(i: int, k: int = 0) -> Any:
    moment = BASE_TIME + timedelta(seconds=i * 60 + k)
    if i % 3 == 0:
        return int(moment.timestamp() * 1000)  # epoch milliseconds, as Date.now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


@dataclass(frozen=True)
class _Ids:
    user: str
    contracts: tuple[str, ...]
    session: str | None


def _case(i: int, messy: bool) -> int | None:
    return i % 50 if messy else None


def _rejected(i: int, messy: bool) -> bool:
    return _case(i, messy) in (DUP_EMAIL, BAD_TIER, BAD_TS, NO_KEY)


def _ids(seed: int, i: int, messy: bool) -> _Ids:
    rng = random.Random(f"{seed}:{i}:ids")
    legacy = i % 5 == 0
    user = f"user_{BASE_MS + i}_{_hex(rng, 4)}" if legacy else _uuid(rng)
    n_contracts = 2 if i % 4 == 0 else 1
    contracts = tuple(f"contract_{BASE_MS + i}_{k}{_hex(rng, 3)}" if legacy else _uuid(rng) for k in range(n_contracts))
    session = (f"session_{BASE_MS + i}_{_hex(rng, 4)}" if legacy else _uuid(rng)) if i % 2 == 1 else None
    return _Ids(user, contracts, session)


def _email(i: int) -> str:
    return f"user{i}@example.com"


def generate_metagauge_store(
    out: Path, users: int, seed: int = 7, analyses_per_user: int = 3, result_kb: int = 20, messy: bool = True
) -> MetagaugeSummary:
    data = out / "metagauge" / "data"
    data.mkdir(parents=True, exist_ok=True)
    s = MetagaugeSummary(root=out, users=users)

    with open(data / "users.json", "wb") as handle:
        w = _ArrayWriter(handle, bom=messy)
        for i in range(users):
            w.add(_user(seed, i, messy, s))
            if messy and i % NOT_AN_OBJECT_EVERY == NOT_AN_OBJECT_EVERY // 2:
                w.add(f"corrupted entry {i}")
                s.quarantined[("users", "not_an_object")] += 1
        w.close()

    with open(data / "contracts.json", "wb") as handle:
        w = _ArrayWriter(handle)
        for i in range(users):
            if _rejected(i, messy):
                continue
            ids = _ids(seed, i, messy)
            for k, cid in enumerate(ids.contracts):
                w.add(_contract(i, k, cid, ids.user, messy))
                s.loaded.update({"contracts": 1, "contract_competitors": 1, "contract_rpc_config": 2,
                                 "contract_analysis_params": 1})
            if _case(i, messy) == ORPHAN_CONTRACT:
                w.add({"id": f"contract_{BASE_MS + i}_orph", "userId": MISSING_USER, "name": "ownerless",
                       "targetContract": {"address": "0x" + "4" * 40, "chain": "ethereum"}})
                s.quarantined[("contracts", "orphan")] += 1
        w.close()

    with open(data / "analyses.json", "wb") as handle:
        w = _ArrayWriter(handle)
        for i in range(users):
            if _rejected(i, messy):
                continue
            ids = _ids(seed, i, messy)
            rng = random.Random(f"{seed}:{i}:analyses")
            case = _case(i, messy)
            for j in range(analyses_per_user):
                config = ids.contracts[j % len(ids.contracts)]
                if case == DANGLING_CONFIG and j == 0:
                    config = MISSING_CONTRACT  # loaded with config_id NULL
                w.add(_analysis(rng, i, j, ids.user, config, result_kb, extra=case == UNKNOWN_KEYS))
                s.loaded["analyses"] += 1
            bad = {ORPHAN_ANALYSIS: ("userId", MISSING_USER, "orphan"), BAD_STATUS: ("status", "done", "invalid_value"),
                   BAD_PROGRESS: ("progress", 150, "out_of_range")}.get(case)  # type: ignore[arg-type]
            if bad is not None:
                record = _analysis(rng, i, 99, ids.user, ids.contracts[0], 1, extra=False)
                record[bad[0]] = bad[1]
                w.add(record)
                s.quarantined[("analyses", bad[2])] += 1
        w.close()

    with open(data / "chat_sessions.json", "wb") as sessions_handle, \
            open(data / "chat_messages.json", "wb") as messages_handle:
        ws, wm = _ArrayWriter(sessions_handle), _ArrayWriter(messages_handle)
        for i in range(users):
            if _rejected(i, messy):
                continue
            ids = _ids(seed, i, messy)
            case = _case(i, messy)
            if ids.session is not None:
                ws.add({"id": ids.session, "userId": ids.user, "title": f"Chat {i}", "contractAddress": "0x" + "1" * 40,
                        "contractChain": "ethereum", "isActive": True, "messageCount": 2,
                        "lastMessageAt": _ts(i, 30), "createdAt": _ts(i, 20), "updatedAt": _ts(i, 30)})
                s.loaded["chat_sessions"] += 1
                for k, role in enumerate(("user", "assistant")):
                    wm.add(_message(i, k, ids.session, role))
                    s.loaded["chat_messages"] += 1
                if case == BAD_ROLE:
                    wm.add(_message(i, 2, ids.session, "bot"))
                    s.quarantined[("chat_messages", "invalid_value")] += 1
            if case == ORPHAN_SESSION:
                ws.add({"id": f"session_{BASE_MS + i}_orph", "userId": MISSING_USER, "title": "nobody's"})
                s.quarantined[("chat_sessions", "orphan")] += 1
            if case == ORPHAN_MESSAGE:
                wm.add(_message(i, 3, MISSING_SESSION, "user"))
                s.quarantined[("chat_messages", "orphan")] += 1
        ws.close()
        wm.close()

    s.files = {p.relative_to(out / "metagauge").as_posix(): p.stat().st_size for p in sorted(data.iterdir())}
    return s


def _user(seed: int, i: int, messy: bool, s: MetagaugeSummary) -> dict[str, Any]:
    ids = _ids(seed, i, messy)
    rng = random.Random(f"{seed}:{i}:user")
    case = _case(i, messy)
    tier = TIERS[i % 4]
    record: dict[str, Any] = {
        "id": ids.user, "email": _email(i), "password": "$2b$10$" + _hex(rng, 53), "name": f"User {i}",
        "tier": tier.upper() if messy and i % 7 == 0 else tier, "apiKey": "mg_" + _hex(rng, 32),
        "isActive": True, "emailVerified": i % 2 == 0,
        "usage": {"analysisCount": i % 17, "monthlyAnalysisCount": i % 5, "lastAnalysis": _ts(i, 5),
                  "monthlyResetDate": _ts(i, 1)},
        "preferences": {"emailNotifications": True, "analysisNotifications": i % 2 == 0,
                        "defaultChain": CHAINS[i % 4], **({"theme": "dark"} if i % 3 == 0 else {})},
        "createdAt": _ts(i), "updatedAt": _ts(i, 9),
    }
    if i % 2 == 0:
        record["onboarding"] = {
            "completed": i % 4 == 0, "socialLinks": {"website": f"https://u{i}.example", "twitter": f"@u{i}"},
            "logo": None,
            "defaultContract": {"address": "0x" + _hex(rng, 40), "chain": CHAINS[i % 4], "abi": "[]",
                                "name": f"Token {i}", "purpose": "defi", "category": "token",
                                "startDate": "2024-01-15", "isIndexed": True, "indexingProgress": 100,
                                "lastUpdate": _ts(i, 7), "currentStep": "done", "continuousSync": False,
                                "hasErrors": False},
        }
    children = ["user_preferences"] + (["user_onboarding"] if "onboarding" in record else [])
    if case == DUP_EMAIL:
        record["email"] = _email(i - 1).upper()  # same as the previous user, other case
        s.quarantined[("users", "duplicate_key")] += 1
        for table in children:
            s.quarantined[(table, "orphan")] += 1
        return record
    if case == BAD_TIER:
        record["tier"] = "platinum"
        s.quarantined[("users", "invalid_value")] += 1
        return record
    if case == BAD_TS:
        record["createdAt"] = "last tuesday"
        s.quarantined[("users", "invalid_timestamp")] += 1
        return record
    if case == NO_KEY:
        del record["apiKey"]
        s.quarantined[("users", "missing_field")] += 1
        return record
    if case == UNKNOWN_KEYS:
        record["referralCode"] = f"REF{i}"
        record["preferences"]["beta"] = {"features": ["x"]}
    s.loaded["users"] += 1
    for table in children:
        s.loaded[table] += 1
    return record


def _contract(i: int, k: int, cid: str, user: str, messy: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": cid, "userId": user, "name": f"Contract {i}.{k}", "description": "generated",
        "targetContract": {"address": "0x" + f"{i:040x}", "chain": CHAINS[(i + k) % 4], "name": f"T{i}", "abi": "[]"},
        "competitors": [{"address": "0x" + f"{i + 1:040x}", "chain": "ethereum", "name": "rival"}],
        "rpcConfig": {"ethereum": ["https://eth.example/rpc"], "polygon": ["https://polygon.example/rpc",
                                                                          "https://polygon2.example/rpc"]},
        "analysisParams": {"blockRange": 1000 + i % 9, "whaleThreshold": 10.5, "maxConcurrentRequests": 10,
                           "failoverTimeout": 30000, "maxRetries": 2, "outputFormats": ["json", "csv"],
                           **({"customDepth": 3} if i % 3 == 0 else {})},
        "tags": ["generated", CHAINS[i % 4]], "isActive": True, "isDefault": k == 0,
        "lastAnalyzed": _ts(i, 40), "analysisCount": i % 11, "createdAt": _ts(i, 2), "updatedAt": _ts(i, 40),
    }
    if messy and i % 50 == UNKNOWN_KEYS:
        record["legacyNotes"] = "from v1"
    return record


def _analysis(rng: random.Random, i: int, j: int, user: str, config: str, result_kb: int, extra: bool) -> dict[str, Any]:
    entries = max(1, result_kb * 1024 // 110)
    base = rng.getrandbits(64)
    results = {
        "summary": {"transactions": entries, "whales": j, "volume": round(rng.random() * 1e6, 2)},
        "transactions": [{"hash": f"0x{base + n:064x}", "value": n * 1000 + j, "block": 18_000_000 + n}
                         for n in range(entries)],
    }
    aid = f"analysis_{BASE_MS + i}_{j:03d}" if i % 5 == 0 else str(uuid.UUID(int=rng.getrandbits(128), version=4))
    record = {
        "id": aid, "userId": user, "configId": config, "analysisType": ("single", "quick_scan", "competitive")[j % 3],
        "status": "completed", "progress": 100, "results": results, "metadata": {"generator": True},
        "errorMessage": None, "hasErrors": False, "logs": ["queued", "started", "completed"],
        "completedAt": _ts(i, 50 + j), "createdAt": _ts(i, 45 + j), "updatedAt": _ts(i, 50 + j),
        "lastUpdate": _ts(i, 50 + j), "currentStep": "done",
    }
    if extra:
        record["priority"] = "high"
    return record


def _message(i: int, k: int, session: str, role: str) -> dict[str, Any]:
    mid = f"msg_{BASE_MS + i}_{k}" if i % 5 == 0 else str(uuid.uuid5(uuid.NAMESPACE_URL, f"message/{i}/{k}"))
    record: dict[str, Any] = {"id": mid, "sessionId": session, "role": role, "content": f"message {k} of chat {i}",
                              "createdAt": _ts(i, 21 + k)}
    if role == "assistant":
        record.update({"components": [{"type": "metric", "value": i}], "tokensUsed": 100 + i % 50,
                       "model": "gpt-4o", "processingTime": 500 + i % 300})
    return record
