"""What is special about the wallet store: its file names, its record rules and its key gate.

`storage/wallets/wallet_<fid>_<chain>.json`, one object per file (LEGACY_FORMATS section 1).
Files are read in sorted name order; a file's position in that order is its wallet id, so that
ids are the same on every run and units can be read in parallel.
"""

from __future__ import annotations

import hashlib
import os
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from migration_pipeline.core.bookkeeping.units import flags_per_reason
from migration_pipeline.core.keys import ADDRESS_RE, IV_RE, cipher_key, has_valid_checksum, verify_wallet_keys
from migration_pipeline.core.manifest import describe_file, read_unless_larger, scan_folder, walk_files
from migration_pipeline.core.names import staging_schema
from migration_pipeline.core.report import sql_section
from migration_pipeline.core.serving import Lookup, serving_gate
from migration_pipeline.core.spec import (
    Batch,
    Column,
    Discovery,
    Flagged,
    Gate,
    Generator,
    ManifestEntry,
    Partitioning,
    ReadContext,
    SampleRecords,
    StoreSpec,
    SyncRules,
    TableSpec,
    Unit,
)
from migration_pipeline.core.timestamps import InvalidTimestamp, from_ns, parse_timestamp
from migration_pipeline.core.values import describe_value
from migration_pipeline.sources.json_array import JsonRejected, parse_json
from migration_pipeline.sources.records import Reject as _Reject
from migration_pipeline.stores import expectations as ex

WALLET_DIR = "storage/wallets"
FILE_NAME = re.compile(r"wallet_(\d+)_([a-z0-9][a-z0-9-]*)\.json", re.ASCII)  # \d is 0-9: int() reads any script's digits
UNIT_SIZE = 2000
MAX_FILE_BYTES = 2**20  # a wallet file is a few hundred bytes: a larger one is not read into memory
MAX_FID = 2**63 - 1  # wallet.users.fid is bigint
SHARDS = 16
UNITS_PER_SHARD = 100_000  # unit numbers of shard k start at k * UNITS_PER_SHARD
_HEX = re.compile(r"[0-9a-fA-F]+")
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_BOM = b"\xef\xbb\xbf"
KNOWN_KEYS = frozenset({"fid", "address", "encryptedPrivateKey", "iv", "chain", "createdAt"})

WALLET_COLUMNS = (
    Column("id", "int", hashed=False),  # a surrogate: an incremental sync keeps the live id of a known wallet
    Column("fid", "int"),
    Column("address", "text"),
    Column("encrypted_private_key", "text", secret=True),
    Column("iv", "text"),
    Column("chain", "text"),
    Column("wallet_type", "text"),
    Column("created_at", "timestamptz"),
    Column("updated_at", "timestamptz"),
)


def discover(store_dir: Path) -> Discovery:
    """Sorted wallet files in units of UNIT_SIZE; everything else under the store is unmapped."""
    wallet_dir = store_dir / WALLET_DIR
    names: list[str] = []
    folders: list[str] = []
    links: list[str] = []
    if wallet_dir.is_dir() and not wallet_dir.is_symlink():
        with scan_folder(wallet_dir) as entries:
            for entry in entries:
                if entry.is_symlink():  # never read through: listed as a link, as by every other listing
                    links.append(f"{WALLET_DIR}/{entry.name}")
                elif entry.is_dir():
                    folders.append(entry.name)
                else:
                    names.append(entry.name)
    names.sort()
    unmapped = walk_files(store_dir, skip=WALLET_DIR) + links
    # Wallets are the wallet folder's own files; a folder inside it holds none, but its files are the
    # store's all the same, so they are listed (as unmapped) rather than never seen.
    for folder in folders:
        unmapped += (f"{WALLET_DIR}/{folder}/{path}" for path in walk_files(wallet_dir / folder))
    # A file's position in sorted name order is its wallet id; units hold files of one shard (fid mod SHARDS).
    ids: list[array[int]] = [array("q") for _ in range(SHARDS)]
    files: list[list[str]] = [[] for _ in range(SHARDS)]
    position = 0
    for name in names:
        match = FILE_NAME.fullmatch(name)
        if match is None:
            unmapped.append(f"{WALLET_DIR}/{name}")
            continue
        position += 1
        shard = int(match.group(1)) % SHARDS
        ids[shard].append(position)
        files[shard].append(name)
    units = tuple(
        Unit(number=shard * UNITS_PER_SHARD + i // UNIT_SIZE, partition=f"{shard:02d}",
             payload=WalletFiles(ids[shard][i : i + UNIT_SIZE], tuple(files[shard][i : i + UNIT_SIZE])))
        for shard in range(SHARDS)
        for i in range(0, len(files[shard]), UNIT_SIZE)
    )
    return Discovery(units=units, unmapped=tuple(sorted(unmapped)), fingerprint=_fingerprint(names))


@dataclass(frozen=True)
class WalletFiles:
    """A unit's wallet files as (wallet id, file name) pairs, kept as an array and a tuple: a tuple and an
    int object per file cost 84 bytes more, 170 MB at 2M files, and were discovery's peak memory."""

    ids: array[int]
    names: tuple[str, ...]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return zip(self.ids, self.names, strict=True)

    def __len__(self) -> int:
        return len(self.names)


def _fingerprint(names: list[str]) -> str:
    """SHA-256 of the names joined by newlines, fed in slices (one joined copy of 2M names is 110 MB)."""
    digest = hashlib.sha256()
    for start in range(0, len(names), 65536):
        digest.update(("\n" if start else "").encode() + "\n".join(names[start : start + 65536]).encode(
            "utf-8", "surrogateescape"))  # a name that is not UTF-8 is hashed as its bytes
    return digest.hexdigest()


def read_unit(unit: Unit, context: ReadContext) -> Iterator[Batch]:
    key = cipher_key(context.secret) if context.secret is not None else None
    wallet_dir = os.path.join(context.store_dir, WALLET_DIR)
    batch = Batch()
    with_keys: list[tuple[str, tuple[Any, ...]]] = []  # (file, row) of each wallet whose key is verified below
    unknown: list[str] = []  # fields of the loaded files that no column holds
    for seq, name in unit.payload:
        relative = f"{WALLET_DIR}/{name}"
        try:
            # Not pathlib: this runs millions of times.
            data, stat = read_unless_larger(f"{wallet_dir}/{name}", MAX_FILE_BYTES)
            mtime_ns = stat.st_mtime_ns
        except OSError as exc:  # vanished or unreadable since listing: recorded, never a crash
            batch.manifest.append(ManifestEntry(relative, 0, "", True, None))
            batch.quarantine("wallets", relative, "file", "unreadable_file", f"cannot read the file ({exc.strerror})")
            continue
        if data is None:  # hashed a block at a time for the manifest, never held
            batch.manifest.append(describe_file(context.store_dir, relative, mapped=True))
            batch.quarantine("wallets", relative, "file", "file_too_large",
                             f"the file is {stat.st_size} bytes, over the {MAX_FILE_BYTES} a wallet file may have")
            continue
        batch.manifest.append(ManifestEntry(relative, len(data), hashlib.sha256(data).hexdigest(), True, mtime_ns))
        try:
            row = normalize_wallet(name, data, seq, mtime_ns, unknown)
        except _Reject as reject:
            batch.quarantine("wallets", relative, "file", reject.reason, reject.message)
            continue
        batch.add_row("wallets", (*row, relative, "file", seq))
        if key is not None and row[_CIPHERTEXT] is not None:
            with_keys.append((relative, row))
    batch.count_unmapped("wallets", unknown)
    if key is not None:  # the unit's keys at once: one AES call decrypts them all
        verdicts = verify_wallet_keys([(row[_CIPHERTEXT], row[_IV], row[_ADDRESS]) for _, row in with_keys], key)
        for (relative, _), flag in zip(with_keys, verdicts, strict=True):
            if flag is not None:
                batch.flagged.append(Flagged("wallets", relative, "file", flag, _FLAG_MESSAGES[flag]))
    yield batch


_ADDRESS, _CIPHERTEXT, _IV = (next(i for i, c in enumerate(WALLET_COLUMNS) if c.name == name)
                              for name in ("address", "encrypted_private_key", "iv"))
_FLAG_MESSAGES = {
    "decrypt_failed": "the key does not decrypt with ENCRYPTION_SECRET (wrong secret or corrupt ciphertext)",
    "key_address_mismatch": "the decrypted key derives a different address than the one stored",
}


def normalize_wallet(
    name: str, data: bytes, wallet_id: int, mtime_ns: int, unknown: list[str] | None = None
) -> tuple[Any, ...]:
    """One wallet file → its row in WALLET_COLUMNS order (its key is verified by the caller); raises _Reject.
    A file without createdAt was created at its mtime (`mtime_ns`), to the microsecond. The names of fields
    no column holds are appended to `unknown` once the file is loaded."""
    match = FILE_NAME.fullmatch(name)
    assert match is not None
    name_fid, chain = int(match.group(1)), match.group(2)
    body = data.removeprefix(_BOM).strip()
    if not body:
        raise _Reject("empty_file", "the file is empty")
    try:
        # orjson is the fast path. It keeps NUL and reads an integer beyond 64 bits as a float, so a file that
        # holds NUL, that orjson refuses, or whose record is not an object of strings, integers, booleans and
        # nulls (a float may have been such an integer) is parsed again by the strict reader every store uses.
        if b"\\u0000" in body:
            raise ValueError("parse strictly")
        record = orjson.loads(body)
        if type(record) is not dict or not _PLAIN_TYPES.issuperset(map(type, record.values())):
            raise ValueError("parse strictly")
    except ValueError:
        try:
            record = parse_json(body)
        except JsonRejected as exc:
            raise _Reject(exc.reason, exc.message) from None
    if not isinstance(record, dict):
        raise _Reject("not_an_object", f"the file holds a JSON {type(record).__name__}, not an object")

    if not 0 < name_fid <= MAX_FID:
        raise _Reject("invalid_fid", "the fid in the file name is not a positive 64-bit integer")
    fid = record.get("fid")
    if fid is not None:
        if isinstance(fid, str):
            digits = fid.strip()
            # isdigit alone accepts '²' and other scripts' digits, which int() then refuses
            if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
                raise _Reject("invalid_fid", f"fid inside the file is a string of {len(fid)} characters that is not"
                              " a positive 64-bit integer in ASCII digits")
            fid = int(digits)
        if isinstance(fid, Decimal) and fid == fid.to_integral_value():  # an integer beyond 64 bits, kept exact
            fid = int(fid)
        if isinstance(fid, float | Decimal):
            raise _Reject("invalid_fid", "fid inside the file is a JSON number with a fraction or an exponent"
                          " (such as 1e30), not an integer")
        if not isinstance(fid, int) or isinstance(fid, bool):
            raise _Reject("invalid_fid", f"fid inside the file is a JSON {_json_type(fid)}, not an integer")
        if fid != name_fid and not 0 < fid <= MAX_FID:
            raise _Reject("invalid_fid", "fid inside the file is not a positive 64-bit integer")
        if fid != name_fid:
            raise _Reject("fid_mismatch", f"fid {fid} inside the file differs from fid {name_fid} in its name")
    content_chain = record.get("chain")
    if content_chain not in (None, chain):
        # Described, never quoted: a field of a hand-edited file may hold anything, a pasted key included.
        raise _Reject("chain_mismatch", f"chain inside the file ({describe_value(content_chain)}) differs from"
                      f" {chain!r} in its name")

    address = record.get("address")
    if not isinstance(address, str) or not ADDRESS_RE.fullmatch(address):
        raise _Reject("invalid_address", "address is not 0x followed by 40 hex characters")
    if not has_valid_checksum(address):
        raise _Reject("bad_checksum", "mixed-case address fails its EIP-55 checksum (corrupted)")

    ciphertext = record.get("encryptedPrivateKey")
    iv = record.get("iv")
    if ciphertext in (None, ""):
        if chain == "ethereum":
            raise _Reject("missing_key", "an ethereum (trading) wallet has no encryptedPrivateKey")
        ciphertext = None
        if iv in (None, ""):  # a keyless wallet's iv is kept as it came, when it came
            iv = None
        elif not isinstance(iv, str) or not IV_RE.fullmatch(iv):
            raise _Reject("invalid_iv", "iv is not 16 bytes as 32 hex characters")
    else:
        if not isinstance(ciphertext, str) or len(ciphertext) % 32 or not _HEX.fullmatch(ciphertext):
            raise _Reject("invalid_ciphertext", "encryptedPrivateKey is not hex of whole AES blocks")
        if not isinstance(iv, str) or not IV_RE.fullmatch(iv):
            raise _Reject("invalid_iv", "iv is not 16 bytes as 32 hex characters")

    raw_created = record.get("createdAt")
    try:
        created_at = from_ns(mtime_ns) if raw_created in (None, "") else parse_timestamp(raw_created)
    except InvalidTimestamp as exc:
        raise _Reject("invalid_timestamp", f"createdAt: {exc}") from None

    wallet_type = "trading" if chain == "ethereum" else chain
    if unknown is not None and len(record) > len(KNOWN_KEYS.intersection(record)):
        unknown.extend(k for k in record if k not in KNOWN_KEYS)
    return (wallet_id, name_fid, address, ciphertext, iv, chain, wallet_type, created_at, created_at)


def _json_type(value: Any) -> str:
    return {str: "string", bool: "boolean", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _key_verification(conn: psycopg.Connection, store: str, plan_id: str) -> tuple[bool, str, dict[str, Any]]:
    rows = flags_per_reason(conn, store, plan_id)
    with_key = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.wallets WHERE encrypted_private_key IS NOT NULL").format(
            sql.Identifier(staging_schema(store)))
    ).fetchone()
    checked = with_key[0] if with_key else 0
    if not rows:
        return True, f"all {checked} keys decrypt and derive their stored address", {"keys_checked": checked}
    failing = sum(r[1] for r in rows)
    details = {"keys_checked": checked, "failing": failing, "by_reason": {r[0]: r[1] for r in rows},
               "files": sorted({f for r in rows for f in r[2]})}
    reasons = ", ".join(f"{r[1]} {r[0]}" for r in rows)
    return False, f"{failing} of {checked} wallet keys fail verification ({reasons})", details


def _key_of(path: str) -> tuple[int, str] | None:
    folder, _, name = path.rpartition("/")
    match = FILE_NAME.fullmatch(name) if folder == WALLET_DIR else None
    return (int(match.group(1)), match.group(2)) if match else None


def _units_for(paths: Sequence[str], first_seq: int) -> tuple[Unit, ...]:
    names = [p.rpartition("/")[2] for p in sorted(paths)]
    return tuple(Unit(number=i // UNIT_SIZE, payload=WalletFiles(
                     array("q", range(first_seq + i, first_seq + min(i + UNIT_SIZE, len(names)))),
                     tuple(names[i : i + UNIT_SIZE])))
                 for i in range(0, len(names), UNIT_SIZE))


WALLET_SYNC = SyncRules(
    table="wallets",
    key_columns=("fid", "chain"),
    key_types=("bigint", "text"),
    key_of=_key_of,
    units_for=_units_for,
    soft_delete_column="deleted_at",
    after_load_sql=(
        # A wallet already live keeps its id; new wallets were numbered after the live maximum.
        "UPDATE {staging}.wallets s SET id = l.id FROM {live}.wallets l"
        " WHERE s._seq IS NOT NULL AND s.fid = l.fid AND s.chain = l.chain",
    ),
)


def _write_wallets(store_dir: Path, records: Mapping[str, Sequence[bytes]]) -> None:
    """Each record as the file of wallet `100 + its position` on base-account; a record's "fid" that is the
    placeholder FID_PLACEHOLDER becomes that number, so a valid record matches its file name."""
    wallet_dir = store_dir / WALLET_DIR
    wallet_dir.mkdir(parents=True, exist_ok=True)
    for position, text in enumerate(records.get("wallets", ())):
        fid = 100 + position
        (wallet_dir / f"wallet_{fid}_base-account.json").write_bytes(
            text.replace(b'"' + FID_PLACEHOLDER.encode() + b'"', str(fid).encode()))


FID_PLACEHOLDER = "<fid of the file name>"
WALLET_SAMPLES = SampleRecords(
    valid={"wallets": {"fid": FID_PLACEHOLDER, "address": "0xd41A2fEB255dC2023dC1DBE1413e37A10c6BE787",
                       "iv": "168ef90be2ce5f6491707b0855da77bb", "chain": "base-account",
                       "createdAt": "2024-04-12T17:45:11.000Z"}},
    write=_write_wallets,
)


def _generate(out: Path, sizes: Mapping[str, int], seed: int, secret: str | None) -> str:
    from migration_pipeline.stores.wallet.generate import generate_wallet_store

    assert secret is not None
    made = generate_wallet_store(out, users=sizes["users"], secret=secret, seed=seed,
                                 mismatched_keys=sizes["mismatched_keys"])
    return f"wrote {made.files} files ({made.mapped_files} mapped) for {made.users} users under {made.store_dir}"


WALLET_GENERATOR = Generator(
    run=_generate,
    options={"users": ("users to generate (two wallet files each, some quirky)", None),
             "mismatched_keys": ("wallets whose key derives another address (they block promotion)", 0)},
    needs_secret=True,
)


WALLET_STORE = StoreSpec(
    name="wallet",
    description="Per-user wallet files with AES-encrypted private keys (seeds 000, 001).",
    folder="wallet",
    tables=(
        TableSpec(
            name="wallets",
            description="One row per wallet file: address, encrypted key and iv as stored, chain and type.",
            columns=WALLET_COLUMNS,
            unique_keys=(("id",), ("fid", "chain")),
            expectations=(
                ex.rows(),
                *ex.not_null("id", "fid", "address", "chain", "wallet_type", "created_at"),
                *ex.hex_digits("address", "0x", 40),
                *ex.hex_digits("iv", "", 32),
                *ex.unique("id"),
                ex.compound_unique(["fid", "chain"]),
                ex.between("fid", min_value=1),
                ex.unexpected_rows(
                    "wallet_type is 'trading' for ethereum, else the chain name",
                    "SELECT id, fid, chain, wallet_type FROM {batch}"
                    " WHERE wallet_type <> CASE WHEN chain = 'ethereum' THEN 'trading' ELSE chain END",
                ),
                ex.unexpected_rows(
                    "a key always comes with its iv, and every ethereum wallet has a key",
                    "SELECT id, fid, chain FROM {batch} WHERE (encrypted_private_key IS NOT NULL AND iv IS NULL)"
                    " OR (chain = 'ethereum' AND encrypted_private_key IS NULL)",
                ),
            ),
        ),
        TableSpec(
            name="users",
            description="One row per distinct fid among the loaded wallets; created_at is its oldest wallet's.",
            derive_sql="INSERT INTO {schema}.users (fid, created_at, updated_at)"
            " SELECT fid, min(created_at), min(created_at) FROM {schema}.wallets GROUP BY fid ORDER BY fid",
            expected_rows_sql="SELECT count(DISTINCT fid) FROM {schema}.wallets",
            expectations=(
                ex.rows(),
                *ex.not_null("id", "fid", "created_at"),
                *ex.unique("fid"),
                ex.between("fid", min_value=1),
            ),
        ),
        TableSpec(
            name="wallet_metadata",
            description="One row of analytics defaults per wallet (seed 000).",
            derive_sql="INSERT INTO {schema}.wallet_metadata (wallet_id) SELECT id FROM {schema}.wallets ORDER BY id",
            expected_rows_sql="SELECT count(*) FROM {schema}.wallets",
            expectations=(
                ex.rows(),
                *ex.not_null("wallet_id"),
                *ex.unique("wallet_id"),
                ex.orphans("wallet_id", "wallets", "id"),
            ),
        ),
        TableSpec(
            name="wallet_audit_log",
            description="One row per wallet, 'migrated' (or 'deleted' once its file was deleted during the parallel"
            " run); accessed_by is the Dagster run id that loaded it.",
            derive_sql="INSERT INTO {schema}.wallet_audit_log (wallet_id, action, accessed_by)"
            " SELECT id, CASE WHEN deleted_at IS NULL THEN 'migrated' ELSE 'deleted' END, {run_id}"
            " FROM {schema}.wallets ORDER BY id",
            expected_rows_sql="SELECT count(*) FROM {schema}.wallets",
            expectations=(
                ex.rows(),
                *ex.not_null("wallet_id", "accessed_by"),
                ex.in_set("action", ["migrated", "deleted"]),
                *ex.unique("wallet_id"),
                ex.orphans("wallet_id", "wallets", "id"),
            ),
        ),
    ),
    discover=discover,
    read_unit=read_unit,
    parallel=True,
    needs_secret=True,
    partitions=Partitioning("static", asset="shards", label="shard", keys=tuple(f"{i:02d}" for i in range(SHARDS))),
    sync=WALLET_SYNC,
    gates=(
        serving_gate((
            Lookup("wallet by user and chain", "wallets", "fid = %s AND chain = %s", ("fid", "chain")),
            Lookup("wallet by address, any case", "wallets", "lower(address) = lower(%s)", ("address",)),
            Lookup("wallets of a user", "wallets", "fid = %s", ("fid",)),
            Lookup("user by fid", "users", "fid = %s", ("fid",)),
        )),
        Gate(
            name="key_verification",
            description="Every wallet with a key decrypts with ENCRYPTION_SECRET and its key derives the stored"
            " address (secp256k1 + Keccak-256). One failure blocks promotion; the files are listed, never keys.",
            evaluate=_key_verification,
        ),
    ),
    source_files=(f"{WALLET_DIR}/wallet_<fid>_<chain>.json",),
    samples=WALLET_SAMPLES,
    generator=WALLET_GENERATOR,
    report_sections=(sql_section(
        "Wallet files per shard", "Per shard (fid mod 16, the store's partitions), as its units recorded them: wallet"
        " files read and wallets loaded from them (before duplicates were removed).",
        ("shard", "files read", "wallets loaded"),
        f"""SELECT lpad((unit_no / {UNITS_PER_SHARD})::text, 2, '0'), sum(records_seen)::bigint, sum(rows_emitted)::bigint
            FROM migration.unit_progress WHERE store = %(store)s AND plan_id = %(plan_id)s AND table_name = 'wallets'
            GROUP BY 1 ORDER BY 1""",
        chart=2),),
)
