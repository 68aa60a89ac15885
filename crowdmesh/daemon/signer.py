"""The roles' signing capability over the node's ``[account]`` key.

Invariant: the key stays in a private slot of :class:`KeySigner`; roles get only ``public``,
``sign`` and ``vrf_prove`` (``crowdmesh.crypto.identity.Signer``), never the seed, so nothing a
role returns, logs or stores can carry it.
"""

from __future__ import annotations

from crowdmesh.crypto.identity import AccountKey

__all__ = ["KeySigner"]


class KeySigner:
    """Signs and proves for one account without exposing its key."""

    __slots__ = ("__key",)

    def __init__(self, key: AccountKey) -> None:
        self.__key = key

    def __repr__(self) -> str:
        return f"KeySigner({self.public.hex()[:16]}…)"

    @property
    def public(self) -> bytes:
        """The account id (also the VRF public key)."""
        return self.__key.public

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        return self.__key.sign(message)

    def vrf_prove(self, alpha: bytes) -> bytes:
        """The 80-byte ECVRF proof of ``alpha``."""
        return self.__key.vrf_prove(alpha)
