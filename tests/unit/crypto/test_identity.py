"""Ed25519 account keys and their key-file encoding (plain and passphrase-encrypted)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.pwhash import argon2id

from crowdmesh.crypto import identity
from crowdmesh.crypto.identity import (
    AccountKey,
    decode_account_key,
    encode_account_key,
    inspect_account_key,
    verify_signature,
)
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, UsageError, ValidationError

FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def _code(exc_type, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    return info.value.code


def test_rfc8032_test_1():
    key = AccountKey(RFC8032_SEED)
    assert key.public == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIG_EMPTY
    assert verify_signature(key.public, b"", RFC8032_SIG_EMPTY)
    assert not verify_signature(key.public, b"x", RFC8032_SIG_EMPTY)
    assert not verify_signature(key.public[:31], b"", RFC8032_SIG_EMPTY)


def test_generate_uses_the_injected_rng():
    assert AccountKey.generate(DeterministicRng(7)) == AccountKey.generate(DeterministicRng(7))
    assert AccountKey.generate(DeterministicRng(7)) != AccountKey.generate(DeterministicRng(8))
    assert "seed" not in repr(AccountKey.generate(DeterministicRng(7)))


@given(seed=st.binary(min_size=32, max_size=32))
def test_plain_round_trip(seed):
    key = AccountKey(seed)
    blob = encode_account_key(key, None, DeterministicRng(0))
    assert decode_account_key(blob, None) == key
    assert decode_account_key(blob, b"ignored for a plain key") == key
    info = inspect_account_key(blob)
    assert (info.public, info.encrypted) == (key.public, False)


@given(seed=st.binary(min_size=32, max_size=32), passphrase=st.binary(min_size=1, max_size=40))
def test_encrypted_round_trip(seed, passphrase):
    key = AccountKey(seed)
    blob = encode_account_key(key, passphrase, DeterministicRng(seed), **FAST)
    assert seed not in blob
    assert decode_account_key(blob, passphrase) == key
    info = inspect_account_key(blob)
    assert info.public == key.public and info.encrypted
    assert (info.opslimit, info.memlimit) == (FAST["opslimit"], FAST["memlimit"])


def test_salt_and_nonce_are_fresh_per_encoding():
    key = AccountKey(RFC8032_SEED)
    rng = DeterministicRng(1)
    assert encode_account_key(key, b"pw", rng, **FAST) != encode_account_key(
        key, b"pw", rng, **FAST
    )


def test_wrong_passphrase():
    blob = encode_account_key(
        AccountKey(RFC8032_SEED), b"correct horse", DeterministicRng(2), **FAST
    )
    assert _code(ValidationError, decode_account_key, blob, b"correct horsf") == "wrong-passphrase"
    assert _code(ValidationError, decode_account_key, blob, b"") == "wrong-passphrase"


def test_missing_passphrase():
    blob = encode_account_key(AccountKey(RFC8032_SEED), b"pw", DeterministicRng(3), **FAST)
    assert _code(UsageError, decode_account_key, blob, None) == "passphrase-required"


def test_empty_passphrase_and_bad_limits_are_refused_on_encode():
    key, rng = AccountKey(RFC8032_SEED), DeterministicRng(4)
    assert _code(UsageError, encode_account_key, key, b"", rng, **FAST) == "empty-passphrase"
    for limits in ({"opslimit": 0}, {"memlimit": 1024}, {"opslimit": identity.MAX_OPSLIMIT + 1}):
        assert _code(UsageError, encode_account_key, key, b"pw", rng, **limits) == "bad-kdf-limits"


@pytest.mark.parametrize("encrypted", [False, True])
def test_every_single_byte_corruption_is_bad_key_file(encrypted):
    passphrase = b"pw" if encrypted else None
    blob = encode_account_key(AccountKey(RFC8032_SEED), passphrase, DeterministicRng(5), **FAST)
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x01
        assert _code(DecodeError, decode_account_key, bytes(damaged), passphrase) == "bad-key-file"
        assert _code(DecodeError, inspect_account_key, bytes(damaged)) == "bad-key-file"


@pytest.mark.parametrize("encrypted", [False, True])
def test_truncated_or_extended_is_bad_key_file(encrypted):
    passphrase = b"pw" if encrypted else None
    blob = encode_account_key(AccountKey(RFC8032_SEED), passphrase, DeterministicRng(6), **FAST)
    for damaged in (b"", blob[:10], blob[:-1], blob + b"\x00"):
        assert _code(DecodeError, decode_account_key, damaged, passphrase) == "bad-key-file"


def _reseal(data):
    return data + identity._checksum(data)


def test_header_fields_are_checked_even_with_a_valid_checksum():
    blob = encode_account_key(AccountKey(RFC8032_SEED), None, DeterministicRng(0))
    data = blob[:-8]
    for forged in (
        b"XXXX" + data[4:],  # magic
        data[:4] + b"\x02" + data[5:],  # version
        data[:5] + b"\x07" + data[6:],  # kdf id
    ):
        assert _code(DecodeError, decode_account_key, _reseal(forged), None) == "bad-key-file"


def test_swapped_public_key_is_detected():
    blob = encode_account_key(AccountKey(RFC8032_SEED), None, DeterministicRng(0))
    other = AccountKey.generate(DeterministicRng(9)).public
    forged = _reseal(blob[:6] + other + blob[38:-8])
    assert _code(DecodeError, decode_account_key, forged, None) == "bad-key-file"
    assert inspect_account_key(forged).public == other  # inspect alone cannot tell


def test_hostile_kdf_limits_are_refused_before_running_the_kdf():
    blob = encode_account_key(AccountKey(RFC8032_SEED), b"pw", DeterministicRng(0), **FAST)
    data = bytearray(blob[:-8])
    data[38 + 4 : 38 + 12] = (1 << 40).to_bytes(8, "big")  # memlimit = 1 TiB
    assert _code(DecodeError, decode_account_key, _reseal(bytes(data)), b"pw") == "bad-key-file"


def test_file_sizes_are_fixed_and_capped():
    key = AccountKey(RFC8032_SEED)
    plain = encode_account_key(key, None, DeterministicRng(0))
    sealed = encode_account_key(key, b"pw", DeterministicRng(0), **FAST)
    assert (len(plain), len(sealed)) == (78, 146)
    assert len(sealed) == identity.MAX_KEY_FILE_SIZE
