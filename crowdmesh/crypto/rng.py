"""Injected randomness for the pure core.

The pure packages never import ``random`` or ``secrets``: every function that needs randomness
takes an ``rng`` satisfying :class:`Rng`. The daemon passes a CSPRNG-backed one
(:class:`crowdmesh.daemon.rng.SystemRng`); tests pass :class:`DeterministicRng`, a SHA-256
counter-mode generator that is reproducible from its seed (never use it for real keys).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = ["DeterministicRng", "Rng"]


class Rng(Protocol):
    """The randomness interface every pure function receives."""

    def randbits(self, k: int) -> int:
        """Return a uniformly random integer in [0, 2**k)."""
        ...

    def randbelow(self, n: int) -> int:
        """Return a uniformly random integer in [0, n)."""
        ...

    def token_bytes(self, n: int) -> bytes:
        """Return n uniformly random bytes."""
        ...


class DeterministicRng:
    """Reproducible generator for tests and benchmarks: SHA-256(seed ‖ counter) blocks."""

    def __init__(self, seed: bytes | int = 0) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=True)
        self._seed = hashlib.sha256(b"crowdmesh/drng/" + seed).digest()
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            block = self._seed + self._counter.to_bytes(8, "big")
            out += hashlib.sha256(block).digest()
            self._counter += 1
        return bytes(out[:n])

    def randbits(self, k: int) -> int:
        if k <= 0:
            return 0
        raw = int.from_bytes(self.token_bytes((k + 7) // 8), "big")
        return raw >> (8 * ((k + 7) // 8) - k)

    def randbelow(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randbelow needs n > 0")
        k = n.bit_length()
        while True:  # rejection sampling: expected < 2 draws
            r = self.randbits(k)
            if r < n:
                return r
