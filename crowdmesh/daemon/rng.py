"""The operating system CSPRNG behind the :class:`crowdmesh.crypto.rng.Rng` interface."""

from __future__ import annotations

import secrets

__all__ = ["SystemRng"]


class SystemRng:
    """Randomness from ``secrets`` (the OS CSPRNG); what the daemon hands the pure core."""

    def randbits(self, k: int) -> int:
        return secrets.randbits(k) if k > 0 else 0

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)

    def token_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)
