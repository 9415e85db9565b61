"""Wallet key cryptography: AES-256-CBC key encryption, secp256k1 address derivation, EIP-55.

The legacy ``WalletStorageService`` (LEGACY_FORMATS.md, section 1) stores each private key as the
hex of AES-256-CBC (PKCS#7) ciphertext of the UTF-8 string ``"0x" + 64 hex``, under the key
SHA-256(``ENCRYPTION_SECRET``). This module holds the few functions the pipeline (and the data
generator) need to produce and check such records. It is dagster-free and does no I/O.

Nothing here ever puts key material, ciphertext or plaintext into an exception message: callers
may print, log or store those messages as they are.

All primitives come from maintained libraries: ``cryptography`` (AES, PKCS#7), ``coincurve``
(libsecp256k1) and ``safe-pysha3`` (Keccak-256, which is *not* NIST SHA3-256; a C extension, 8x
faster per call than pycryptodome's, which matters at two hashes per wallet file).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Final, Literal

import sha3
from coincurve import PublicKey
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "ADDRESS_RE",
    "IV_RE",
    "PRIVATE_KEY_RE",
    "KeyDecryptError",
    "VerifyReason",
    "cipher_key",
    "decrypt_private_key",
    "derive_address",
    "encrypt_private_key",
    "has_valid_checksum",
    "keccak256",
    "to_checksum_address",
    "verify_wallet_key",
    "verify_wallet_keys",
]

# `\Z`, not `$`: in Python `$` also matches before a final "\n", so "0x...\n" would pass `match`.
# The same pattern text works in PostgreSQL (`~`), where `\Z` also means end of string.
ADDRESS_RE: Final[re.Pattern[str]] = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
"""An Ethereum address as stored: ``0x`` + 40 hex digits, any case (case is checked separately)."""

IV_RE: Final[re.Pattern[str]] = re.compile(r"^[0-9a-fA-F]{32}\Z")
"""An AES-CBC initialisation vector as stored: 16 bytes as 32 hex digits."""

PRIVATE_KEY_RE: Final[re.Pattern[str]] = re.compile(r"^0x[0-9a-fA-F]{64}\Z")
"""A decrypted private key: ``0x`` + 64 hex digits."""

VerifyReason = Literal["decrypt_failed", "key_address_mismatch"]
"""Reason codes returned by :func:`verify_wallet_key`."""

_AES_BLOCK_BITS: Final = 128


class KeyDecryptError(ValueError):
    """A wallet key could not be decrypted.

    The message says what went wrong in general terms only; it never contains the encryption
    key, the secret, the IV, the ciphertext or any (partial) plaintext.
    """


def cipher_key(secret: str) -> bytes:
    """Return the AES-256 key for ``secret``: SHA-256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def keccak256(data: bytes) -> bytes:
    """Return the Keccak-256 digest (Ethereum's hash, not SHA3-256) of ``data``."""
    return sha3.keccak_256(data).digest()


def _aes_cbc(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt_private_key(private_key: str, key: bytes, iv: bytes) -> str:
    """Encrypt ``private_key`` (``"0x"`` + 64 hex) the way the legacy app does.

    Returns the hex of the AES-256-CBC ciphertext (PKCS#7 padded) of the UTF-8 bytes of the
    whole ``"0x..."`` string. ``key`` must be 32 bytes (see :func:`cipher_key`), ``iv`` 16 bytes.

    Raises:
        ValueError: ``private_key`` is not ``"0x"`` + 64 hex, or key/iv have the wrong length.
            The message does not contain the key.
    """
    if not PRIVATE_KEY_RE.match(private_key):
        raise ValueError("private key must be '0x' followed by 64 hex digits")
    if len(key) != 32:
        raise ValueError("AES-256 key must be 32 bytes")
    if len(iv) != 16:
        raise ValueError("IV must be 16 bytes")
    padder = padding.PKCS7(_AES_BLOCK_BITS).padder()
    padded = padder.update(private_key.encode("ascii")) + padder.finalize()
    encryptor = _aes_cbc(key, iv).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex()


def _parse(ciphertext_hex: str, iv_hex: str) -> tuple[bytes, bytes]:
    """(ciphertext, iv) as bytes; raise :class:`KeyDecryptError` with a content-free message."""
    try:
        iv = bytes.fromhex(iv_hex)
    except (ValueError, TypeError):
        raise KeyDecryptError("iv is not valid hex") from None
    if len(iv) != 16:
        raise KeyDecryptError("iv must be 16 bytes (32 hex digits)")
    try:
        ciphertext = bytes.fromhex(ciphertext_hex)
    except (ValueError, TypeError):
        raise KeyDecryptError("ciphertext is not valid hex") from None
    if not ciphertext or len(ciphertext) % 16:
        raise KeyDecryptError("ciphertext length is not a positive multiple of the AES block size")
    return ciphertext, iv


def _decrypt_all(parsed: Sequence[tuple[bytes, bytes]], key: bytes) -> Iterator[str | KeyDecryptError]:
    """The plaintext key of each (ciphertext, iv), or the KeyDecryptError saying why there is none.

    All ciphertexts are decrypted by one AES call: CBC decryption is ECB decryption of each block XOR the
    block before it (the IV before the first), so one ECB pass over every block replaces a cipher object
    per key, whose setup cost five times the decryption itself (5.9 µs a key against 1.1)."""
    if len(key) != 32:
        raise KeyDecryptError("encryption key must be 32 bytes (SHA-256 of ENCRYPTION_SECRET)")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - CBC, chained below
    blocks = decryptor.update(b"".join(ciphertext for ciphertext, _ in parsed)) + decryptor.finalize()
    offset = 0
    for ciphertext, iv in parsed:
        size = len(ciphertext)
        chained = int.from_bytes(blocks[offset : offset + size]) ^ int.from_bytes(iv + ciphertext[:-16])
        offset += size
        try:
            yield _private_key(chained.to_bytes(size))
        except KeyDecryptError as exc:
            yield exc


def _private_key(padded: bytes) -> str:
    unpadder = padding.PKCS7(_AES_BLOCK_BITS).unpadder()
    try:
        raw = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise KeyDecryptError("padding invalid: wrong ENCRYPTION_SECRET or corrupt ciphertext") from None
    try:
        plaintext = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyDecryptError(
            "plaintext is not a private key: wrong ENCRYPTION_SECRET or corrupt ciphertext"
        ) from None
    if not PRIVATE_KEY_RE.match(plaintext):
        raise KeyDecryptError("plaintext is not a private key: wrong ENCRYPTION_SECRET or corrupt ciphertext")
    return plaintext


def _decrypt(ciphertext_hex: str, iv_hex: str, key: bytes) -> str:
    """Decrypt and validate; raise :class:`KeyDecryptError` with a content-free message."""
    (plaintext,) = _decrypt_all([_parse(ciphertext_hex, iv_hex)], key)
    if isinstance(plaintext, KeyDecryptError):
        raise plaintext
    return plaintext


def decrypt_private_key(ciphertext_hex: str, iv_hex: str, key: bytes) -> str:
    """Decrypt a stored wallet key and return the plaintext ``"0x"`` + 64 hex string.

    Raises:
        KeyDecryptError: bad hex, wrong lengths, invalid padding (typically a wrong
            ``ENCRYPTION_SECRET``), or a plaintext that is not ``"0x"`` + 64 hex. The message
            never contains key material, ciphertext or plaintext, and the exception is raised
            without a chained cause (``from None``) so tracebacks do not carry it either.
    """
    return _decrypt(ciphertext_hex, iv_hex, key)


def _address_bytes(private_key: str) -> bytes:
    """Return the 20-byte address of ``private_key`` (``"0x"`` + 64 hex)."""
    if not PRIVATE_KEY_RE.match(private_key):
        raise ValueError("private key must be '0x' followed by 64 hex digits")
    try:
        public = PublicKey.from_valid_secret(bytes.fromhex(private_key[2:]))
    except ValueError:
        # zero or >= the curve order; the message must not echo the key
        raise ValueError("private key is not a valid secp256k1 scalar") from None
    return keccak256(public.format(compressed=False)[1:])[-20:]


def derive_address(private_key: str) -> str:
    """Return the Ethereum address of ``private_key`` as ``"0x"`` + 40 lower-case hex.

    The address is the last 20 bytes of Keccak-256 of the uncompressed secp256k1 public key
    without its ``0x04`` prefix.

    Raises:
        ValueError: ``private_key`` is not ``"0x"`` + 64 hex or not a valid secp256k1 scalar
            (0 or >= the curve order). The message does not contain the key.
    """
    return "0x" + _address_bytes(private_key).hex()


def to_checksum_address(address: str) -> str:
    """Return ``address`` in EIP-55 mixed-case checksum form.

    Raises:
        ValueError: ``address`` is not ``"0x"`` + 40 hex digits.
    """
    if not ADDRESS_RE.match(address):
        raise ValueError("address must be '0x' followed by 40 hex digits")
    lower = address[2:].lower().encode("ascii")
    # A letter is upper-cased where its hash nibble is >= 8. Done on whole 40-byte integers (the ASCII
    # case bit is 0x20) instead of a Python loop per character: this runs once per wallet file.
    nibbles = keccak256(lower).hex()[:40].encode("ascii")
    mask = int.from_bytes(nibbles.translate(_HIGH_NIBBLE)) & int.from_bytes(lower.translate(_LETTER))
    return "0x" + (int.from_bytes(lower) ^ mask).to_bytes(40).decode("ascii")


_HIGH_NIBBLE: Final = bytes(0x20 if chr(b) in "89abcdef" else 0 for b in range(256))
_LETTER: Final = bytes(0x20 if chr(b) in "abcdef" else 0 for b in range(256))


def has_valid_checksum(address: str) -> bool:
    """Tell whether ``address`` carries no checksum or a correct EIP-55 checksum.

    True when the hex part is all lower case or all upper case (no checksum claimed), or when
    its mixed case equals the EIP-55 form. False for a mixed-case address with a wrong checksum
    and for anything that is not ``"0x"`` + 40 hex digits.
    """
    if not ADDRESS_RE.match(address):
        return False
    body = address[2:]
    if body == body.lower() or body == body.upper():
        return True
    return to_checksum_address(address) == address


def verify_wallet_key(ciphertext_hex: str, iv_hex: str, address: str, key: bytes) -> VerifyReason | None:
    """Check that a stored key decrypts under ``key`` and derives ``address``.

    Returns ``None`` when it does (address compared case-insensitively), otherwise a reason code:
    ``"decrypt_failed"`` (bad hex, bad padding, plaintext not a private key) or
    ``"key_address_mismatch"`` (decrypts, but to a key of another address, or to a value that is
    not a valid secp256k1 scalar). Never raises for bad input and never returns key material.
    """
    return verify_wallet_keys([(ciphertext_hex, iv_hex, address)], key)[0]


def verify_wallet_keys(wallets: Sequence[tuple[str, str, str]], key: bytes) -> list[VerifyReason | None]:
    """:func:`verify_wallet_key` of each (ciphertext hex, iv hex, address), with one AES call for them all.
    Built to be called for thousands of keys at a time: no exceptions on the happy path."""
    reasons: list[VerifyReason | None] = ["decrypt_failed"] * len(wallets)
    positions: list[int] = []
    parsed: list[tuple[bytes, bytes]] = []
    for position, (ciphertext_hex, iv_hex, _) in enumerate(wallets):
        try:
            parsed.append(_parse(ciphertext_hex, iv_hex))
        except KeyDecryptError:
            continue
        positions.append(position)
    try:
        plaintexts = list(_decrypt_all(parsed, key))
    except KeyDecryptError:  # not an AES-256 key: nothing decrypts
        return reasons
    for position, plaintext in zip(positions, plaintexts, strict=True):
        if isinstance(plaintext, KeyDecryptError):
            continue
        address = wallets[position][2]
        try:
            derived = _address_bytes(plaintext).hex()
        except ValueError:
            reasons[position] = "key_address_mismatch"
            continue
        matches = isinstance(address, str) and address.lower() == "0x" + derived
        reasons[position] = None if matches else "key_address_mismatch"
    return reasons
