"""What is special about the Pend store (seed 002, LEGACY_FORMATS section 3).

`wallet-db.json` (users with their profile and investments), `admin-assets.json`, `admin-logs.json`,
`explorer-data/<YYYY-MM-DD>/<chain>.json` (one unit per file, partitioned by its day) and
`uploads/kyc/<address>/` (one unit per folder: application.json and its documents, the documents read and
loaded one at a time so that memory stays flat whatever their number and size).

Records become rows in `normalize.py`; duplicates, orphans and CHECKs are the engine's (core.ddl), from the
keys and foreign keys of sql/pend/001_pend.sql. Addresses are matched case-insensitively through generated
lower-case key columns and stored as given.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path

from migration_pipeline.core.manifest import describe_file, read_unless_larger, recorded_path, walk_files
from migration_pipeline.core.report import sql_section
from migration_pipeline.core.serving import Lookup, serving_gate
from migration_pipeline.core.spec import (
    Batch,
    Column,
    Discovery,
    Generator,
    ManifestEntry,
    Partitioning,
    ReadContext,
    SampleRecords,
    StoreSpec,
    TableSpec,
    Unit,
)
from migration_pipeline.sources.json_array import JsonRejected
from migration_pipeline.sources.json_count import count_items
from migration_pipeline.sources.records import FileRows
from migration_pipeline.stores import expectations as ex
from migration_pipeline.stores.pend import normalize as nz
from migration_pipeline.stores.pend.readers import Item, loads_exact, read_array, read_users

WALLET_DB = "wallet-db.json"
ADMIN_FILES = {"admin-assets.json": "assets", "admin-logs.json": "admin_logs"}
EXPLORER = "explorer-data"
KYC = "uploads/kyc"
APPLICATION = "application.json"
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
CHAIN_FILE = re.compile(r"([a-z0-9][a-z0-9-]{0,62})\.json", re.ASCII)
# Unit numbers by kind: wallet-db 0, admin files 1-2, explorer files from 10_000, KYC folders from 10_000_000.
EXPLORER_UNITS = 10_000
KYC_UNITS = 10_000_000
# KYC folders are small (an application and a few documents): a unit of one folder cost a transaction and a
# COPY per table for a few kilobytes (5,000 folders staged at 130 rows/s). A unit takes this many folders, and
# its documents go to COPY in batches of up to KYC_BATCH_BYTES, so memory stays bounded however many there are.
KYC_FOLDERS_PER_UNIT = 100
KYC_BATCH_BYTES = 8 << 20
SEQ_SHIFT = 32  # a row's _seq is (unit number << SEQ_SHIFT) + its position: first-kept order is file order
# A KYC document larger than this is quarantined `too_large`, not loaded (it is still hashed and archived).
# PEND_KYC_MAX_BYTES overrides it at run time: a COPY holds one document, as hex, twice, at a time.
DEFAULT_KYC_MAX_BYTES = 16 * 2**20
MAX_APPLICATION_BYTES = 2**20
BATCH_RECORDS = 2000


def _cols(spec: str) -> tuple[Column, ...]:
    """'name:kind' items; a trailing '!' marks a secret (PII) column."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name, kind.rstrip("!"), secret=kind.endswith("!")))  # type: ignore[arg-type]
    return tuple(out)


ASSET_COLUMNS = _cols("id:text name:text symbol:text asset_type:text description:text target_raise:numeric"
                      " min_investment:numeric apy:numeric status:text token_address:text created_at:timestamptz"
                      " updated_at:timestamptz extra:jsonb")
USER_COLUMNS = _cols("address:text email:text! name:text! role:text kyc_status:text created_at:timestamptz"
                     " last_login:timestamptz extra:jsonb")
PROFILE_COLUMNS = _cols("user_id:text display_name:text avatar_url:text country:text risk_profile:text extra:jsonb")
INVESTMENT_COLUMNS = _cols("id:text user_id:text asset_id:text amount:numeric tx_hash:text status:text"
                           " timestamp:timestamptz extra:jsonb")
LOG_COLUMNS = _cols("id:text admin_address:text action:text target_type:text target_id:text details:jsonb"
                    " ip:text! timestamp:timestamptz extra:jsonb")
EVENT_COLUMNS = _cols("day:date chain:text tx_hash:text log_index:int block_number:int block_timestamp:timestamptz"
                      " contract_address:text event_name:text from_address:text to_address:text value:numeric"
                      " asset_id:text args:jsonb extra:jsonb")
APPLICATION_COLUMNS = _cols("address:text full_name:text! date_of_birth:date! country:text document_type:text"
                            " document_number:text! status:text submitted_at:timestamptz reviewed_at:timestamptz"
                            " reviewed_by:text rejection_reason:text extra:jsonb")
DOCUMENT_COLUMNS = _cols("address:text file_name:text content_type:text extension_matches:bool size_bytes:int"
                         " sha256:text content:bytea!")


# --- discovery ---------------------------------------------------------------------------------------------


def _day(name: str) -> bool:
    if not DAY.fullmatch(name):
        return False
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return True


def discover(store_dir: Path) -> Discovery:
    """A unit per mapped file (per KYC folder); every other file, and every symbolic link, is unmapped."""
    everything = walk_files(store_dir) if store_dir.is_dir() and not store_dir.is_symlink() else []
    units: list[Unit] = []
    unmapped: list[str] = []
    explorer: list[tuple[str, str, str]] = []
    kyc: dict[str, list[str]] = {}
    digest = hashlib.sha256(f"units of {KYC_FOLDERS_PER_UNIT} KYC folders\n".encode())  # a new layout: no resume
    for rel in everything:
        st = os.lstat(store_dir / rel)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        if os.path.islink(store_dir / rel) or recorded_path(rel) != rel:
            # A link is never read through; a name that is not UTF-8 cannot be a key or an address: both are
            # listed (the manifest records such a name with its bytes escaped), never loaded.
            unmapped.append(rel)
            continue
        parts = rel.split("/")
        if rel == WALLET_DB:
            units.append(Unit(0, ("users", rel)))
        elif len(parts) == 1 and rel in ADMIN_FILES:
            units.append(Unit(1 + list(ADMIN_FILES).index(rel), (ADMIN_FILES[rel], rel)))
        elif len(parts) == 3 and parts[0] == EXPLORER and _day(parts[1]) and CHAIN_FILE.fullmatch(parts[2]):
            explorer.append((parts[1], parts[2][: -len(".json")], rel))
        elif len(parts) == 4 and "/".join(parts[:2]) == KYC:
            kyc.setdefault(parts[2], []).append(parts[3])
        else:
            unmapped.append(rel)
    for n, (day, chain, rel) in enumerate(sorted(explorer)):
        units.append(Unit(EXPLORER_UNITS + n, ("blockchain_events", rel, day, chain), partition=day))
    folders = sorted(kyc)
    for n, start in enumerate(range(0, len(folders), KYC_FOLDERS_PER_UNIT)):
        group = tuple((folder, tuple(sorted(kyc[folder]))) for folder in folders[start:start + KYC_FOLDERS_PER_UNIT])
        units.append(Unit(KYC_UNITS + n, ("kyc", group)))
    units.sort(key=lambda u: u.number)
    return Discovery(units=tuple(units), unmapped=tuple(sorted(unmapped)), fingerprint=digest.hexdigest())


def days(store_dir: Path) -> list[str]:
    """The explorer days present (folder names that are dates), sorted: the store's dynamic partitions."""
    explorer = store_dir / EXPLORER
    if not explorer.is_dir() or explorer.is_symlink():
        return []
    return sorted(e.name for e in os.scandir(explorer) if e.is_dir(follow_symlinks=False) and _day(e.name))


# --- reading ------------------------------------------------------------------------------------------------


def kyc_max_bytes() -> int:
    value = os.environ.get("PEND_KYC_MAX_BYTES", "")
    return int(value) if value.isdigit() else DEFAULT_KYC_MAX_BYTES


def read_unit(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    kind = unit.payload[0]
    if kind == "kyc":
        yield from _read_kyc(unit, context)
    else:
        yield from _read_records(unit, context)


def _read_records(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    kind, relative = unit.payload[0], unit.payload[1]
    table = "users" if kind == "users" else kind
    batch = Batch()
    batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))
    rows = FileRows(batch, relative, unit.number << SEQ_SHIFT)
    emit, refuse = rows.emit, rows.reject
    unknown: dict[str, list[str]] = {t.name: [] for t in PEND_TABLES}

    path = context.store_dir / relative
    items: Iterator[Item]
    if kind == "users":
        items = read_users(path)
    else:
        items = read_array(path)
        batch.counted[table] = count_items(path)  # a second pass, independent of the reader: the source side
    if kind == "blockchain_events":
        file_day, chain = date.fromisoformat(unit.payload[2]), unit.payload[3]
    pending = 0
    for item in items:
        if item.reason is not None:
            refuse(table, item.locator, item.reason, item.message)
            continue
        try:
            if kind == "users":
                key, record = item.value
                nz.user(key, record, item.locator, emit, refuse, unknown)
            elif kind == "assets":
                emit("assets", nz.asset(item.value, unknown["assets"]), item.locator)
            elif kind == "admin_logs":
                emit("admin_logs", nz.admin_log(item.value, unknown["admin_logs"]), item.locator)
            else:
                emit("blockchain_events", nz.event(item.value, file_day, chain, unknown["blockchain_events"]),
                     item.locator)
        except nz.Reject as exc:
            refuse(table, item.locator, exc.reason, exc.message)
        pending += 1
        if pending >= BATCH_RECORDS:
            _count_unknown(batch, unknown)
            yield batch
            batch = rows.batch = Batch()
            pending = 0
    _count_unknown(batch, unknown)
    yield batch


def _count_unknown(batch: Batch, unknown: dict[str, list[str]]) -> None:
    for table, names in unknown.items():
        batch.count_unmapped(table, names)
        names.clear()


def _read_kyc(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    """The unit's folders in order: each application.json, then its documents, in batches of up to
    KYC_BATCH_BYTES of document bytes (a document larger than that is a batch of its own)."""
    _, folders = unit.payload
    seq = unit.number << SEQ_SHIFT
    cap = kyc_max_bytes()
    batch, held = Batch(), 0
    for folder, names in folders:
        seq = _read_application(context, folder, names, batch, seq)
        for name in (n for n in names if n != APPLICATION and APPLICATION in names):
            seq, size = _read_document(context, folder, name, cap, batch, seq)
            held += size
            if held >= KYC_BATCH_BYTES:
                yield batch
                batch, held = Batch(), 0
    yield batch


def _read_application(context: ReadContext, folder: str, names: tuple[str, ...], batch: Batch, seq: int) -> int:
    """The folder's application row (or, without application.json, every document quarantined); the next seq."""
    base = f"{KYC}/{folder}"
    documents = [n for n in names if n != APPLICATION]
    if APPLICATION not in names:
        batch.quarantine("kyc_applications", base, "folder", "missing_application",
                         f"the KYC folder has no {APPLICATION}: none of its documents ({len(documents)}) is loaded")
        for name in documents:
            batch.manifest.append(describe_file(context.store_dir, f"{base}/{name}", mapped=True))
            batch.quarantine("kyc_documents", f"{base}/{name}", "file", "missing_application",
                             f"its folder has no {APPLICATION}")
        return seq
    unknown: list[str] = []
    relative = f"{base}/{APPLICATION}"
    data = _read_small(context, relative, "kyc_applications", batch)
    if data is not None:
        try:
            record = loads_exact(data)
        except JsonRejected as exc:
            batch.quarantine("kyc_applications", relative, "file", exc.reason, exc.message)
        else:
            try:
                seq += 1
                row = nz.application(record, nz.address(folder, "the folder name"), unknown)
                batch.add_row("kyc_applications", (*row, relative, "file", seq))
            except nz.Reject as exc:
                batch.quarantine("kyc_applications", relative, "file", exc.reason, exc.message)
    batch.count_unmapped("kyc_applications", unknown)
    return seq


def _read_document(context: ReadContext, folder: str, name: str, cap: int, batch: Batch,
                   seq: int) -> tuple[int, int]:
    """One document into the batch (a row, or a quarantine row); the next seq and the bytes now held."""
    relative = f"{KYC}/{folder}/{name}"
    try:
        content, stat = read_unless_larger(str(context.store_dir / relative), cap)
    except OSError as exc:
        batch.manifest.append(ManifestEntry(relative, 0, "", True, None))
        batch.quarantine("kyc_documents", relative, "file", "unreadable_file", f"cannot read the file ({exc.strerror})")
        return seq, 0
    if content is None:  # hashed a block at a time for the manifest, never held
        batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))
        batch.quarantine("kyc_documents", relative, "file", "too_large",
                         f"the document is {stat.st_size} bytes, over the {cap} a KYC document may have"
                         " (PEND_KYC_MAX_BYTES)")
        return seq, 0
    sha256 = hashlib.sha256(content).hexdigest()
    batch.manifest.append(ManifestEntry(relative, len(content), sha256, True, stat.st_mtime_ns))
    try:
        name_text = nz.text(name, "the file name")
    except nz.Reject as exc:
        batch.quarantine("kyc_documents", relative, "file", exc.reason, exc.message)
        return seq, 0
    seq += 1
    sniffed = nz.sniff(content[:16])
    batch.add_row("kyc_documents", (folder, name_text, sniffed, nz.type_of_name(name) == sniffed, len(content), sha256,
                                    content, relative, "file", seq))
    return seq, len(content)


def _read_small(context: ReadContext, relative: str, table: str, batch: Batch) -> bytes | None:
    try:
        data, stat = read_unless_larger(str(context.store_dir / relative), MAX_APPLICATION_BYTES)
    except OSError as exc:
        batch.manifest.append(ManifestEntry(relative, 0, "", True, None))
        batch.quarantine(table, relative, "file", "unreadable_file", f"cannot read the file ({exc.strerror})")
        return None
    if data is None:
        batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))
        batch.quarantine(table, relative, "file", "file_too_large",
                         f"the file is {stat.st_size} bytes, over the {MAX_APPLICATION_BYTES} it may have")
        return None
    batch.manifest.append(ManifestEntry(relative, len(data), hashlib.sha256(data).hexdigest(), True,
                                        stat.st_mtime_ns))
    return data


# --- samples for property tests and the generator --------------------------------------------------------------

ADDRESS_PLACEHOLDER = "<address of the record>"
ID_PLACEHOLDER = "<id of the record>"


def _address_of(position: int) -> str:
    return f"0x{0xA0 + position:040x}"


def _write_samples(store_dir: Path, records: Mapping[str, Sequence[bytes]]) -> None:
    """Each entity's records where the store keeps them; placeholders become the record's position's address
    or id, so that valid records do not collide and references between them hold."""

    def fill(text: bytes, position: int) -> bytes:
        return text.replace(f'"{ADDRESS_PLACEHOLDER}"'.encode(), f'"{_address_of(position)}"'.encode()).replace(
            f'"{ID_PLACEHOLDER}"'.encode(), f'"id-{position}"'.encode())

    store_dir.mkdir(parents=True, exist_ok=True)
    users = records.get("users", ())
    members = b",".join(f'"{_address_of(i)}":'.encode() + fill(t, i) for i, t in enumerate(users))
    (store_dir / WALLET_DB).write_bytes(b'{"users":{' + members + b"}}")
    for file, entity in ADMIN_FILES.items():
        (store_dir / file).write_bytes(b"[" + b",".join(fill(t, i) for i, t in enumerate(records.get(entity, ()))) + b"]")
    day_dir = store_dir / EXPLORER / "2024-03-01"
    day_dir.mkdir(parents=True, exist_ok=True)
    events = records.get("blockchain_events", ())
    (day_dir / "ethereum.json").write_bytes(b"[" + b",".join(fill(t, i) for i, t in enumerate(events)) + b"]")
    for i, text in enumerate(records.get("kyc_applications", ())):
        folder = store_dir / KYC / _address_of(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / APPLICATION).write_bytes(fill(text, i))
        (folder / "id.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))


PEND_SAMPLES = SampleRecords(
    valid={
        "users": {"address": ADDRESS_PLACEHOLDER, "email": "ada@example.com", "name": "Ada Lovelace",
                  "role": "investor", "createdAt": "2024-01-05T10:00:00Z", "lastLogin": "2024-03-01T08:30:00Z",
                  "kycStatus": "approved",
                  "profile": {"displayName": "ada", "avatarUrl": "https://cdn.example/ada.png", "country": "GB",
                              "riskProfile": "balanced"},
                  "investments": [{"id": ID_PLACEHOLDER, "assetId": "id-0", "amount": "1000.000000000000000001",
                                   "txHash": "0x" + "ab" * 32, "status": "confirmed",
                                   "timestamp": "2024-02-01T12:00:00Z"}]},
        "assets": {"id": ID_PLACEHOLDER, "name": "Solar Fund", "symbol": "SOL1", "assetType": "fund",
                   "description": "A fund", "targetRaise": "5000000", "minInvestment": 100, "apy": 7.25,
                   "status": "active", "tokenAddress": "0x" + "cd" * 20, "createdAt": "2024-01-01T00:00:00Z",
                   "updatedAt": "2024-01-02T00:00:00Z"},
        "admin_logs": {"id": ID_PLACEHOLDER, "adminAddress": "0x" + "ef" * 20, "action": "approve_kyc",
                       "targetType": "user", "targetId": "u1", "details": {"note": "ok", "score": 0.97},
                       "ip": "203.0.113.7", "timestamp": "2024-03-01T09:00:00Z"},
        "blockchain_events": {"txHash": ID_PLACEHOLDER, "logIndex": 0, "blockNumber": 19000000,
                              "blockTimestamp": 1709251200, "chain": "ethereum",
                              "contractAddress": "0x" + "12" * 20, "eventName": "Transfer", "from": "0x" + "34" * 20,
                              "to": "0x" + "56" * 20, "value": "123456789012345678901234567890", "assetId": "id-0",
                              "args": {"amount": "1"}},
        "kyc_applications": {"address": ADDRESS_PLACEHOLDER, "fullName": "Ada Lovelace", "dateOfBirth": "1815-12-10",
                             "country": "GB", "documentType": "passport", "documentNumber": "P1234567",
                             "status": "approved", "submittedAt": "2024-02-01T00:00:00Z",
                             "reviewedAt": "2024-02-02T00:00:00Z", "reviewedBy": "admin",
                             "rejectionReason": None},
    },
    write=_write_samples,
)


def _generate(out: Path, sizes: Mapping[str, int], seed: int, secret: str | None) -> str:
    from migration_pipeline.stores.pend.generate import generate_pend_store

    made = generate_pend_store(out, users=sizes["users"], days=sizes["days"], seed=seed,
                               document_kib=sizes["document_kib"])
    return made.describe()


PEND_GENERATOR = Generator(
    run=_generate,
    options={"users": ("users to generate (with profiles, investments and KYC folders, some quirky)", None),
             "days": ("explorer days to generate (several chains each)", 7),
             "document_kib": ("average size of a KYC document in KiB (three per folder, half the users)", 96)},
)


# --- the spec ---------------------------------------------------------------------------------------------------

PEND_TABLES: tuple[TableSpec, ...] = (
    TableSpec("assets", "One row per entry of admin-assets.json; amounts exact numeric.", ASSET_COLUMNS,
              unique_keys=(("id",),),
              expectations=(ex.rows("assets"), *ex.not_null("id", "extra"), *ex.unique("id"))),
    TableSpec("users", "One row per member of wallet-db.json's users (keyed by address, case-insensitively).",
              USER_COLUMNS, unique_keys=(("address_key",),),
              expectations=(ex.rows("users"), *ex.not_null("address", "extra"), *ex.hex_digits("address", "0x", 40),
                            ex.in_set("kyc_status", list(nz.KYC_STATUSES)))),
    TableSpec("user_profiles", "A user's profile object, one row per user.", PROFILE_COLUMNS,
              unique_keys=(("user_key",),),
              expectations=(ex.rows("user_profiles"), *ex.not_null("user_id", "extra"))),
    TableSpec("investments", "One row per entry of a user's investments; amount exact numeric.", INVESTMENT_COLUMNS,
              unique_keys=(("id",),),
              expectations=(ex.rows("investments"), *ex.not_null("id", "user_id", "amount"), *ex.unique("id"),
                            ex.orphans("asset_id", "assets", "id"))),
    TableSpec("admin_logs", "One row per entry of admin-logs.json (the admin audit trail).", LOG_COLUMNS,
              unique_keys=(("id",),),
              expectations=(ex.rows("admin_logs"), *ex.not_null("id", "extra"), *ex.unique("id"))),
    TableSpec("blockchain_events", "One row per explorer event; day from its folder; wei exact numeric(78,0).",
              EVENT_COLUMNS, unique_keys=(("chain", "tx_hash", "log_index"),),
              expectations=(ex.rows("blockchain_events"), *ex.not_null("day", "chain", "tx_hash", "log_index"),
                            ex.compound_unique(["chain", "tx_hash", "log_index"]), ex.between("value", min_value=0))),
    TableSpec("kyc_applications", "One row per uploads/kyc/<address>/application.json (PII stays here).",
              APPLICATION_COLUMNS, unique_keys=(("address_key",),),
              expectations=(ex.rows("kyc_applications"), *ex.not_null("address", "extra"))),
    TableSpec("kyc_documents", "One row per uploaded KYC file: sniffed content type, size, SHA-256 and its bytes.",
              DOCUMENT_COLUMNS, unique_keys=(("address_key", "file_name"),),
              expectations=(ex.rows("kyc_documents"), *ex.not_null("address", "file_name", "sha256"),
                            ex.in_set("content_type", ["image/jpeg", "image/png", "application/pdf", nz.OCTET_STREAM]),
                            ex.between("size_bytes", min_value=0))),
)

# The report's own sections: counts, days and content types only (no name, document number, e-mail or IP).
PEND_REPORT_SECTIONS = (
    sql_section(
        "Explorer events per day", "Per day folder (the store's partitions): its chain files, the events they hold,"
        " the rows of blockchain_events and the events quarantined.",
        ("day", "files", "source events", "rows", "quarantined"),
        """WITH files AS (
               SELECT split_part(m.path, '/', 2) AS day, count(*) AS files, sum(p.records_seen) AS seen
               FROM migration.source_manifest m LEFT JOIN migration.unit_progress p
                 ON p.store = m.store AND p.plan_id = m.plan_id AND p.unit_no = m.unit_no
                AND p.table_name = 'blockchain_events'
               WHERE m.store = %(store)s AND m.plan_id = %(plan_id)s AND m.status = 'mapped'
                 AND starts_with(m.path, 'explorer-data/') GROUP BY 1),
             loaded AS (SELECT day::text AS day, count(*) AS rows FROM {schema}.blockchain_events GROUP BY 1),
             refused AS (SELECT split_part(source_file, '/', 2) AS day, count(*) AS n FROM migration.quarantine
                         WHERE store = %(store)s AND plan_id = %(plan_id)s AND table_name = 'blockchain_events'
                         GROUP BY 1)
           SELECT day, files, coalesce(seen, 0)::bigint, coalesce(rows, 0), coalesce(n, 0)
           FROM files LEFT JOIN loaded USING (day) LEFT JOIN refused USING (day) ORDER BY day""",
        chart=3),
    sql_section(
        "KYC documents by content type", "The type sniffed from each document's first bytes (not its name), how many"
        " were named with another type's extension, and their total size.",
        ("content type", "documents", "extension differs", "total bytes"),
        """SELECT content_type, count(*), count(*) FILTER (WHERE NOT extension_matches), sum(size_bytes)::bigint
           FROM {schema}.kyc_documents GROUP BY 1 ORDER BY 2 DESC, 1""",
        chart=1),
    sql_section(
        "KYC uploads quarantined", "Applications and documents not loaded, per reason (their folders and files are"
        " listed in the quarantine above).",
        ("table", "reason", "records"),
        """SELECT table_name, reason, count(*) FROM migration.quarantine
           WHERE store = %(store)s AND plan_id = %(plan_id)s AND table_name IN ('kyc_applications', 'kyc_documents')
           GROUP BY 1, 2 ORDER BY 1, 2"""),
)

PEND_STORE = StoreSpec(
    name="pend",
    description="The Pend app's JSON files: users, admin data, explorer days and KYC uploads (seed 002).",
    folder="pend",
    tables=PEND_TABLES,
    discover=discover,
    read_unit=read_unit,
    parallel=True,
    source_files=(WALLET_DB, *ADMIN_FILES, f"{EXPLORER}/<YYYY-MM-DD>/<chain>.json", f"{KYC}/<address>/*"),
    partitions=Partitioning("dynamic", asset="days", label="day", discover_keys=days,
                            live_table="blockchain_events", live_column="day"),
    gates=(serving_gate((  # the lookups of the Pend app and PendScan (seed 002: under 50 ms)
        Lookup("user by address, any case", "users", "address_key = lower(%s)", ("address",)),
        Lookup("investments of a user", "investments", "user_key = lower(%s)", ("user_id",)),
        Lookup("investments in an asset", "investments", "asset_id = %s", ("asset_id",)),
        Lookup("events of a day and chain", "blockchain_events", "day = %s AND chain = %s", ("day", "chain")),
        Lookup("event by transaction", "blockchain_events", "chain = %s AND tx_hash = %s", ("chain", "tx_hash")),
        Lookup("events of a contract, any case", "blockchain_events", "lower(contract_address) = lower(%s)",
               ("contract_address",)),
        Lookup("KYC documents of an address", "kyc_documents", "address_key = lower(%s)", ("address",)),
        Lookup("admin log of a period", "admin_logs", '"timestamp" >= %s', ('"timestamp"',)),
    )),),
    samples=PEND_SAMPLES,
    generator=PEND_GENERATOR,
    report_sections=PEND_REPORT_SECTIONS,
)
