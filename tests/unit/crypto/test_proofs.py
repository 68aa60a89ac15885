"""Schnorr key PoK: honest proofs verify, anything else is refused with ``bad-key-pok``."""

from __future__ import annotations

import gmpy2
import pytest

from crowdmesh.crypto.groups import DEFAULT, PAPER, Profile
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


def test_proof_is_bound_to_identity_key_and_group() -> None:
    sk, pk = keypair(DEFAULT, 1)
    proof = prove_key(DEFAULT, ALICE, sk, DeterministicRng(2))
    _, other_pk = keypair(DEFAULT, 3)
    assert reason(verify_key_pok, DEFAULT, BOB, pk, proof) == "bad-key-pok"  # replayed
    assert reason(verify_key_pok, DEFAULT, ALICE, other_pk, proof) == "bad-key-pok"
    assert not is_valid_key_pok(PAPER, ALICE, pk % PAPER.group.p, proof)


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
