"""The wallet's floor beyond the generic one (`migration-pipeline bench --store wallet`): any loader of this
store must also verify every key, so the floor verifies them with the primitives the pipeline uses (one AES
call per chunk's keys, libsecp256k1, Keccak-256)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LABEL = "verify every key (AES, secp256k1, Keccak-256)"


def extra(records: Sequence[tuple[str, Any]], secret: str | None) -> int:
    """Verify the keys of a chunk's parsed records ((file, record) pairs); return how many verified."""
    from migration_pipeline.core.keys import cipher_key, verify_wallet_keys

    keys = [(r["encryptedPrivateKey"], r["iv"], r["address"]) for _, r in records
            if isinstance(r, dict) and r.get("encryptedPrivateKey") and isinstance(r.get("iv"), str)
            and isinstance(r.get("address"), str)]
    if not keys:
        return 0
    if secret is None:
        raise ValueError("the wallet floor verifies keys: it needs the encryption secret")
    return sum(verdict is None for verdict in verify_wallet_keys(keys, cipher_key(secret)))
