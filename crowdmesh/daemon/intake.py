"""Gossip intake: one task reads the network's bounded channel; one handler per message type.

Invariants:
- :attr:`GossipIntake.handlers` is the one table from gossip message type to handler; the
  network's topic validators already ran the cheap stateless checks.
- Bad input from a peer is dropped with its stable reject code, logged (``event=rejected
  code=…``) and counted against the peer; it never stops the node. Honest races (reordered
  nonces, a re-announced or already mined transaction) are only counted.
- A transaction too large for a gossip message is announced (``TxAnnounce``); we fetch it over
  sync through ``daemon/txfetch.py``, off the intake loop, and validate it as if gossiped.
- Every block that reaches the chain from a peer (gossip or sync) goes through
  :meth:`GossipIntake.import_from_peer`, so its aftermath is the same (``ChainFeed.imported``).
- A spatial message (report, commit, reveal) goes to the roles as it is (``SpatialHeard``):
  the validator checked its shape and freshness, the roles verify signatures and decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import trio
from libp2p.peer.id import ID

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.chain import ImportStatus
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.chainfeed import ChainFeed
from crowdmesh.daemon.chainsync import ChainSync
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.relay import TxRelay
from crowdmesh.daemon.txfetch import TxFetcher
from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.p2p.gossip import BLOCKS, TXS, Incoming
from crowdmesh.p2p.messages import (
    BlockAnnounce,
    Message,
    NewBlock,
    SpatialGossip,
    TxAnnounce,
    TxBatch,
    TxGossip,
)
from crowdmesh.p2p.network import Network
from crowdmesh.roles.events import CompetingTipSeen, Event
from crowdmesh.roles.spatial_events import SpatialHeard, SpatialKind

__all__ = ["QUIET_CODES", "GossipIntake"]

# Honest races and differences in view: reordered nonces, re-announced txs, and the gap
# buffer's bounds, which depend on our head and pool (a peer's may differ). What our head makes
# hopeless on its own the gossip validator already dropped (``Ledger.check_tx``).
QUIET_CODES = frozenset({"mempool-nonce-gap", "mempool-duplicate", "mempool-gap-too-far",
                         "mempool-sender-cannot-pay", "mempool-account-queue-full",
                         "mempool-queue-full"})


class GossipIntake:
    """Turns gossip (and blocks and transactions fetched over sync) into ledger changes."""

    def __init__(self, net: Network, ledger: Ledger, feed: ChainFeed, relay: TxRelay,
                 deliver: Callable[[Event], None]) -> None:
        self._net = net
        self._ledger = ledger
        self._feed = feed
        self._relay = relay
        self._deliver = deliver
        self.sync: ChainSync
        self.fetcher: TxFetcher
        self.handlers: dict[type[Message], Callable[[Incoming], None]] = {
            TxGossip: self._on_tx_gossip,
            TxBatch: self._on_tx_batch,
            NewBlock: self._on_new_block,
            BlockAnnounce: self._on_block_announce,
            TxAnnounce: self._on_tx_announce,
            SpatialGossip: self._on_spatial,
        }

    def attach(self, sync: ChainSync, fetcher: TxFetcher) -> None:
        """The sync and fetch services the intake asks for missing data."""
        self.sync = sync
        self.fetcher = fetcher

    async def run(self) -> None:
        """The intake loop (one task)."""
        async for item in self._net.gossip.incoming:
            self.handlers[type(item.msg)](item)
            await trio.sleep(0)  # why: let a burst of gossip interleave with sync and RPCs

    def _reject(self, peer: str, kind: str, exc: DecodeError | ValidationError) -> None:
        self._net.gossip.reject(peer, self._net.gossip.topics.get(kind, kind), exc.code,
                                exc.detail)

    def _count_quietly(self, code: str) -> None:
        counts = self._net.gossip.counters.rejected
        counts[code] = counts.get(code, 0) + 1

    # -- transactions -----------------------------------------------------------------------

    def _on_tx_gossip(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxGossip)
        self._accept_tx(item.msg.tx, item.origin)

    def _on_tx_batch(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxBatch)
        for raw in item.msg.txs:
            self._accept_tx(raw, item.origin)

    def _on_tx_announce(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxAnnounce)
        if ID.from_base58(item.origin) in self._net.connected():
            self.fetcher.announced(item.origin, item.msg.txids)
        else:  # why not fetch: a connected holder re-announces once it has pooled them
            self._count_quietly("tx-announce-not-connected")

    async def accept_fetched(self, raws: list[bytes], peer: str) -> None:
        """Validate fetched transactions as the gossip validator and intake would, then
        re-announce the ones now held, so our other peers can fetch them from us."""
        checked = []
        for raw in raws:
            try:
                checked.append(self._ledger.check_tx(raw))
            except (DecodeError, ValidationError) as exc:
                self._reject(peer, "sync", exc)
                continue
            self._accept_tx(raw, peer, "sync")
        lacking = set(self._ledger.unknown_txids(tuple(tx.txid for tx in checked)))
        for tx in checked:
            if tx.txid not in lacking:  # pooled or waiting in the gap buffer
                self._relay.queue(tx.encode())

    def reject_fetched(self, peer: str, code: str, detail: str) -> None:
        """A peer answered a fetch with garbage."""
        self._net.gossip.reject(peer, "sync", code, detail)

    def _accept_tx(self, raw: bytes, origin: str, kind: str = TXS) -> None:
        try:
            tx = Transaction.decode(raw)
            if self._ledger.is_confirmed(tx.txid):
                # why not a reject: under load a block often overtakes the batch that carried
                # its transactions; an exact replay of a mined tx costs us one lookup
                self._count_quietly("tx-already-mined")
                return
            self._feed.pooled(self._ledger.add_tx(tx))
        except (DecodeError, ValidationError) as exc:
            if exc.code in QUIET_CODES:  # honest races: reordered nonces, re-announced txs
                self._count_quietly(exc.code)
            else:
                self._reject(origin, kind, exc)

    # -- spatial ----------------------------------------------------------------------------

    def _on_spatial(self, item: Incoming) -> None:
        assert isinstance(item.msg, SpatialGossip)
        # the codec admits only the three SPATIAL_KINDS
        self._deliver(SpatialHeard(cast(SpatialKind, item.msg.kind), item.msg.raw))

    # -- blocks -----------------------------------------------------------------------------

    def _on_new_block(self, item: Incoming) -> None:
        assert isinstance(item.msg, NewBlock)
        try:
            block = Block.decode(item.msg.block)
        except (DecodeError, ValidationError) as exc:
            self._reject(item.origin, BLOCKS, exc)
            return
        self.import_from_peer(block, item.origin)

    def _on_block_announce(self, item: Incoming) -> None:
        assert isinstance(item.msg, BlockAnnounce)
        header = BlockHeader.decode(item.msg.header)  # the validator decoded it already
        if not self._ledger.chain.has_block(header.hash):
            self.sync.request(ID.from_base58(item.origin))

    def import_from_peer(self, block: Block, peer: str) -> bool:
        """Import a peer's block (gossip or sync); False if it was invalid."""
        try:
            result = self._ledger.import_block(block, int(time.time()))
        except ValidationError as exc:
            self._reject(peer, BLOCKS, exc)
            return False
        if result.status is ImportStatus.ORPHAN:
            self.sync.request(ID.from_base58(peer))
        elif (result.status is ImportStatus.SIDE_CHAIN
              and block.height >= self._ledger.chain.height):
            self._deliver(CompetingTipSeen(block.height, block.hash))
        self._feed.imported(result, peer)
        return True
