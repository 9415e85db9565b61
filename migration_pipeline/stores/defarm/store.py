"""What is special about the defarm store: seventeen JSON Lines exports of a Rust service's engines.

`snapshot/<entity>.jsonl` (LEGACY_FORMATS section 4), one serde-serialized struct per line. Each
engine's fields are declared once below with their Rust types; the columns, the coercion of every
value and the README's type table all follow from those declarations (`sources.coerce`). One file
is one unit (read streaming, line by line); a line's number is its locator. The file's non-blank lines
are also counted by a pass that does not parse them (`sources.jsonl.count_lines`): reconciliation
takes that count as the source side of its table.

Duplicates and dangling references are the engine's job (core.ddl) after the load, from the unique
keys declared here and the foreign keys of sql/defarm/030_defarm.sql; this module turns lines into rows
and rejects what cannot become one. Unknown keys are kept in each table's `extra` jsonb.

What the report needs beyond rows and quarantine (timestamps that lost digits to the microsecond,
enum variants the service did not declare, blank lines) is counted while reading as the batch's notes
(`Batch.note`), which the engine lists as adjustments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from migration_pipeline.core.manifest import describe_file
from migration_pipeline.core.report import sql_section
from migration_pipeline.core.spec import (
    Batch,
    Column,
    Discovery,
    Generator,
    Note,
    ReadContext,
    SampleRecords,
    StoreSpec,
    TableSpec,
    Unit,
)
from migration_pipeline.sources import coerce
from migration_pipeline.sources.coerce import EnumValue, Invalid, Shape, Timestamp
from migration_pipeline.sources.files import discover_fixed_files
from migration_pipeline.sources.jsonl import JsonLines, count_lines
from migration_pipeline.sources.records import Reject
from migration_pipeline.stores import expectations as ex

SNAPSHOT_DIR = "snapshot"
BATCH_RECORDS = 5000
SEQ_SHIFT = 40  # a row's _seq: its file's position in ENGINES, then its line number (first of a key is kept)

# --- the Rust enums of the service (externally tagged; "data" variants carry a payload) ----------------------

ENUMS: dict[str, dict[str, Shape]] = {
    "ItemStatus": {"Active": "unit", "Deprecated": "unit", "Split": "unit", "Merged": "data", "MergedInto": "data"},
    "UserTier": {"Basic": "unit", "Professional": "unit", "Enterprise": "unit", "Admin": "unit"},
    "AccountStatus": {"Active": "unit", "PendingVerification": "unit", "Suspended": "data", "Deleted": "unit"},
    "CircuitStatus": {"Active": "unit", "Inactive": "unit", "Archived": "unit"},
    "IdentifierType": {"Canonical": "unit", "Contextual": "data"},
    "OperationType": {"Push": "unit", "Pull": "unit"},
    "OperationStatus": {"Pending": "unit", "Approved": "unit", "Completed": "unit", "Rejected": "data",
                        "Failed": "data"},
    "AdapterType": {"IpfsIpfs": "unit", "LocalLocal": "unit", "StellarTestnetIpfs": "unit",
                    "StellarMainnetIpfs": "unit", "Custom": "data"},
    "StorageLocation": {"IPFS": "data", "Stellar": "data", "Local": "data"},
    "LogLevel": {"Debug": "unit", "Info": "unit", "Warn": "unit", "Error": "unit"},
    "ProcessingStatus": {"Pending": "unit", "Processing": "unit", "Completed": "unit", "Failed": "unit",
                         "Conflicted": "unit"},
    "EventType": {"Created": "unit", "Enriched": "unit", "Merged": "unit", "Split": "unit", "PushedToCircuit": "unit",
                  "PulledFromCircuit": "unit", "Updated": "unit", "StatusChanged": "data"},
    "EventVisibility": {"Public": "unit", "Private": "unit", "CircuitOnly": "unit", "Direct": "unit"},
    "ActivityType": {"Push": "unit", "Pull": "unit", "Join": "unit", "Leave": "unit", "Create": "unit",
                     "Approve": "unit"},
    "ActivityStatus": {"Pending": "unit", "Completed": "unit", "Failed": "data"},
    "NotificationType": {"System": "unit", "ItemPushed": "data", "CircuitInvite": "data"},
    "TransactionType": {"Purchase": "unit", "Bonus": "unit", "Adjustment": "unit", "Usage": "data",
                        "Refund": "data"},
}

# The Rust types the declarations below use, by the name a declaration gives (Option<T> of any of them too).
_SCALARS: dict[str, Callable[[Any], Any]] = {
    "String": coerce.text, "Dfid": coerce.dfid, "bool": coerce.boolean, "i64": coerce.i64, "u32": coerce.u32,
    "u64": coerce.u64, "usize": coerce.u64, "f64": coerce.f64, "DateTime<Utc>": coerce.timestamp,
    "Uuid": coerce.uuid_text, "Vec<String>": coerce.string_list, "Vec<Record>": coerce.json_array,
    "HashMap": coerce.json_object, "Value": coerce.json_value,
}
_KINDS = {"String": "text", "Dfid": "text", "bool": "bool", "i64": "int", "u32": "int", "u64": "numeric",
          "usize": "numeric", "f64": "numeric", "DateTime<Utc>": "timestamptz", "Uuid": "uuid",
          "Vec<String>": "text[]", "Vec<Record>": "jsonb", "HashMap": "jsonb", "Value": "jsonb"}


@dataclass(frozen=True, slots=True)
class Field:
    """One serde field: its name (the column's), its Rust type, and whether it is secret."""

    name: str
    rust: str  # a key of _SCALARS or ENUMS, or Option<...> of one
    secret: bool = False

    @property
    def optional(self) -> bool:
        return self.rust.startswith("Option<")

    @property
    def base(self) -> str:
        return self.rust[len("Option<"):-1] if self.optional else self.rust

    @property
    def is_enum(self) -> bool:
        return self.base in ENUMS

    def columns(self) -> tuple[Column, ...]:
        if self.is_enum:
            return (Column(self.name, "text", secret=self.secret), Column(f"{self.name}_payload", "jsonb"))
        return (Column(self.name, _KINDS[self.base], secret=self.secret),)  # type: ignore[arg-type]


def _fields(spec: str, secrets: Sequence[str] = ()) -> tuple[Field, ...]:
    """'name:Type' items separated by spaces."""
    out = []
    for item in spec.split():
        name, rust = item.split(":", 1)
        field = Field(name, rust, secret=name in secrets)
        if field.base not in _SCALARS and field.base not in ENUMS:
            raise ValueError(f"field {name}: no coercer for Rust type {rust}")
        out.append(field)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    description: str
    fields: tuple[Field, ...]
    unique_keys: tuple[tuple[str, ...], ...] = ()
    references: tuple[tuple[str, str, str], ...] = ()  # (column, parent table, parent column), as in the DDL

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*(c for f in self.fields for c in f.columns()), Column("extra", "jsonb"))


# In load order: a table's parents before it (orphans are found against tables loaded earlier).
ENGINES: tuple[Engine, ...] = (
    Engine("users", "User accounts; password_hash moved as stored, never shown.", _fields(
        "user_id:String username:String email:String password_hash:String tier:UserTier status:AccountStatus"
        " is_admin:bool workspace_id:Option<String> credits:u64 available_adapters:Option<Vec<String>>"
        " created_at:DateTime<Utc> last_login:Option<DateTime<Utc>>", secrets=("password_hash",)),
        unique_keys=(("user_id",),)),
    Engine("items", "Items by DFID: status tag and payload, enriched data as it is.", _fields(
        "dfid:Dfid item_hash:String status:ItemStatus local_id:Option<Uuid> legacy_mode:bool"
        " identifiers:Vec<Record> aliases:Vec<Record> fingerprint:Option<String> enriched_data:HashMap"
        " creation_timestamp:DateTime<Utc> last_modified:DateTime<Utc> source_entries:Vec<Record>"
        " confidence_score:f64"),
        unique_keys=(("dfid",),)),
    Engine("circuits", "Circuits: members, permissions and configurations as they are.", _fields(
        "circuit_id:Uuid name:String description:Option<String> owner_id:String members:Vec<Record>"
        " permissions:HashMap status:CircuitStatus created_timestamp:DateTime<Utc> last_modified:DateTime<Utc>"
        " alias_config:Option<Value> adapter_config:Option<Value>"),
        unique_keys=(("circuit_id",),)),
    Engine("enhanced_identifiers", "An item's identifiers, one per (dfid, namespace, key).", _fields(
        "dfid:String namespace:String key:String value:String id_type:IdentifierType verified:bool"
        " created_at:DateTime<Utc>"),
        unique_keys=(("dfid", "namespace", "key"),), references=(("dfid", "items", "dfid"),)),
    Engine("circuit_items", "Which items are in which circuit, with their permissions.", _fields(
        "dfid:String circuit_id:Uuid permissions:Vec<String> added_by:String added_at:DateTime<Utc>"),
        references=(("dfid", "items", "dfid"), ("circuit_id", "circuits", "circuit_id"))),
    Engine("circuit_operations", "Push and pull operations on circuits.", _fields(
        "operation_id:Uuid circuit_id:Uuid dfid:String operation_type:OperationType requester_id:String"
        " status:OperationStatus created_at:DateTime<Utc> completed_at:Option<DateTime<Utc>> metadata:HashMap"),
        unique_keys=(("operation_id",),),
        references=(("circuit_id", "circuits", "circuit_id"), ("dfid", "items", "dfid"),
                    ("requester_id", "users", "user_id"))),
    Engine("adapters", "Storage adapter configurations.", _fields(
        "config_id:Uuid name:String adapter_type:AdapterType connection_details:Value is_active:bool"
        " is_default:bool created_by:String created_at:DateTime<Utc> updated_at:DateTime<Utc>"),
        unique_keys=(("config_id",),)),
    Engine("storage_history", "Where each item was stored: adapter, location tag and payload, size.", _fields(
        "dfid:String adapter_type:AdapterType location:StorageLocation stored_at:DateTime<Utc>"
        " triggered_by:String size_bytes:u64 is_active:bool"),
        references=(("dfid", "items", "dfid"),)),
    Engine("lid_dfid_mappings", "Local ids of a workspace mapped to DFIDs.", _fields(
        "local_id:Uuid dfid:String workspace_id:String created_at:DateTime<Utc>"),
        unique_keys=(("local_id", "workspace_id"),)),
    Engine("receipts", "Receipts of received data.", _fields(
        "id:Uuid hash:String timestamp:DateTime<Utc> data_size:usize identifiers:Vec<Record>"),
        unique_keys=(("id",),)),
    Engine("logs", "The engines' log records.", _fields(
        "timestamp:DateTime<Utc> level:LogLevel engine:String event_type:String message:String"
        " context:HashMap")),
    Engine("data_lake_entries", "The verification queue.", _fields(
        "entry_id:Uuid receipt_id:Uuid timestamp:DateTime<Utc> identifiers:Vec<Record> data_hash:String"
        " data_size:usize status:ProcessingStatus linked_dfid:Option<String> error_message:Option<String>"),
        unique_keys=(("entry_id",),)),
    Engine("events", "Item lifecycle events.", _fields(
        "event_id:Uuid dfid:String event_type:EventType timestamp:DateTime<Utc> source:String metadata:HashMap"
        " is_encrypted:bool visibility:EventVisibility content_hash:String"),
        unique_keys=(("event_id",),), references=(("dfid", "items", "dfid"),)),
    Engine("activities", "Circuit activities.", _fields(
        "activity_id:Uuid activity_type:ActivityType circuit_id:Uuid circuit_name:String dfids:Vec<String>"
        " performed_by:String status:ActivityStatus details:HashMap timestamp:DateTime<Utc>"),
        unique_keys=(("activity_id",),)),
    Engine("notifications", "User notifications.", _fields(
        "id:Uuid user_id:String notification_type:NotificationType title:String message:String data:Option<Value>"
        " read:bool created_at:DateTime<Utc>"),
        unique_keys=(("id",),)),
    Engine("api_keys", "API keys; the key hash and prefix moved as stored, never shown.", _fields(
        "id:Uuid user_id:String key_hash:String key_prefix:String name:String permissions:Vec<String>"
        " rate_limit_per_hour:u32 is_active:bool usage_count:u64 expires_at:Option<DateTime<Utc>>"
        " created_at:DateTime<Utc> last_used_at:Option<DateTime<Utc>>", secrets=("key_hash", "key_prefix")),
        unique_keys=(("id",),)),
    Engine("credit_transactions", "Credit movements: amount, type tag and payload, balance after (u64).", _fields(
        "transaction_id:Uuid user_id:String amount:i64 transaction_type:TransactionType balance_after:u64"
        " description:Option<String> timestamp:DateTime<Utc> metadata:Option<Value>"),
        unique_keys=(("transaction_id",),)),
)
ENGINE_NAMES = tuple(e.name for e in ENGINES)


def engine(name: str) -> Engine:
    return next(e for e in ENGINES if e.name == name)


# --- discovery ------------------------------------------------------------------------------------------------


def discover(store_dir: Path) -> Discovery:
    """One unit per present engine file, in load order; every other file under the store is unmapped."""
    return discover_fixed_files(store_dir, [f"{SNAPSHOT_DIR}/{e.name}.jsonl" for e in ENGINES],
                                lambda n, _: (n, ENGINES[n].name))


# --- a record → a row ---------------------------------------------------------------------------------------------


def _jsonb(value: Any) -> orjson.Fragment | None:
    """A jsonb value serialised once, its numbers exact (PostgreSQL keeps their digits too)."""
    return None if value is None else orjson.Fragment(coerce.dumps_exact(value))


_EMPTY = orjson.Fragment(b"{}")


def _field_reader(field: Field, table: str) -> Callable[[Any, Batch], Any]:
    """A function (value, batch) -> the column value(s) of `table`'s field, raising Reject."""
    name, optional = field.name, field.optional
    if field.is_enum:
        variants = ENUMS[field.base]
        unknown = Note(table, "unknown_enum_variant", f"{name}: values naming a variant the service's enum does not"
                       " declare, loaded as they are (tag and payload)")

        def read_enum(value: Any, batch: Batch) -> Any:
            if value is None:
                if optional:
                    return (None, None)
                raise Reject("missing_field", f"{name} is missing or null")
            out = coerce.tagged_enum(value, variants)
            if isinstance(out, Invalid):
                raise Reject(out.reason, f"{name} {out.message}")
            assert isinstance(out, EnumValue)
            if not out.known:
                batch.note(unknown)
            return (out.tag, _jsonb(out.payload))
        return read_enum

    convert = _SCALARS[field.base]
    if field.base == "DateTime<Utc>":
        rounded = Note(table, "timestamp_rounded", f"{name}: DateTime<Utc> values with digits below the microsecond,"
                       f" rounded half to even (each moved by at most {coerce.MAX_LOSS_NS} ns)")

        def read_timestamp(value: Any, batch: Batch) -> Any:
            if value is None:
                if optional:
                    return None
                raise Reject("missing_field", f"{name} is missing or null")
            out = coerce.timestamp(value)
            if isinstance(out, Invalid):
                raise Reject(out.reason, f"{name} {out.message}")
            assert isinstance(out, Timestamp)
            if out.lost_ns:
                batch.note(rounded)
            return out.value
        return read_timestamp

    as_jsonb = _KINDS[field.base] == "jsonb"

    def read_scalar(value: Any, batch: Batch) -> Any:
        if value is None:
            if optional:
                return None
            raise Reject("missing_field", f"{name} is missing or null")
        out = convert(value)
        if isinstance(out, Invalid):
            raise Reject(out.reason, f"{name} {out.message}")
        return _jsonb(out) if as_jsonb else out
    return read_scalar


class Normalizer:
    """Turns one engine's records into rows in its columns' order (built once per engine and process)."""

    __slots__ = ("engine", "_known", "_readers")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._readers = [(f.name, f.is_enum, _field_reader(f, engine.name)) for f in engine.fields]
        self._known = frozenset(f.name for f in engine.fields)

    def __call__(self, record: Mapping[str, Any], batch: Batch) -> tuple[Any, ...]:
        row: list[Any] = []
        for name, is_enum, read in self._readers:
            value = read(record.get(name), batch)
            if is_enum:
                row.extend(value)
            else:
                row.append(value)
        known = self._known
        row.append(_EMPTY if known.issuperset(record) else _jsonb({k: v for k, v in record.items() if k not in known}))
        return tuple(row)


_NORMALIZERS: dict[str, Normalizer] = {}


def normalizer(name: str) -> Normalizer:
    if name not in _NORMALIZERS:
        _NORMALIZERS[name] = Normalizer(engine(name))
    return _NORMALIZERS[name]


# --- reading a file -----------------------------------------------------------------------------------------------


def read_unit(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    """Stream one engine's file; yield a Batch every BATCH_RECORDS lines."""
    file_no, table = unit.payload
    relative = f"{SNAPSHOT_DIR}/{table}.jsonl"
    normalize = normalizer(table)
    batch = Batch()
    batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))  # first pass: size + sha256
    batch.counted[table] = count_lines(context.store_dir / relative)  # second pass, independent of the parser
    base = file_no << SEQ_SHIFT
    lines = JsonLines(context.store_dir / relative)
    pending = 0
    for line in lines:
        locator = line.locator
        if line.problem is not None:
            batch.quarantine(table, relative, locator, line.problem.reason, line.problem.message)
        elif not isinstance(line.value, dict):
            batch.quarantine(table, relative, locator, "not_an_object",
                             f"the line holds a JSON {coerce.json_type(line.value)}, not an object")
        else:
            try:
                row = normalize(line.value, batch)
            except Reject as exc:
                batch.quarantine(table, relative, locator, exc.reason, exc.message)
            else:
                batch.add_row(table, (*row, relative, locator, base + line.number))
        pending += 1
        if pending >= BATCH_RECORDS:
            yield batch
            batch = Batch()
            pending = 0
    if lines.blank_lines:
        batch.note(Note(table, "blank_line", "blank lines skipped in the file"), lines.blank_lines)
    yield batch


# --- samples and generator ------------------------------------------------------------------------------------------


def write_snapshot(store_dir: Path, records: Mapping[str, Sequence[bytes]]) -> None:
    """Each entity's records as lines of `snapshot/<entity>.jsonl`."""
    folder = store_dir / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for entity, texts in records.items():
        (folder / f"{entity}.jsonl").write_bytes(b"".join(t + b"\n" for t in texts))


DFID = "DFID-20251011-000001-A1B2"
USER = "user-0001"
CIRCUIT = "5d1c6a8e-2f3b-4c7d-9e0f-1a2b3c4d5e6f"
VALID: dict[str, dict[str, Any]] = {
    "users": {"user_id": USER, "username": "ana", "email": "ana@example.com",
              "password_hash": "$2b$12$abcdefghijklmnopqrstuvCdefghijklmnopqrstuvwxyzABCDEF",
              "tier": "Professional", "status": "Active", "is_admin": False, "workspace_id": "ws-1",
              "credits": 18446744073709551615, "available_adapters": ["IpfsIpfs"],
              "created_at": "2025-10-11T12:00:00.123456789Z", "last_login": None},
    "items": {"dfid": DFID, "item_hash": "9f86d081884c7d659a2feaa0c55ad015", "status": {"Merged": {"into": DFID}},
              "local_id": "0b6f3f8e-9d2c-4c1a-8e7b-6a5d4c3b2a19", "legacy_mode": False,
              "identifiers": [{"key": "sisbov", "value": "BR123"}], "aliases": [], "fingerprint": None,
              "enriched_data": {"weight_kg": 412.5, "tags": ["a"]}, "creation_timestamp": "2025-10-11T12:00:00Z",
              "last_modified": "2025-10-11T12:00:01.5+00:00", "source_entries": [], "confidence_score": 0.95},
    "circuits": {"circuit_id": CIRCUIT, "name": "Cattle MT", "description": None, "owner_id": USER,
                 "members": [{"member_id": USER, "role": "Owner"}], "permissions": {"require_approval": True},
                 "status": "Active", "created_timestamp": "2025-10-11T12:00:00Z",
                 "last_modified": "2025-10-11T12:00:00Z", "alias_config": None, "adapter_config": {"a": 1}},
    "enhanced_identifiers": {"dfid": DFID, "namespace": "bovino", "key": "sisbov", "value": "BR123",
                             "id_type": {"Contextual": {"scope": "MT"}}, "verified": True,
                             "created_at": "2025-10-11T12:00:00Z"},
    "circuit_items": {"dfid": DFID, "circuit_id": CIRCUIT, "permissions": ["read"], "added_by": USER,
                      "added_at": "2025-10-11T12:00:00Z"},
    "circuit_operations": {"operation_id": "7e57d004-2b97-4e7a-b45f-5387367791cd", "circuit_id": CIRCUIT,
                           "dfid": DFID, "operation_type": "Push", "requester_id": USER,
                           "status": {"Rejected": {"reason": "duplicate"}}, "created_at": "2025-10-11T12:00:00Z",
                           "completed_at": None, "metadata": {}},
    "adapters": {"config_id": "a0000000-0000-4000-8000-000000000001", "name": "IPFS", "adapter_type": "IpfsIpfs",
                 "connection_details": {"endpoint": "https://ipfs.example"}, "is_active": True, "is_default": True,
                 "created_by": USER, "created_at": "2025-10-11T12:00:00Z", "updated_at": "2025-10-11T12:00:00Z"},
    "storage_history": {"dfid": DFID, "adapter_type": {"Custom": "s3"},
                        "location": {"IPFS": {"cid": "bafybeigdyrzt5", "pinned": True}},
                        "stored_at": "2025-10-11T12:00:00Z", "triggered_by": USER, "size_bytes": 0,
                        "is_active": True},
    "lid_dfid_mappings": {"local_id": "0b6f3f8e-9d2c-4c1a-8e7b-6a5d4c3b2a19", "dfid": DFID, "workspace_id": "ws-1",
                          "created_at": "2025-10-11T12:00:00Z"},
    "receipts": {"id": "b0000000-0000-4000-8000-000000000001", "hash": "abc",
                 "timestamp": "2025-10-11T12:00:00Z", "data_size": 1024, "identifiers": []},
    "logs": {"timestamp": "2025-10-11T12:00:00Z", "level": "Info", "engine": "items", "event_type": "created",
             "message": "item created", "context": {"dfid": DFID}},
    "data_lake_entries": {"entry_id": "c0000000-0000-4000-8000-000000000001",
                          "receipt_id": "b0000000-0000-4000-8000-000000000001", "timestamp": "2025-10-11T12:00:00Z",
                          "identifiers": [], "data_hash": "abc", "data_size": 1024, "status": "Completed",
                          "linked_dfid": DFID, "error_message": None},
    "events": {"event_id": "e0000000-0000-4000-8000-000000000001", "dfid": DFID, "event_type": "Created",
               "timestamp": "2025-10-11T12:00:00Z", "source": USER, "metadata": {}, "is_encrypted": False,
               "visibility": "Public", "content_hash": "abc"},
    "activities": {"activity_id": "d0000000-0000-4000-8000-000000000001", "activity_type": "Push",
                   "circuit_id": CIRCUIT, "circuit_name": "Cattle MT", "dfids": [DFID], "performed_by": USER,
                   "status": "Completed", "details": {}, "timestamp": "2025-10-11T12:00:00Z"},
    "notifications": {"id": "f0000000-0000-4000-8000-000000000001", "user_id": USER,
                      "notification_type": {"ItemPushed": {"dfid": DFID}}, "title": "Pushed", "message": "done",
                      "data": None, "read": False, "created_at": "2025-10-11T12:00:00Z"},
    "api_keys": {"id": "a1000000-0000-4000-8000-000000000001", "user_id": USER,
                 "key_hash": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                 "key_prefix": "dfm_live_ab12", "name": "ci", "permissions": ["read"],
                 "rate_limit_per_hour": 4294967295, "is_active": True, "usage_count": 0, "expires_at": None,
                 "created_at": "2025-10-11T12:00:00Z", "last_used_at": None},
    "credit_transactions": {"transaction_id": "a2000000-0000-4000-8000-000000000001", "user_id": USER,
                            "amount": -5, "transaction_type": {"Usage": {"operation": "push"}},
                            "balance_after": 18446744073709551610, "description": None,
                            "timestamp": "2025-10-11T12:00:00Z", "metadata": None},
}

DEFARM_SAMPLES = SampleRecords(valid=VALID, write=write_snapshot)


def _generate(out: Path, sizes: Mapping[str, int], seed: int, secret: str | None) -> str:
    from migration_pipeline.stores.defarm.generate import generate_defarm_store

    made = generate_defarm_store(out, items=sizes["items"], seed=seed)
    return f"wrote {made.lines} lines ({made.items} items) in {made.files} files under {made.store_dir}"


DEFARM_GENERATOR = Generator(
    run=_generate,
    options={"items": ("items to generate (their identifiers, history, events and the other engines in proportion)",
                       None)},
)


# --- the spec ----------------------------------------------------------------------------------------------------


def _expectations(e: Engine) -> tuple[Any, ...]:
    out: list[Any] = [ex.rows(e.name)]
    required = [c.name for f in e.fields if not f.optional for c in f.columns()[:1]]
    out += ex.not_null(*required, "extra")
    for key in e.unique_keys:
        out += ex.unique(*key) if len(key) == 1 else (ex.compound_unique(key),)
    for f in e.fields:
        if f.is_enum and all(shape == "unit" for shape in ENUMS[f.base].values()):
            out.append(ex.unexpected_rows(f"{f.name}: a unit-only enum carries no payload",
                                          f"SELECT {f.name} FROM {{batch}} WHERE {f.name}_payload IS NOT NULL"))
    for column, parent, parent_column in e.references:
        out.append(ex.orphans(column, parent, parent_column))
    if e.name == "items":
        out.append(ex.matches("dfid", "^DFID-[0-9]+-[0-9]+-[0-9A-Z]+$"))
    return tuple(out)


DEFARM_STORE = StoreSpec(
    name="defarm",
    description="DeFarm engines' JSON Lines snapshot of an in-memory Rust service (seed 004).",
    folder="defarm",
    tables=tuple(
        TableSpec(name=e.name, description=e.description, columns=e.columns, unique_keys=e.unique_keys,
                  expectations=_expectations(e))
        for e in ENGINES
    ),
    discover=discover,
    read_unit=read_unit,
    parallel=True,
    source_files=tuple(f"{SNAPSHOT_DIR}/{name}.jsonl" for name in ENGINE_NAMES),
    samples=DEFARM_SAMPLES,
    generator=DEFARM_GENERATOR,
    report_sections=(sql_section(
        "Type-mapping notes", "What the Rust types' mapping counted while reading (recorded as notes, then as"
        " adjustments): timestamps rounded to the microsecond, enum variants the service does not declare, blank"
        " lines skipped.",
        ("note", "table", "field", "values"),
        """SELECT reason, table_name, CASE WHEN reason = 'blank_line' THEN '' ELSE split_part(message, ':', 1) END,
                  sum(rows_changed)::bigint
           FROM migration.adjustments WHERE store = %(store)s AND plan_id = %(plan_id)s
             AND reason IN ('timestamp_rounded', 'unknown_enum_variant', 'blank_line')
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""),),
)
