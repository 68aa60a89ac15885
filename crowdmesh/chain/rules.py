"""Consensus rules: header checks against ancestors, body checks, transaction application.

Invariants:
- Every function here is pure over its arguments; ancestors are read through a ``lookup``.
- Validation order for a block (cheap to expensive): chain id, height, target, PoW, timestamps,
  miner cap (header, needs only ancestors' headers) → size, tx Merkle root, transaction chain
  ids (body, stateless) → signatures, nonces, fees, contracts and the state root (needs the
  parent's state, done only when the block joins the main chain).
- ``apply_tx`` either applies the whole transaction or raises and leaves ``state`` unchanged.
- Supply: a block mints ``genesis.reward(height)``; of every fee ``fee * fee_burn_bps // 10000``
  is burned and the rest goes to the miner, so Σ balances = alloc + Σ rewards − Σ burned.
- A :class:`Receipt` is a pure function of the block and its parent's state, so every node (and
  every reconnection of the block) computes the same one. Stored form: canonical msgpack
  ``[txid (32 bytes), gas (u64), [event, ...]]`` with at most ``MAX_RECEIPT_EVENTS`` events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.codec import (
    Address,
    BlockHash,
    TxId,
    expect_array,
    expect_bytes,
    expect_list,
    expect_uint,
    pack,
    unpack,
)
from crowdmesh.chain.contracts import Contract, Event, TxContext
from crowdmesh.chain.contracts.base import MAX_EVENT_BYTES
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.state import Account, State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = [
    "MAX_FUTURE_SECONDS",
    "MAX_RECEIPT_BYTES",
    "MAX_RECEIPT_EVENTS",
    "MEDIAN_SPAN",
    "HashAt",
    "HeaderInfo",
    "Lookup",
    "Receipt",
    "apply_block",
    "apply_block_tx",
    "apply_tx",
    "burned_fee",
    "check_miner_cap",
    "check_tx",
    "median_time_past",
    "next_target",
    "no_history",
    "pay_miner",
    "validate_body",
    "validate_detached",
    "validate_header",
]

MAX_FUTURE_SECONDS = 2 * 60 * 60
MEDIAN_SPAN = 11
MAX_RECEIPT_EVENTS = 256  # per transaction; a contract reporting more fails with bad-event
MAX_RECEIPT_BYTES = 64 + MAX_RECEIPT_EVENTS * MAX_EVENT_BYTES


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one applied transaction: its gas and the events its contract reported."""

    txid: TxId
    gas: int
    events: tuple[Event, ...]

    def to_obj(self) -> list[Any]:
        """The msgpack object, to nest in a block's receipt list."""
        return [self.txid, self.gas, [e.to_obj() for e in self.events]]

    @classmethod
    def from_obj(cls, obj: Any) -> Receipt:
        """Rebuild from an already-unpacked object.

        Raises:
            DecodeError: ``bad-shape`` or ``bad-field``.
        """
        txid, gas, events = expect_array(obj, 3, "receipt")
        return cls(TxId(expect_bytes(txid, "receipt txid", 32)), expect_uint(gas, "receipt gas"),
                   tuple(Event.from_obj(e) for e in expect_list(events, MAX_RECEIPT_EVENTS,
                                                                 "receipt events")))

    def encode(self) -> bytes:
        """Canonical stored form."""
        return pack(self.to_obj())

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        """Parse one stored receipt strictly.

        Raises:
            DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
                ``bad-field``.
        """
        return cls.from_obj(unpack(data, MAX_RECEIPT_BYTES))


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """The header facts the contextual rules need about an ancestor."""

    hash: BlockHash
    height: int
    parent: BlockHash
    timestamp: int
    target: int
    miner: Address

    @classmethod
    def of(cls, h: BlockHeader) -> HeaderInfo:
        """Summarise ``h``."""
        return cls(h.hash, h.height, h.parent, h.timestamp, h.target, h.miner)


Lookup = Callable[[BlockHash], HeaderInfo]
HashAt = Callable[[int], BlockHash | None]  # an ancestor's hash by height (TxContext.hash_at)


def no_history(height: int) -> BlockHash | None:
    """A ``HashAt`` that knows no ancestors (a context outside any chain)."""
    return None


def _walk(start: HeaderInfo, lookup: Lookup, n: int) -> list[HeaderInfo]:
    """``start`` and its ancestors, at most ``n`` entries, newest first."""
    out: list[HeaderInfo] = []
    info = start
    while len(out) < n:  # n == 0 → nothing (the miner cap's W = 1 window has no ancestors)
        out.append(info)
        if info.height == 0:
            break
        info = lookup(info.parent)
    return out


def median_time_past(parent: HeaderInfo, lookup: Lookup) -> int:
    """Median timestamp of ``parent`` and up to 10 of its ancestors."""
    times = sorted(i.timestamp for i in _walk(parent, lookup, MEDIAN_SPAN))
    return times[len(times) // 2]


def next_target(genesis: Genesis, parent: HeaderInfo, lookup: Lookup) -> int:
    """The target a child of ``parent`` must carry.

    Every ``retarget_interval`` blocks the target scales by actual/expected time over the last
    interval, clamped to a factor of 4 each way and never easier than the genesis target.
    """
    interval = genesis.retarget_interval
    height = parent.height + 1
    if interval == 0 or height % interval != 0:
        return parent.target
    first = _walk(parent, lookup, interval)[-1]
    expected = (parent.height - first.height) * genesis.block_interval
    if expected == 0:
        return parent.target
    actual = min(max(parent.timestamp - first.timestamp, expected // 4), expected * 4)
    return max(1, min(parent.target * actual // expected, genesis.target))


def check_miner_cap(genesis: Genesis, header: BlockHeader, parent: HeaderInfo,
                     lookup: Lookup) -> None:
    """A miner may have mined at most M of the last W blocks, this one included.

    The window is this block plus its W − 1 nearest ancestors (the genesis block, mined by
    nobody, never counts), so W = 1 limits nothing beyond M ≥ 1.
    """
    if genesis.miner_cap_w == 0:
        return
    recent = [i for i in _walk(parent, lookup, genesis.miner_cap_w - 1) if i.height > 0]
    count = 1 + sum(1 for i in recent if i.miner == header.miner)
    if count > genesis.miner_cap_m:
        raise ValidationError("bad-block-miner-cap", f"{count} > {genesis.miner_cap_m}")


def validate_header(genesis: Genesis, header: BlockHeader, parent: HeaderInfo, lookup: Lookup,
                    now: int) -> None:
    """Check ``header`` against its parent and ancestors.

    Raises:
        ValidationError: ``bad-block-chain-id``, ``bad-block-height``, ``bad-block-target``,
            ``bad-block-pow``, ``bad-block-time-early``, ``bad-block-time-future``,
            ``bad-block-miner-cap``.
    """
    if header.chain_id != genesis.chain_id:
        raise ValidationError("bad-block-chain-id")
    if header.height != parent.height + 1:
        raise ValidationError("bad-block-height")
    if header.target != next_target(genesis, parent, lookup):
        raise ValidationError("bad-block-target")
    if not header.meets_target():
        raise ValidationError("bad-block-pow")
    if header.timestamp <= median_time_past(parent, lookup):
        raise ValidationError("bad-block-time-early")
    if header.timestamp > now + MAX_FUTURE_SECONDS:
        raise ValidationError("bad-block-time-future")
    check_miner_cap(genesis, header, parent, lookup)


def validate_detached(genesis: Genesis, block: Block) -> None:
    """The checks an orphan (parent unknown) must pass before it may be pooled.

    Chain id, a target no easier than the genesis target (the easiest retargeting allows), PoW
    on that target, and the stateless body checks, so the body is the one the hash commits to.

    Raises:
        ValidationError: ``bad-block-chain-id``, ``bad-block-target``, ``bad-block-pow``, or a
            :func:`validate_body` code.
    """
    h = block.header
    if h.chain_id != genesis.chain_id:
        raise ValidationError("bad-block-chain-id")
    if h.target > genesis.target:
        raise ValidationError("bad-block-target", "easier than the genesis target")
    if not h.meets_target():
        raise ValidationError("bad-block-pow")
    validate_body(genesis, block)


def validate_body(genesis: Genesis, block: Block) -> None:
    """Stateless body checks: size cap, Merkle root, chain ids of the transactions.

    Raises:
        ValidationError: ``bad-block-size``, ``bad-block-merkle``, ``bad-tx-chain-id``.
    """
    if len(block.encode()) > genesis.max_block_bytes:
        raise ValidationError("bad-block-size")
    if block.computed_tx_root() != block.header.tx_root:
        raise ValidationError("bad-block-merkle")
    for tx in block.txs:
        if tx.chain_id != genesis.chain_id:
            raise ValidationError("bad-tx-chain-id")


def check_tx(tx: Transaction, genesis: Genesis, contracts: Mapping[str, Contract],
             verify_sig: bool = True) -> None:
    """State-free transaction rules (mempool and block); ``verify_sig=False`` only for
    transactions this node already verified.

    Raises:
        ValidationError: ``bad-tx-chain-id``, ``bad-tx-kind``, ``bad-tx-fee``, ``bad-tx-sig``.
    """
    if tx.chain_id != genesis.chain_id:
        raise ValidationError("bad-tx-chain-id")
    if tx.kind not in contracts:
        raise ValidationError("bad-tx-kind", tx.kind)
    if tx.fee < tx.intrinsic_gas * genesis.min_gas_price:
        raise ValidationError("bad-tx-fee")
    if verify_sig and not tx.has_valid_signature():
        raise ValidationError("bad-tx-sig")


def burned_fee(fee: int, genesis: Genesis) -> int:
    """The part of ``fee`` that is destroyed."""
    return fee * genesis.fee_burn_bps // 10_000


def apply_tx(state: State, tx: Transaction, ctx: TxContext,
             contracts: Mapping[str, Contract]) -> Receipt:
    """Apply one transaction whose ``check_tx`` passed; all or nothing.

    Raises:
        ValidationError: ``bad-tx-nonce`` (replayed or out of order), ``bad-tx-overspend``
            (fee not covered), ``bad-event`` (the contract reported an event that cannot be
            stored, or more than ``MAX_RECEIPT_EVENTS``), or the contract's own code.
    """
    acct = state.account(tx.sender)
    if tx.nonce != acct.nonce:
        raise ValidationError("bad-tx-nonce", f"want {acct.nonce}, got {tx.nonce}")
    if acct.balance < tx.fee:
        raise ValidationError("bad-tx-overspend", "fee")
    snap = state.snapshot()
    state.put_account(tx.sender, Account(acct.balance - tx.fee, acct.nonce + 1, acct.reputation))
    try:
        events = contracts[tx.kind](state, tx, ctx)
        if len(events) > MAX_RECEIPT_EVENTS:
            raise ValidationError("bad-event", f"{len(events)} events")
    except ValidationError:
        state.revert(snap)
        raise
    return Receipt(tx.txid, tx.gas(state.new_words_since(snap)), events)


def apply_block_tx(state: State, tx: Transaction, genesis: Genesis,
                   contracts: Mapping[str, Contract], height: int, timestamp: int,
                   parent: BlockHash, verify: bool = True,
                   hash_at: HashAt = no_history) -> Receipt:
    """Check and apply one transaction of a block at ``height`` (blocks and templates share
    this, so a template is built by exactly the rules that validate it). ``hash_at`` gives the
    block's ancestors by height (see ``TxContext``)."""
    if verify:
        check_tx(tx, genesis, contracts)
    ctx = TxContext(genesis.chain_id, height, timestamp, parent, tx.txid, genesis, hash_at)
    return apply_tx(state, tx, ctx, contracts)


def pay_miner(state: State, genesis: Genesis, height: int, miner: bytes,
              txs: Sequence[Transaction]) -> int:
    """Credit ``miner`` with the reward at ``height`` plus the unburned part of the fees of
    ``txs``; return that fee part."""
    fees = sum(tx.fee - burned_fee(tx.fee, genesis) for tx in txs)
    if genesis.reward(height) + fees:
        state.credit(miner, genesis.reward(height) + fees)
    return fees


def apply_block(state: State, block: Block, genesis: Genesis,
                contracts: Mapping[str, Contract], verify: bool = True,
                hash_at: HashAt = no_history) -> list[Receipt]:
    """Apply every transaction, then pay the miner reward plus unburned fees.

    ``verify=False`` skips the stateless transaction checks (used only when rebuilding from
    blocks this node already validated). Raises on the first invalid transaction.
    """
    h = block.header
    receipts = [apply_block_tx(state, tx, genesis, contracts, h.height, h.timestamp, h.parent,
                               verify, hash_at) for tx in block.txs]
    pay_miner(state, genesis, h.height, h.miner, block.txs)
    return receipts
