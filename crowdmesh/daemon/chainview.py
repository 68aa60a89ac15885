"""The read-only chain view roles get in their context (``roles.context.ChainView``).

Invariant: every answer comes from the node's chain at the moment of the call (the current
head); nothing here writes, and nothing hands out the store or the mempool. Only the trio
thread calls it, like every other ``Chain`` user, so a view never sees half an import.
"""

from __future__ import annotations

from crowdmesh.chain.block import BlockHeader
from crowdmesh.chain.chain import Chain
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.state import Account
from crowdmesh.errors import NotFound

__all__ = ["LedgerChainView"]


class LedgerChainView:
    """Implements :class:`crowdmesh.roles.context.ChainView` over a :class:`Chain`."""

    __slots__ = ("_chain",)

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    def head(self) -> BlockHeader:
        """The main-chain tip."""
        return self._chain.head

    def header_at(self, height: int) -> BlockHeader | None:
        """The main-chain header at ``height`` (None outside 0..head)."""
        try:
            return self._chain.get_block_by_height(height).header
        except NotFound:
            return None

    def header(self, block_hash: bytes) -> BlockHeader | None:
        """A stored header by hash (None if unknown)."""
        try:
            return self._chain.get_block(block_hash).header
        except NotFound:
            return None

    def is_main_chain(self, block_hash: bytes) -> bool:
        """True iff the block is on the main chain."""
        return self._chain.is_main_chain(block_hash)

    def account(self, address: bytes) -> Account:
        """Balance, nonce and reputation at the head."""
        return self._chain.account(address)

    def contract_state(self, key: bytes) -> bytes | None:
        """A raw head-state value."""
        return self._chain.state_get(key)

    def genesis(self) -> Genesis:
        """The network's parameters."""
        return self._chain.genesis
