"""Schnorr key PoK: honest proofs verify, anything else is refused with ``bad-key-pok``."""

from __future__ import annotations

import gmpy2
import pytest

from crowdmesh.crypto.groups import DEFAULT, PAPER, Group, Profile, is_element
from crowdmesh.crypto.proofs import (
    SchnorrProof,
    is_valid_key_pok,
    prove_key,
    verify_key_pok,
)
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, ValidationError

ALICE = b"A" * 32
BOB = b"B" * 32


def keypair(profile: Profile, seed: int) -> tuple[int, int]:
    sk = profile.random_exponent(DeterministicRng(seed))
    return sk, gmpy2.powmod(profile.group.g, sk, profile.group.p)


def reason(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as exc:
        fn(*args)
    return exc.value.code


@pytest.mark.parametrize("profile", [DEFAULT, PAPER], ids=lambda p: p.name)
def test_honest_key_pok_verifies_in_both_forms(profile: Profile) -> None:
    sk, pk = keypair(profile, 1)
    proof = prove_key(profile, ALICE, sk, DeterministicRng(2))
    verify_key_pok(profile, ALICE, pk, proof)
    verify_key_pok(profile, ALICE, pk, proof.to_bytes())
    verify_key_pok(profile.group, ALICE, pk, proof)  # a bare group is accepted too
    assert SchnorrProof.from_bytes(proof.to_bytes()) == proof
    assert is_valid_key_pok(profile, ALICE, pk, proof)


def test_proof_is_bound_to_identity_and_key() -> None:
    sk, pk = keypair(DEFAULT, 1)
    proof = prove_key(DEFAULT, ALICE, sk, DeterministicRng(2))
    _, other_pk = keypair(DEFAULT, 3)
    assert reason(verify_key_pok, DEFAULT, BOB, pk, proof) == "bad-key-pok"  # replayed
    assert reason(verify_key_pok, DEFAULT, ALICE, other_pk, proof) == "bad-key-pok"


class _SmallNonce:
    """An Rng whose nonce is a fixed small exponent, so g^k is the same integer in both groups."""

    def randbits(self, k: int) -> int:
        return 100

    def randbelow(self, n: int) -> int:
        raise AssertionError("not used by prove_key")

    def token_bytes(self, n: int) -> bytes:
        raise AssertionError("not used by prove_key")


# Two 128-bit safe primes p ≡ 7 (mod 8): same element width, so the key and the commitment
# encode to the same bytes in both groups and only the group fields (p, g) of the hash differ.
# (ffdhe2048 vs ffdhe3072 would differ in element width too, which hides a missing p.)
GROUP_A = Group("test-a", gmpy2.mpz(0xB2E3765F6F42778A4858C2ADE4539587))
GROUP_B = Group("test-b", gmpy2.mpz(0xA85D2F8EE5FF834C8418024CBB3AAF4F))


def test_proof_is_bound_to_the_group() -> None:
    for group in (GROUP_A, GROUP_B):
        assert gmpy2.is_prime(group.p) and gmpy2.is_prime(group.q) and group.p % 8 == 7
    assert GROUP_A.element_bytes == GROUP_B.element_bytes
    sk, key = 5, 32  # 2^5 and the commitment 2^100 lie below both primes
    proof = prove_key(GROUP_A, ALICE, sk, _SmallNonce())
    verify_key_pok(GROUP_A, ALICE, key, proof)
    for group in (GROUP_A, GROUP_B):  # same key, same recomputed commitment in either group
        p = group.p
        assert is_element(group, key)
        inv = gmpy2.invert(gmpy2.powmod(key, proof.e, p), p)
        assert gmpy2.powmod(group.g, proof.s, p) * inv % p == 1 << 100
    assert reason(verify_key_pok, GROUP_B, ALICE, key, proof) == "bad-key-pok"
    assert not is_valid_key_pok(GROUP_B, ALICE, key, proof.to_bytes())


def test_tampered_proof_fails() -> None:
    sk, pk = keypair(DEFAULT, 1)
    proof = prove_key(DEFAULT, ALICE, sk, DeterministicRng(2))
    for bad in (SchnorrProof(proof.e, proof.s + 1), SchnorrProof(proof.e ^ 1, proof.s)):
        assert reason(verify_key_pok, DEFAULT, ALICE, pk, bad) == "bad-key-pok"
    huge = SchnorrProof(proof.e, proof.s + (1 << 700))
    assert reason(verify_key_pok, DEFAULT, ALICE, pk, huge) == "bad-key-pok"


def test_keys_outside_subgroup_or_identity_refused() -> None:
    p = DEFAULT.group.p
    sk, pk = keypair(DEFAULT, 1)
    proof = prove_key(DEFAULT, ALICE, sk, DeterministicRng(2))
    for key in (1, 0, p - pk, p, p + pk):
        assert reason(verify_key_pok, DEFAULT, ALICE, key, proof) == "bad-key-pok"


def test_proof_bytes_are_strict() -> None:
    proof = prove_key(DEFAULT, ALICE, 12345, DeterministicRng(2))
    raw = proof.to_bytes()
    assert len(raw) <= 16 + 68
    for bad in (b"", raw[:16], raw[:16] + b"\x00" + raw[16:], raw + b"\x00" * 600):
        with pytest.raises(DecodeError) as exc:
            SchnorrProof.from_bytes(bad)
        assert exc.value.code == "bad-proof-encoding"
        _, pk = keypair(DEFAULT, 9)
        assert reason(verify_key_pok, DEFAULT, ALICE, pk, bad) == "bad-key-pok"
