"""ECVRF-EDWARDS25519-SHA512-TAI and -ELL2 (RFC 9381) on PyNaCl's edwards25519 primitives.

A VRF gives each key exactly one verifiable pseudo-random output per input, which is what a
committee lottery needs (a plain Ed25519 signature is not unique to a verifier; SPATIAL.md §2.1).

Invariants:
- ``prove`` is deterministic: same seed and alpha → same 80-byte proof pi (RFC 9381 §5.4.2.2 nonce).
- ``verify`` returns beta only when pi is valid for (public key, alpha); beta = proof_to_hash(pi),
  64 bytes. Anything else raises ``ValidationError`` with code ``bad-vrf-proof`` (the proof) or
  ``bad-vrf-key`` (the public key, checked as RFC 9381 §5.4.5 ECVRF_validate_key: it must decode
  and must not have small order).
- Points travel as 32-byte RFC 8032 encodings. Every encoding from outside goes through the strict
  decoder ``_decode`` (rejects y ≥ p, x = 0 with the sign bit set, and non-points) before use.
- Fast path: libsodium for scalar multiplications. libsodium refuses points outside the
  prime-order subgroup, small-order points and identity results, which RFC 9381 still defines (a
  key may carry a torsion component; Gamma need only be on the curve), so those fall back to
  plain-integer arithmetic in ``crowdmesh.crypto._ed25519``. Honest inputs never take that path.
- Faster path in ``verify_decoded``: libsodium's edwards25519 multiplication re-proves subgroup
  membership each call (as costly as the multiplication), so a product by a point known to lie
  in the prime-order subgroup takes two X25519 ladders and an exact recovery
  (``_ed25519.recover``) instead: c·Y (a key's membership is memoised), s·H (H = 8·point) and
  q·(8·Gamma) for c·Gamma = q·(8·Gamma) + r·Gamma, c = 8q + r. Gamma itself need not lie in the
  subgroup (RFC 9381 only asks that it decode), but 8·Gamma always does, and r·Gamma is a sum
  of Gamma, 2·Gamma and 4·Gamma, which ``decode_proof`` computes on its way to 8·Gamma for beta.
  V = s·H - q·(8·Gamma) - r·Gamma is summed in plain integers (the complete addition law holds
  on the whole curve, torsion included) and encoded once. An n with no ladder scalar takes
  (n - 1)·P + P; wherever recovery does not apply (an identity or ±P result, a small-order
  Gamma) it falls back to ``_mul``. Every route gives the point ``_mul`` gives.
- Speed (a tally re-verifies K proofs, SPATIAL.md §2.3 step 6): a validated public key is
  memoised (``_decode_key`` is a pure function of 32 bytes, so the memo never changes a result);
  try-and-increment rejects a non-point candidate with a Jacobi symbol before paying for a square
  root; ``decode_proof`` + ``verify_decoded`` let a caller read the claimed beta of many proofs,
  then verify only those it needs, without decoding Gamma twice.
- The secret seed is the RFC 8032 32-byte secret key (the same form as an Ed25519 seed).
  Variable-time code: proving is for our own keys on our own node, not a side-channel-hardened
  implementation (RFC 9381 §7.4).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

import gmpy2
from nacl import bindings as _sodium
from nacl.exceptions import RuntimeError as SodiumError

from crowdmesh.crypto import _ed25519 as ed
from crowdmesh.errors import UsageError, ValidationError

__all__ = [
    "BETA_SIZE",
    "PROOF_SIZE",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "DecodedProof",
    "Suite",
    "decode_proof",
    "is_valid",
    "proof_to_hash",
    "prove",
    "public_key",
    "validate_public_key",
    "verify",
    "verify_decoded",
]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
PROOF_SIZE = 80  # Gamma (32) ‖ c (16) ‖ s (32)
BETA_SIZE = 64
_C_LEN = 16
_Q_LEN = 32
_PT_LEN = 32

BAD_PROOF = "bad-vrf-proof"
BAD_KEY = "bad-vrf-key"


class Suite(IntEnum):
    """RFC 9381 §5.5 suite strings for edwards25519 with SHA-512."""

    TAI = 0x03  # ECVRF-EDWARDS25519-SHA512-TAI: try-and-increment hash to curve
    ELL2 = 0x04  # ECVRF-EDWARDS25519-SHA512-ELL2: RFC 9380 Elligator 2 encode_to_curve


# RFC 9381 §5.4.1.2: DST = "ECVRF_" ‖ h2c_suite_ID_string ‖ suite_string.
_H2C_DST = b"ECVRF_edwards25519_XMD:SHA-512_ELL2_NU_" + bytes([Suite.ELL2])


def _sha512(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).digest()


# -- group operations: libsodium first, plain integers where it refuses ---------------------


def _scalar_bytes(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _mul(n: int, point: bytes) -> bytes:
    """n·point for 0 ≤ n < 2^253 and any decodable point (subgroup or not)."""
    if n == 0:
        return ed.IDENTITY
    try:
        return bytes(_sodium.crypto_scalarmult_ed25519_noclamp(_scalar_bytes(n), point))
    except SodiumError:
        return ed.encode(ed.scalar_mult(n, ed.decode_or_raise(point)))


def _mul_base(n: int) -> bytes:
    if n == 0:
        return ed.IDENTITY
    return bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(_scalar_bytes(n)))


def _sub(p: bytes, q: bytes) -> bytes:
    # crypto_core_ed25519_sub only needs points on the curve, so torsion components are fine.
    return bytes(_sodium.crypto_core_ed25519_sub(p, q))


def _ladder(k: bytes | None, u: bytes) -> int | None:
    """u(k·P) by X25519, or None (no scalar, or libsodium refused an all-zero result)."""
    if k is None:
        return None
    try:
        return int.from_bytes(_sodium.crypto_scalarmult(k, u), "little")
    except SodiumError:
        return None


def _mul_subgroup(n: int, base: ed.Montgomery | None, point: bytes) -> bytes:
    """n·point, where ``base`` is point's Montgomery form if point is known to lie in the
    prime-order subgroup (None: not known). Same result as ``_mul``, whichever path runs."""
    product = None if base is None else _ladder_point(n, base)
    return _mul(n, point) if product is None else ed.encode(product)


def _ladder_point(n: int, base: ed.Montgomery) -> ed.Point | None:
    """n·base from X25519 ladders, or None where they do not apply. An n without a ladder scalar
    (8 | n and n small: 1 in 12 challenges c) takes (n - 1)·base + base; n - 1 has one."""
    k = ed.ladder_scalar(n)
    if k is not None:
        return _ladder_pair(n, k, base)
    rest = _ladder_pair(n - 1, ed.ladder_scalar(n - 1), base)
    return None if rest is None else ed.add(rest, base.edwards)


def _ladder_pair(n: int, k: bytes | None, base: ed.Montgomery) -> ed.Point | None:
    """n·base from u1 = u(n·base) (k: n's ladder scalar) and a second ladder, to (n + 1)·base or
    else (n - 1)·base (only one of n ± 1 can lack a ladder scalar)."""
    u1 = _ladder(k, base.u_bytes)
    if u1 is None:
        return None
    for step in (1, -1):
        u2 = _ladder(ed.ladder_scalar(n + step), base.u_bytes)
        if u2 is not None:
            return ed.recover(base, u1, u2, step)
    return None


# -- keys -----------------------------------------------------------------------------------


def _expand_seed(seed: bytes) -> tuple[int, bytes]:
    """RFC 8032 §5.1.5: the clamped secret scalar x and the nonce prefix h[32:64]."""
    if len(seed) != SEED_SIZE:
        raise UsageError("bad-vrf-seed", f"an ECVRF secret key is {SEED_SIZE} bytes")
    h = _sha512(seed)
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little"), h[32:]


def public_key(secret_key_seed: bytes) -> bytes:
    """Return the 32-byte ECVRF public key Y = x·B for a 32-byte secret seed (RFC 8032 keys)."""
    x, _ = _expand_seed(secret_key_seed)
    return _mul_base(x % ed.L)


def _decode_key(public: bytes) -> bytes:
    """RFC 9381 §5.4.5 ECVRF_validate_key: decodable and not of small order."""
    return _decode_key_memo(bytes(public))


# why a memo: committee members serve many reports, and the check costs a square root and three
# point doublings; failures raise, and functools never stores a raised call.
@functools.lru_cache(maxsize=4096)
def _decode_key_memo(public: bytes) -> bytes:
    point = ed.decode(public)
    if point is None:
        raise ValidationError(BAD_KEY, "public key does not decode to a curve point")
    if ed.is_identity(ed.clear_cofactor(point)):
        raise ValidationError(BAD_KEY, "public key has small order")
    return public


# why a memo: as _decode_key_memo; the subgroup test costs about one scalar multiplication.
@functools.lru_cache(maxsize=4096)
def _key_montgomery(public: bytes) -> ed.Montgomery | None:
    """The Montgomery form of a validated key if it lies in the prime-order subgroup (every key
    ``public_key`` makes does), else None: a torsion component rules out the X25519 path."""
    if not _sodium.crypto_core_ed25519_is_valid_point(public):
        return None
    return ed.to_montgomery(ed.decode_or_raise(public))


def validate_public_key(public: bytes) -> None:
    """Raise ``ValidationError('bad-vrf-key')`` unless ``public`` is a usable ECVRF key."""
    _decode_key(public)


# -- hash to curve (RFC 9381 §5.4.1) ----------------------------------------------------------


_Y_MASK = (1 << 255) - 1


def _decode_candidate(s: bytes) -> ed.Point | None:
    """``ed.decode``, but a string whose x² = (y² - 1)/(d·y² + 1) is a non-square mod p (half
    of all random strings) is refused by a Jacobi symbol, far cheaper than the square root."""
    y = int.from_bytes(s, "little") & _Y_MASK
    y2 = y * y % ed.P
    if gmpy2.jacobi((y2 - 1) * (ed.D * y2 + 1) % ed.P, ed.P) == -1:
        return None  # exactly the strings ed.decode refuses at its square root
    return ed.decode(s)


def _hash_to_point_tai(salt: bytes, alpha: bytes) -> ed.Point:
    """§5.4.1.1 try-and-increment; each try succeeds with probability ≈ 1/2."""
    prefix = hashlib.sha512(bytes([Suite.TAI, 0x01]) + salt + alpha)
    for ctr in range(256):
        attempt = prefix.copy()
        attempt.update(bytes([ctr, 0x00]))
        point = _decode_candidate(attempt.digest()[:_PT_LEN])
        if point is None:
            continue
        point = ed.clear_cofactor(point)
        if not ed.is_identity(point):
            return point
    # 256 consecutive failures happen with probability ≈ 2^-256.
    raise AssertionError("ECVRF try-and-increment exhausted its one-byte counter")


def _hash_to_point_ell2(salt: bytes, alpha: bytes) -> ed.Point:
    """§5.4.1.2: RFC 9380 encode_to_curve, suite edwards25519_XMD:SHA-512_ELL2_NU_."""
    return ed.encode_to_curve(salt + alpha, _H2C_DST)


_HASH_TO_POINT = {Suite.TAI: _hash_to_point_tai, Suite.ELL2: _hash_to_point_ell2}


def _encode_to_curve_tai(salt: bytes, alpha: bytes) -> bytes:
    return ed.encode(_hash_to_point_tai(salt, alpha))


def _encode_to_curve_ell2(salt: bytes, alpha: bytes) -> bytes:
    return ed.encode(_hash_to_point_ell2(salt, alpha))


_ENCODE_TO_CURVE = {Suite.TAI: _encode_to_curve_tai, Suite.ELL2: _encode_to_curve_ell2}


# -- nonce, challenge, proof codec (RFC 9381 §5.4.2–5.4.4) ------------------------------------


def _nonce(prefix: bytes, h_string: bytes) -> int:
    """§5.4.2.2: k = SHA-512(h[32:64] ‖ h_string) mod q, as in RFC 8032 signing."""
    return int.from_bytes(_sha512(prefix, h_string), "little") % ed.L


def _challenge(suite: Suite, *points: bytes) -> int:
    """§5.4.3: c = first 16 bytes of SHA-512(suite ‖ 0x02 ‖ Y ‖ H ‖ Gamma ‖ U ‖ V ‖ 0x00)."""
    digest = _sha512(bytes([suite, 0x02]), *points, b"\x00")
    return int.from_bytes(digest[:_C_LEN], "little")


def _decode_proof(pi: bytes) -> tuple[ed.Point, int, int]:
    """§5.4.4: split pi into (Gamma, c, s); Gamma must decode and s must be < q."""
    if len(pi) != PROOF_SIZE:
        raise ValidationError(BAD_PROOF, f"a proof is {PROOF_SIZE} bytes, got {len(pi)}")
    gamma = ed.decode(pi[:_PT_LEN])
    if gamma is None:
        raise ValidationError(BAD_PROOF, "Gamma does not decode to a curve point")
    c = int.from_bytes(pi[_PT_LEN : _PT_LEN + _C_LEN], "little")
    s = int.from_bytes(pi[_PT_LEN + _C_LEN :], "little")
    if s >= ed.L:
        raise ValidationError(BAD_PROOF, "s is not reduced modulo the group order")
    return gamma, c, s


def _gamma_to_hash(suite: Suite, eight_gamma: ed.Point) -> bytes:
    """§5.2: beta = SHA-512(suite ‖ 0x03 ‖ cofactor·Gamma ‖ 0x00), given cofactor·Gamma."""
    return _sha512(bytes([suite, 0x03]), ed.encode(eight_gamma), b"\x00")


def _doublings(gamma: ed.Point) -> tuple[ed.Point, ed.Point, ed.Point, ed.Point]:
    """(Gamma, 2·Gamma, 4·Gamma, 8·Gamma): the steps of ``ed.clear_cofactor``, kept for c·Gamma."""
    g2 = ed.double(gamma)
    g4 = ed.double(g2)
    return gamma, g2, g4, ed.double(g4)


# -- public API -------------------------------------------------------------------------------


def prove(secret_key_seed: bytes, alpha: bytes, *, suite: Suite = Suite.TAI) -> bytes:
    """Return the 80-byte proof pi of VRF(secret_key_seed, alpha) (RFC 9381 §5.1).

    Raises:
        UsageError: ``bad-vrf-seed`` if the seed is not 32 bytes.
    """
    x, prefix = _expand_seed(secret_key_seed)
    x %= ed.L
    y = _mul_base(x)
    h = _ENCODE_TO_CURVE[suite](y, alpha)
    gamma = _mul(x, h)
    k = _nonce(prefix, h)
    c = _challenge(suite, y, h, gamma, _mul_base(k), _mul(k, h))
    s = (k + c * x) % ed.L
    return gamma + c.to_bytes(_C_LEN, "little") + s.to_bytes(_Q_LEN, "little")


@dataclass(frozen=True, slots=True)
class DecodedProof:
    """A proof split into its parts, with the beta it CLAIMS (nothing is verified yet).

    Attributes:
        pi: the 80-byte proof itself; its Gamma decodes to a curve point.
        c: the 16-byte challenge as an integer.
        s: the response, already checked to be < q.
        beta: proof_to_hash of this proof; equal to ``verify``'s result iff it verifies.
        suite: the suite whose beta this is.
        multiples: (Gamma, 2·Gamma, 4·Gamma, 8·Gamma) as points, a function of pi (so left out
            of equality and hashing); decoding computes them for beta anyway.
    """

    pi: bytes
    c: int
    s: int
    beta: bytes
    suite: Suite
    multiples: tuple[ed.Point, ed.Point, ed.Point, ed.Point] = field(repr=False, compare=False)

    @property
    def gamma(self) -> bytes:
        """The 32-byte encoding of Gamma."""
        return self.pi[:_PT_LEN]


def decode_proof(pi: bytes, *, suite: Suite = Suite.TAI) -> DecodedProof:
    """Decode pi (RFC 9381 §5.4.4) and compute the beta it claims, WITHOUT checking it.

    Raises:
        ValidationError: ``bad-vrf-proof`` if pi does not even decode.
    """
    gamma, c, s = _decode_proof(pi)
    multiples = _doublings(gamma)
    return DecodedProof(pi, c, s, _gamma_to_hash(suite, multiples[3]), suite, multiples)


def proof_to_hash(pi: bytes, *, suite: Suite = Suite.TAI) -> bytes:
    """Return beta (64 bytes) of a proof WITHOUT checking it (RFC 9381 §5.2).

    Only use on proofs you made or already verified; ``verify`` returns the same value.

    Raises:
        ValidationError: ``bad-vrf-proof`` if pi does not even decode.
    """
    return decode_proof(pi, suite=suite).beta


def verify_decoded(public_key: bytes, proof: DecodedProof, alpha: bytes) -> bytes:
    """Check a decoded proof for (public_key, alpha) and return its beta (RFC 9381 §5.3).

    Raises:
        ValidationError: ``bad-vrf-key`` for an unusable key, ``bad-vrf-proof`` if the proof
            does not verify.
    """
    y = _decode_key(public_key)
    c, s = proof.c, proof.s
    h_point = _HASH_TO_POINT[proof.suite](y, alpha)
    h = ed.encode(h_point)
    # Y is known to lie in the prime-order subgroup (a memoised test), so c·Y may take the
    # X25519 path; V has its own (``_v``).
    u = _sub(_mul_base(s), _mul_subgroup(c, _key_montgomery(y), y))
    v = _v(proof, h_point, h)
    if _challenge(proof.suite, y, h, proof.gamma, u, v) != c:
        raise ValidationError(BAD_PROOF, "challenge mismatch")
    return proof.beta


def _v(proof: DecodedProof, h_point: ed.Point, h: bytes) -> bytes:
    """V = s·H - c·Gamma (§5.3 step 6), by ``_v_by_ladders`` or else as ``_mul`` would."""
    h_mont = ed.to_montgomery(h_point)  # H = 8·point: in the prime-order subgroup
    fast = None if h_mont is None else _v_by_ladders(proof, h_mont)
    if fast is not None:
        return fast
    return _sub(_mul_subgroup(proof.s, h_mont, h), _mul(proof.c, proof.gamma))


def _v_by_ladders(proof: DecodedProof, h_mont: ed.Montgomery) -> bytes | None:
    """s·H - c·Gamma, or None where a ladder does not apply.

    Gamma may carry a torsion component, but 8·Gamma lies in the prime-order subgroup, so with
    c = 8q + r, c·Gamma = q·(8·Gamma) + r·Gamma takes X25519 ladders for q·(8·Gamma) and sums of
    the stored multiples for r < 8 (exact on the whole curve: the addition law is complete).
    """
    q, r = divmod(proof.c, 8)
    terms = [m for i, m in enumerate(proof.multiples[:3]) if r >> i & 1]
    if q:
        base = ed.to_montgomery(proof.multiples[3])  # None iff Gamma has small order
        product = None if base is None else _ladder_point(q, base)
        if product is None:
            return None
        terms.append(product)
    v = _ladder_point(proof.s, h_mont)
    if v is None:
        return None
    for term in terms:
        v = ed.add(v, ed.negate(term))
    return ed.encode(v)


def verify(public_key: bytes, pi: bytes, alpha: bytes, *, suite: Suite = Suite.TAI) -> bytes:
    """Check pi for (public_key, alpha) and return beta (RFC 9381 §5.3, validate_key on).

    Raises:
        ValidationError: ``bad-vrf-key`` for an unusable key, ``bad-vrf-proof`` for a proof that
            does not decode or does not verify.
    """
    _decode_key(public_key)  # the key's error comes first, as RFC 9381 §5.3 step 1
    return verify_decoded(public_key, decode_proof(pi, suite=suite), alpha)


def is_valid(public_key: bytes, pi: bytes, alpha: bytes, *, suite: Suite = Suite.TAI) -> bool:
    """Return True iff ``verify`` would accept (key and proof)."""
    try:
        verify(public_key, pi, alpha, suite=suite)
    except ValidationError:
        return False
    return True
