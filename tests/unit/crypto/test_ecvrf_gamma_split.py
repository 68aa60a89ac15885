"""c·Gamma in ECVRF verification as q·(8·Gamma) + r·Gamma: the same V, the same accept/reject.

``verify_decoded`` computes V = s·H - c·Gamma as s·H - q·(8·Gamma) - r·Gamma with c = 8q + r,
0 ≤ r < 8: 8·Gamma lies in the prime-order subgroup whatever Gamma is, so q·(8·Gamma) takes two
X25519 ladders, and r·Gamma is a sum of the multiples decoding kept. A Gamma with a torsion
component is where that could go wrong (it only holds on the whole curve), so these tests build
such proofs, valid ones included, for every c mod 8 and every torsion point, and hold V and the
whole of ``verify`` to an independent, slow, plain-integer RFC 9381 verifier below (its own
decoding, its own addition formulas, its own try-and-increment hash).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.crypto import _ed25519 as ed
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.ecvrf import Suite
from crowdmesh.errors import ValidationError
from tests.unit.crypto.test_ecvrf import ALL_VECTORS

# -- an independent RFC 9381 verifier: projective (X : Y : Z), add-2008-bbjlp with a = -1 ------

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
ZERO = (0, 1, 1)


def r_add(p1, p2):
    """Complete for a = -1 (a square) and d a non-square; doubles too."""
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    a = z1 * z2 % P
    b = a * a % P
    c = x1 * x2 % P
    d = y1 * y2 % P
    e = D * c % P * d % P
    f, g = (b - e) % P, (b + e) % P
    x3 = a * f % P * (((x1 + y1) * (x2 + y2) - c - d) % P) % P
    return x3, a * g % P * ((d + c) % P) % P, f * g % P


def r_neg(p):
    return (-p[0] % P, p[1], p[2])


def r_mul(n, p):
    acc = ZERO
    for bit in bin(n)[2:]:
        acc = r_add(acc, acc)
        if bit == "1":
            acc = r_add(acc, p)
    return acc


def r_is_zero(p):
    return p[0] % P == 0 and (p[1] - p[2]) % P == 0


def r_encode(p):
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def r_decode(s):
    """RFC 8032 §5.1.3, or None."""
    if len(s) != 32:
        return None
    n = int.from_bytes(s, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    if v * x * x % P != u or (x == 0 and sign):
        return None
    return (P - x if x & 1 != sign else x, y, 1)


BASE = r_decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def r_hash_to_curve_tai(salt, alpha):
    """RFC 9381 §5.4.1.1."""
    for ctr in range(256):
        digest = hashlib.sha512(bytes([3, 1]) + salt + alpha + bytes([ctr, 0])).digest()
        point = r_decode(digest[:32])
        if point is not None and not r_is_zero(r_mul(8, point)):
            return r_mul(8, point)
    raise AssertionError("unreachable")


def r_hash_to_curve(suite, salt, alpha):
    if suite == Suite.TAI:
        return r_hash_to_curve_tai(salt, alpha)
    return r_decode(ecvrf._ENCODE_TO_CURVE[suite](salt, alpha))  # RFC 9380: tested elsewhere


def r_verify(public, pi, alpha, suite=Suite.TAI):
    """RFC 9381 §5.3 with validate_key: beta, or the error code ``verify`` raises."""
    y = r_decode(public)
    if y is None or r_is_zero(r_mul(8, y)):
        return ecvrf.BAD_KEY
    gamma = r_decode(pi[:32]) if len(pi) == 80 else None
    if gamma is None:
        return ecvrf.BAD_PROOF
    c, s = int.from_bytes(pi[32:48], "little"), int.from_bytes(pi[48:], "little")
    if s >= Q:
        return ecvrf.BAD_PROOF
    h = r_hash_to_curve(suite, public, alpha)
    u = r_add(r_mul(s, BASE), r_neg(r_mul(c, y)))
    v = r_add(r_mul(s, h), r_neg(r_mul(c, gamma)))
    points = public + r_encode(h) + pi[:32] + r_encode(u) + r_encode(v)
    if hashlib.sha512(bytes([suite, 2]) + points + b"\x00").digest()[:16] != pi[32:48]:
        return ecvrf.BAD_PROOF
    return hashlib.sha512(bytes([suite, 3]) + r_encode(r_mul(8, gamma)) + b"\x00").digest()


def outcome(public, pi, alpha, suite=Suite.TAI):
    try:
        return ecvrf.verify(public, pi, alpha, suite=suite)
    except ValidationError as exc:
        return exc.code


# -- proofs with torsion, built with the plain-integer arithmetic of _ed25519 -------------------


def _order_8_point():
    for i in range(256):
        p = ed.decode(hashlib.sha512(b"torsion-%d" % i).digest()[:32])
        if p is not None:
            t = ed.scalar_mult(ed.L, p)
            if not ed.is_identity(ed.scalar_mult(4, t)):
                return t
    raise AssertionError("no order-8 point")


T8 = _order_8_point()
TORSION = [ed.scalar_mult(j, T8) for j in range(8)]  # TORSION[j] = j·T8, all 8 of them
B = ed.decode_or_raise(ecvrf._mul_base(1))
SEED = hashlib.sha256(b"gamma-split").digest()
X = ecvrf._expand_seed(SEED)[0] % ed.L


def _enc(n):
    return n.to_bytes(16, "little")


def _proof(gamma, c, s):
    return ed.encode(gamma) + _enc(c) + s.to_bytes(32, "little")


def _valid_proofs(alpha, t_gamma, t_key):
    """Key X·B + t_key, its H, and {c mod 8: pi} valid for it with Gamma = X·H + t_gamma: for
    each nonce k and guess j of c mod 8, V = k·H - j·t_gamma and U = k·B - j·t_key iff c ≡ j."""
    key = ed.encode(ed.add(ed.scalar_mult(X, B), t_key))
    h = ecvrf._hash_to_point_tai(key, alpha)
    gamma = ed.add(ed.scalar_mult(X, h), t_gamma)
    found = {}
    for k in range(1, 400):
        kb, kh = ed.scalar_mult(k, B), ed.scalar_mult(k, h)
        for j in set(range(8)) - set(found):
            u = ed.encode(ed.add(kb, ed.negate(ed.scalar_mult(j, t_key))))
            v = ed.encode(ed.add(kh, ed.negate(ed.scalar_mult(j, t_gamma))))
            c = ecvrf._challenge(Suite.TAI, key, ed.encode(h), ed.encode(gamma), u, v)
            if c % 8 == j:
                found[j] = _proof(gamma, c, (k + c * X) % ed.L)
        if len(found) == 8:
            return key, h, found
    raise AssertionError("not every c mod 8 within 400 nonces")


@pytest.mark.parametrize(("t_gamma", "t_key"), [(1, 0), (2, 0), (4, 0), (7, 0), (3, 5), (0, 6)])
def test_torsioned_proofs_verify_for_every_c_residue(t_gamma, t_key):
    alpha = b"split-%d-%d" % (t_gamma, t_key)
    key, h, proofs = _valid_proofs(alpha, TORSION[t_gamma], TORSION[t_key])
    # 8·Gamma = 8·X·H: the beta of an honest proof for this key (the very one if t_key = 0)
    beta = hashlib.sha512(b"\x03\x03" + ed.encode(ed.scalar_mult(8 * X, h)) + b"\x00").digest()
    assert t_key or beta == ecvrf.proof_to_hash(ecvrf.prove(SEED, alpha))
    for pi in proofs.values():
        assert ecvrf.verify(key, pi, alpha) == r_verify(key, pi, alpha) == beta
        c = int.from_bytes(pi[32:48], "little")
        gamma = ed.decode_or_raise(pi[:32])
        for extra in TORSION[1:]:  # V may not move (c·extra = 0), but Gamma is hashed into c
            moved = ed.encode(ed.add(gamma, extra)) + pi[32:]
            assert outcome(key, moved, alpha) == r_verify(key, moved, alpha) == ecvrf.BAD_PROOF
        for bad in (pi[:32] + _enc(c ^ 1) + pi[48:], pi[:32] + _enc(c + 8) + pi[48:]):
            assert outcome(key, bad, alpha) == r_verify(key, bad, alpha) == ecvrf.BAD_PROOF


# -- V itself, for chosen Gamma, c and s ----------------------------------------------------

# c ≡ every residue, q = 0 and q = 1 (recovery meets ±base: falls back), q = 8·m small (no ladder
# scalar: (q - 1)·8Gamma + 8Gamma), and the top of the 128-bit range.
CHALLENGES = sorted({*range(0, 20), 63, 64, 65, 71, 72, *(8 * 8 * 12345 + r for r in range(8)),
                     *((1 << 127) + r for r in range(8)), *((1 << 128) - 1 - r for r in range(8)),
                     0x9E3779B97F4A7C15F39CC0605CEDC834})
H_POINT = ecvrf._hash_to_point_tai(ecvrf.public_key(SEED), b"v")
H = ed.encode(H_POINT)
H_MONT = ed.to_montgomery(H_POINT)


def _v_reference(gamma, c, s):
    h = r_decode(H)
    return r_encode(r_add(r_mul(s, h), r_neg(r_mul(c, r_decode(ed.encode(gamma))))))


@pytest.mark.parametrize("t", range(8))
def test_v_matches_plain_integers_for_every_torsion_component(t):
    gamma = ed.add(ed.scalar_mult(0x1234567 + t, B), TORSION[t])
    s = 0xABCDEF * (t + 1) % ed.L
    for c in CHALLENGES:
        proof = ecvrf.decode_proof(_proof(gamma, c, s))
        want = _v_reference(gamma, c, s)
        assert ecvrf._v(proof, H_POINT, H) == want
        fast = ecvrf._v_by_ladders(proof, H_MONT)
        assert fast in (None, want)
        assert fast is not None or 8 <= c < 16  # only q = 1 leaves the ladders


@pytest.mark.parametrize("t", range(8))
def test_v_with_a_small_order_gamma(t):
    # 8·Gamma is the identity: no Montgomery form, so any q > 0 falls back; r·Gamma alone for q = 0
    for c in CHALLENGES:
        proof = ecvrf.decode_proof(_proof(TORSION[t], c, 777))
        assert ecvrf._v(proof, H_POINT, H) == _v_reference(TORSION[t], c, 777)
        assert (ecvrf._v_by_ladders(proof, H_MONT) is None) == (c >= 8)


@pytest.mark.parametrize("s", [0, 1, 2, ed.L - 1, 8, 64, 8 * 12345])
def test_v_for_edge_responses(s):
    # s·H = identity or ±H (no recovery: falls back) and s without a ladder scalar
    gamma = ed.add(ed.scalar_mult(99, B), T8)
    for c in (5, 64 + 3, (1 << 128) - 1):
        proof = ecvrf.decode_proof(_proof(gamma, c, s))
        assert ecvrf._v(proof, H_POINT, H) == _v_reference(gamma, c, s)


NO_LADDER_SCALAR = [8, 16, 64, 8 * 12345, 1 << 120, 1 << 124, 1 << 127, ed.L - 8, ed.L - 64]


@pytest.mark.parametrize("n", NO_LADDER_SCALAR)
def test_scalar_without_a_ladder_scalar_stays_on_the_ladders(n):
    assert ed.ladder_scalar(n) is None
    point = ecvrf._ladder_point(n, H_MONT)
    assert point is not None and ed.encode(point) == r_encode(r_mul(n, r_decode(H)))


def test_decoded_proof_keeps_the_doublings_out_of_equality():
    pi = ecvrf.prove(SEED, b"m")
    proof = ecvrf.decode_proof(pi)
    gamma = r_decode(pi[:32])
    assert [ed.encode(m) for m in proof.multiples] == [r_encode(r_mul(k, gamma))
                                                       for k in (1, 2, 4, 8)]
    assert proof == ecvrf.decode_proof(pi) and hash(proof) == hash(ecvrf.decode_proof(pi))


# -- verify against the reference ------------------------------------------------------------


@pytest.mark.parametrize(("suite", "sk", "pk", "alpha", "h", "pi", "beta"), ALL_VECTORS)
def test_reference_and_verify_agree_on_the_rfc_vectors(suite, sk, pk, alpha, h, pi, beta):
    args = (bytes.fromhex(pk), bytes.fromhex(pi), bytes.fromhex(alpha), suite)
    assert r_verify(*args) == outcome(*args) == bytes.fromhex(beta)
    flipped = bytearray(args[1])
    flipped[40] ^= 4
    assert r_verify(args[0], bytes(flipped), *args[2:]) == ecvrf.BAD_PROOF


def _mutate(pi, kind, t, n):
    c, s = int.from_bytes(pi[32:48], "little"), int.from_bytes(pi[48:], "little")
    gamma = ed.decode_or_raise(pi[:32])
    return [
        pi,
        ed.encode(ed.add(gamma, TORSION[t])) + pi[32:],
        ed.encode(TORSION[t]) + pi[32:],  # small-order Gamma
        pi[:32] + _enc(n % (1 << 128)) + pi[48:],
        pi[:48] + (n % ed.L).to_bytes(32, "little"),
        ed.encode(ed.add(ed.scalar_mult(n % ed.L, B), TORSION[t])) + pi[32:],
        pi[:32] + _enc((c + 8 * t) % (1 << 128)) + ((s + 1) % ed.L).to_bytes(32, "little"),
    ][kind]


@given(alpha=st.binary(max_size=24), kind=st.integers(0, 6), t=st.integers(0, 7),
       n=st.integers(0, (1 << 253) - 1), key_t=st.sampled_from([0, 0, 0, 3, 4]),
       suite=st.sampled_from([Suite.TAI, Suite.TAI, Suite.ELL2]))
def test_verify_agrees_with_the_reference(alpha, kind, t, n, key_t, suite):
    pi = ecvrf.prove(SEED, alpha, suite=suite)
    key = ecvrf.public_key(SEED)
    if key_t:  # a key with a torsion component is valid; the honest proof then fails
        key = ed.encode(ed.add(ed.decode_or_raise(key), TORSION[key_t]))
    candidate = _mutate(pi, kind, t, n)
    assert outcome(key, candidate, alpha, suite) == r_verify(key, candidate, alpha, suite)
