"""Storage layout: key builders and the records the chain keeps besides blocks.

Invariants:
- Keys: ``b‖hash`` block bytes, ``i‖hash`` :class:`IndexEntry`, ``h‖height(8 BE)`` main-chain
  hash, ``u‖hash`` :class:`Undo`, ``s‖state-key`` state value, ``t‖txid`` tx location,
  ``r‖hash`` the block's receipts, ``m‖name`` metadata (``head``, ``acc``, ``genesis``).
- ``r‖hash`` holds one :class:`~crowdmesh.chain.rules.Receipt` per transaction of the block, in
  transaction order (``[]`` for the genesis block). It is written in the batch that connects the
  block and is left in place when the block is disconnected: receipts depend only on the block
  and its parent's state, so a reconnection rewrites the same bytes. Stores written before
  receipts existed lack these rows; ``reindex`` writes them (see ``maintenance``).
- An index entry exists for every stored block; ``status`` only moves HEADER_VALID → VALID or
  → INVALID (VALID → INVALID never happens: a connected block stays valid).
- ``Undo`` of block B holds the state accumulator before B and the previous value of every
  state key B changed; applying it restores the parent's state exactly.
- Internal records are canonical msgpack too (``None`` encodes a missing value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from crowdmesh.chain.codec import Address, BlockHash, expect_array, expect_list, pack, unpack
from crowdmesh.chain.rules import HeaderInfo, Receipt

__all__ = [
    "META_ACC",
    "META_GENESIS",
    "META_HEAD",
    "P_BLOCK",
    "P_HEIGHT",
    "P_INDEX",
    "P_META",
    "P_RECEIPTS",
    "P_STATE",
    "P_TX",
    "P_UNDO",
    "BlockStatus",
    "IndexEntry",
    "TxLocation",
    "Undo",
    "decode_receipts",
    "encode_receipts",
    "height_key",
]

P_BLOCK, P_INDEX, P_HEIGHT, P_UNDO, P_STATE, P_TX, P_RECEIPTS, P_META = (
    b"b", b"i", b"h", b"u", b"s", b"t", b"r", b"m")
META_HEAD = P_META + b"head"
META_ACC = P_META + b"acc"
META_GENESIS = P_META + b"genesis"
_RECORD_CAP = 1 << 30
_MAX_BLOCK_RECEIPTS = 1 << 20  # more than a max-size block can hold transactions


def height_key(height: int) -> bytes:
    """Main-chain index key of ``height``."""
    return P_HEIGHT + height.to_bytes(8, "big")


class BlockStatus(IntEnum):
    """How far a stored block has been validated."""

    HEADER_VALID = 1  # header and stateless body checks passed; never connected
    VALID = 2  # connected to the main chain at least once
    INVALID = 3  # failed a rule, or descends from a block that did


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """In-memory and stored facts about one known block."""

    info: HeaderInfo
    work: int  # cumulative chain work up to and including this block
    status: BlockStatus
    seq: int  # arrival order; breaks ties between equal-work tips (first seen wins)

    @property
    def hash(self) -> BlockHash:
        """The block hash."""
        return self.info.hash

    def encode(self) -> bytes:
        """Stored form."""
        i = self.info
        return pack([i.height, i.parent, i.timestamp, i.target.to_bytes(32, "big"), i.miner,
                     self.work.to_bytes(48, "big"), int(self.status), self.seq])

    @classmethod
    def decode(cls, block_hash: bytes, data: bytes) -> IndexEntry:
        """Parse a stored entry."""
        h, parent, ts, target, miner, work, status, seq = expect_array(
            unpack(data, 512), 8, "index")
        info = HeaderInfo(BlockHash(block_hash), h, BlockHash(parent), ts,
                          int.from_bytes(target, "big"), Address(miner))
        return cls(info, int.from_bytes(work, "big"), BlockStatus(status), seq)

    def with_status(self, status: BlockStatus) -> IndexEntry:
        """A copy with ``status``."""
        return IndexEntry(self.info, self.work, status, self.seq)


@dataclass(frozen=True, slots=True)
class Undo:
    """What disconnecting a block must restore."""

    prev_acc: int
    previous: tuple[tuple[bytes, bytes | None], ...]  # sorted by state key

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.prev_acc.to_bytes(384, "big"), [list(p) for p in self.previous]])

    @classmethod
    def decode(cls, data: bytes) -> Undo:
        """Parse a stored undo record."""
        acc, items = expect_array(unpack(data, _RECORD_CAP), 2, "undo")
        return cls(int.from_bytes(acc, "big"), tuple((k, v) for k, v in items))


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Where a main-chain transaction is."""

    block_hash: BlockHash
    index: int

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.block_hash, self.index])

    @classmethod
    def decode(cls, data: bytes) -> TxLocation:
        """Parse a stored location."""
        h, i = expect_array(unpack(data, 128), 2, "txloc")
        return cls(BlockHash(h), i)


def encode_receipts(receipts: Sequence[Receipt]) -> bytes:
    """Stored form of a block's receipts (``[receipt, ...]`` in transaction order)."""
    return pack([r.to_obj() for r in receipts])


def decode_receipts(data: bytes) -> tuple[Receipt, ...]:
    """Parse a block's stored receipts strictly.

    Raises:
        DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
            ``bad-field``.
    """
    items = expect_list(unpack(data, _RECORD_CAP), _MAX_BLOCK_RECEIPTS, "receipts")
    return tuple(Receipt.from_obj(r) for r in items)
