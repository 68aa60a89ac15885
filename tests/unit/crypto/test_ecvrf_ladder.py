"""The X25519 path of ECVRF verification: same points, same accept/reject as plain libsodium.

``verify_decoded`` computes c·Y and s·H from two X25519 ladders when Y and H are known to lie in
the prime-order subgroup. These tests hold it to the multiplication it replaces (``_mul``:
libsodium's checked edwards25519 multiplication, plain integers where libsodium refuses) and the
whole verification to a reference that only uses ``_mul``, on valid and invalid proofs.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as sodium

from crowdmesh.crypto import _ed25519 as ed
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.ecvrf import Suite
from crowdmesh.errors import ValidationError

SEEDS = [hashlib.sha256(b"ladder-%d" % i).digest() for i in range(4)]
KEYS = [ecvrf.public_key(s) for s in SEEDS]
SMALL_EIGHTS = [8, 16, 8 * 12345, 1 << 120, (1 << 127) - 7]  # c ≡ 0 mod 8 and small: no scalar


def _point(k: int) -> bytes:
    return ecvrf._mul_base(k % ed.L)


def _montgomery(enc: bytes) -> ed.Montgomery:
    mont = ed.to_montgomery(ed.decode_or_raise(enc))
    assert mont is not None
    return mont


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, ed.L - 1), n=st.one_of(st.integers(0, ed.L - 1),
                                               st.integers(0, (1 << 128) - 1),
                                               st.sampled_from(SMALL_EIGHTS)))
def test_subgroup_multiplication_matches_libsodium(k, n):
    p = _point(k)
    assert ecvrf._mul_subgroup(n, _montgomery(p), p) == ecvrf._mul(n, p)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, ed.L - 1, ed.L - 2, ed.L - 8,
                               ed.L - 9, *SMALL_EIGHTS, *(e - 1 for e in SMALL_EIGHTS),
                               *(e + 1 for e in SMALL_EIGHTS)])
def test_edge_scalars_match_libsodium(n):
    # n = 0, ±1 (Q = identity or ±P) and n or n ± 1 without a ladder scalar fall back or take
    # the Q - P recovery; every route must give _mul's point.
    for k in (1, 2, 12345, ed.L - 1):
        p = _point(k)
        assert ecvrf._mul_subgroup(n, _montgomery(p), p) == ecvrf._mul(n, p)


@given(n=st.integers(0, (1 << 253) - 1))
def test_ladder_scalar_survives_clamping_and_is_plus_or_minus_n(n):
    k_bytes = ed.ladder_scalar(n)
    if k_bytes is None:
        return
    k = int.from_bytes(k_bytes, "little")
    assert k % 8 == 0 and 1 << 254 <= k < 1 << 255  # X25519's clamping leaves it as it is
    assert k % ed.L in (n % ed.L, -n % ed.L)


def test_q_minus_p_recovery_is_used_and_exact():
    # n + 1 ≡ 0 mod 8 and small: n + 1 has no ladder scalar, so recovery runs from Q - P.
    n = (1 << 100) - 1
    assert ed.ladder_scalar(n + 1) is None and ed.ladder_scalar(n - 1) is not None
    p = _point(99)
    mont = _montgomery(p)
    u1 = ecvrf._ladder(ed.ladder_scalar(n), mont.u_bytes)
    u2 = ecvrf._ladder(ed.ladder_scalar(n - 1), mont.u_bytes)
    assert u1 is not None and u2 is not None
    point = ed.recover(mont, u1, u2, -1)
    assert point is not None and ed.encode(point) == ecvrf._mul(n, p)


def _torsion_point() -> ed.Point:
    for i in range(256):
        p = ed.decode(hashlib.sha512(bytes([i])).digest()[:32])
        if p is not None:
            t = ed.scalar_mult(ed.L, p)
            if not ed.is_identity(ed.scalar_mult(4, t)):
                return t
    raise AssertionError("no order-8 point")


def _torsioned(key: bytes) -> bytes:
    return ed.encode(ed.add(ed.decode_or_raise(key), _torsion_point()))


def test_key_outside_the_subgroup_has_no_montgomery_form():
    assert ecvrf._key_montgomery(KEYS[0]) is not None
    assert ecvrf._key_montgomery(_torsioned(KEYS[0])) is None


def _reference_verify(public: bytes, pi: bytes, alpha: bytes, suite: Suite) -> bytes:
    """RFC 9381 §5.3 with every multiplication through ``_mul`` (the code before the X25519
    path)."""
    y = ecvrf._decode_key(public)
    proof = ecvrf.decode_proof(pi, suite=suite)
    h = ecvrf._ENCODE_TO_CURVE[suite](y, alpha)
    u = ecvrf._sub(ecvrf._mul_base(proof.s), ecvrf._mul(proof.c, y))
    v = ecvrf._sub(ecvrf._mul(proof.s, h), ecvrf._mul(proof.c, proof.gamma))
    if ecvrf._challenge(suite, y, h, proof.gamma, u, v) != proof.c:
        raise ValidationError(ecvrf.BAD_PROOF, "challenge mismatch")
    return proof.beta


def _verify(public: bytes, pi: bytes, alpha: bytes, suite: Suite) -> bytes:
    return ecvrf.verify(public, pi, alpha, suite=suite)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except ValidationError as exc:
        return exc.code


def _variants(pi: bytes, other: bytes) -> list[bytes]:
    """The proof, and proofs that must fail in various places."""
    c = int.from_bytes(pi[32:48], "little")
    s = int.from_bytes(pi[48:], "little")
    gamma = ed.decode_or_raise(pi[:32])
    return [
        pi,
        other,
        pi[:32] + ((c + 1) % (1 << 128)).to_bytes(16, "little") + pi[48:],
        pi[:48] + ((s + 1) % ed.L).to_bytes(32, "little"),
        pi[:48] + bytes(32),  # s = 0
        pi[:32] + bytes(16) + pi[48:],  # c = 0
        pi[:32] + (8).to_bytes(16, "little") + pi[48:],  # c with no ladder scalar
        ed.encode(ed.add(gamma, _torsion_point())) + pi[32:],  # Gamma outside the subgroup
        ecvrf._mul_base(5) + pi[32:],  # another Gamma
        ed.IDENTITY + pi[32:],
    ]


@pytest.mark.parametrize("suite", list(Suite))
def test_verify_matches_the_reference_on_valid_and_invalid_proofs(suite):
    for i, (seed, key) in enumerate(zip(SEEDS, KEYS, strict=True)):
        alpha = b"alpha-%d" % i
        pi = ecvrf.prove(seed, alpha, suite=suite)
        other = ecvrf.prove(SEEDS[(i + 1) % len(SEEDS)], alpha, suite=suite)
        for candidate in _variants(pi, other):
            for public in (key, KEYS[(i + 1) % len(KEYS)], _torsioned(key)):
                for a in (alpha, alpha + b"!"):
                    want = _outcome(_reference_verify, public, candidate, a, suite)
                    got = _outcome(_verify, public, candidate, a, suite)
                    assert got == want
        assert ecvrf.verify(key, pi, alpha, suite=suite) == ecvrf.proof_to_hash(pi, suite=suite)


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), alpha=st.binary(max_size=40),
       c=st.integers(0, (1 << 128) - 1), s=st.integers(0, ed.L - 1), g=st.integers(1, ed.L - 1))
def test_random_proofs_match_the_reference(seed, alpha, c, s, g):
    key = ecvrf.public_key(seed)
    forged = _point(g) + c.to_bytes(16, "little") + s.to_bytes(32, "little")
    honest = ecvrf.prove(seed, alpha)
    for pi in (forged, honest):
        want = _outcome(_reference_verify, key, pi, alpha, Suite.TAI)
        assert _outcome(_verify, key, pi, alpha, Suite.TAI) == want


@given(k=st.integers(0, ed.L - 1), t=st.integers(0, 7))
def test_double_is_add_to_itself(k, t):
    p = ed.add(ed.decode_or_raise(_point(k)) if k else (0, 1, 1, 0),
               ed.scalar_mult(t, _torsion_point()))
    assert ed.encode(ed.double(p)) == ed.encode(ed.add(p, p))


def test_x25519_refuses_the_identity_result():
    # _ladder relies on libsodium refusing an all-zero output (n ≡ 0 mod L) rather than
    # returning it; _mul_subgroup then falls back to _mul.
    mont = _montgomery(_point(3))
    assert ecvrf._ladder(ed.ladder_scalar(ed.L), mont.u_bytes) is None
    assert ecvrf._mul_subgroup(0, mont, _point(3)) == ed.IDENTITY
    assert sodium.crypto_core_ed25519_is_valid_point(_point(3))
