"""Block headers, blocks, Merkle roots and proof of work.

Invariants:
- Header wire form: ``[chain_id, height, parent, timestamp, target, tx_root, state_root, miner,
  nonce]`` with ``target`` as 32 big-endian bytes. The nonce is last on purpose: the PoW
  preimage is ``pack(first eight fields) ‖ nonce as 8 big-endian bytes``, so the miner hashes a
  fixed prefix (``sha256(prefix).copy()``) plus 8 bytes per try.
- ``hash`` = SHA-256(PoW preimage); a header meets its PoW iff ``hash`` as a big-endian integer
  is ≤ ``target``. Work of a block = 2**256 // (target + 1).
- Block wire form: ``[header, [tx, ...]]``. ``tx_root`` is an RFC 6962-style Merkle root over
  txids (leaf = H(0x00‖txid), node = H(0x01‖l‖r), odd node promoted), so no two different tx
  lists share a root (the Bitcoin CVE-2012-2459 duplication does not apply).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crowdmesh.chain.codec import (
    U64_MAX,
    Address,
    BlockHash,
    TxId,
    expect_array,
    expect_bytes,
    expect_list,
    expect_text,
    expect_uint,
    pack,
    unpack,
)
from crowdmesh.chain.tx import MAX_CHAIN_ID_LEN, Transaction, decode_tx_fields
from crowdmesh.errors import ValidationError

__all__ = [
    "MAX_BLOCK_BYTES",
    "MAX_BLOCK_TXS",
    "MAX_HEADER_BYTES",
    "MAX_TARGET",
    "ZERO_HASH",
    "Block",
    "BlockHeader",
    "block_work",
    "merkle_root",
    "mine",
]

MAX_TARGET = (1 << 256) - 1
MAX_HEADER_BYTES = 512
MAX_BLOCK_BYTES = 16 * 1024 * 1024  # decode cap; the genesis sets the (smaller) consensus cap
MAX_BLOCK_TXS = 100_000
ZERO_HASH = BlockHash(bytes(32))
EMPTY_ROOT = hashlib.sha256(b"").digest()


def block_work(target: int) -> int:
    """Expected hashes needed to meet ``target``."""
    return (1 << 256) // (target + 1)


def merkle_root(txids: Sequence[bytes]) -> bytes:
    """RFC 6962-style Merkle root of ``txids`` (empty list → SHA-256 of nothing)."""
    if not txids:
        return EMPTY_ROOT
    level = [hashlib.sha256(b"\x00" + t).digest() for t in txids]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The proof-of-work-protected part of a block."""

    chain_id: str
    height: int
    parent: BlockHash
    timestamp: int
    target: int
    tx_root: bytes
    state_root: bytes
    miner: Address
    nonce: int = 0
    hash: BlockHash = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ok = (
            0 < len(self.chain_id) <= MAX_CHAIN_ID_LEN
            and 0 <= self.height <= U64_MAX
            and 0 <= self.timestamp <= U64_MAX
            and 0 <= self.nonce <= U64_MAX
            and 0 < self.target <= MAX_TARGET
            and len(self.parent) == len(self.tx_root) == len(self.state_root) == 32
            and len(self.miner) == 32
        )
        if not ok:
            raise ValidationError("bad-header-field")
        digest = hashlib.sha256(self.pow_prefix() + self.nonce.to_bytes(8, "big")).digest()
        object.__setattr__(self, "hash", BlockHash(digest))

    def pow_prefix(self) -> bytes:
        """Everything the PoW hash covers except the trailing 8 nonce bytes."""
        return pack(self.to_list()[:-1])

    def to_list(self) -> list[Any]:
        """The wire array."""
        return [self.chain_id, self.height, self.parent, self.timestamp,
                self.target.to_bytes(32, "big"), self.tx_root, self.state_root, self.miner,
                self.nonce]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return pack(self.to_list())

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        """Strictly decode a header (DecodeError/ValidationError on bad input)."""
        return header_from_list(unpack(data, MAX_HEADER_BYTES))

    @property
    def work(self) -> int:
        """Work this header's target represents."""
        return block_work(self.target)

    def meets_target(self) -> bool:
        """True iff the header's hash satisfies its own target."""
        return int.from_bytes(self.hash, "big") <= self.target


def header_from_list(obj: Any) -> BlockHeader:
    """Build a header from an unpacked wire array."""
    f = expect_array(obj, 9, "header")
    return BlockHeader(
        chain_id=expect_text(f[0], "header.chain_id", MAX_CHAIN_ID_LEN),
        height=expect_uint(f[1], "header.height"),
        parent=BlockHash(expect_bytes(f[2], "header.parent", 32)),
        timestamp=expect_uint(f[3], "header.timestamp"),
        target=int.from_bytes(expect_bytes(f[4], "header.target", 32), "big"),
        tx_root=expect_bytes(f[5], "header.tx_root", 32),
        state_root=expect_bytes(f[6], "header.state_root", 32),
        miner=Address(expect_bytes(f[7], "header.miner", 32)),
        nonce=expect_uint(f[8], "header.nonce"),
    )


@dataclass(frozen=True, slots=True)
class Block:
    """A header plus its ordered transactions."""

    header: BlockHeader
    txs: tuple[Transaction, ...] = ()

    @property
    def hash(self) -> BlockHash:
        """The header hash."""
        return self.header.hash

    @property
    def height(self) -> int:
        """The header height."""
        return self.header.height

    def txids(self) -> list[TxId]:
        """Transaction ids in block order."""
        return [tx.txid for tx in self.txs]

    def computed_tx_root(self) -> bytes:
        """The Merkle root of this block's transactions."""
        return merkle_root(self.txids())

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return pack([self.header.to_list(), [tx.to_list() for tx in self.txs]])

    @classmethod
    def decode(cls, data: bytes) -> Block:
        """Strictly decode a block (DecodeError/ValidationError on bad input)."""
        head, txs = expect_array(unpack(data, MAX_BLOCK_BYTES), 2, "block")
        items = expect_list(txs, MAX_BLOCK_TXS, "block.txs")
        return cls(header_from_list(head), tuple(decode_tx_fields(t) for t in items))


def mine(header: BlockHeader, start_nonce: int, max_iters: int) -> int | None:
    """Search nonces ``start_nonce … start_nonce+max_iters-1`` for one meeting the target.

    Pure and bounded, so the daemon can run it in batches off its event loop and cancel
    between batches. Returns the first winning nonce, or None.
    """
    base = hashlib.sha256(header.pow_prefix())
    limit = header.target.to_bytes(32, "big")
    end = min(start_nonce + max_iters, U64_MAX + 1)
    copy = base.copy
    for nonce in range(start_nonce, end):
        h = copy()
        h.update(nonce.to_bytes(8, "big"))
        if h.digest() <= limit:
            return nonce
    return None
