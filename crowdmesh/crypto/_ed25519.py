"""Plain-integer edwards25519 arithmetic for what libsodium does not expose.

Used by ``crowdmesh.crypto.ecvrf`` for: strict RFC 8032 §5.1.3 point decoding, scalar
multiplication of points outside the prime-order subgroup, RFC 9380 hash-to-curve
(edwards25519_XMD:SHA-512_ELL2_NU_), all of which libsodium either refuses or does not offer,
and the integer half of n·P from X25519 ladders (Montgomery form, ladder scalars, recovery).

Invariants:
- Field elements are ints in [0, P) (gmpy2 ``mpz`` once reduced by ``_PM``, which behave as
  ints). Points are extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x·y = T/Z, on
  -x² + y² = 1 + d·x²·y².
- ``decode`` accepts exactly the canonical RFC 8032 encodings of curve points and nothing else.
- The addition law is the complete one for a = -1 (d is a non-square), so it also doubles and
  handles the identity and torsion points without special cases.
- Variable time: only public data (proofs, keys, hashes of public input) goes through here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from crowdmesh.crypto import _gmp

__all__ = [
    "IDENTITY",
    "L",
    "Montgomery",
    "P",
    "Point",
    "add",
    "clear_cofactor",
    "decode",
    "decode_or_raise",
    "double",
    "encode",
    "encode_to_curve",
    "expand_message_xmd",
    "hash_to_field",
    "is_identity",
    "ladder_scalar",
    "map_to_curve_elligator2",
    "negate",
    "recover",
    "scalar_mult",
    "to_affine",
    "to_montgomery",
]

P = 2**255 - 19
# why an mpz modulus in the hot paths: 255-bit products reduce about twice as fast in GMP, and
# once reduced by it every coordinate stays an mpz (which behaves as an int everywhere here)
_PM = _gmp.mpz(P)
L = 2**252 + 27742317777372353535851937790883648493  # prime order of the main subgroup
D = (-121665 * pow(121666, -1, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (1).to_bytes(32, "little")

Point = tuple[int, int, int, int]
_NEUTRAL: Point = (0, 1, 1, 0)
_D2 = 2 * D % P
_SQRT_EXP = (P - 5) // 8
_Y_MASK = (1 << 255) - 1


def _pow(base: int, exponent: int) -> int:
    # why gmpy2: a 255-bit modular power is ~10x faster than int.__pow__ and decoding needs one
    return _gmp.powmod(base, exponent, _PM)


def _inv(a: int) -> int:
    return _gmp.invert(a, _PM)


def _sqrt_ratio(u: int, v: int) -> int | None:
    """A square root of u/v mod P, or None (RFC 8032 §5.1.3 step 2-3)."""
    u %= P  # why reduce first: callers pass products of up to three field elements
    v %= P
    v3 = v * v % _PM * v % _PM
    uv3 = u * v3 % _PM
    x = uv3 * _pow(uv3 * v3 % _PM * v % _PM, _SQRT_EXP) % _PM
    vx2 = v * x % _PM * x % _PM
    if vx2 == u:
        return x
    if vx2 == P - u:
        return x * SQRT_M1 % _PM
    return None


def decode(s: bytes) -> Point | None:
    """RFC 8032 §5.1.3 strict decoding; None for non-canonical or off-curve encodings."""
    if len(s) != 32:
        return None
    n = int.from_bytes(s, "little")
    sign, y = n >> 255, n & _Y_MASK
    if y >= P:
        return None
    yy = y * y % _PM
    x = _sqrt_ratio(yy - 1, D * yy + 1)
    if x is None or (x == 0 and sign == 1):
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % _PM)


def decode_or_raise(s: bytes) -> Point:
    """``decode`` for encodings the caller already validated."""
    point = decode(s)
    if point is None:
        raise ValueError("not a valid edwards25519 point encoding")
    return point


def to_affine(point: Point) -> tuple[int, int]:
    """Return (x, y)."""
    x, y, z, _ = point
    z_inv = _inv(z)
    return x * z_inv % _PM, y * z_inv % _PM


def encode(point: Point) -> bytes:
    """RFC 8032 §5.1.2: y little-endian with the low bit of x in the top bit."""
    x, y = to_affine(point)
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def add(p1: Point, p2: Point) -> Point:
    """Complete twisted Edwards addition (add-2008-hwcd-3, a = -1)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % _PM
    b = (y1 + x1) * (y2 + x2) % _PM
    c = t1 * _D2 * t2 % _PM
    d = z1 * 2 * z2 % _PM
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _PM, g * h % _PM, f * g % _PM, e * h % _PM)


def negate(point: Point) -> Point:
    """-point = (-x, y)."""
    x, y, z, t = point
    return (-x % _PM, y, z, -t % _PM)


def double(point: Point) -> Point:
    """2·point (dbl-2008-hwcd, a = -1): 4 squarings and 4 products where ``add`` needs 9
    products; it never reads T (and returns a correct one), so callers may chain it."""
    x1, y1, z1, _ = point
    a = x1 * x1 % _PM
    b = y1 * y1 % _PM
    c = 2 * z1 * z1 % _PM
    h = a + b
    xy = x1 + y1
    e = h - xy * xy % _PM
    g = a - b
    f = c + g
    return (e * f % _PM, g * h % _PM, f * g % _PM, e * h % _PM)


def clear_cofactor(point: Point) -> Point:
    """8·point: three doublings (lands in the prime-order subgroup)."""
    return double(double(double(point)))


def is_identity(point: Point) -> bool:
    """True iff the point is the neutral element (x = 0, y = 1), without an inversion."""
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def scalar_mult(n: int, point: Point) -> Point:
    """n·point by double-and-add, for any n ≥ 0 and any curve point."""
    result = _NEUTRAL
    for bit in bin(n)[2:]:
        result = add(result, result)
        if bit == "1":
            result = add(result, point)
    return result


# -- RFC 9380 hash to curve, suite edwards25519_XMD:SHA-512_ELL2_NU_ --------------------------

_J = 486662  # curve25519 Montgomery A (K = 1)
_Z = 2  # RFC 9380 §4.1 / §8.5: non-square Z for curve25519
_H2F_LEN = 48  # L = ceil((ceil(log2(p)) + k) / 8) with k = 128
_SHA512_BLOCK = 128
_SHA512_OUT = 64


def _sqrt_m486664() -> int:
    root = _sqrt_ratio(-486664, 1)
    assert root is not None
    return root if root & 1 == 0 else P - root  # RFC 9380 §G.2.2: sgn0(c1) = 0


_C_EDWARDS = _sqrt_m486664()


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-512."""
    if len(dst) > 255 or length > 255 * _SHA512_OUT:
        raise ValueError("expand_message_xmd: DST or requested length too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(_SHA512_BLOCK) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    while len(blocks) * _SHA512_OUT < length:
        mixed = bytes(a ^ b for a, b in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([len(blocks) + 1]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_field(msg: bytes, dst: bytes, count: int = 1) -> list[int]:
    """RFC 9380 §5.2 for GF(p), m = 1: big-endian 48-byte chunks reduced mod p."""
    uniform = expand_message_xmd(msg, dst, count * _H2F_LEN)
    chunks = (uniform[i * _H2F_LEN : (i + 1) * _H2F_LEN] for i in range(count))
    return [int.from_bytes(chunk, "big") % P for chunk in chunks]


def _is_square(a: int) -> bool:
    return a % P == 0 or _pow(a, (P - 1) // 2) == 1


def _sqrt_with_sign(a: int, sign: int) -> int:
    root = _sqrt_ratio(a, 1)
    assert root is not None  # callers checked _is_square
    return root if root & 1 == sign else (P - root) % P


def _montgomery_elligator2(u: int) -> tuple[int, int]:
    """RFC 9380 §6.7.1 map to curve25519 (s, t), with K = 1."""
    denominator = (1 + _Z * u * u) % P
    x1 = (-_J * _inv(denominator)) % P if denominator else 0
    if x1 == 0:
        x1 = (-_J) % P
    gx1 = (x1 * x1 * x1 + _J * x1 * x1 + x1) % P
    if _is_square(gx1):
        return x1, _sqrt_with_sign(gx1, 1)
    x2 = (-x1 - _J) % P
    gx2 = (x2 * x2 * x2 + _J * x2 * x2 + x2) % P
    return x2, _sqrt_with_sign(gx2, 0)


def map_to_curve_elligator2(u: int) -> Point:
    """RFC 9380 §6.8.2: Elligator 2 on curve25519, then the rational map to edwards25519."""
    s, t = _montgomery_elligator2(u)
    if t == 0 or (s + 1) % P == 0:
        return _NEUTRAL  # exceptional case of the rational map
    v = _C_EDWARDS * s * _inv(t) % P
    w = (s - 1) * _inv(s + 1) % P
    return (v, w, 1, v * w % P)


def encode_to_curve(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 §3 encode_to_curve (nonuniform): hash_to_field, map, clear cofactor h = 8."""
    (u,) = hash_to_field(msg, dst, 1)
    return clear_cofactor(map_to_curve_elligator2(u))


# -- n·P from two X25519 ladders (RFC 7748), for P in the prime-order subgroup -------------
#
# libsodium's edwards25519 scalar multiplication first proves its input lies in the prime-order
# subgroup (a multiplication by L), so it costs about three X25519 ladders. When the caller
# already knows P is in that subgroup, two ladders give n·P exactly: u(n·P) and u((n+1)·P),
# then Okeya-Sakurai recovery of v(n·P) from the Montgomery addition law, with no square root.


@dataclass(frozen=True, slots=True)
class Montgomery:
    """A point in the prime-order subgroup on curve25519, v² = u³ + A·u² + u (RFC 7748 §4.1).

    Attributes:
        u, v: its coordinates; neither is 0 (the point is not the identity or of order 2).
        inv_2v: 1/(2·v) mod P, the denominator of every recovery from this point.
        u_bytes: u as X25519 takes it (32 bytes little-endian).
        v2: v² = u³ + A·u² + u, a term of every recovery from this point.
        edwards: the same point on edwards25519, as given to ``to_montgomery``.
    """

    u: int
    v: int
    inv_2v: int
    u_bytes: bytes
    v2: int
    edwards: Point


_LADDER_TOP = 1 << 254  # X25519 sets bit 254, clears bit 255 and the 3 low bits (RFC 7748 §5)
_INV8 = pow(8, -1, L)
_M_SUM = -2 * _LADDER_TOP * _INV8 % L
_INV_2C = pow(2 * _C_EDWARDS, -1, P)


def to_montgomery(point: Point) -> Montgomery | None:
    """The curve25519 form of an edwards25519 point of the prime-order subgroup (the caller
    vouches for that), or None for x = 0 (the identity and (0, -1)), which has no usable form.

    RFC 7748 §4.1: u = (1 + y)/(1 - y) = (Z + Y)/(Z - Y) and v = c·u/x = c·(Z + Y)·Z/((Z - Y)·X),
    with c = sqrt(-486664); one inversion serves u, v and 1/(2·v).
    """
    x, y, z, _ = point
    a, b = (z - y) % _PM, (z + y) % _PM
    if x % _PM == 0 or a == 0:
        return None  # x = 0, so y = ±1: u is 0 or undefined
    xa, zb = x * a % _PM, z * b % _PM
    inv = _inv(xa * zb)  # 1/(X·(Z - Y)·Z·(Z + Y)), non-zero: Z ≠ 0, X ≠ 0, y ≠ ±1
    u = b * x % _PM * zb % _PM * inv % _PM
    v = _C_EDWARDS * zb % _PM * zb % _PM * inv % _PM
    inv_2v = _INV_2C * xa % _PM * xa % _PM * inv % _PM
    return Montgomery(u, v, inv_2v, u.to_bytes(32, "little"), v * v % _PM, point)


def ladder_scalar(n: int) -> bytes | None:
    """A 32-byte k ≡ ±n (mod L) that X25519's clamping leaves unchanged (2^254 ≤ k < 2^255,
    8 | k), or None if neither n nor -n has one: exactly when n/8 mod L lies within L - 2^252
    (≈ 2^124.4) of 0, e.g. n ≡ 0 (mod 8) below ≈ 2^127.4 (1 in 12 of the 128-bit challenges c).

    On the prime-order subgroup k·P = ±n·P, and u(±n·P) is the same u.
    """
    m = (n - _LADDER_TOP) * _INV8 % L  # k = 2^254 + 8·m ≡ n
    if m >= 1 << 251:
        m = (_M_SUM - m) % L  # the m of -n: m(n) + m(-n) ≡ -2^255/8 (mod L)
    if m >= 1 << 251:
        return None
    return (_LADDER_TOP + 8 * m).to_bytes(32, "little")


def _rhs(u: int) -> int:
    return (u * u % _PM * u + _J * u * u + u) % _PM


def recover(base: Montgomery, u1: int, u2: int, step: int) -> Point | None:
    """Q = n·base, given u1 = u(Q) and u2 = u(Q + step·base) (from X25519) with step = ±1, or
    None when Q = ±base or has no image this formula reaches (caller falls back).

    From the addition law (v1 - step·vP)² = (u1 + uP + u2 + A)·(u1 - uP)² and v² = rhs(u):
    v1 = (rhs(u1) + rhs(uP) - (u1 + uP + u2 + A)·(u1 - uP)²) / (2·step·vP).
    """
    up = base.u
    if u1 in (0, up, P - 1):
        return None  # Q = (0, 0) or the identity (u = 0), Q = ±base, or y = (u - 1)/(u + 1) = ∞
    diff = (u1 - up) % _PM
    v1 = (_rhs(u1) + base.v2 - (u1 + up + u2 + _J) * diff % _PM * diff) * step * base.inv_2v % _PM
    if v1 == 0:
        return None
    # x = c·u1/v1 and y = (u1 - 1)/(u1 + 1) over Z = v1·(u1 + 1): no inversion until encoding
    cu = _C_EDWARDS * u1 % _PM
    return (cu * (u1 + 1) % _PM, (u1 - 1) * v1 % _PM, v1 * (u1 + 1) % _PM, cu * (u1 - 1) % _PM)
