"""The storage protocol the chain runs over, and its in-memory backend.

Invariants:
- A store is an ordered byte-key → byte-value map. ``write_batch`` applies all its puts and
  deletes (value ``None``) atomically: after a crash either all of a batch is visible or none.
- The chain has exactly one writer; readers see the last committed batch.
- Key layout (one-byte prefixes, see :mod:`crowdmesh.chain.chain`): ``b`` blocks, ``i`` block
  index, ``h`` main-chain height → hash, ``u`` undo records, ``s`` state, ``t`` tx index, ``m``
  metadata (head, accumulator).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

__all__ = ["MemoryStore", "Store", "prefix_end"]


class Store(Protocol):
    """Key-value storage with atomic batches (py-evm's db abstraction, minus the rest)."""

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` or None."""
        ...

    def write_batch(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Atomically apply ``writes`` (None deletes)."""
        ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value) pairs whose key starts with ``prefix``, in key order."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: unbounded)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class MemoryStore:
    """A dict-backed :class:`Store` for the pure rules and tests."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` or None."""
        return self.data.get(key)

    def write_batch(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Apply ``writes`` (atomic: nothing else runs in between)."""
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Pairs under ``prefix`` in key order (a snapshot, safe against later writes)."""
        items = sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))
        return iter(items)

    def close(self) -> None:
        """Nothing to release."""
