"""Block templates: the unmined block a miner works on.

Invariants:
- A template is valid on the head it was built on, except for its nonce: it passes every rule
  ``Chain.import_block`` applies once a nonce meets the target (same timestamp rule, target,
  transaction application, reward, state root and miner cap).
- Transactions are applied and the miner paid by the very functions block validation uses
  (``apply_block_tx``, ``pay_miner``), so a new block rule cannot make templates invalid.
- Transactions are tried in the given order; one that fails is skipped with its code and leaves
  no trace in the state (``apply_tx`` reverts), so the rest still apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crowdmesh.chain.block import Block, BlockHeader, merkle_root
from crowdmesh.chain.codec import Address, TxId
from crowdmesh.chain.rules import (
    HeaderInfo,
    apply_block_tx,
    check_miner_cap,
    median_time_past,
    pay_miner,
)
from crowdmesh.chain.state import State, muhash_update, state_root
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

if TYPE_CHECKING:
    from crowdmesh.chain.chain import Chain

__all__ = ["BlockTemplate", "build_template"]

_BLOCK_OVERHEAD = 1024  # header and array framing, generously
_TX_OVERHEAD = 8


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    """An unmined block on the current head (nonce 0) and the transactions left out."""

    block: Block
    skipped: tuple[tuple[TxId, str], ...]
    fees: int
    gas: int


def _fill(chain: Chain, state: State, parent: HeaderInfo, timestamp: int,
          txs: Iterable[Transaction]) -> tuple[list[Transaction], list[tuple[TxId, str]], int]:
    """Apply what fits and applies; return (included, skipped with codes, total gas)."""
    included: list[Transaction] = []
    skipped: list[tuple[TxId, str]] = []
    budget = chain.genesis.max_block_bytes - _BLOCK_OVERHEAD
    gas = 0
    for tx in txs:
        if len(tx.encoded) + _TX_OVERHEAD > budget:
            skipped.append((tx.txid, "bad-block-size"))
            continue
        try:
            gas += apply_block_tx(state, tx, chain.genesis, chain.contracts, parent.height + 1,
                                  timestamp, parent.hash, hash_at=chain.main_hash_at).gas
        except ValidationError as exc:
            skipped.append((tx.txid, exc.code))
            continue
        budget -= len(tx.encoded) + _TX_OVERHEAD
        included.append(tx)
    return included, skipped, gas


def build_template(chain: Chain, miner: bytes, txs: Iterable[Transaction],
                   now: int) -> BlockTemplate:
    """An unmined block on ``chain``'s head with as many of ``txs`` (in order) as apply.

    The timestamp is ``now``, or just after the median time past if that is later.

    Raises:
        ValidationError: ``bad-block-miner-cap`` if ``miner`` may not mine the next block.
    """
    parent = chain.header_info(chain.head_hash)
    timestamp = max(now, median_time_past(parent, chain.header_info) + 1)
    state = State(chain.state_get)
    included, skipped, gas = _fill(chain, state, parent, timestamp, txs)
    g = chain.genesis
    fees = pay_miner(state, g, parent.height + 1, miner, included)
    changes, previous = state.diff()
    acc = muhash_update(chain.state_accumulator, previous, changes)
    header = BlockHeader(
        g.chain_id, parent.height + 1, parent.hash, timestamp, chain.next_target(),
        merkle_root([tx.txid for tx in included]), state_root(acc), Address(bytes(miner)), 0)
    check_miner_cap(g, header, parent, chain.header_info)
    return BlockTemplate(Block(header, tuple(included)), tuple(skipped), fees, gas)
