"""Read-only queries of the committed chain: head, blocks, main-chain index, txs, receipts, state.

:class:`ChainQueries` is the read half of :class:`~crowdmesh.chain.chain.Chain` (which inherits
it, so the public API is one class); it never writes.

Invariants:
- Every answer reflects the last committed batch: the store rows plus the in-memory block index
  and head that ``Chain`` updates only after a batch committed.
- Receipts: :meth:`block_receipts` serves the ``r‖hash`` row of any block that was ever connected
  (a block disconnected by a reorg keeps its row; its receipts cannot change). A block never
  connected, unknown, or connected by a version of crowdmesh that did not store receipts has no
  row and raises ``NotFound("receipts-not-found")`` (``reindex`` fills in the last case).
- Damaged rows (a receipt list that does not decode or does not match the block's
  transactions) raise ``UsageError("corrupt-store")``, like other store damage, never a
  ``DecodeError`` (the bytes are local, not remote input).
"""

from __future__ import annotations

from collections.abc import Iterable

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.codec import Address, BlockHash
from crowdmesh.chain.layout import (
    P_BLOCK,
    P_RECEIPTS,
    P_STATE,
    P_TX,
    BlockStatus,
    IndexEntry,
    TxLocation,
    decode_receipts,
    height_key,
)
from crowdmesh.chain.rules import HeaderInfo, Receipt
from crowdmesh.chain.state import Account
from crowdmesh.chain.store import Store
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import DecodeError, NotFound, UsageError

__all__ = ["ChainQueries"]


class ChainQueries:
    """Queries over the store and the in-memory index (set up by ``Chain``)."""

    store: Store
    _index: dict[BlockHash, IndexEntry]
    _head: IndexEntry
    _head_header: BlockHeader
    _acc: int

    # ----- head ----------------------------------------------------------------------------

    @property
    def head(self) -> BlockHeader:
        """The main-chain tip header."""
        return self._head_header

    @property
    def head_hash(self) -> BlockHash:
        """The main-chain tip hash."""
        return self._head.hash

    @property
    def height(self) -> int:
        """The main-chain tip height."""
        return self._head.info.height

    @property
    def total_work(self) -> int:
        """Cumulative work of the main chain."""
        return self._head.work

    @property
    def genesis_hash(self) -> BlockHash:
        """Hash of block 0 (identifies the network)."""
        return self.get_hash_at(0)

    @property
    def state_accumulator(self) -> int:
        """MuHash accumulator of the head state."""
        return self._acc

    # ----- blocks --------------------------------------------------------------------------

    def block_status(self, block_hash: bytes) -> BlockStatus | None:
        """Validation status of a stored block (None if unknown)."""
        entry = self._index.get(BlockHash(block_hash))
        return None if entry is None else entry.status

    def header_info(self, block_hash: bytes) -> HeaderInfo:
        """Header facts of a stored block (raises ``NotFound``)."""
        entry = self._index.get(BlockHash(block_hash))
        if entry is None:
            raise NotFound("block-not-found", block_hash.hex())
        return entry.info

    def get_block(self, block_hash: bytes) -> Block:
        """A stored block by hash (raises ``NotFound("block-not-found")``)."""
        raw = self.store.get(P_BLOCK + block_hash)
        if raw is None:
            raise NotFound("block-not-found", block_hash.hex())
        return Block.decode(raw)

    def get_hash_at(self, height: int) -> BlockHash:
        """Main-chain hash at ``height`` (raises ``NotFound``)."""
        raw = self.store.get(height_key(height)) if 0 <= height <= self.height else None
        if raw is None:
            raise NotFound("block-not-found", f"height {height}")
        return BlockHash(raw)

    def main_hash_at(self, height: int) -> BlockHash | None:
        """Main-chain hash at ``height``, or None outside 0..head (a ``TxContext.hash_at`` for
        a transaction in the next block)."""
        raw = self.store.get(height_key(height)) if 0 <= height <= self.height else None
        return None if raw is None else BlockHash(raw)

    def get_block_by_height(self, height: int) -> Block:
        """The main-chain block at ``height``."""
        return self.get_block(self.get_hash_at(height))

    def is_main_chain(self, block_hash: bytes) -> bool:
        """True iff the block is on the main chain."""
        entry = self._index.get(BlockHash(block_hash))
        if entry is None or entry.info.height > self.height:
            return False
        return self.store.get(height_key(entry.info.height)) == block_hash

    def headers_range(self, start_height: int, count: int) -> list[BlockHeader]:
        """Main-chain headers from ``start_height``, at most ``count`` (for sync)."""
        end = min(self.height + 1, start_height + max(0, count))
        return [self.get_block_by_height(h).header for h in range(max(0, start_height), end)]

    def locator(self) -> list[BlockHash]:
        """Main-chain hashes at exponentially spaced heights back from the head."""
        out, step, h = [], 1, self.height
        while h > 0:
            out.append(self.get_hash_at(h))
            if len(out) >= 10:
                step *= 2
            h -= step
        out.append(self.get_hash_at(0))
        return out

    def find_fork_height(self, locator: Iterable[bytes]) -> int:
        """Height of the first ``locator`` hash on our main chain (0 if none)."""
        for h in locator:
            if self.is_main_chain(h):
                return self._index[BlockHash(h)].info.height
        return 0

    # ----- transactions and receipts --------------------------------------------------------

    def _tx_location(self, txid: bytes) -> TxLocation:
        raw = self.store.get(P_TX + txid)
        if raw is None:
            raise NotFound("tx-not-found", txid.hex())
        return TxLocation.decode(raw)

    def get_transaction(self, txid: bytes) -> tuple[Transaction, BlockHash, int]:
        """A main-chain transaction with its block hash and height (raises ``NotFound``)."""
        loc = self._tx_location(txid)
        block = self.get_block(loc.block_hash)
        return block.txs[loc.index], loc.block_hash, block.height

    def block_receipts(self, block_hash: bytes) -> tuple[Receipt, ...]:
        """The receipts of a block that was connected, one per transaction in block order.

        Args:
            block_hash: any block that is or was on the main chain (the genesis block has
                none: ``()``).
        Returns:
            One :class:`Receipt` per transaction of the block, in block order.
        Raises:
            NotFound: ``receipts-not-found`` (unknown or never connected block, or a store
                written before receipts were stored: run ``reindex``).
            UsageError: ``corrupt-store`` if the stored row does not decode.
        """
        raw = self.store.get(P_RECEIPTS + block_hash)
        if raw is None:
            raise NotFound("receipts-not-found", block_hash.hex())
        try:
            return decode_receipts(raw)
        except DecodeError as exc:
            raise UsageError("corrupt-store",
                             f"receipts of {block_hash.hex()}: {exc.code}; run reindex") from exc

    def tx_receipt(self, txid: bytes) -> Receipt:
        """The receipt of a main-chain transaction.

        Raises:
            NotFound: ``tx-not-found`` (not on the main chain), ``receipts-not-found`` (its
                block was connected before receipts were stored: run ``reindex``).
            UsageError: ``corrupt-store`` if the stored receipts do not match the block.
        """
        loc = self._tx_location(txid)
        receipts = self.block_receipts(loc.block_hash)
        if loc.index >= len(receipts) or receipts[loc.index].txid != txid:
            raise UsageError("corrupt-store",
                             f"receipts of {loc.block_hash.hex()} disagree; run reindex")
        return receipts[loc.index]

    # ----- head state ----------------------------------------------------------------------

    def state_get(self, key: bytes) -> bytes | None:
        """A raw head-state value (contracts' views)."""
        return self.store.get(P_STATE + key)

    def account(self, addr: bytes) -> Account:
        """The head-state account at ``addr``."""
        raw = self.state_get(b"a" + addr)
        return Account() if raw is None else Account.decode(raw)

    def balance(self, addr: bytes) -> int:
        """Head-state balance of ``addr``."""
        return self.account(addr).balance

    def nonce(self, addr: bytes) -> int:
        """Next nonce ``addr`` must use."""
        return self.account(addr).nonce

    def iter_state(self, prefix: bytes = b"") -> Iterable[tuple[bytes, bytes]]:
        """Head-state (key, value) pairs under ``prefix``, in key order."""
        return ((k[1:], v) for k, v in self.store.iterate(P_STATE + prefix))

    def iter_accounts(self) -> Iterable[tuple[Address, Account]]:
        """Every head-state account."""
        return ((Address(k[1:]), Account.decode(v)) for k, v in self.iter_state(b"a"))
