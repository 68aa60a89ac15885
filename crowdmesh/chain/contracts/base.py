"""What every native contract receives and returns.

Invariants:
- A contract is a pure function ``(state, tx, ctx) -> events``. It reads and writes only through
  the journaled :class:`~crowdmesh.chain.state.State`; the caller snapshots before the call and
  reverts on :class:`ValidationError`, so a contract that raises changes nothing.
- Contracts never see wall-clock time: ``ctx.timestamp`` is the block's timestamp and
  ``ctx.height`` its height. Events are plain values (ints, bytes, text) so they serialise.
- Contract state keys start with the contract's own one-byte prefix (``a`` is accounts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crowdmesh.chain.codec import BlockHash, TxId, unpack
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import MAX_PAYLOAD_BYTES, Transaction
from crowdmesh.errors import DecodeError, ValidationError

__all__ = ["Contract", "Event", "TxContext", "decode_payload"]

EventValue = int | bytes | str


@dataclass(frozen=True, slots=True)
class Event:
    """Something a contract reports (past tense names: ``transferred``, ``key-registered``)."""

    name: str
    fields: tuple[EventValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxContext:
    """The block-level facts a contract may depend on."""

    chain_id: str
    height: int
    timestamp: int
    block_parent: BlockHash
    txid: TxId


Contract = Callable[[State, Transaction, TxContext], tuple[Event, ...]]


def decode_payload(payload: bytes, code: str) -> Any:
    """Unpack a contract payload; malformed payloads raise ``ValidationError(code)``.

    A payload is inside an already-valid transaction, so its defects are rule violations of the
    contract (the transaction is rejected with ``code``), not wire decode errors.
    """
    try:
        return unpack(payload, MAX_PAYLOAD_BYTES)
    except DecodeError as exc:
        raise ValidationError(code, exc.code) from exc
