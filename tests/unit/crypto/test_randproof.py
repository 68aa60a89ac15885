"""Proof of encryption randomness: honest bundles verify; a wrong sender, task or round, a
tampered chunk and a re-randomised copy (the copying attack) are refused with ``bad-randproof``."""

from __future__ import annotations

import dataclasses

import pytest

from crowdmesh.crypto.elgamal import Bundle, blind, decrypt, keygen, public_key
from crowdmesh.crypto.groups import DEFAULT, PAPER, Profile
from crowdmesh.crypto.randproof import (
    RandProof,
    RandStatement,
    encrypt_proven,
    is_valid_randomness,
    prove_randomness,
    verify_randomness,
)
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError

ALICE, BOB = b"A" * 32, b"B" * 32
TASK = b"T" * 32
DATA = bytes(range(256)) * 6  # 1536 bytes: 5 chunks in ffdhe3072


def _setup(profile: Profile = DEFAULT, seed: int = 1):
    pair = keygen(profile, DeterministicRng(seed))
    pk = public_key(profile, pair.pk)
    bundle, proof = encrypt_proven(pk, DATA, DeterministicRng(seed + 1), ALICE, TASK, 3,
                                   bundle_id=b"w1")
    return pair, pk, bundle, proof


def _code(profile, st, proof) -> str:
    with pytest.raises(ValidationError) as exc:
        verify_randomness(profile, st, proof)
    return exc.value.code


@pytest.mark.parametrize("profile", [DEFAULT, PAPER], ids=lambda p: p.name)
def test_honest_bundle_verifies_and_decrypts(profile: Profile) -> None:
    pair, _, bundle, proof = _setup(profile)
    st = RandStatement(ALICE, TASK, 3, bundle)
    verify_randomness(profile, st, proof)
    verify_randomness(profile, st, proof.to_bytes())
    assert RandProof.from_bytes(proof.to_bytes()) == proof
    assert decrypt(profile, pair.sk, bundle) == DATA


def test_wrong_sender_task_or_round_fails() -> None:
    _, _, bundle, proof = _setup()
    assert _code(DEFAULT, RandStatement(BOB, TASK, 3, bundle), proof) == "bad-randproof"
    assert _code(DEFAULT, RandStatement(ALICE, b"U" * 32, 3, bundle), proof) == "bad-randproof"
    assert _code(DEFAULT, RandStatement(ALICE, TASK, 4, bundle), proof) == "bad-randproof"


def test_rerandomised_copy_cannot_carry_a_proof() -> None:
    """Bob re-randomises Alice's bundle: her proof fails for him, and a proof he makes with the
    only exponents he knows (his own s_i) fails too."""
    _, pk, bundle, proof = _setup()
    rng = DeterministicRng(9)
    copy = blind(pk, bundle, rng, bundle_id=b"w2")
    assert copy.c1 != bundle.c1 and copy.c2 != bundle.c2
    st = RandStatement(BOB, TASK, 3, copy)
    assert not is_valid_randomness(DEFAULT, st, proof)
    fake_rs = [DEFAULT.random_exponent(rng) for _ in copy.c1]
    assert not is_valid_randomness(DEFAULT, st, prove_randomness(DEFAULT, st, fake_rs, rng))


def test_tampered_chunk_fails() -> None:
    _, _, bundle, proof = _setup()
    p = DEFAULT.group.p
    for column in ("c1", "c2"):
        values = list(getattr(bundle, column))
        values[2] = values[2] * 4 % p  # still a QR: only the proof can notice
        bad = dataclasses.replace(bundle, **{column: tuple(values)})
        assert _code(DEFAULT, RandStatement(ALICE, TASK, 3, bad), proof) == "bad-randproof"


def test_malformed_proofs_are_refused() -> None:
    _, _, bundle, proof = _setup()
    st = RandStatement(ALICE, TASK, 3, bundle)
    assert _code(DEFAULT, st, b"\x00" * 16) == "bad-randproof"
    assert _code(DEFAULT, st, proof.to_bytes()[:16] + b"\x00\x01") == "bad-randproof"
    assert _code(DEFAULT, st, RandProof(proof.e, 1 << 2000)) == "bad-randproof"
    empty = RandStatement(ALICE, TASK, 3, Bundle(b"", (), ()))
    assert _code(DEFAULT, empty, proof) == "bad-randproof"


def test_a_passed_check_is_remembered_and_answers_only_the_same_inputs(monkeypatch) -> None:
    """The second check of the same (statement, proof) does no arithmetic; a proof differing
    in e or s, or the same proof for another round, is still checked and refused."""
    from crowdmesh.crypto import randproof

    _, _, bundle, proof = _setup(seed=7)
    st = RandStatement(ALICE, TASK, 3, bundle)
    verify_randomness(DEFAULT, st, proof)

    def no_arithmetic(*args: object) -> int:
        raise AssertionError("a remembered check recomputed")

    monkeypatch.setattr(randproof, "_combined_c1", no_arithmetic)
    verify_randomness(DEFAULT, st, proof)  # answered from the cache
    monkeypatch.undo()
    assert _code(DEFAULT, st, dataclasses.replace(proof, s=proof.s + 1)) == "bad-randproof"
    assert _code(DEFAULT, st, dataclasses.replace(proof, e=proof.e ^ 1)) == "bad-randproof"
    assert _code(DEFAULT, RandStatement(ALICE, TASK, 4, bundle), proof) == "bad-randproof"


def test_the_cache_of_passed_checks_is_bounded(monkeypatch) -> None:
    from crowdmesh.crypto import randproof

    monkeypatch.setattr(randproof, "VERIFIED_CACHE", 2)
    for seed in (11, 13, 15):
        _, _, bundle, proof = _setup(PAPER, seed)
        verify_randomness(PAPER, RandStatement(ALICE, TASK, 3, bundle), proof)
    assert len(randproof._verified) <= 2
