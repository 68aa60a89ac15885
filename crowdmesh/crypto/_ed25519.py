"""Plain-integer edwards25519 arithmetic for what libsodium does not expose.

Used by ``crowdmesh.crypto.ecvrf`` for: strict RFC 8032 §5.1.3 point decoding, scalar
multiplication of points outside the prime-order subgroup, and RFC 9380 hash-to-curve
(edwards25519_XMD:SHA-512_ELL2_NU_), all of which libsodium either refuses or does not offer.

Invariants:
- Field elements are ints in [0, P). Points are extended coordinates (X, Y, Z, T) with
  x = X/Z, y = Y/Z, x·y = T/Z, on -x² + y² = 1 + d·x²·y².
- ``decode`` accepts exactly the canonical RFC 8032 encodings of curve points and nothing else.
- The addition law is the complete one for a = -1 (d is a non-square), so it also doubles and
  handles the identity and torsion points without special cases.
- Variable time: only public data (proofs, keys, hashes of public input) goes through here.
"""

from __future__ import annotations

import hashlib

import gmpy2

__all__ = [
    "IDENTITY",
    "L",
    "P",
    "Point",
    "clear_cofactor",
    "decode",
    "decode_or_raise",
    "encode",
    "encode_to_curve",
    "expand_message_xmd",
    "hash_to_field",
    "is_identity",
    "map_to_curve_elligator2",
    "scalar_mult",
    "to_affine",
]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # prime order of the main subgroup
D = (-121665 * pow(121666, -1, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (1).to_bytes(32, "little")

Point = tuple[int, int, int, int]
_NEUTRAL: Point = (0, 1, 1, 0)
_D2 = 2 * D % P


def _pow(base: int, exponent: int) -> int:
    # why gmpy2: a 255-bit modular power is ~10x faster than int.__pow__ and decoding needs one
    return int(gmpy2.powmod(base, exponent, P))


def _inv(a: int) -> int:
    return int(gmpy2.invert(a, P))


def _sqrt_ratio(u: int, v: int) -> int | None:
    """A square root of u/v mod P, or None (RFC 8032 §5.1.3 step 2-3)."""
    v3 = v * v * v % P
    x = u * v3 * _pow(u * v3 * v3 * v % P, (P - 5) // 8) % P
    vx2 = v * x * x % P
    if vx2 == u % P:
        return x
    if vx2 == (-u) % P:
        return x * SQRT_M1 % P
    return None


def decode(s: bytes) -> Point | None:
    """RFC 8032 §5.1.3 strict decoding; None for non-canonical or off-curve encodings."""
    if len(s) != 32:
        return None
    n = int.from_bytes(s, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        return None
    x = _sqrt_ratio(y * y - 1, D * y * y + 1)
    if x is None or (x == 0 and sign == 1):
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


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
    return x * z_inv % P, y * z_inv % P


def encode(point: Point) -> bytes:
    """RFC 8032 §5.1.2: y little-endian with the low bit of x in the top bit."""
    x, y = to_affine(point)
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def add(p1: Point, p2: Point) -> Point:
    """Complete twisted Edwards addition (add-2008-hwcd-3, a = -1)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * _D2 * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def clear_cofactor(point: Point) -> Point:
    """8·point: three doublings (lands in the prime-order subgroup)."""
    for _ in range(3):
        point = add(point, point)
    return point


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
