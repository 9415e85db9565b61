"""Tests of the wallet store generator: determinism, and that its summary matches the files.

The files are classified here independently of the generator, following LEGACY_FORMATS.md
section 1, so a drift between what the generator claims and what it writes is caught.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from migration_pipeline.core.keys import (
    ADDRESS_RE,
    IV_RE,
    PRIVATE_KEY_RE,
    cipher_key,
    has_valid_checksum,
    verify_wallet_key,
)
from migration_pipeline.stores.wallet import generate as gen
from migration_pipeline.stores.wallet.generate import GeneratedWalletStore, generate_wallet_store

SECRET = "generator-test-secret"
NAME_RE = re.compile(r"^wallet_(\d+)_([a-z0-9-]+)\.json\Z")
KNOWN_KEYS = {"fid", "address", "encryptedPrivateKey", "iv", "chain", "createdAt"}


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    directory = root / "wallet" / "storage" / "wallets"
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


@dataclass
class _Classified:
    files: int = 0
    unmapped: list[str] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)
    loaded: dict[tuple[int, str], tuple[str, dict[str, Any], bytes]] = field(default_factory=dict)
    variants: Counter[str] = field(default_factory=Counter)


def _classify(root: Path) -> _Classified:
    """Independent reading of a generated store, per the contract."""
    out = _Classified()
    directory = root / "wallet" / "storage" / "wallets"
    for name in sorted(p.name for p in directory.iterdir()):  # plain str sort decides duplicates
        out.files += 1
        match = NAME_RE.match(name)
        if not match:
            out.unmapped.append(name)
            continue
        fid, chain = int(match[1]), match[2]
        raw = (directory / name).read_bytes()
        if not raw:
            out.quarantined["empty_file"] += 1
            continue
        text = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            out.quarantined["invalid_json"] += 1
            continue
        if not isinstance(record, dict):
            out.quarantined["not_an_object"] += 1
            continue
        if "fid" in record and record["fid"] != fid:
            out.quarantined["fid_mismatch"] += 1
            continue
        if not isinstance(record.get("address"), str) or not ADDRESS_RE.match(record["address"]):
            out.quarantined["invalid_address"] += 1
            continue
        if not has_valid_checksum(record["address"]):
            out.quarantined["bad_checksum"] += 1
            continue
        if record.get("encryptedPrivateKey") and not IV_RE.match(record.get("iv") or ""):
            out.quarantined["invalid_iv"] += 1
            continue
        if (fid, chain) in out.loaded:
            out.quarantined["duplicate_key"] += 1
            continue
        out.loaded[(fid, chain)] = (name, record, raw)
        assert record["chain"] == chain
        # valid variations, to compare with the generator's own counts
        out.variants["bom"] += raw.startswith(b"\xef\xbb\xbf")
        out.variants["crlf"] += b"\r\n" in raw
        out.variants["trailing_whitespace"] += b"\r\n" not in raw and raw != raw.rstrip()
        out.variants["extra_keys"] += bool(set(record) - KNOWN_KEYS)
        out.variants["fid_missing"] += "fid" not in record
        out.variants["created_at_missing"] += "createdAt" not in record
        out.variants["created_at_epoch_ms"] += isinstance(record.get("createdAt"), int)
        address_body = record["address"][2:]
        out.variants["lowercase_address"] += address_body == address_body.lower() and any(
            c.isalpha() for c in address_body
        )
        out.variants["compact_json"] += b"\n" not in raw.rstrip()
        if chain == "base-account":
            if "encryptedPrivateKey" not in record:
                out.variants["base_account_key_absent"] += 1
            elif record["encryptedPrivateKey"] is None:
                out.variants["base_account_key_null"] += 1
            elif record["encryptedPrivateKey"] == "":
                out.variants["base_account_key_empty"] += 1
            else:
                out.variants["base_account_with_key"] += 1
    return out


def test_same_seed_gives_identical_bytes_and_mtimes(tmp_path: Path) -> None:
    a = generate_wallet_store(tmp_path / "a", 60, SECRET, seed=3, quirk_rate=0.2, mismatched_keys=2)
    b = generate_wallet_store(tmp_path / "b", 60, SECRET, seed=3, quirk_rate=0.2, mismatched_keys=2)
    snap_a, snap_b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert snap_a == snap_b
    assert len(snap_a) == a.files == 2 * 60 + 1 + 3
    assert a.expected_quarantined == b.expected_quarantined
    assert a.variants == b.variants

    generate_wallet_store(tmp_path / "c", 60, SECRET, seed=4, quirk_rate=0.2)
    snap_c = _snapshot(tmp_path / "c")
    assert snap_c.keys() >= {n for n in snap_a if n.startswith("wallet_1_")}
    assert snap_c["wallet_1_ethereum.json"] != snap_a["wallet_1_ethereum.json"]


def test_summary_matches_files_on_disk(tmp_path: Path) -> None:
    summary = generate_wallet_store(tmp_path, 200, SECRET, quirk_rate=0.05, mismatched_keys=3)
    seen = _classify(tmp_path)

    assert summary.users == 200
    assert seen.files == summary.files == 404
    assert summary.mapped_files == 401
    assert seen.files - len(seen.unmapped) == summary.mapped_files
    assert (
        sorted(seen.unmapped)
        == sorted(summary.unmapped_names)
        == [
            ".DS_Store",
            "wallet_12_ethereum (1).json",
            "wallet_5_ethereum.json.bak",
        ]
    )
    assert summary.unmapped_files == 3
    assert dict(seen.quarantined) == summary.expected_quarantined
    assert sum(summary.expected_quarantined.values()) > 5  # quirks were really mixed in
    assert summary.expected_quarantined["duplicate_key"] == 1
    assert len(seen.loaded) == summary.expected_loaded
    assert summary.expected_loaded + sum(summary.expected_quarantined.values()) == summary.mapped_files
    assert len({fid for fid, _ in seen.loaded}) == summary.expected_users
    assert {k: v for k, v in seen.variants.items() if v} == summary.variants

    # duplicate: the leading-zero copy sorts first, so it is the one loaded
    assert summary.duplicate_kept == "wallet_0007_ethereum.json"
    assert summary.duplicate_quarantined == "wallet_7_ethereum.json"
    assert seen.loaded[(7, "ethereum")][0] == "wallet_0007_ethereum.json"

    # every loaded key decrypts; exactly the announced ethereum wallets derive another address
    key = cipher_key(SECRET)
    flagged: dict[int, str | None] = {}
    for (fid, chain), (_, record, _) in seen.loaded.items():
        if record.get("encryptedPrivateKey"):
            reason = verify_wallet_key(record["encryptedPrivateKey"], record["iv"], record["address"], key)
            if reason is not None:
                flagged[fid] = reason
                assert chain == "ethereum"
    assert summary.expected_key_mismatches == 3
    assert flagged == {fid: "key_address_mismatch" for fid in summary.mismatched_fids}

    # base-account: about half have a key, the rest rotate over absent / null / ""
    base = [r for (_, chain), (_, r, _) in seen.loaded.items() if chain == "base-account"]
    with_key = sum(1 for r in base if r.get("encryptedPrivateKey"))
    assert 0.35 < with_key / len(base) < 0.65
    for form in ("absent", "null", "empty"):
        assert summary.variants[f"base_account_key_{form}"] > 0

    # files without createdAt carry their creation time as mtime (whole milliseconds, 2023..2025)
    directory = tmp_path / "wallet" / "storage" / "wallets"
    for name, record, _ in seen.loaded.values():
        mtime_ns = (directory / name).stat().st_mtime_ns
        assert mtime_ns % 1_000_000 == 0
        assert 1_672_531_200_000 <= mtime_ns // 1_000_000 < 1_759_276_800_000
        if isinstance(record.get("createdAt"), int):
            assert record["createdAt"] * 1_000_000 == mtime_ns


def test_without_quirks_everything_loads(tmp_path: Path) -> None:
    summary = generate_wallet_store(tmp_path, 50, SECRET, quirk_rate=0.0)
    assert summary.expected_quarantined == {"duplicate_key": 1}
    assert summary.expected_loaded == 100
    assert summary.expected_users == 50
    seen = _classify(tmp_path)
    assert len(seen.loaded) == 100
    key = cipher_key(SECRET)
    for _, record, _ in seen.loaded.values():
        if record.get("encryptedPrivateKey"):
            assert (
                verify_wallet_key(record["encryptedPrivateKey"], record["iv"], record["address"], key) is None
            )


def test_plaintext_keys_only_on_request_and_never_on_disk(tmp_path: Path) -> None:
    plain = generate_wallet_store(tmp_path / "plain", 20, SECRET, quirk_rate=0.3)
    assert plain.plaintext_keys_sample is None

    summary = generate_wallet_store(tmp_path / "keys", 20, SECRET, quirk_rate=0.3, return_keys=True)
    keys = summary.plaintext_keys_sample
    assert keys is not None and len(keys) >= 20 and len(set(keys)) == len(keys)
    assert all(PRIVATE_KEY_RE.match(k) for k in keys)
    blob = b"".join(data for data, _ in _snapshot(tmp_path / "keys").values()).lower()
    text = repr(summary) + str(summary)
    for k in keys:
        assert k[2:].encode() not in blob
        assert k[2:] not in text
    # the same seed gives the same keys, whatever return_keys says
    assert _snapshot(tmp_path / "plain") == _snapshot(tmp_path / "keys")


def test_pool_and_single_process_write_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gen, "POOL_THRESHOLD", 10)
    monkeypatch.setattr(gen, "CHUNK_USERS", 25)
    pooled = generate_wallet_store(tmp_path / "p", 120, SECRET, quirk_rate=0.1, processes=2, return_keys=True)
    single = generate_wallet_store(tmp_path / "s", 120, SECRET, quirk_rate=0.1, processes=1, return_keys=True)
    assert _snapshot(tmp_path / "p") == _snapshot(tmp_path / "s")
    assert pooled.expected_quarantined == single.expected_quarantined
    assert pooled.plaintext_keys_sample == single.plaintext_keys_sample


def test_start_fid_out_of_the_usual_range(tmp_path: Path) -> None:
    summary = generate_wallet_store(tmp_path, 5, SECRET, start_fid=1_000_000, quirk_rate=0.0)
    assert summary.duplicate_kept == "wallet_0001000000_ethereum.json"
    names = set(_snapshot(tmp_path))
    assert {"wallet_1000000_ethereum.json", "wallet_1000004_base-account.json"} <= names
    seen = _classify(tmp_path)
    assert dict(seen.quarantined) == summary.expected_quarantined == {"duplicate_key": 1}
    assert len(seen.loaded) == summary.expected_loaded == 10


def test_refuses_a_non_empty_folder_unless_clean(tmp_path: Path) -> None:
    generate_wallet_store(tmp_path, 3, SECRET)
    with pytest.raises(FileExistsError):
        generate_wallet_store(tmp_path, 3, SECRET)
    again = generate_wallet_store(tmp_path, 2, SECRET, clean=True)
    assert len(_snapshot(tmp_path)) == again.files == 2 * 2 + 1 + 3


def test_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_wallet_store(tmp_path, -1, SECRET)
    with pytest.raises(ValueError):
        generate_wallet_store(tmp_path, 1, SECRET, quirk_rate=1.5)
    with pytest.raises(ValueError):
        generate_wallet_store(tmp_path, 1, SECRET, start_fid=0)
    with pytest.raises(ValueError):
        generate_wallet_store(tmp_path, 3, SECRET, mismatched_keys=3)


def test_summary_type_is_exported() -> None:
    assert GeneratedWalletStore.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_data_samples_match_expected_md() -> None:
    """data_samples/wallet is hand-made; this pins the totals stated in its EXPECTED.md."""
    root = Path(__file__).resolve().parents[1] / "data_samples"
    seen = _classify(root)
    assert seen.files == 27
    assert sorted(seen.unmapped) == [".DS_Store", "notes.txt", "wallet_12_ethereum (1).json"]
    assert dict(seen.quarantined) == {
        "bad_checksum": 1,
        "duplicate_key": 1,
        "empty_file": 1,
        "fid_mismatch": 1,
        "invalid_address": 1,
        "invalid_iv": 1,
        "invalid_json": 1,
        "not_an_object": 1,
    }
    assert len(seen.loaded) == 16
    assert sorted({fid for fid, _ in seen.loaded}) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 21]
    assert seen.loaded[(7, "ethereum")][0] == "wallet_0007_ethereum.json"
    env = dict(line.split("=", 1) for line in (root / "sample.env").read_text().splitlines() if "=" in line)
    key = cipher_key(env["ENCRYPTION_SECRET"])
    with_key = [r for _, r, _ in seen.loaded.values() if r.get("encryptedPrivateKey")]
    assert len(with_key) == 13
    for record in with_key:
        assert verify_wallet_key(record["encryptedPrivateKey"], record["iv"], record["address"], key) is None
