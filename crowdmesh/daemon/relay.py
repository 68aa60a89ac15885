"""Outbound gossip of transactions and blocks: batching, size routing, never blocking callers.

Invariants:
- :meth:`TxRelay.queue` never blocks and never awaits, so the ledger's synchronous callers (the
  control socket, the call service, a reorg's re-announcements) can relay from the trio thread
  without yielding in the middle of a state change.
- Queued transactions leave as :class:`TxBatch` messages of at most :data:`TX_BATCH_BYTES`,
  at most :data:`TX_BATCH_WINDOW_S` after the first one, so a single transaction stays prompt
  and a burst shares messages (the gossipsub per-topic rate limit counts messages).
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
        while True:
            first = carry if carry is not None else await self._outbox.receive()
            carry = None
            batch, size = [first], len(first) + 8
            with trio.move_on_after(TX_BATCH_WINDOW_S):
                while len(batch) < MAX_TXS_PER_BATCH:
                    raw = await self._outbox.receive()
                    if size + len(raw) + 8 > TX_BATCH_BYTES:
                        carry = raw  # starts the next batch
                        break
                    batch.append(raw)
                    size += len(raw) + 8
            await self._publish_batch(batch)

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
