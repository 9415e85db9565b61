"""Generate a realistic, messy ``wallet`` legacy store (LEGACY_FORMATS.md, section 1).

``generate_wallet_store(out, users, secret)`` writes
``out/wallet/storage/wallets/wallet_<fid>_<chain>.json``: for each user an ``ethereum`` wallet
(always with an encrypted key) and a ``base-account`` wallet (with a key for about half of the
users; otherwise ``encryptedPrivateKey`` is absent, ``null`` or ``""`` in rotation by fid, while
``iv`` stays a valid 32-hex value). Keys are real secp256k1 keys, encrypted exactly like the legacy
app (AES-256-CBC, key = SHA-256(secret)), so that decryption and address derivation can be proved.

The output is a pure function of the arguments: same arguments, same files byte for byte, same
mtimes. Work is cut into fixed chunks of users, each with its own seeded RNGs, so the output does
not depend on whether a process pool is used or how many workers it has.

Normal variation (valid, loads): EIP-55 or lower-case addresses, ``createdAt`` as ISO-8601 with
milliseconds and ``Z`` / epoch milliseconds / missing (then the file mtime is the creation time),
``fid`` missing, varying key order, pretty (2-space) or compact JSON.

Quirks, each file independently with probability ``quirk_rate`` (one quirk per file at most):

- quarantined: ``fid_mismatch``, ``bad_checksum``, ``invalid_json`` (truncated), ``empty_file``,
  ``not_an_object`` (a JSON array), ``invalid_address``, ``invalid_iv``;
- valid, must load: ``bom``, ``crlf``, ``trailing_whitespace``, ``extra_keys``.

Always added: ``wallet_000<F>_ethereum.json``, a byte copy of fid F's ethereum wallet (F = 7 when in
range, else ``start_fid``). It sorts before ``wallet_<F>_ethereum.json`` (plain ``str`` sort), so it
is the one kept, and ``wallet_<F>_ethereum.json`` is quarantined as ``duplicate_key``. And three
unmapped files: ``.DS_Store``, ``wallet_12_ethereum (1).json``, ``wallet_5_ethereum.json.bak``.

``mismatched_keys=n`` makes n ethereum wallets (otherwise clean) whose ciphertext holds another
random key: they load, but key verification flags them (``key_address_mismatch``).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, Final

import orjson

from migration_pipeline.core.keys import (
    cipher_key,
    derive_address,
    encrypt_private_key,
    to_checksum_address,
)

__all__ = [
    "CHAINS",
    "QUARANTINE_QUIRKS",
    "UNMAPPED_NAMES",
    "VALID_QUIRKS",
    "GeneratedWalletStore",
    "generate_wallet_store",
    "wallets_dir",
]

CHAINS: Final = ("ethereum", "base-account")
QUARANTINE_QUIRKS: Final = (
    "fid_mismatch",
    "bad_checksum",
    "invalid_json",
    "empty_file",
    "not_an_object",
    "invalid_address",
    "invalid_iv",
)
VALID_QUIRKS: Final = ("bom", "crlf", "trailing_whitespace", "extra_keys")
_ALL_QUIRKS: Final = QUARANTINE_QUIRKS + VALID_QUIRKS
UNMAPPED_NAMES: Final = (".DS_Store", "wallet_12_ethereum (1).json", "wallet_5_ethereum.json.bak")

CHUNK_USERS: Final = 2000
"""Users per work unit. Fixed (not derived from the worker count) so output is reproducible."""
POOL_THRESHOLD: Final = 20_000
"""Above this many users the chunks run in a process pool."""

_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_T0_MS: Final = 1_672_531_200_000  # 2023-01-01T00:00:00Z
_T1_MS: Final = 1_759_276_800_000  # 2025-10-01T00:00:00Z
_FIXED_MTIME_NS: Final = 1_735_787_045 * 1_000_000_000  # 2025-01-02T03:04:05Z
_BOM: Final = b"\xef\xbb\xbf"
_DS_STORE: Final = b"\x00\x00\x00\x01Bud1" + bytes(range(16)) * 4 + b"\x00" * 64

# Key orders seen in files written by different versions of the app; None = key not written.
_ORDERS: Final = (
    ("fid", "address", "encryptedPrivateKey", "iv", "chain", "createdAt"),
    ("address", "chain", "createdAt", "encryptedPrivateKey", "fid", "iv"),
    ("chain", "fid", "address", "iv", "encryptedPrivateKey", "createdAt"),
)
_ORDER_WEIGHTS: Final = (80, 12, 8)
_EXTRA_KEYS: Final = (
    {"label": "Trading wallet", "version": 2},
    {"lastUsedAt": "2025-06-01T12:00:00.000Z"},
    {"meta": {"source": "frame-v1", "tags": ["beta", "früh"]}, "isDefault": True},
)


@dataclass(frozen=True)
class GeneratedWalletStore:
    """What :func:`generate_wallet_store` wrote and what a correct pipeline must make of it.

    ``expected_quarantined`` maps reason code to count and holds only non-zero counts.
    ``expected_loaded`` counts wallets that load (including key-mismatched ones, which load but
    are flagged). ``plaintext_keys_sample`` is only filled when asked for (``return_keys=True``),
    and is left out of ``repr``.
    """

    root: Path
    store_dir: Path
    wallets_dir: Path
    users: int
    files: int
    mapped_files: int
    expected_loaded: int
    expected_quarantined: dict[str, int]
    unmapped_files: int
    unmapped_names: tuple[str, ...]
    expected_users: int
    """Distinct fids with at least one loaded wallet."""
    expected_key_mismatches: int
    mismatched_fids: tuple[int, ...]
    duplicate_kept: str | None
    duplicate_quarantined: str | None
    variants: dict[str, int]
    """Among the files that load: counts of bom, crlf, trailing_whitespace, extra_keys,
    fid_missing, created_at_epoch_ms, created_at_missing, lowercase_address,
    base_account_with_key, base_account_key_absent / _null / _empty, compact_json."""
    plaintext_keys_sample: tuple[str, ...] | None = field(default=None, repr=False)


def wallets_dir(root: Path) -> Path:
    """Return the folder that holds the wallet files under source root ``root``."""
    return root / "wallet" / "storage" / "wallets"


@dataclass(frozen=True)
class _ChunkTask:
    seed: int
    chunk_no: int
    first_index: int
    stop_index: int
    start_fid: int
    quirk_rate: float
    key: bytes
    protected_fids: frozenset[int]
    mismatch_fids: frozenset[int]
    return_keys: bool


@dataclass
class _ChunkResult:
    quarantined: Counter[str]
    variants: Counter[str]
    loaded: int
    users_loaded: int
    keys: list[str] | None
    files: list[tuple[str, bytes, int]]
    """(file name, content, mtime in ns), in generation order."""


def _random_private_key(rng: random.Random) -> str:
    while True:
        k = rng.getrandbits(256)
        if 0 < k < _SECP256K1_N:
            return f"0x{k:064x}"


def _iso_ms(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _flip_one_letter(address: str, rng: random.Random) -> str | None:
    """Flip the case of one letter of an EIP-55 address; None if that cannot break it visibly."""
    body = address[2:]
    letters = [i for i, ch in enumerate(body) if ch.isalpha()]
    if len(letters) < 2:  # flipping the only letter would give an all-lower/upper (valid) form
        return None
    i = rng.choice(letters)
    return "0x" + body[:i] + body[i].swapcase() + body[i + 1 :]


def _invalid_address(address: str, rng: random.Random) -> str:
    variant = rng.randrange(3)
    if variant == 0:
        return address[:-1]  # 39 hex digits
    if variant == 1:
        return address + "0"  # 41 hex digits
    return address[:-2] + "zz"  # not hex


def _invalid_iv(iv: str, rng: random.Random) -> str:
    variant = rng.randrange(3)
    if variant == 0:
        return iv[:30]  # 15 bytes
    if variant == 1:
        return iv + "00"  # 17 bytes
    return iv[:-1] + "g"  # not hex


def _write(path: str, data: bytes, mtime_ns: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.utime(fd, ns=(mtime_ns, mtime_ns))  # futimens: no second path lookup
    finally:
        os.close(fd)


def _build_chunk(task: _ChunkTask) -> _ChunkResult:
    """Build (not write) the wallet files of users ``first_index .. stop_index - 1``."""
    # Data and quirk decisions use separate streams, so quirk_rate does not change the keys.
    rng = random.Random(f"wallet-gen/{task.seed}/{task.chunk_no}/data")
    qrng = random.Random(f"wallet-gen/{task.seed}/{task.chunk_no}/quirks")
    quarantined: Counter[str] = Counter()
    variants: Counter[str] = Counter()
    loaded = 0
    users_loaded = 0
    keys: list[str] | None = [] if task.return_keys else None
    files: list[tuple[str, bytes, int]] = []

    for index in range(task.first_index, task.stop_index):
        fid = task.start_fid + index
        base_has_key = rng.random() < 0.5
        user_loaded = False
        for chain in CHAINS:
            # ---- base record (every draw happens whatever the branch, to keep streams stable)
            private_key = _random_private_key(rng)
            other_key = _random_private_key(rng)
            iv = rng.randbytes(16)
            created_ms = rng.randrange(_T0_MS, _T1_MS)
            r_created, r_fid, r_case = rng.random(), rng.random(), rng.random()
            order = rng.choices(_ORDERS, _ORDER_WEIGHTS)[0]
            pretty = rng.random() < 0.8
            has_key = chain == "ethereum" or base_has_key
            mismatch = chain == "ethereum" and fid in task.mismatch_fids

            tags: list[str] = []  # valid variations, counted only if the file loads
            quirk: str | None = None
            if fid not in task.protected_fids and not mismatch and qrng.random() < task.quirk_rate:
                quirk = qrng.choice(_ALL_QUIRKS)

            address = derive_address(private_key)
            if r_case < 0.9:
                address = to_checksum_address(address)
            else:
                tags.append("lowercase_address")
            if quirk == "bad_checksum":
                broken = _flip_one_letter(to_checksum_address(address), qrng)
                if broken is None:
                    quirk = "invalid_address"
                else:
                    address = broken
            if quirk == "invalid_iv" and not has_key:
                quirk = "invalid_address"  # an IV is only checked when there is a key
            if quirk == "invalid_address":
                address = _invalid_address(address, qrng)

            iv_hex = iv.hex()
            values: dict[str, Any] = {"fid": fid, "address": address, "iv": iv_hex, "chain": chain}
            if has_key:
                values["encryptedPrivateKey"] = encrypt_private_key(
                    other_key if mismatch else private_key, task.key, iv
                )
                if keys is not None:
                    keys.append(other_key if mismatch else private_key)
                if chain == "base-account":
                    tags.append("base_account_with_key")
            else:
                form = ("absent", "null", "empty")[fid % 3]
                tags.append(f"base_account_key_{form}")
                if form != "absent":
                    values["encryptedPrivateKey"] = None if form == "null" else ""
            if quirk == "invalid_iv":
                values["iv"] = _invalid_iv(iv_hex, qrng)

            if r_created < 0.85:
                values["createdAt"] = _iso_ms(created_ms)
            elif r_created < 0.95:
                values["createdAt"] = created_ms
                tags.append("created_at_epoch_ms")
            else:
                tags.append("created_at_missing")

            if quirk == "fid_mismatch":
                values["fid"] = fid + qrng.randint(1, 1000)
            elif r_fid < 0.05:
                del values["fid"]
                tags.append("fid_missing")

            record = {k: values[k] for k in order if k in values}
            if quirk == "extra_keys":
                record.update(qrng.choice(_EXTRA_KEYS))

            if not pretty and quirk != "crlf":
                tags.append("compact_json")
            option = orjson.OPT_INDENT_2 if (pretty or quirk == "crlf") else 0
            data = orjson.dumps([record] if quirk == "not_an_object" else record, option=option)
            if quirk == "invalid_json":
                data = data[: max(1, len(data) // 2)]
            elif quirk == "empty_file":
                data = b""
            elif quirk == "bom":
                data = _BOM + data
            elif quirk == "crlf":
                data = data.replace(b"\n", b"\r\n") + b"\r\n"
            elif quirk == "trailing_whitespace":
                data = data + b"  \n\t \n"

            if quirk in QUARANTINE_QUIRKS:
                quarantined[quirk] += 1
            else:
                loaded += 1
                user_loaded = True
                variants.update(tags)
                if quirk is not None:
                    variants[quirk] += 1

            files.append((f"wallet_{fid}_{chain}.json", data, created_ms * 1_000_000))
        users_loaded += user_loaded
    return _ChunkResult(quarantined, variants, loaded, users_loaded, keys, files)


def _build_all(tasks: list[_ChunkTask], use_pool: bool, workers: int) -> Iterator[_ChunkResult]:
    """Yield chunk results in order; with a pool, at most a few chunks are held in memory."""
    if not use_pool:
        yield from map(_build_chunk, tasks)
        return
    window = 2 * workers + 1  # bounds memory when workers outrun the (single) writer
    with _pool_context().Pool(workers) as pool:
        pending: deque[AsyncResult[_ChunkResult]] = deque()
        remaining = iter(tasks)
        for task in islice(remaining, window):
            pending.append(pool.apply_async(_build_chunk, (task,)))
        while pending:
            result = pending.popleft().get()
            for task in islice(remaining, 1):
                pending.append(pool.apply_async(_build_chunk, (task,)))
            yield result


def _tasks(
    users: int,
    seed: int,
    start_fid: int,
    quirk_rate: float,
    key: bytes,
    protected: frozenset[int],
    mismatch: frozenset[int],
    return_keys: bool,
) -> Iterator[_ChunkTask]:
    for chunk_no, first in enumerate(range(0, users, CHUNK_USERS)):
        yield _ChunkTask(
            seed=seed,
            chunk_no=chunk_no,
            first_index=first,
            stop_index=min(first + CHUNK_USERS, users),
            start_fid=start_fid,
            quirk_rate=quirk_rate,
            key=key,
            protected_fids=protected,
            mismatch_fids=mismatch,
            return_keys=return_keys,
        )


def _pool_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def generate_wallet_store(
    out: Path,
    users: int,
    secret: str,
    seed: int = 7,
    quirk_rate: float = 0.01,
    start_fid: int = 1,
    mismatched_keys: int = 0,
    return_keys: bool = False,
    processes: int | None = None,
    clean: bool = False,
) -> GeneratedWalletStore:
    """Write a wallet store for ``users`` users under source root ``out`` and describe it.

    Args:
        out: the source root; files go to ``out/wallet/storage/wallets/``.
        users: number of users (fids ``start_fid .. start_fid + users - 1``), 2 files each.
        secret: the ``ENCRYPTION_SECRET`` the keys are encrypted with.
        seed: output is a pure function of all arguments; ``seed`` picks the variant.
        quirk_rate: per-file probability of one quirk (see the module docstring).
        start_fid: first fid (positive).
        mismatched_keys: number of clean ethereum wallets whose key derives another address.
        return_keys: also return every plaintext key written (for leak tests on small stores).
        processes: processes to use when ``users > POOL_THRESHOLD`` (default: CPU count): this
            one writes every file, ``processes - 1`` pool workers build them; 1 = no pool.
        clean: delete ``out/wallet`` first. Without it, a non-empty wallets folder is an error,
            since stale files would break the expected counts.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: the wallets folder is not empty and ``clean`` is False.
    """
    if users < 0:
        raise ValueError("users must be >= 0")
    if not 0.0 <= quirk_rate <= 1.0:
        raise ValueError("quirk_rate must be within [0, 1]")
    if start_fid < 1:
        raise ValueError("start_fid must be >= 1")
    if not 0 <= mismatched_keys <= max(0, users - 1):
        raise ValueError("mismatched_keys must be within [0, users - 1]")

    out = Path(out)
    store_dir = out / "wallet"
    directory = wallets_dir(out)
    if clean and store_dir.exists():
        shutil.rmtree(store_dir)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty (pass clean=True to replace it)")
    directory.mkdir(parents=True, exist_ok=True)

    dup_fid: int | None = None
    if users:
        dup_fid = 7 if start_fid <= 7 < start_fid + users else start_fid
    protected = frozenset({dup_fid} if dup_fid is not None else ())
    mismatch: frozenset[int] = frozenset()
    if mismatched_keys:
        picks = random.Random(f"wallet-gen/{seed}/mismatch").sample(
            range(start_fid, start_fid + users), mismatched_keys + 1
        )
        mismatch = frozenset([f for f in picks if f != dup_fid][:mismatched_keys])

    key = cipher_key(secret)
    tasks = list(_tasks(users, seed, start_fid, quirk_rate, key, protected, mismatch, return_keys))
    # Workers only compute; this process does all the writing. Creating files in one directory
    # from several processes is not faster (the directory lock serializes them) and on small VMs
    # it is slower, while key derivation and encryption parallelize well.
    total = processes if processes is not None else (os.cpu_count() or 1)
    workers = max(1, total - 1)  # compute workers; this process is the writer
    use_pool = users > POOL_THRESHOLD and total > 1 and len(tasks) > 1
    quarantined: Counter[str] = Counter()
    variants: Counter[str] = Counter()
    loaded = users_loaded = 0
    keys: list[str] = []
    prefix = str(directory)
    for result in _build_all(tasks, use_pool, workers):
        for name, data, mtime_ns in result.files:
            _write(f"{prefix}/{name}", data, mtime_ns)
        quarantined.update(result.quarantined)
        variants.update(result.variants)
        loaded += result.loaded
        users_loaded += result.users_loaded
        if result.keys is not None:
            keys.extend(result.keys)
    mapped = 2 * users

    duplicate_kept = duplicate_quarantined = None
    if dup_fid is not None:
        # The copy sorts first, so the copy is kept and the original becomes the duplicate.
        duplicate_quarantined = f"wallet_{dup_fid}_ethereum.json"
        duplicate_kept = f"wallet_000{dup_fid}_ethereum.json"
        original = directory / duplicate_quarantined
        mtime_ns = original.stat().st_mtime_ns
        _write(str(directory / duplicate_kept), original.read_bytes(), mtime_ns)
        mapped += 1
        quarantined["duplicate_key"] += 1
        # loaded count unchanged: one of the two loads, the other is quarantined

    # Unmapped files: a Finder artefact and two stale copies (of real files when they exist).
    copies_of = {
        "wallet_12_ethereum (1).json": "wallet_12_ethereum.json",
        "wallet_5_ethereum.json.bak": "wallet_5_ethereum.json",
    }
    for name in UNMAPPED_NAMES:
        source = directory / copies_of[name] if name in copies_of else None
        if source is not None and source.exists():
            _write(str(directory / name), source.read_bytes(), source.stat().st_mtime_ns)
        elif name == ".DS_Store":
            _write(str(directory / name), _DS_STORE, _FIXED_MTIME_NS)
        else:
            _write(str(directory / name), b'{"note": "stale copy"}\n', _FIXED_MTIME_NS)

    return GeneratedWalletStore(
        root=out,
        store_dir=store_dir,
        wallets_dir=directory,
        users=users,
        files=mapped + len(UNMAPPED_NAMES),
        mapped_files=mapped,
        expected_loaded=loaded,
        expected_quarantined={k: v for k, v in sorted(quarantined.items()) if v},
        unmapped_files=len(UNMAPPED_NAMES),
        unmapped_names=UNMAPPED_NAMES,
        expected_users=users_loaded,
        expected_key_mismatches=len(mismatch),
        mismatched_fids=tuple(sorted(mismatch)),
        duplicate_kept=duplicate_kept,
        duplicate_quarantined=duplicate_quarantined,
        variants={k: v for k, v in sorted(variants.items()) if v},
        plaintext_keys_sample=tuple(keys) if return_keys else None,
    )
