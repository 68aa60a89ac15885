"""Multi-exponentiation ∏ b_i^{z_i} mod p for the batched DLEQ (Pippenger's bucket method).

Invariants:
- Exponents arrive as equal-length big-endian byte strings (the 128-bit batch weights), so the
  window digits are bytes (c = 8) or nibbles (c = 4) and never need shifting big integers.
- Cost is about (bits/c)·(N + 2^(c+1)) modular multiplications, against ~bits·1.2 for N
  separate exponentiations; tiny batches fall back to plain powmods, where that is cheaper.
- The result is exact for any bases in [0, p); callers validate membership themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from crowdmesh.crypto import _gmp

__all__ = ["multiexp"]

_PLAIN_BELOW = 16  # fewer bases than this: separate powmods beat the bucket overhead
_BYTE_WINDOW_FROM = 400  # from here 8-bit windows win: 16·N + 8160 < 32·N + 960 mulmods


def _digits(weight: bytes, window: int) -> list[int]:
    """Most-significant-first digits of a big-endian weight, 4 or 8 bits each."""
    if window == 8:
        return list(weight)
    return [d for byte in weight for d in (byte >> 4, byte & 15)]


def _bucket_sum(buckets: list[int | None], p: int) -> int | None:
    """∑_d d·bucket[d] in multiplicative notation, with running products (2 mulmods/bucket)."""
    running: int | None = None
    total: int | None = None
    for bucket in reversed(buckets[1:]):
        if bucket is not None:
            running = bucket if running is None else running * bucket % p
        if running is not None:
            total = running if total is None else total * running % p
    return total


def _plain(bases: Sequence[int], weights: Sequence[bytes], p: int) -> int:
    acc = _gmp.mpz(1)
    for base, weight in zip(bases, weights, strict=True):
        acc = acc * _gmp.powmod(base, int.from_bytes(weight, "big"), p) % p
    return acc


def multiexp(bases: Sequence[int], weights: Sequence[bytes], p: int) -> int:
    """Return ∏ bases[i]^int(weights[i]) mod p (weights: equal-length big-endian bytes)."""
    if len(bases) != len(weights):
        raise ValueError("multiexp needs one weight per base")
    if len(bases) < _PLAIN_BELOW:
        return _plain(bases, weights, p)
    window = 8 if len(bases) >= _BYTE_WINDOW_FROM else 4
    digits = [_digits(w, window) for w in weights]
    result = _gmp.mpz(1)
    for j in range(len(digits[0])):
        for _ in range(window if j else 0):
            result = result * result % p
        buckets: list[int | None] = [None] * (1 << window)
        for base, ds in zip(bases, digits, strict=True):
            d = ds[j]
            if d:
                bucket = buckets[d]
                buckets[d] = base if bucket is None else bucket * base % p
        window_sum = _bucket_sum(buckets, p)
        if window_sum is not None:
            result = result * window_sum % p
    return result
