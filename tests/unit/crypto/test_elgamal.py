"""ElGamal over bundles and the CSP pipeline: round trips, blinding, shuffling, attacks."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.crypto import _gmp
from crowdmesh.crypto.csp import (
    BUNDLE_ID_BYTES,
    ProvenBundle,
    TaskKeys,
    csp_process,
    csp_process_paper,
    random_permutation,
    requester_open,
    requester_verify,
    task_keys,
)
from crowdmesh.crypto.elgamal import (
    Bundle,
    KeyPair,
    blind,
    decrypt,
    decrypt_elements,
    encrypt,
    encrypt_elements,
    keygen,
    public_key,
    reencrypt,
)
from crowdmesh.crypto.encoding import chunks_needed
from crowdmesh.crypto.groups import DEFAULT, PAPER, Profile
from crowdmesh.crypto.proofs import (
    is_valid_reencryption,
    prove_key,
    prove_reencryption,
    verify_key_pok,
    verify_reencryption,
)
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, ValidationError

CSP_ID, REQ_ID = b"c" * 32, b"r" * 32


@cache
def setup(profile: Profile) -> tuple[KeyPair, KeyPair, TaskKeys]:
    rng = DeterministicRng(profile.name.encode())
    csp, req = keygen(profile, rng), keygen(profile, rng)
    return csp, req, task_keys(profile, csp.pk, req.pk)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=2**32))
def test_default_pipeline_is_identity_in_both_orders(data: bytes, seed: int) -> None:
    csp, req, keys = setup(DEFAULT)
    rng = DeterministicRng(seed)
    bundle = encrypt(keys.joint, data, rng)
    (out,) = csp_process(keys, csp.sk, [bundle], rng).outputs
    assert requester_open(keys, req.sk, out) == data
    (paper,) = csp_process_paper(keys, csp.sk, [bundle], rng)
    assert decrypt(DEFAULT, req.sk, paper) == data


@pytest.mark.parametrize("order", ["ours", "paper"])
def test_paper_profile_pipeline_is_identity(order: str) -> None:
    csp, req, keys = setup(PAPER)
    rng = DeterministicRng(7)
    data = bytes(range(256)) + b"\0" * 100  # two chunks, ends in zeros
    bundle = encrypt(keys.joint, data, rng)
    assert len(bundle) == 2
    if order == "ours":
        (out,) = csp_process(keys, csp.sk, [bundle], rng).outputs
        assert requester_open(keys, req.sk, out) == data
    else:
        (final,) = csp_process_paper(keys, csp.sk, [bundle], rng)
        assert decrypt(PAPER, req.sk, final) == data


def test_blind_changes_both_components_and_keeps_plaintext() -> None:
    _, req, keys = setup(DEFAULT)
    rng = DeterministicRng(3)
    bundle = encrypt(keys.requester, b"x" * 1000, rng)
    blinded = blind(keys.requester, bundle, rng)
    for i in range(len(bundle)):
        assert blinded.c1[i] != bundle.c1[i] and blinded.c2[i] != bundle.c2[i]
    assert decrypt(DEFAULT, req.sk, blinded) == b"x" * 1000
    # a fresh r' per chunk: blinding the same chunk twice gives different results
    twice = encrypt_elements(keys.requester, [4, 4], rng)
    assert twice.c1[0] != twice.c1[1]


def test_reencrypt_then_decrypt() -> None:
    csp, req, keys = setup(DEFAULT)
    ms = [_gmp.mpz(4), _gmp.mpz(9)]
    bundle = encrypt_elements(keys.joint, ms, DeterministicRng(4))
    assert decrypt_elements(DEFAULT, req.sk, reencrypt(DEFAULT, csp.sk, bundle)) == ms
    # neither key alone opens the joint ciphertext
    assert decrypt_elements(DEFAULT, req.sk, bundle) != ms


def test_paper_order_intermediate_is_linkable_and_decryptable_by_requester() -> None:
    """Why we reorder: after the paper's ReEnc, c1 is the worker's c1 and REQ can decrypt."""
    csp, req, keys = setup(DEFAULT)
    bundle = encrypt(keys.joint, b"model", DeterministicRng(5))
    intermediate = reencrypt(DEFAULT, csp.sk, bundle)
    assert intermediate.c1 == bundle.c1
    assert decrypt(DEFAULT, req.sk, intermediate) == b"model"


def make_bundles(
    keys: TaskKeys, n: int, chunks: int, seed: int
) -> tuple[list[bytes], list[Bundle]]:
    rng = DeterministicRng(seed)
    models = [bytes([i]) * (50 + 40 * i) for i in range(n)]  # sizes differ, padding hides it
    bundles = [
        encrypt(keys.joint, m, rng, chunks=chunks, bundle_id=b"worker-%d" % i)
        for i, m in enumerate(models)
    ]
    return models, bundles


def test_csp_output_is_a_permutation_with_fresh_ids_and_equal_sizes() -> None:
    csp, req, keys = setup(DEFAULT)
    models, bundles = make_bundles(keys, 5, chunks=2, seed=6)
    assert {len(b) for b in bundles} == {2}
    rng = DeterministicRng(8)
    result = csp_process(keys, csp.sk, bundles, rng)
    assert sorted(result.permutation) == list(range(5))
    assert result.permutation != tuple(range(5))  # this seed shuffles
    ids = [o.bundle_id for o in result.outputs]
    assert len(set(ids)) == 5 and all(len(i) == BUNDLE_ID_BYTES for i in ids)
    assert not set(ids) & {b.bundle_id for b in bundles}
    assert {len(o.c1) for o in result.outputs} == {2}
    requester_verify(keys, result.outputs)
    opened = [requester_open(keys, req.sk, o) for o in result.outputs]
    assert opened == [models[i] for i in result.permutation]
    # the output carries no trace of the input position or the worker's c1
    inputs_c1 = {c for b in bundles for c in b.c1}
    assert not inputs_c1 & {c for o in result.outputs for c in o.c1}


def test_csp_refuses_unequal_sizes_and_non_residues() -> None:
    csp, _, keys = setup(DEFAULT)
    rng = DeterministicRng(9)
    small = encrypt(keys.joint, b"a", rng)
    large = encrypt(keys.joint, b"a" * 500, rng)
    with pytest.raises(ValidationError) as exc:
        csp_process(keys, csp.sk, [small, large], rng)
    assert exc.value.code == "bundle-size-mismatch"
    p = DEFAULT.group.p
    tagged = Bundle(small.bundle_id, small.c1, (p - small.c2[0],))  # a non-residue tag
    with pytest.raises(ValidationError) as exc:
        csp_process(keys, csp.sk, [tagged], rng)
    assert exc.value.code == "bad-group-element"


def test_rogue_requester_key_decrypts_alone_and_pok_refuses_it() -> None:
    profile = DEFAULT
    g, p = profile.group.g, profile.group.p
    rng = DeterministicRng(10)
    csp = keygen(profile, rng)
    verify_key_pok(profile, CSP_ID, csp.pk, prove_key(profile, CSP_ID, csp.sk, rng))
    x = profile.random_exponent(rng)
    rogue = _gmp.powmod(g, x, p) * _gmp.invert(csp.pk, p) % p  # h_req = g^x / h_csp
    keys = task_keys(profile, csp.pk, rogue)
    assert keys.joint.h == _gmp.powmod(g, x, p)
    worker_ct = encrypt(keys.joint, b"private model", rng)
    assert decrypt(profile, x, worker_ct) == b"private model"  # no CSP involved
    # Registration: the only exponent the requester knows is x, which is not log_g(rogue).
    attempt = prove_key(profile, REQ_ID, x, rng)
    with pytest.raises(ValidationError) as exc:
        verify_key_pok(profile, REQ_ID, rogue, attempt)
    assert exc.value.code == "bad-key-pok"


def test_legendre_distinguisher_wins_on_raw_encoding_and_is_at_chance_on_ours() -> None:
    """IND-CPA game: the adversary guesses b from Legendre(c2) (CRYPTO.md §4d)."""
    _, _, keys = setup(DEFAULT)
    p = DEFAULT.group.p
    rng = DeterministicRng(11)
    m0, m1 = b"\x03", b"\x04"  # raw integers 4 and 5 (v + 1): 4 is a QR, 5 is not mod p
    raw = {b: _gmp.mpz(int.from_bytes(m, "big") + 1) for b, m in enumerate((m0, m1))}
    assert _gmp.legendre(raw[0], p) == 1 and _gmp.legendre(raw[1], p) == -1
    trials = 200

    def wins(encrypt_b: object) -> int:
        count = 0
        for _ in range(trials):
            b = rng.randbelow(2)
            c2 = encrypt_b(b)  # type: ignore[operator]
            guess = 0 if _gmp.legendre(c2, p) == 1 else 1
            count += guess == b
        return count

    raw_wins = wins(lambda b: encrypt_elements(keys.joint, [raw[b]], rng).c2[0])
    our_wins = wins(lambda b: encrypt(keys.joint, (m0, m1)[b], rng).c2[0])
    assert raw_wins == trials
    assert 70 <= our_wins <= 130  # binomial(200, 1/2): outside this band with p < 1e-4


def test_tampered_chunk_fails_batched_dleq() -> None:
    csp, req, keys = setup(DEFAULT)
    _, bundles = make_bundles(keys, 1, chunks=20, seed=12)  # 20 ≥ 16: the bucket multiexp path
    (out,) = csp_process(keys, csp.sk, bundles, DeterministicRng(13)).outputs
    requester_verify(keys, [out])
    p, g = DEFAULT.group.p, DEFAULT.group.g
    c2_out = list(out.c2_out)
    tampered = [
        [*c2_out[:7], c2_out[7] * g % p, *c2_out[8:]],  # a different plaintext
        c2_out[1:] + c2_out[:1],  # chunks spliced out of order
    ]
    for column in tampered:
        bad = replace(out, c2_out=tuple(column))
        # the CSP's original proof, and a fresh one it makes for the false statement, both fail
        fresh = prove_reencryption(DEFAULT, csp.sk, bad.statement(csp.pk), DeterministicRng(1))
        for candidate in (bad, replace(bad, proof=fresh)):
            with pytest.raises(ValidationError) as exc:
                requester_open(keys, req.sk, candidate)
            assert exc.value.code == "bad-dleq"
    with pytest.raises(ValidationError) as exc:
        requester_verify(keys, [replace(out, bundle_id=b"\0" * 16)])
    assert exc.value.code == "bad-dleq"


def test_sign_flip_passes_the_squared_dleq_but_decoding_rejects_it() -> None:
    """The batch check works on squares, so it proves c2_out = ±c2 / c1^x; −m is no element."""
    csp, req, keys = setup(DEFAULT)
    (out,) = csp_process(keys, csp.sk, make_bundles(keys, 1, 2, 17)[1], DeterministicRng(2)).outputs
    p = DEFAULT.group.p
    flipped = replace(out, c2_out=(p - out.c2_out[0], out.c2_out[1]))
    proof = prove_reencryption(DEFAULT, csp.sk, flipped.statement(csp.pk), DeterministicRng(3))
    with pytest.raises(DecodeError) as exc:
        requester_open(keys, req.sk, replace(flipped, proof=proof))
    assert exc.value.code == "bad-group-element"


def test_reencryption_with_another_key_fails_dleq() -> None:
    csp, _, keys = setup(DEFAULT)
    other = keygen(DEFAULT, DeterministicRng(14))
    forged_keys = replace(keys, h_csp=other.pk)
    (out,) = csp_process(keys, csp.sk, make_bundles(keys, 1, 2, 15)[1], DeterministicRng(1)).outputs
    with pytest.raises(ValidationError) as exc:
        requester_verify(forged_keys, [out])
    assert exc.value.code == "bad-dleq"


def test_substituted_model_passes_requester_checks() -> None:
    """The documented limit (docs/crypto.md, Limits): no shuffle proof, so a CSP that swaps a
    worker's bundle for one of its own goes undetected by the requester's checks."""
    csp, req, keys = setup(DEFAULT)
    _, bundles = make_bundles(keys, 2, chunks=2, seed=18)
    forged = encrypt(keys.joint, b"chosen by the CSP", DeterministicRng(19), chunks=2)
    outputs = csp_process(keys, csp.sk, [bundles[0], forged], DeterministicRng(20)).outputs
    requester_verify(keys, outputs)
    opened = {requester_open(keys, req.sk, out) for out in outputs}
    assert b"chosen by the CSP" in opened


def test_dleq_verifier_refuses_a_csp_key_that_is_no_generator() -> None:
    csp, _, keys = setup(DEFAULT)
    (out,) = csp_process(keys, csp.sk, make_bundles(keys, 1, 2, 16)[1], DeterministicRng(1)).outputs
    p = DEFAULT.group.p
    # out of range, a non-residue (−h), the identity: each used to crash or verify
    for h_csp in (0, p, p + csp.pk, p - csp.pk, p - 1, 1):
        with pytest.raises(ValidationError) as exc:
            verify_reencryption(DEFAULT, out.statement(h_csp), out.proof)
        assert exc.value.code == "bad-key"
        assert not is_valid_reencryption(DEFAULT, out.statement(h_csp), out.proof)
    # With h_csp = 1 = g^0 a "ReEnc" that strips nothing has a valid DLEQ; the key check stops it.
    noop = replace(out, c2_out=out.c2)
    proof = prove_reencryption(DEFAULT, 0, noop.statement(1), DeterministicRng(2))
    with pytest.raises(ValidationError) as exc:
        verify_reencryption(DEFAULT, noop.statement(1), proof)
    assert exc.value.code == "bad-key"


def test_public_key_refuses_non_elements() -> None:
    with pytest.raises(ValidationError) as exc:
        public_key(DEFAULT, DEFAULT.group.p - 4)
    assert exc.value.code == "bad-group-element"


def test_chunk_counts_follow_encoding() -> None:
    _, _, keys = setup(DEFAULT)
    bundle = encrypt(keys.joint, bytes(1000), DeterministicRng(16))
    assert len(bundle) == chunks_needed(DEFAULT.group, 1000) == 3


def test_bundle_and_proven_bundle_wire_round_trip_and_strictness() -> None:
    csp, req, keys = setup(DEFAULT)
    group = DEFAULT.group
    _, bundles = make_bundles(keys, 1, chunks=2, seed=18)
    raw = bundles[0].to_bytes(group)
    assert len(raw) == 1 + len(b"worker-0") + 4 + 2 * 2 * group.element_bytes
    assert Bundle.from_bytes(group, raw, max_chunks=2) == bundles[0]
    (out,) = csp_process(keys, csp.sk, bundles, DeterministicRng(19)).outputs
    parsed = ProvenBundle.from_bytes(group, out.to_bytes(group), max_chunks=2)
    assert parsed == out and requester_open(keys, req.sk, parsed) == b"\0" * 50
    p_bytes = group.p.to_bytes(group.element_bytes, "big")
    bad_inputs = {
        "bad-bundle-encoding": [b"", raw[:5], raw[:-1], raw + b"\0"],
        "bad-element-encoding": [raw[: -group.element_bytes] + p_bytes],
    }
    for code, inputs in bad_inputs.items():
        for data in inputs:
            with pytest.raises(DecodeError) as exc:
                Bundle.from_bytes(group, data, max_chunks=2)
            assert exc.value.code == code
    with pytest.raises(DecodeError) as exc:
        Bundle.from_bytes(group, raw, max_chunks=1)  # over the caller's cap: refused unparsed
    assert exc.value.code == "bad-bundle-encoding"


def test_random_permutation_is_uniform_on_three_items() -> None:
    rng = DeterministicRng(20)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(1200):
        perm = random_permutation(3, rng)
        counts[perm] = counts.get(perm, 0) + 1
    assert len(counts) == 6 and all(140 <= c <= 260 for c in counts.values()), counts
    assert random_permutation(0, rng) == () and random_permutation(1, rng) == (0,)
