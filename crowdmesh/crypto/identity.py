"""Ed25519 account identities (PyNaCl).

An account id is the 32-byte Ed25519 public key. Signing is deterministic (RFC 8032), so the
only randomness needed is the 32-byte seed, which comes from the injected ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from crowdmesh.crypto.rng import Rng

__all__ = ["PUBLIC_KEY_SIZE", "SEED_SIZE", "SIGNATURE_SIZE", "AccountKey", "verify_signature"]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class AccountKey:
    """An Ed25519 signing key held by this node; ``public`` is the account id."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    _signer: SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(self.seed)}")
        signer = SigningKey(self.seed)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "public", bytes(signer.verify_key))

    @classmethod
    def generate(cls, rng: Rng) -> AccountKey:
        """Create a fresh key from ``rng`` (the daemon passes the OS CSPRNG)."""
        return cls(rng.token_bytes(SEED_SIZE))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        return bytes(self._signer.sign(message).signature)


def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool:
    """Return True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public``."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(public).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
