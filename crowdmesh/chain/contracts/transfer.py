"""The ``transfer`` contract: move coins between accounts.

Payload: ``[to (32 bytes), amount (u64, > 0)]``. The sender pays ``amount`` on top of the fee;
an overspend raises ``bad-tx-overspend`` and (through the caller's revert) changes nothing.
"""

from __future__ import annotations

from crowdmesh.chain.codec import U64_MAX, pack
from crowdmesh.chain.contracts.base import Event, TxContext, decode_payload
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = ["KIND", "apply_transfer", "transfer_payload"]

KIND = "transfer"


def transfer_payload(to: bytes, amount: int) -> bytes:
    """Encode a transfer payload."""
    return pack([to, amount])


def apply_transfer(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """Debit the sender and credit ``to``."""
    obj = decode_payload(tx.payload, "bad-transfer-payload")
    ok = (isinstance(obj, list) and len(obj) == 2 and type(obj[0]) is bytes and len(obj[0]) == 32
          and type(obj[1]) is int and 0 < obj[1] <= U64_MAX)
    if not ok:
        raise ValidationError("bad-transfer-payload")
    to, amount = obj
    state.debit(tx.sender, amount)
    state.credit(to, amount)
    return (Event("transferred", (tx.sender, to, amount)),)
