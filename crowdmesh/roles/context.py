"""What a role handler may read besides its own state: the time, a read-only chain view, its
own private store, and the node's public identity.

Invariants:
- Everything here is read-only. A role changes the world only through the effects it returns
  (``SubmitCall``, ``StorePut``, ``RunJob``, …); the daemon executes them.
- :class:`ChainView` answers from the node's current head state. A role decides from the view
  each time the head moves (as the miner reconciles), so a restart or a reorg needs no special
  path: block events are hints, the view is the truth.
- :class:`StoreView` shows only the calling role's own namespace of the role store, so one role
  never reads another's secrets.
- No secret key ever appears here: the daemon signs a role's contract calls itself, and a role
  that must sign a gossip message (a spatial report, commit or reveal) gets a
  :class:`~crowdmesh.crypto.identity.Signer` for the node's account, which signs and proves
  without handing out the key (signing is deterministic, so this stays pure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from crowdmesh.chain.block import BlockHeader
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.state import Account
from crowdmesh.crypto.identity import Signer

__all__ = ["ChainView", "NodeIdentity", "RoleContext", "Signer", "StoreView"]


class ChainView(Protocol):
    """The node's main chain at its current head (read-only)."""

    def head(self) -> BlockHeader:
        """The main-chain tip."""
        ...

    def header_at(self, height: int) -> BlockHeader | None:
        """The main-chain header at ``height`` (None above the head)."""
        ...

    def header(self, block_hash: bytes) -> BlockHeader | None:
        """A stored header by hash, main chain or not (None if unknown). A block hash is the
        spatial lottery beacon."""
        ...

    def is_main_chain(self, block_hash: bytes) -> bool:
        """True iff the block is on the main chain."""
        ...

    def account(self, address: bytes) -> Account:
        """Balance, nonce and reputation of ``address`` at the head."""
        ...

    def contract_state(self, key: bytes) -> bytes | None:
        """A contract's raw state value at the head (keys start with the contract's prefix)."""
        ...

    def genesis(self) -> Genesis:
        """The network's parameters (a protocol reads its own section, e.g. ``spatial``)."""
        ...


class StoreView(Protocol):
    """The calling role's private namespace of the role store (read-only)."""

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None."""
        ...

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every (key, value) under ``prefix``, in key order."""
        ...


class _NoChain:
    """A chain view for handlers that need none (the miner's unit tests)."""

    def head(self) -> BlockHeader:
        raise LookupError("this context has no chain view")

    def header_at(self, height: int) -> BlockHeader | None:
        return None

    def header(self, block_hash: bytes) -> BlockHeader | None:
        return None

    def is_main_chain(self, block_hash: bytes) -> bool:
        return False

    def account(self, address: bytes) -> Account:
        return Account()

    def contract_state(self, key: bytes) -> bytes | None:
        return None

    def genesis(self) -> Genesis:
        raise LookupError("this context has no chain view")


class _NoStore:
    """An empty store view."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        return []


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """The node's public identities: the account the daemon signs calls with (None when the
    config has no ``[account]``) and the address block rewards go to."""

    account: bytes | None = None
    miner: bytes = b""


@dataclass(frozen=True, slots=True)
class RoleContext:
    """What every handler may read besides its state."""

    now: int
    chain: ChainView = field(default_factory=_NoChain)
    store: StoreView = field(default_factory=_NoStore)
    identity: NodeIdentity = field(default_factory=NodeIdentity)
    signer: Signer | None = None  # None when the config has no [account]
