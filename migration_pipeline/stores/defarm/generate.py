"""A realistic DeFarm snapshot of any size, deterministic per seed, for tests and benchmarks.

Per item: the item, 1-2 identifiers, storage history, events and LID mappings half the time; the other
engines in proportion (a user per 100 items, a circuit per 1000). Every enum variant appears, in both
shapes where the enum has them; u64 values sit at the edges (0, 2^63, 2^64-1); timestamps carry nine
fractional digits. Quirks at a small rate (`QUIRK_EVERY`): a bad line, a blank line, a duplicate key,
an orphan, an unknown variant, an unknown key, a CRLF line end; the last line of each file has no newline.
`GeneratedStore.quarantined` is what a run must quarantine, by reason.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from migration_pipeline.stores.defarm.store import ENGINE_NAMES, ENUMS, SNAPSHOT_DIR

QUIRK_EVERY = 997  # one line in about a thousand of the large engines carries a quirk
U64_EDGES = (0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1)
_START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class GeneratedStore:
    store_dir: Path
    items: int
    files: int = 0
    lines: int = 0
    rows: Counter[str] = field(default_factory=Counter)          # lines per engine that must load
    quarantined: Counter[str] = field(default_factory=Counter)   # reason -> lines


def dfid_for(n: int) -> str:
    day = (_START + timedelta(days=n // 100_000)).strftime("%Y%m%d")
    check = hashlib.sha256(str(n).encode()).hexdigest()[:4].upper()
    return f"DFID-{day}-{n % 1_000_000:06d}-{check}"


def _sha256(n: int) -> str:
    return hashlib.sha256(n.to_bytes(8, "big")).hexdigest()


def _ts(rng: random.Random) -> str:
    moment = _START + timedelta(seconds=rng.randrange(300 * 86400))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rng.randrange(10**9):09d}Z"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _variant(rng: random.Random, enum: str, n: int) -> Any:
    """Variant n (cycling) of the enum, in its declared shape."""
    tags = list(ENUMS[enum])
    tag = tags[n % len(tags)]
    if ENUMS[enum][tag] == "unit":
        return tag
    payloads: dict[str, Any] = {
        "Merged": {"into": dfid_for(n + 1)}, "MergedInto": dfid_for(n + 2), "Suspended": {"reason": "abuse"},
        "Contextual": {"scope": rng.choice(["MT", "GO", "PR"])}, "Rejected": {"reason": "duplicate"},
        "Failed": "timeout", "Custom": "s3", "IPFS": {"cid": f"bafy{n:x}", "pinned": n % 2 == 0},
        "Stellar": {"transaction_id": _sha256(n), "network": "testnet"}, "Local": {"path": f"/data/{n}"},
        "StatusChanged": {"from": "Active", "to": "Deprecated"}, "ItemPushed": {"dfid": dfid_for(n)},
        "CircuitInvite": {"circuit": n}, "Usage": {"operation": "push"}, "Refund": {"reason": "error"},
    }
    return {tag: payloads.get(tag, {"n": n})}


class _Writer:
    """Lines of one engine's file; the last line is written without its newline."""

    def __init__(self, store: GeneratedStore, name: str, handle: IO[bytes]) -> None:
        self.store, self.name, self.handle = store, name, handle
        self.pending: bytes | None = None

    def line(self, data: bytes, loads: bool = True, reason: str | None = None, crlf: bool = False) -> None:
        if self.pending is not None:
            self.handle.write(self.pending)
        self.pending = data + (b"\r\n" if crlf else b"\n")
        self.store.lines += 1
        if reason is not None:
            self.store.quarantined[reason] += 1
        elif loads:
            self.store.rows[self.name] += 1

    def record(self, record: dict[str, Any], crlf: bool = False) -> None:
        try:
            data = orjson.dumps(record)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, which JSON holds and orjson does not write
            data = json.dumps(record, separators=(",", ":")).encode()
        self.line(data, crlf=crlf)

    def blank(self) -> None:
        if self.pending is not None:
            self.handle.write(self.pending)
        self.pending = b"   \n"

    def close(self) -> None:
        if self.pending is not None:
            self.handle.write(self.pending.rstrip(b"\r\n"))
        self.handle.close()


def generate_defarm_store(root: Path, items: int, seed: int = 7) -> GeneratedStore:
    """Write `<root>/defarm/snapshot/*.jsonl` for `items` items and return what was written."""
    rng = random.Random(seed)
    store_dir = root / "defarm"
    folder = store_dir / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    store = GeneratedStore(store_dir=store_dir, items=items)
    out = {name: _Writer(store, name, open(folder / f"{name}.jsonl", "wb")) for name in ENGINE_NAMES}  # noqa: SIM115
    store.files = len(out) + 1
    (store_dir / "snapshot" / "README.txt").write_text("DeFarm export (unmapped: not an engine file)\n")
    out["users"].handle.write(b"\xef\xbb\xbf")  # a BOM before the first line

    users = max(1, items // 100)
    circuits = [_uuid(rng) for _ in range(max(1, items // 1000))]
    for u in range(users):
        out["users"].record({
            "user_id": f"user-{u:06d}", "username": f"user{u}", "email": f"user{u}@farm.example",
            "password_hash": "$2b$12$" + hashlib.sha256(f"{seed}:{u}".encode()).hexdigest()[:53],
            "tier": _variant(rng, "UserTier", u), "status": _variant(rng, "AccountStatus", u),
            "is_admin": u == 0, "workspace_id": f"ws-{u % 50}" if u % 3 else None,
            "credits": U64_EDGES[u % len(U64_EDGES)], "available_adapters": ["IpfsIpfs", "LocalLocal"],
            "created_at": _ts(rng), **({"last_login": _ts(rng)} if u % 2 else {}),
        })
        key_id = _uuid(rng)
        out["api_keys"].record({
            "id": key_id, "user_id": f"user-{u:06d}", "key_hash": hashlib.sha256(key_id.encode()).hexdigest(),
            "key_prefix": "dfm_" + key_id[:8], "name": "default", "permissions": ["read", "write"],
            "rate_limit_per_hour": [0, 1000, 2**32 - 1][u % 3], "is_active": True,
            "usage_count": U64_EDGES[(u + 3) % len(U64_EDGES)], "expires_at": None, "created_at": _ts(rng),
            "last_used_at": _ts(rng) if u % 2 else None,
        })
    for c, cid in enumerate(circuits):
        out["circuits"].record({
            "circuit_id": cid, "name": f"Circuit {c}", "description": None if c % 2 else "cattle of MT",
            "owner_id": f"user-{c % users:06d}", "members": [{"member_id": f"user-{c % users:06d}", "role": "Owner"}],
            "permissions": {"require_approval": c % 2 == 0, "allow_public_visibility": True},
            "status": _variant(rng, "CircuitStatus", c), "created_timestamp": _ts(rng), "last_modified": _ts(rng),
            "alias_config": None, "adapter_config": {"adapter_type": "IpfsIpfs"} if c % 2 else None,
        })
    for a in range(5):
        out["adapters"].record({
            "config_id": _uuid(rng), "name": f"adapter {a}", "adapter_type": _variant(rng, "AdapterType", a),
            "connection_details": {"endpoint": f"https://adapter{a}.example", "timeout_ms": 30000},
            "is_active": True, "is_default": a == 0, "created_by": "user-000000", "created_at": _ts(rng),
            "updated_at": _ts(rng),
        })

    for n in range(items):
        dfid = dfid_for(n)
        quirk = n % QUIRK_EVERY == QUIRK_EVERY - 1
        q = (n // QUIRK_EVERY) % 8  # which quirk this time
        item = {
            "dfid": dfid, "item_hash": hashlib.md5(dfid.encode()).hexdigest(),  # noqa: S324 - a content tag
            "status": _variant(rng, "ItemStatus", n), "local_id": _uuid(rng) if n % 2 else None,
            "legacy_mode": n % 5 == 0, "identifiers": [{"key": "sisbov", "value": f"BR{n:010d}"}], "aliases": [],
            "fingerprint": None, "enriched_data": {"weight_kg": 300 + n % 250, "breed": "Nelore",
                                                  "big": 2**70 if n % 5000 == 7 else n},
            "creation_timestamp": _ts(rng), "last_modified": _ts(rng), "source_entries": [_uuid(rng)],
            "confidence_score": round(rng.random(), 3),
        }
        if quirk and q == 0:
            out["items"].line(orjson.dumps(item)[:-7], reason="invalid_json")  # cut mid-record
            continue
        if quirk and q == 1:
            out["items"].blank()
        if quirk and q == 2:
            item["status"] = {"Frozen": {"by": "auditor"}}  # a variant the enum does not declare: loads
        if quirk and q == 3:
            item["dfid"] = f"DFID-{n}"  # bad form
            out["items"].record(item)
            store.rows["items"] -= 1
            store.quarantined["invalid_value"] += 1
            continue
        if quirk and q == 4:
            item["status"] = ["Active"]  # wrong shape
            out["items"].record(item)
            store.rows["items"] -= 1
            store.quarantined["invalid_value"] += 1
            continue
        if quirk and q == 5:
            item["exported_by"] = "v2.3"  # unknown key: kept in extra
        out["items"].record(item, crlf=quirk and q == 6)
        if quirk and q == 7:
            out["items"].record(item)  # the same dfid again
            store.rows["items"] -= 1
            store.quarantined["duplicate_key"] += 1

        for j in range(1 + n % 2):
            out["enhanced_identifiers"].record({
                "dfid": dfid, "namespace": "bovino", "key": ["sisbov", "rfid"][j], "value": f"{j}{n:012d}",
                "id_type": _variant(rng, "IdentifierType", n + j), "verified": j == 0, "created_at": _ts(rng)})
        if n % 2 == 0:
            out["storage_history"].record({
                "dfid": dfid, "adapter_type": _variant(rng, "AdapterType", n // 2),
                "location": _variant(rng, "StorageLocation", n // 2), "stored_at": _ts(rng),
                "triggered_by": f"user-{n % users:06d}", "size_bytes": U64_EDGES[n % len(U64_EDGES)],
                "is_active": True})
            out["events"].record({
                "event_id": _uuid(rng), "dfid": dfid, "event_type": _variant(rng, "EventType", n // 2),
                "timestamp": _ts(rng), "source": f"user-{n % users:06d}", "metadata": {"n": n},
                "is_encrypted": False, "visibility": _variant(rng, "EventVisibility", n // 2),
                "content_hash": _sha256(n)})
        if n % 3 == 0:
            out["lid_dfid_mappings"].record({"local_id": _uuid(rng), "dfid": dfid, "workspace_id": f"ws-{n % 50}",
                                             "created_at": _ts(rng)})
        if n % 4 == 0:
            orphan = (n // 4) % QUIRK_EVERY == QUIRK_EVERY - 1  # a circuit item of an item that does not exist
            out["circuit_items"].record({
                "dfid": "DFID-20990101-000000-0000" if orphan else dfid, "circuit_id": circuits[n % len(circuits)],
                "permissions": ["read"], "added_by": f"user-{n % users:06d}", "added_at": _ts(rng)})
            if orphan:
                store.rows["circuit_items"] -= 1
                store.quarantined["orphan"] += 1
        if n % 10 == 0:
            receipt = _uuid(rng)
            out["receipts"].record({"id": receipt, "hash": _sha256(n), "timestamp": _ts(rng),
                                    "data_size": U64_EDGES[n % len(U64_EDGES)], "identifiers": []})
            out["data_lake_entries"].record({
                "entry_id": _uuid(rng), "receipt_id": receipt, "timestamp": _ts(rng), "identifiers": [],
                "data_hash": _sha256(n), "data_size": n, "status": _variant(rng, "ProcessingStatus", n // 10),
                "linked_dfid": dfid if n % 20 == 0 else None, "error_message": None})
            out["logs"].record({"timestamp": _ts(rng), "level": _variant(rng, "LogLevel", n // 10),
                                "engine": "items", "event_type": "created", "message": f"item {dfid} created",
                                "context": {"dfid": dfid}})
        if n % 20 == 0:
            out["activities"].record({
                "activity_id": _uuid(rng), "activity_type": _variant(rng, "ActivityType", n // 20),
                "circuit_id": circuits[n % len(circuits)], "circuit_name": "Circuit", "dfids": [dfid],
                "performed_by": f"user-{n % users:06d}", "status": _variant(rng, "ActivityStatus", n // 20),
                "details": {}, "timestamp": _ts(rng)})
            out["notifications"].record({
                "id": _uuid(rng), "user_id": f"user-{n % users:06d}",
                "notification_type": _variant(rng, "NotificationType", n // 20), "title": "Item pushed",
                "message": "Your item was pushed", "data": {"dfid": dfid} if n % 40 else None, "read": n % 3 == 0,
                "created_at": _ts(rng)})
            out["credit_transactions"].record({
                "transaction_id": _uuid(rng), "user_id": f"user-{n % users:06d}", "amount": -(n % 7) or 100,
                "transaction_type": _variant(rng, "TransactionType", n // 20),
                "balance_after": U64_EDGES[(n // 20) % len(U64_EDGES)], "description": None,
                "timestamp": _ts(rng), "metadata": None})
        if n % 100 == 0:
            out["circuit_operations"].record({
                "operation_id": _uuid(rng), "circuit_id": circuits[n % len(circuits)], "dfid": dfid,
                "operation_type": _variant(rng, "OperationType", n // 100), "requester_id": f"user-{n % users:06d}",
                "status": _variant(rng, "OperationStatus", n // 100), "created_at": _ts(rng),
                "completed_at": _ts(rng) if n % 200 else None, "metadata": {}})
    for writer in out.values():
        writer.close()
    return store
