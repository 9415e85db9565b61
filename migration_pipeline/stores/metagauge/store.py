"""What is special about the metagauge store: five JSON arrays, legacy ids, nested objects.

`data/{users,contracts,analyses,chat_sessions,chat_messages}.json` (LEGACY_FORMATS section 2), each
one top-level JSON array rewritten whole by the Node app. Every file is one unit, read streaming
element by element by `sources.json_array` (files can be hundreds of MB), in parent-before-child order;
an element that is not valid JSON is quarantined with its index and the rest of the file loads. The
file's elements are also counted by an independent pass (`sources.json_count`): reconciliation takes
that count as the source side of its table. Duplicates, CHECK violations and dangling references are
the engine's job (core.ddl) after the load.

This module holds the store's layout, its tables and its spec; a record becomes rows in `normalize`,
each field converted by `fields`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from migration_pipeline.core.manifest import describe_file
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
from migration_pipeline.sources.files import discover_fixed_files
from migration_pipeline.sources.json_array import read_json_array
from migration_pipeline.sources.json_count import count_items
from migration_pipeline.sources.records import FileRows
from migration_pipeline.stores import expectations as ex

# The field converters and ids, as tests and tools reach them through the store.
from migration_pipeline.stores.metagauge.fields import NAMESPACE as NAMESPACE
from migration_pipeline.stores.metagauge.fields import _int as _int
from migration_pipeline.stores.metagauge.fields import _Json, _Reject
from migration_pipeline.stores.metagauge.fields import _json_text as _json_text
from migration_pipeline.stores.metagauge.fields import _key as _key
from migration_pipeline.stores.metagauge.fields import _numeric as _numeric
from migration_pipeline.stores.metagauge.fields import child_uuid as child_uuid
from migration_pipeline.stores.metagauge.fields import legacy_uuid as legacy_uuid
from migration_pipeline.stores.metagauge.normalize import ANALYSIS_TYPES, NORMALIZERS, ROLES, STATUSES, TIERS

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
    return discover_fixed_files(store_dir, [rel for _, rel in FILES], lambda n, rel: (n, FILES[n][0], rel))


# --- reading a file -----------------------------------------------------------------------------------------


def read_unit(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    """Stream one file's top-level array; yield a Batch every BATCH_RECORDS records (or BATCH_BYTES of JSON)."""
    file_no, table, relative = unit.payload
    normalize = NORMALIZERS[table]
    path = context.store_dir / relative
    batch = Batch()
    batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))  # first pass: size + sha256
    batch.counted[table] = count_items(path)  # second pass, independent of the reader below
    rows = FileRows(batch, relative, file_no << SEQ_SHIFT)
    js = _Json()
    pending = 0
    for element in read_json_array(path):
        record, locator = element.value, element.locator
        if element.reason is not None:
            rows.reject(table, locator, element.reason, element.message)
        elif not isinstance(record, dict):
            rows.reject(table, locator, "not_an_object",
                        f"the record is a JSON {type(record).__name__}, not an object")
        else:
            try:
                normalize(record, locator, rows.emit, rows.reject, js)
            except _Reject as exc:
                rows.reject(table, locator, exc.reason, exc.message)
        pending += 1
        if pending >= BATCH_RECORDS or js.bytes >= BATCH_BYTES:
            yield batch
            batch = rows.batch = Batch()
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
