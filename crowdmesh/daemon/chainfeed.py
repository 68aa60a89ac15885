"""What follows a change of the chain or the mempool, in one place, whatever caused it.

Every import (gossip, sync, our own miner) ends in :meth:`ChainFeed.imported`; every pooled
transaction (gossip, the control socket, a role's call) in :meth:`ChainFeed.pooled`.

Invariants:
- After a head change, in this order: rejected side blocks logged; the reorg and each connected
  block logged; ``heads`` published to subscribers; transactions a reorg returned to the mempool
  re-announced (peers that only saw the losing chain may never have seen them); the roles get
  the block events and ``HeadChanged`` (``RoleHost.feed_import``) and ``MempoolChanged``; the
  call service reconciles the node's own calls with the new chain.
- :meth:`ChainFeed.submit` is the one local way into the mempool: a transaction ahead of a
  missing nonce is queued (``mempool-nonce-gap``, kept in the gap buffer) and relayed; any
  other refusal raises with its stable code and relays nothing.
- :meth:`ChainFeed.submit` relays only what the ledger keeps: a transaction the gap buffer
  refuses (too far ahead, unfunded, the sender's slots full) raises and is not gossiped.
- :class:`ChainApi` is the control socket's ``ChainService``: read-only views of the ledger,
  plus ``submit_tx`` through :meth:`ChainFeed.submit`, which answers only once the pool file
  holds the transaction (``pending`` or ``queued`` then survives a SIGKILL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from crowdmesh.chain.chain import ImportResult
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.api import EventSink, JsonObj
from crowdmesh.daemon.ledger import Ledger, decode_tx_hex
from crowdmesh.daemon.logs import log_event, log_reject
from crowdmesh.daemon.relay import TxRelay
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.errors import ValidationError
from crowdmesh.roles.events import MempoolChanged

__all__ = ["QUEUED_CODES", "ChainApi", "ChainFeed"]

log = logging.getLogger("crowdmesh.node")

QUEUED_CODES = frozenset({"mempool-nonce-gap"})  # held in the ledger's gap buffer, not lost


class ChainFeed:
    """Fans chain and mempool changes out to logs, subscribers, peers, roles and calls."""

    def __init__(self, ledger: Ledger, events: EventSink, relay: TxRelay, host: RoleHost,
                 reconcile_calls: Callable[[], None]) -> None:
        self._ledger = ledger
        self._events = events
        self._relay = relay
        self._host = host
        self._reconcile_calls = reconcile_calls

    def imported(self, result: ImportResult, source: str) -> None:
        """Everything that follows one block import (see the module invariants)."""
        for bad, code in result.rejected:
            log_reject(log, code, block=bad.hex(), source=source)
        if not (result.connected or result.disconnected):
            return
        self._log_head_change(result, source)
        for tx in result.returned_txs:
            if tx.txid in self._ledger.mempool:
                self._relay.queue(tx.encode())
        promoted = [tx for tx in self._ledger.take_promoted() if tx.txid in self._ledger.mempool]
        for tx in promoted:
            self._relay.queue(tx.encode())
        self.pooled(promoted)
        self._host.feed_import(result, self._ledger.chain.block_receipts)
        self._host.deliver(MempoolChanged(len(self._ledger.mempool)))
        self._reconcile_calls()

    def _log_head_change(self, result: ImportResult, source: str) -> None:
        head = self._ledger.chain.head
        if result.reorg:
            log_event(log, "reorg", depth=len(result.disconnected), height=head.height,
                      head=head.hash.hex(), returned_txs=len(result.returned_txs))
        for block in result.connected:
            log_event(log, "block-connected", height=block.height, hash=block.hash.hex(),
                      txs=len(block.txs), source=source)
        self._events.publish_nowait("heads", {"hash": head.hash.hex(), "height": head.height,
                                              "reorg": result.reorg, "ts": time.time()})

    def pooled(self, txs: list[Transaction]) -> None:
        """Transactions just entered the mempool."""
        for tx in txs:
            self._events.publish_nowait("txs", {"txid": tx.txid.hex(),
                                                "sender": tx.sender.hex(), "nonce": tx.nonce})
        if txs:
            self._host.deliver(MempoolChanged(len(self._ledger.mempool)))

    def submit(self, tx: Transaction) -> str:
        """Pool a local transaction and relay it; ``"pending"`` or ``"queued"``.

        Raises:
            ValidationError: the mempool refused it (stable code), except for a nonce gap.
        """
        try:
            pooled = self._ledger.add_tx(tx)
        except ValidationError as exc:
            if exc.code not in QUEUED_CODES:
                raise
            self._relay.queue(tx.encode())
            return "queued"
        self.pooled(pooled)
        self._relay.queue(tx.encode())
        return "pending"

    def submit_call_tx(self, tx: Transaction) -> None:
        """The call service's port: like :meth:`submit`, a queued result is fine."""
        self.submit(tx)


class ChainApi:
    """The control socket's ``ChainService`` over the ledger and the feed."""

    def __init__(self, ledger: Ledger, feed: ChainFeed) -> None:
        self._ledger = ledger
        self._feed = feed

    def head(self) -> JsonObj:
        """The head header."""
        return self._ledger.head_view()

    def block(self, ref: str | int) -> JsonObj:
        """A block by height or hash."""
        return self._ledger.block_by_ref(ref)

    def mempool(self) -> JsonObj:
        """The mempool summary."""
        return self._ledger.mempool_view()

    async def submit_tx(self, raw_hex: str) -> JsonObj:
        """Pool a transaction from the control socket and gossip it.

        A transaction whose nonce is ahead of the pool (its predecessor is still on its way
        through gossip) is queued, gossiped, and pooled when the predecessor arrives.
        """
        tx = decode_tx_hex(raw_hex)
        status = self._feed.submit(tx)
        if self._ledger.pool_file is not None:  # why before answering: an answer is a promise
            await self._ledger.pool_file.save()
        return {"txid": tx.txid.hex(), "status": status}

    def tx(self, txid_hex: str) -> JsonObj:
        """A pending or confirmed transaction (with its contract events once confirmed)."""
        return self._ledger.tx_lookup(txid_hex)

    def balance(self, account_hex: str) -> JsonObj:
        """Balance and nonce of an account at the head, and its pending (mempool) nonce."""
        return self._ledger.balance(account_hex)
