"""Canonical msgpack codec for every chain object.

Invariants:
- Objects encode as fixed-order msgpack arrays; ints are ints (never floats), bytes are ``bin``,
  text is ``str``. There is exactly one encoding per value: :func:`unpack` re-encodes what it
  parsed and rejects the input unless the bytes are identical (so a wider int encoding, a
  ``str`` where ``bin`` belongs, or trailing bytes never decode).
- The size cap is checked before parsing; every failure raises :class:`DecodeError` with a
  stable code (``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``, ``bad-field``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NewType

import msgpack

from crowdmesh.errors import DecodeError

__all__ = [
    "U64_MAX",
    "Address",
    "BlockHash",
    "TxId",
    "expect_array",
    "expect_bytes",
    "expect_list",
    "expect_text",
    "expect_uint",
    "pack",
    "unpack",
]

Address = NewType("Address", bytes)
BlockHash = NewType("BlockHash", bytes)
TxId = NewType("TxId", bytes)

U64_MAX = (1 << 64) - 1


def pack(obj: Any) -> bytes:
    """Encode ``obj`` (nested lists of int/bytes/str) canonically."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def unpack(data: bytes, cap: int) -> Any:
    """Decode ``data`` strictly.

    Raises:
        DecodeError: ``bad-field`` if ``data`` is not bytes (a nested item of a decoded tree
            that should have been ``bin``), ``oversize`` (checked first on bytes),
            ``bad-msgpack`` or ``non-canonical``.
    """
    # why: callers decode nested items of already-unpacked trees (a tally's report, commits,
    # reveals); a remote tree can put any msgpack value there, and len(True) is a TypeError
    if type(data) is not bytes:
        raise DecodeError("bad-field", f"want bytes, got {type(data).__name__}")
    if len(data) > cap:
        raise DecodeError("oversize", f"{len(data)} > {cap} bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, OverflowError) as exc:  # ExtraData/FormatError are ValueError
        raise DecodeError("bad-msgpack", str(exc)) from exc
    try:
        again = pack(obj)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError("non-canonical", str(exc)) from exc
    if again != data:
        raise DecodeError("non-canonical")
    return obj


def expect_array(obj: Any, n: int, what: str) -> Sequence[Any]:
    """Return ``obj`` if it is a list of exactly ``n`` items, else raise ``bad-shape``."""
    if not isinstance(obj, list) or len(obj) != n:
        raise DecodeError("bad-shape", f"{what}: want an array of {n}")
    return obj


def expect_list(obj: Any, max_len: int, what: str) -> Sequence[Any]:
    """Return ``obj`` if it is a list of at most ``max_len`` items."""
    if not isinstance(obj, list) or len(obj) > max_len:
        raise DecodeError("bad-shape", f"{what}: want an array of at most {max_len}")
    return obj


def expect_uint(obj: Any, what: str, hi: int = U64_MAX) -> int:
    """Return ``obj`` if it is an int (not bool) in [0, hi]."""
    if type(obj) is not int or not 0 <= obj <= hi:
        raise DecodeError("bad-field", f"{what}: want an int in [0, {hi}]")
    return obj


def expect_bytes(obj: Any, what: str, size: int | None = None, max_len: int = U64_MAX) -> bytes:
    """Return ``obj`` if it is bytes of exactly ``size`` (or at most ``max_len``) bytes."""
    if type(obj) is not bytes or (size is not None and len(obj) != size) or len(obj) > max_len:
        raise DecodeError("bad-field", f"{what}: want bytes")
    return obj


def expect_text(obj: Any, what: str, max_len: int) -> str:
    """Return ``obj`` if it is a str of at most ``max_len`` characters."""
    if type(obj) is not str or len(obj) > max_len:
        raise DecodeError("bad-field", f"{what}: want text of at most {max_len}")
    return obj
