"""Exact-value tests of migration_pipeline.core.keys (AES key wrap, secp256k1, EIP-55)."""

from __future__ import annotations

import hashlib

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from migration_pipeline.core.keys import (
    ADDRESS_RE,
    IV_RE,
    KeyDecryptError,
    cipher_key,
    decrypt_private_key,
    derive_address,
    encrypt_private_key,
    has_valid_checksum,
    keccak256,
    to_checksum_address,
    verify_wallet_key,
    verify_wallet_keys,
)

# Widely published vector (web3.js / eth-account docs).
PRIVATE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
SECRET = "sample-secret-do-not-use-in-production"
IV = bytes(range(16))

# EIP-55 test cases, verbatim from the EIP.
EIP55_ALL_CAPS = ["0x52908400098527886E0F7030069857D2E4169EE7", "0x8617E340B3D01FA5F11F306F4090FD50E238070D"]
EIP55_ALL_LOWER = ["0xde709f2102306220921060314715629080e2fb77", "0x27b1fdb04752bbc536007a920d24acb045561c26"]
EIP55_NORMAL = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
EIP55_ALL = EIP55_ALL_CAPS + EIP55_ALL_LOWER + EIP55_NORMAL


def test_cipher_key_is_sha256_of_utf8_secret() -> None:
    assert cipher_key("abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert cipher_key("ünïcode") == hashlib.sha256("ünïcode".encode()).digest()
    assert len(cipher_key("")) == 32


def test_keccak256_is_not_sha3() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_derive_address_known_vector() -> None:
    assert derive_address(PRIVATE_KEY) == ADDRESS
    assert derive_address(PRIVATE_KEY.upper().replace("0X", "0x")) == ADDRESS


def test_derive_address_of_key_one() -> None:
    # private key 1 -> the generator point G; its address is a well-known constant
    assert derive_address("0x" + "0" * 63 + "1") == "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + "0" * 64,  # zero
        "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",  # curve order n
        PRIVATE_KEY[2:],  # no 0x
        PRIVATE_KEY[:-1],  # 63 hex
        PRIVATE_KEY + "\n",
    ],
)
def test_derive_address_rejects_bad_keys_without_echoing_them(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        derive_address(bad)
    assert bad.strip()[2:] not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("address", EIP55_ALL)
def test_to_checksum_address_matches_eip55(address: str) -> None:
    assert to_checksum_address(address.lower()) == address
    assert to_checksum_address(address.upper().replace("0X", "0x")) == address
    assert has_valid_checksum(address)


def test_checksum_of_known_vector() -> None:
    assert to_checksum_address(ADDRESS) == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


@pytest.mark.parametrize("address", EIP55_NORMAL)
def test_has_valid_checksum_rejects_one_flipped_letter(address: str) -> None:
    body = address[2:]
    i = next(i for i, ch in enumerate(body) if ch.isalpha())
    broken = "0x" + body[:i] + body[i].swapcase() + body[i + 1 :]
    assert not has_valid_checksum(broken)


def test_has_valid_checksum_accepts_uncased_forms_and_rejects_bad_shapes() -> None:
    assert has_valid_checksum("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    assert has_valid_checksum("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED")
    assert has_valid_checksum("0x" + "1" * 40)
    assert not has_valid_checksum("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe")  # 39 hex
    assert not has_valid_checksum("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")  # no 0x
    assert not has_valid_checksum("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAzz")
    assert not has_valid_checksum("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n")
    with pytest.raises(ValueError):
        to_checksum_address("0x1234")


def test_regexes() -> None:
    assert ADDRESS_RE.match(ADDRESS)
    assert ADDRESS_RE.match("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    assert not ADDRESS_RE.match(ADDRESS[:-1])
    assert not ADDRESS_RE.match(ADDRESS + "0")
    assert not ADDRESS_RE.match("0X" + ADDRESS[2:])
    assert not ADDRESS_RE.match(ADDRESS + "\n")
    assert not IV_RE.match("000102030405060708090a0b0c0d0e0f\n")
    assert IV_RE.match("000102030405060708090a0b0c0d0e0F")
    assert not IV_RE.match("000102030405060708090a0b0c0d0e")
    assert not IV_RE.match("000102030405060708090a0b0c0d0e0g")
    assert not IV_RE.match("000102030405060708090a0b0c0d0e0f00")


def test_encrypt_matches_an_independent_aes_implementation() -> None:
    key = cipher_key(SECRET)
    expected = AES.new(key, AES.MODE_CBC, iv=IV).encrypt(pad(PRIVATE_KEY.encode(), 16)).hex()
    ciphertext = encrypt_private_key(PRIVATE_KEY, key, IV)
    assert ciphertext == expected
    assert len(ciphertext) == 160  # 66 bytes padded to 80
    assert PRIVATE_KEY[2:] not in ciphertext


def test_encrypt_decrypt_roundtrip() -> None:
    key = cipher_key(SECRET)
    ciphertext = encrypt_private_key(PRIVATE_KEY, key, IV)
    assert decrypt_private_key(ciphertext, IV.hex(), key) == PRIVATE_KEY
    assert decrypt_private_key(ciphertext.upper(), IV.hex().upper(), key) == PRIVATE_KEY


def test_encrypt_rejects_bad_input() -> None:
    key = cipher_key(SECRET)
    with pytest.raises(ValueError):
        encrypt_private_key(PRIVATE_KEY[2:], key, IV)
    with pytest.raises(ValueError):
        encrypt_private_key(PRIVATE_KEY, key[:16], IV)
    with pytest.raises(ValueError):
        encrypt_private_key(PRIVATE_KEY, key, IV[:8])


def _assert_no_leak(error: BaseException, *secrets: str) -> None:
    text = str(error) + repr(error)
    for secret in secrets:
        assert secret.lower() not in text.lower()
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_wrong_secret_raises_key_decrypt_error_without_leaking() -> None:
    key = cipher_key(SECRET)
    ciphertext = encrypt_private_key(PRIVATE_KEY, key, IV)
    wrong = cipher_key("not-the-secret")
    with pytest.raises(KeyDecryptError) as info:
        decrypt_private_key(ciphertext, IV.hex(), wrong)
    assert isinstance(info.value, ValueError)
    assert "ENCRYPTION_SECRET" in str(info.value)
    _assert_no_leak(
        info.value, ciphertext, ciphertext[:32], wrong.hex(), key.hex(), PRIVATE_KEY[2:], IV.hex(), SECRET
    )


def test_plaintext_that_is_not_a_key_is_rejected_without_leaking() -> None:
    key = cipher_key(SECRET)
    plaintext = "hello, this is not a private key"
    ciphertext = AES.new(key, AES.MODE_CBC, iv=IV).encrypt(pad(plaintext.encode(), 16)).hex()
    with pytest.raises(KeyDecryptError) as info:
        decrypt_private_key(ciphertext, IV.hex(), key)
    _assert_no_leak(info.value, plaintext, ciphertext, key.hex())


@pytest.mark.parametrize(
    ("ciphertext", "iv"),
    [
        ("zz" * 80, IV.hex()),  # not hex
        ("00" * 79, IV.hex()),  # not a block multiple
        ("", IV.hex()),  # empty
        ("00" * 80, IV.hex()[:30]),  # short iv
        ("00" * 80, "g" * 32),  # iv not hex
    ],
)
def test_malformed_input_raises_key_decrypt_error(ciphertext: str, iv: str) -> None:
    with pytest.raises(KeyDecryptError) as info:
        decrypt_private_key(ciphertext, iv, cipher_key(SECRET))
    _assert_no_leak(info.value, cipher_key(SECRET).hex())
    if ciphertext:
        _assert_no_leak(info.value, ciphertext)


def test_verify_wallet_key() -> None:
    key = cipher_key(SECRET)
    ciphertext = encrypt_private_key(PRIVATE_KEY, key, IV)
    checksummed = to_checksum_address(ADDRESS)
    assert verify_wallet_key(ciphertext, IV.hex(), ADDRESS, key) is None
    assert verify_wallet_key(ciphertext, IV.hex(), checksummed, key) is None
    assert verify_wallet_key(ciphertext, IV.hex(), "0x" + ADDRESS[2:].upper(), key) is None
    assert verify_wallet_key(ciphertext, IV.hex(), EIP55_NORMAL[0], key) == "key_address_mismatch"
    assert verify_wallet_key(ciphertext, IV.hex(), ADDRESS[:-1], key) == "key_address_mismatch"
    assert verify_wallet_key(ciphertext, IV.hex(), ADDRESS, cipher_key("wrong")) == "decrypt_failed"
    assert verify_wallet_key("", IV.hex(), ADDRESS, key) == "decrypt_failed"
    assert verify_wallet_key(ciphertext, "", ADDRESS, key) == "decrypt_failed"
    assert verify_wallet_key(ciphertext, IV.hex(), ADDRESS, b"short") == "decrypt_failed"


def test_verify_wallet_key_with_invalid_scalar() -> None:
    key = cipher_key(SECRET)
    ciphertext = encrypt_private_key("0x" + "0" * 64, key, IV)
    assert verify_wallet_key(ciphertext, IV.hex(), ADDRESS, key) == "key_address_mismatch"


def test_verify_wallet_keys_decrypts_a_batch_as_one_key_at_a_time_does() -> None:
    """One AES call for the batch: a bad entry, of any length, must neither shift nor spoil its neighbours."""
    key = cipher_key(SECRET)
    iv2 = bytes(range(16, 32))
    good = encrypt_private_key(PRIVATE_KEY, key, IV)
    other_iv = encrypt_private_key(PRIVATE_KEY, key, iv2)
    # A valid key padded to 96 bytes (a longer ciphertext in the middle of the batch), and plaintexts that
    # decrypt with valid padding but are not keys.
    long_padding = AES.new(key, AES.MODE_CBC, iv2).encrypt(PRIVATE_KEY.encode() + bytes([30]) * 30).hex()
    not_a_key = AES.new(key, AES.MODE_CBC, IV).encrypt(pad(b"0x" + b"z" * 64, 16)).hex()
    not_ascii = AES.new(key, AES.MODE_CBC, IV).encrypt(pad(b"\xff" * 20, 16)).hex()
    batch = [
        (good, IV.hex(), ADDRESS),
        ("zz" * 80, IV.hex(), ADDRESS),  # not hex
        (other_iv, iv2.hex(), to_checksum_address(ADDRESS)),
        ("00" * 79, IV.hex(), ADDRESS),  # not whole blocks
        (long_padding, iv2.hex(), ADDRESS),  # padding longer than a block: invalid PKCS#7
        (good, iv2.hex(), ADDRESS),  # the wrong iv garbles the first block
        (encrypt_private_key(PRIVATE_KEY, cipher_key("wrong"), IV), IV.hex(), ADDRESS),
        (not_a_key, IV.hex(), ADDRESS),
        (not_ascii, IV.hex(), ADDRESS),
        (encrypt_private_key("0x" + "0" * 64, key, IV), IV.hex(), ADDRESS),  # not a secp256k1 scalar
        (good, IV.hex(), EIP55_NORMAL[0]),  # decrypts to another address's key
        (good, IV.hex()[:30], ADDRESS),  # short iv
        (other_iv, iv2.hex(), "0x" + ADDRESS[2:].upper()),
    ]
    expected = [None, "decrypt_failed", None, "decrypt_failed", "decrypt_failed", "decrypt_failed",
                "decrypt_failed", "decrypt_failed", "decrypt_failed", "key_address_mismatch",
                "key_address_mismatch", "decrypt_failed", None]
    assert verify_wallet_keys(batch, key) == expected
    assert [verify_wallet_key(*wallet, key) for wallet in batch] == expected
    assert verify_wallet_keys(batch, b"short") == ["decrypt_failed"] * len(batch)
    assert verify_wallet_keys([], key) == []
