"""Outbound gossip of transactions and blocks: batching, size routing, never blocking callers.

Invariants:
- :meth:`TxRelay.queue` never blocks and never awaits, so the ledger's synchronous callers (the
  control socket, the call service, a reorg's re-announcements) can relay from the trio thread
  without yielding in the middle of a state change.
- Queued transactions leave as :class:`TxBatch` messages of at most :data:`TX_BATCH_BYTES`,
  at most one message per :data:`TX_BATCH_WINDOW_S`: a transaction queued when the last
  message is a window old leaves at once with whatever is queued with it, later ones wait for
  the window to close. So a single transaction leaves without delay and a burst shares
  messages (the gossipsub per-topic rate limit counts messages).
- A transaction too large to gossip even alone is announced (``TxAnnounce``) and fetched by
  peers over sync; announcements are batched like transactions (up to
  :data:`MAX_TXIDS_PER_MESSAGE` txids, at most :data:`TX_BATCH_WINDOW_S` after the first), so
  a blob's parts cost peers one announcement and one fetch session, not one of each per part.
  A block too large for one gossip message is announced by its header.
- When an outbox is full (its batcher is far behind) a transaction (or announcement) is
  published on its own from a task in the node's nursery instead of being dropped.
"""

from __future__ import annotations

import logging

import trio

from crowdmesh.chain.block import Block
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import DecodeError
from crowdmesh.p2p.gossip import BLOCKS, TXS
from crowdmesh.p2p.messages import (
    MAX_GOSSIP_BYTES,
    MAX_TXIDS_PER_MESSAGE,
    MAX_TXS_PER_BATCH,
    BlockAnnounce,
    NewBlock,
    TxAnnounce,
    TxBatch,
    TxGossip,
)
from crowdmesh.p2p.network import Network

__all__ = ["GOSSIP_BLOCK_LIMIT", "TX_BATCH_BYTES", "TX_BATCH_WINDOW_S", "TxRelay"]

log = logging.getLogger("crowdmesh.node")

GOSSIP_BLOCK_LIMIT = MAX_GOSSIP_BYTES - 256  # room for the message envelope
TX_OUTBOX = 8192
TX_BATCH_WINDOW_S = 0.02
TX_BATCH_BYTES = MAX_GOSSIP_BYTES - 64  # room for the batch's own msgpack framing


class _Batch:
    """Transactions for one :class:`TxBatch` message."""

    def __init__(self, items: list[bytes], size: int) -> None:
        self.items, self.size = items, size

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_TXS_PER_BATCH

    def add(self, raw: bytes) -> bool:
        """Take ``raw`` if it fits in one message."""
        if self.size + len(raw) + 8 > TX_BATCH_BYTES:
            return False
        self.items.append(raw)
        self.size += len(raw) + 8
        return True


class TxRelay:
    """Publishes our transactions and blocks on the network's gossip topics."""

    def __init__(self, net: Network, nursery: trio.Nursery) -> None:
        self._net = net
        self._nursery = nursery
        self._out, self._outbox = trio.open_memory_channel[bytes](TX_OUTBOX)
        self._inv, self._invbox = trio.open_memory_channel[bytes](TX_OUTBOX)  # txids to announce

    def queue(self, raw: bytes) -> None:
        """Relay one encoded transaction soon (never blocks)."""
        if len(raw) + 8 > TX_BATCH_BYTES:  # too large to gossip even alone: inv/getdata
            txid = Transaction.decode(raw).txid
            try:
                self._inv.send_nowait(txid)
            except trio.WouldBlock:
                self._nursery.start_soon(self._publish_one, TxAnnounce((txid,)))
            return
        try:
            self._out.send_nowait(raw)
        except trio.WouldBlock:  # the batcher is far behind: send this one on its own
            self._nursery.start_soon(self._publish_one, TxGossip(raw))

    async def _publish_one(self, msg: TxAnnounce | TxGossip) -> None:
        try:
            await self._net.publish(TXS, msg)
        except DecodeError as exc:
            log_event(log, "tx-not-gossiped", logging.WARNING, code=exc.code, txs=1)

    async def publish_tx(self, raw: bytes) -> None:
        """Effect port form of :meth:`queue`."""
        self.queue(raw)

    async def publish_block(self, raw: bytes) -> None:
        """Gossip a block, or only its header when the block is too large for one message."""
        if len(raw) <= GOSSIP_BLOCK_LIMIT:
            await self._net.publish(BLOCKS, NewBlock(raw))
        else:
            await self._net.publish(BLOCKS, BlockAnnounce(Block.decode(raw).header.encode()))

    async def run(self) -> None:
        """The batcher tasks: transactions as :class:`TxBatch`, txids as :class:`TxAnnounce`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_txs)
            nursery.start_soon(self._run_announcements)

    async def _run_txs(self) -> None:
        carry: bytes | None = None
        last_sent = float("-inf")
        while True:
            first = carry if carry is not None else await self._outbox.receive()
            batch = _Batch([first], len(first) + 8)
            carry = self._drain(batch)
            # why leading edge: a transaction that finds the window open leaves at once with
            # whatever is queued (a protocol step waits on its block), and a burst still goes
            # as at most one message per window
            with trio.move_on_at(last_sent + TX_BATCH_WINDOW_S):
                while carry is None and not batch.full:
                    raw = await self._outbox.receive()
                    carry = None if batch.add(raw) else raw
            last_sent = trio.current_time()
            await self._publish_batch(batch.items)

    def _drain(self, batch: _Batch) -> bytes | None:
        """Add what is queued already; return the first one that does not fit (or None)."""
        while not batch.full:
            try:
                raw = self._outbox.receive_nowait()
            except trio.WouldBlock:
                return None
            if not batch.add(raw):
                return raw
        return None

    async def _run_announcements(self) -> None:
        while True:
            txids = {await self._invbox.receive(): None}  # a dict: distinct, in order
            with trio.move_on_after(TX_BATCH_WINDOW_S):
                while len(txids) < MAX_TXIDS_PER_MESSAGE:
                    txids[await self._invbox.receive()] = None
            await self._publish_one(TxAnnounce(tuple(txids)))

    async def _publish_batch(self, batch: list[bytes]) -> None:
        try:
            await self._net.publish(TXS, TxBatch(tuple(batch)))
        except DecodeError as exc:  # why kept: queue() sends what cannot fit as TxAnnounce
            log_event(log, "tx-not-gossiped", logging.WARNING, code=exc.code,
                      txs=len(batch), bytes=sum(map(len, batch)))
