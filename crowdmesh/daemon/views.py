"""JSON views of chain objects for the control socket (plain dicts, hex strings, ints).

Invariant: pure functions of their arguments; hashes, ids and keys are lowercase hex, amounts
ints, so the JSON-RPC layer only frames them (``daemon/api.py``). Contract event values keep
their type's natural JSON form: bytes → lowercase hex string, int → number, text → string.
"""

from __future__ import annotations

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.contracts import Event
from crowdmesh.chain.contracts.base import EventValue
from crowdmesh.chain.rules import Receipt
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.api import JsonObj
from crowdmesh.errors import UsageError

__all__ = [
    "MAX_LISTED_TXIDS",
    "block_view",
    "event_view",
    "header_view",
    "parse_hex",
    "receipt_view",
    "tx_view",
]

MAX_LISTED_TXIDS = 1000


def header_view(header: BlockHeader) -> JsonObj:
    """A header as JSON."""
    return {
        "hash": header.hash.hex(),
        "height": header.height,
        "parent": header.parent.hex(),
        "timestamp": header.timestamp,
        "target": f"{header.target:064x}",
        "tx_root": header.tx_root.hex(),
        "state_root": header.state_root.hex(),
        "miner": header.miner.hex(),
        "nonce": header.nonce,
    }


def block_view(block: Block) -> JsonObj:
    """A block as JSON: its header fields plus the transaction ids (first 1000)."""
    view = header_view(block.header)
    view["tx_count"] = len(block.txs)
    view["txids"] = [tx.txid.hex() for tx in block.txs[:MAX_LISTED_TXIDS]]
    view["size"] = len(block.encode())
    return view


def tx_view(tx: Transaction) -> JsonObj:
    """A transaction as JSON (payload as hex)."""
    return {
        "txid": tx.txid.hex(),
        "chain_id": tx.chain_id,
        "sender": tx.sender.hex(),
        "nonce": tx.nonce,
        "kind": tx.kind,
        "payload": tx.payload.hex(),
        "fee": tx.fee,
        "size": len(tx.encoded),
    }


def _value_view(value: EventValue) -> int | str:
    return value.hex() if isinstance(value, bytes) else value


def event_view(event: Event) -> JsonObj:
    """A contract event as JSON: ``{"name": str, "fields": [hex str | int | str, ...]}``."""
    return {"name": event.name, "fields": [_value_view(v) for v in event.fields]}


def receipt_view(receipt: Receipt) -> JsonObj:
    """What a confirmed transaction's receipt adds to its view: ``gas`` and ``events``."""
    return {"gas": receipt.gas, "events": [event_view(e) for e in receipt.events]}


def parse_hex(text: str, size: int | None, what: str) -> bytes:
    """Decode lowercase/uppercase hex of an exact ``size`` (None: any size).

    Raises:
        UsageError: ``bad-hex`` when ``text`` is not hex of the right length.
    """
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise UsageError("bad-hex", f"{what} must be hex") from None
    if size is not None and len(raw) != size:
        raise UsageError("bad-hex", f"{what} must be {size} bytes")
    return raw
