"""Injective encoding of bytes into QR-subgroup elements (CRYPTO.md §3).

Spec, with p = 2q + 1 and k = ⌊(|q| − 1)/8⌋ bytes per element (255 for ffdhe2048, 383 for
ffdhe3072):
- buffer = 8-byte big-endian length ‖ data, zero-padded to a multiple of k (or to a requested
  chunk count, so every bundle of a round has the same size and sizes do not identify workers);
- each k-byte chunk v maps to x = v + 1 ∈ [1, 2^(8k)] ⊆ [1, q], and to y = x if x is a quadratic
  residue, else p − x. Since p ≡ 3 (mod 4), −1 is a non-residue, so exactly one of x, p − x is a
  QR, and the map [1, q] → QR is injective. Every output has Legendre symbol +1: no bit of the
  plaintext leaks through the symbol of a ciphertext (CRYPTO.md §4d).

Decoding is strict and raises :class:`~crowdmesh.errors.DecodeError` with a stable code:
``bad-group-element`` (outside the subgroup), ``bad-chunk-value`` (x > 2^(8k)), ``bad-length``
(the header claims more bytes than the buffer holds), ``bad-padding`` (non-zero bytes after the
data) and ``empty-encoding`` (no element at all).

Separately, :func:`elements_to_bytes` / :func:`elements_from_bytes` are the wire form of element
lists (fixed-length big-endian, ``element_bytes`` each); parsing checks 0 < v < p
(``bad-element-encoding``) but leaves the costlier subgroup test to the consumer.
"""

from __future__ import annotations

from collections.abc import Sequence

from crowdmesh.crypto import _gmp
from crowdmesh.crypto.groups import Group
from crowdmesh.errors import DecodeError, UsageError

__all__ = [
    "LENGTH_HEADER_BYTES",
    "chunks_needed",
    "decode",
    "decode_buffer",
    "elements_from_bytes",
    "elements_to_bytes",
    "encode",
    "encode_buffer",
    "pad",
    "unpad",
]

LENGTH_HEADER_BYTES = 8


def chunks_needed(group: Group, nbytes: int) -> int:
    """Number of elements that encode ``nbytes`` bytes of data (at least 1)."""
    k = group.chunk_bytes
    return (LENGTH_HEADER_BYTES + nbytes + k - 1) // k


def pad(group: Group, data: bytes, chunks: int | None = None) -> bytes:
    """The buffer: 8-byte length ‖ data ‖ zeros, ``chunks`` × k bytes (default: as few as fit).

    Raises ``UsageError('bundle-too-large')`` if the data needs more than ``chunks`` elements.
    """
    need = chunks_needed(group, len(data))
    count = need if chunks is None else chunks
    if count < need:
        raise UsageError("bundle-too-large", f"{len(data)} bytes need {need} > {count} chunks")
    buf = len(data).to_bytes(LENGTH_HEADER_BYTES, "big") + data
    return buf + bytes(count * group.chunk_bytes - len(buf))


def encode_buffer(group: Group, buf: bytes) -> list[int]:
    """Map each k-byte chunk v of a padded buffer to x = v + 1 or p − x, whichever is a QR."""
    k, p = group.chunk_bytes, group.p
    out = []
    for i in range(0, len(buf), k):
        x = _gmp.mpz(int.from_bytes(buf[i : i + k], "big") + 1)
        out.append(x if _gmp.legendre(x, p) == 1 else p - x)
    return out


def encode(group: Group, data: bytes, chunks: int | None = None) -> list[int]:
    """Encode bytes as QR-subgroup elements, padded to ``chunks`` elements if given."""
    return encode_buffer(group, pad(group, data, chunks))


def _chunk_value(group: Group, y: int) -> int:
    """Invert one element to its chunk value v = x − 1, checking membership and range."""
    p = group.p
    if not (0 < y < p and _gmp.legendre(y, p) == 1):
        raise DecodeError("bad-group-element", f"not in the QR subgroup of {group.name}")
    x = y if y <= group.q else p - y
    if x > 1 << (8 * group.chunk_bytes):
        raise DecodeError("bad-chunk-value", "element does not encode a chunk")
    return x - 1


def decode_buffer(group: Group, elements: Sequence[int]) -> bytes:
    """The padded buffer behind elements (inverse of :func:`encode_buffer`), checked."""
    k = group.chunk_bytes
    return b"".join(int(_chunk_value(group, y)).to_bytes(k, "big") for y in elements)


def unpad(buf: bytes) -> bytes:
    """The data inside a padded buffer (inverse of :func:`pad`), checked."""
    if not buf:
        raise DecodeError("empty-encoding", "no elements")
    length = int.from_bytes(buf[:LENGTH_HEADER_BYTES], "big")
    end = LENGTH_HEADER_BYTES + length
    if end > len(buf):
        raise DecodeError("bad-length", f"header says {length} bytes, buffer holds fewer")
    if buf[end:].strip(b"\0"):
        raise DecodeError("bad-padding", "non-zero bytes after the data")
    return buf[LENGTH_HEADER_BYTES:end]


def decode(group: Group, elements: Sequence[int]) -> bytes:
    """Inverse of :func:`encode` (including padding); raises ``DecodeError`` as listed above."""
    return unpad(decode_buffer(group, elements))


def elements_to_bytes(group: Group, values: Sequence[int]) -> bytes:
    """Concatenated fixed-length big-endian encodings of group elements."""
    n = group.element_bytes
    return b"".join(int(v).to_bytes(n, "big") for v in values)


def elements_from_bytes(group: Group, data: bytes) -> list[int]:
    """Strict inverse of :func:`elements_to_bytes`; raises ``DecodeError('bad-element-encoding')``
    on a length that is not a multiple of the element size or a value outside (0, p)."""
    n = group.element_bytes
    if len(data) % n:
        raise DecodeError("bad-element-encoding", f"{len(data)} bytes is not a multiple of {n}")
    out = [_gmp.mpz(int.from_bytes(data[i : i + n], "big")) for i in range(0, len(data), n)]
    if any(not 0 < v < group.p for v in out):
        raise DecodeError("bad-element-encoding", "value outside (0, p)")
    return out
