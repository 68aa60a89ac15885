"""The sync driver: pull headers and blocks from peers with more work until we converge.

Invariants:
- Sync runs in one task; requests for it (a new peer, an orphan, an announcement of a block we
  lack) arrive on a bounded channel and are coalesced; a periodic round every
  :data:`SYNC_INTERVAL_S` repairs whatever gossip lost.
- We fetch from a peer only while its advertised cumulative work exceeds ours. The fork point
  is found by probing the peer's main chain at exponentially spaced heights below our height
  (height 0 always matches on the same network), so a reorg of any depth is found in
  O(log n) round trips.
- Every reply is checked: a wrong chain id (status or header), a header that fails its own
  proof of work or breaks the height/parent sequence, undecodable headers or blocks, blocks we
  did not ask for, and a reply with no block for a batch of headers we lack count against the
  peer (``sync-bad-reply`` or the header's code) and end that round; the import function decides
  validity and reports rejects itself, and a rejected block ends the round.
- One peer cannot hold the single sync task: each :meth:`ChainSync.sync_with` ends after
  :data:`SYNC_BUDGET_S` (another round is then requested, so an honest long sync continues
  after the other peers had their turn), and only crowdmesh errors come out of a peer's data
  (the codec guarantees it), all of them caught here.
- The fork probe compares only heights our chain has now: a reorg to a shorter chain during
  an await makes a higher probe "no match", never a crash.
- Each batch yields to the scheduler, so gossip and the control socket stay responsive, and
  its blocks are imported inside one store group commit (one fsync per reply, not per block).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import trio
from libp2p.peer.id import ID

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import (
    CrowdmeshError,
    DecodeError,
    NotFound,
    ProtocolViolation,
    ValidationError,
)
from crowdmesh.p2p.network import SYNC_TOPIC, Network
from crowdmesh.p2p.sync import MAX_SERVED_HEADERS, SyncSession

__all__ = ["HEADERS_BATCH", "SYNC_BUDGET_S", "SYNC_INTERVAL_S", "ChainSync", "ChainView"]

log = logging.getLogger("crowdmesh.sync")

SYNC_INTERVAL_S = 5.0
SYNC_BUDGET_S = 60.0
HEADERS_BATCH = MAX_SERVED_HEADERS  # why: servers cap replies there; asking more is wasted
BLOCKS_BATCH = 128
HINT_QUEUE = 64
PEER_FAULTS = (ProtocolViolation, DecodeError, ValidationError)
"""Errors caused by what a peer sent (counted against it); other crowdmesh errors are ours."""


class ChainView(Protocol):
    """What sync reads from the chain."""

    @property
    def height(self) -> int: ...

    @property
    def total_work(self) -> int: ...

    def get_hash_at(self, height: int) -> bytes: ...

    def has_block(self, block_hash: bytes) -> bool: ...


ImportFn = Callable[[Block, str], bool]
"""``import_block(block, peer_b58) -> ok``: False when the block was rejected."""
GroupFn = Callable[[], AbstractContextManager[None]]
"""Opens a store group commit: one durable commit for a whole reply's blocks."""


class ChainSync:
    """Drives ``/crowdmesh/sync/1.0.0`` clients against connected peers."""

    def __init__(self, net: Network, chain: ChainView, chain_id: str, import_block: ImportFn,
                 group: GroupFn = nullcontext):
        self._net = net
        self._group = group
        self._chain = chain
        self._chain_id = chain_id
        self._import = import_block
        self._send, self._hints = trio.open_memory_channel[ID | None](HINT_QUEUE)
        self.rounds = 0
        self.blocks_fetched = 0
        self.budget_s = SYNC_BUDGET_S
        self.budget_hits = 0

    def request(self, peer: ID | None = None) -> None:
        """Ask for a sync round (with ``peer`` first); dropped if many are already queued."""
        # why suppress: a round already queued covers this request too
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(peer)

    async def run(self) -> None:
        """Sync forever: on request, and every :data:`SYNC_INTERVAL_S` seconds."""
        while True:
            first: ID | None = None
            with trio.move_on_after(SYNC_INTERVAL_S):
                first = await self._hints.receive()
            await self.sync_round(first)

    def _drain_hints(self, first: ID | None) -> list[ID]:
        wanted = [] if first is None else [first]
        while True:
            try:
                peer = self._hints.receive_nowait()
            except trio.WouldBlock:
                return wanted
            if peer is not None and peer not in wanted:
                wanted.append(peer)

    async def sync_round(self, first: ID | None = None) -> None:
        """Try hinted peers first, then every other connected peer."""
        self.rounds += 1
        order = self._drain_hints(first)
        order += [p for p in self._net.connected() if p not in order]
        for peer in order:
            await self.sync_with(peer)

    async def sync_with(self, peer: ID) -> None:
        """Fetch everything ``peer`` has that outweighs our chain; errors count against it."""
        b58 = peer.to_base58()
        try:
            with trio.move_on_after(self.budget_s) as budget:
                async with self._net.open_sync(peer) as session:
                    await self._pull(session, b58)
        except PEER_FAULTS as exc:
            if exc.code not in ("sync-io", "sync-eof", "sync-timeout"):
                self._net.gossip.reject(b58, SYNC_TOPIC, exc.code, exc.detail)
            else:
                log.debug("sync with %s ended: %s", b58, exc)
            return
        except CrowdmeshError as exc:  # ours, not the peer's (e.g. a store race): no penalty
            log.warning("sync with %s failed: %s", b58, exc)
            return
        if budget.cancelled_caught:
            self.budget_hits += 1
            log_event(log, "sync-budget-spent", peer=b58, height=self._chain.height)
            self.request(peer)  # why: an honest long sync resumes after the others' turn

    async def _pull(self, session: SyncSession, peer: str) -> None:
        status = await session.status()
        if status.chain_id != self._chain_id:
            raise ProtocolViolation("bad-chain-id", status.chain_id)
        if status.work <= self._chain.total_work:
            return
        start = await self._fork_height(session, min(self._chain.height, status.height)) + 1
        log_event(log, "sync-started", peer=peer, from_height=start, to_height=status.height)
        fetched, go_on = 0, True
        while go_on and start <= status.height:
            headers = await self._headers(session, start)
            if not headers:
                break
            n, go_on = await self._fetch_blocks(session, peer, headers)
            fetched += n
            start += len(headers)
        log_event(log, "sync-finished", peer=peer, blocks=fetched, height=self._chain.height)

    async def _fork_height(self, session: SyncSession, top: int) -> int:
        step, height = 1, top
        while height > 0:
            reply = await session.headers(height, 1)
            if reply.headers and self._same(BlockHeader.decode(reply.headers[0]), height):
                return height
            height = max(0, height - step)
            step *= 2
        return 0

    def _same(self, header: BlockHeader, height: int) -> bool:
        # why re-check the height: our chain may have reorged to a shorter one while we awaited
        if header.height != height or height > self._chain.height:
            return False
        try:
            return header.hash == self._chain.get_hash_at(height)
        except NotFound:
            return False

    async def _headers(self, session: SyncSession, start: int) -> list[BlockHeader]:
        reply = await session.headers(start, HEADERS_BATCH)
        headers = [BlockHeader.decode(raw) for raw in reply.headers]
        for i, header in enumerate(headers):
            self._check_header(header, start + i, headers[i - 1].hash if i else None)
        return headers

    def _check_header(self, header: BlockHeader, height: int, parent: bytes | None) -> None:
        """Cheap stateless checks, so a peer cannot feed us endless made-up headers."""
        if header.chain_id != self._chain_id:
            raise ProtocolViolation("bad-block-chain-id", header.chain_id[:64])
        if header.height != height or (parent is not None and header.parent != parent):
            raise ProtocolViolation("sync-bad-reply", f"headers out of sequence at {height}")
        if not header.meets_target():
            raise ProtocolViolation("bad-block-pow", f"header at {height}")

    def _import_all(self, blocks: list[Block], peer: str) -> int:
        for n, block in enumerate(blocks):
            if not self._import(block, peer):
                return n
            self.blocks_fetched += 1
        return len(blocks)

    async def _fetch_blocks(self, session: SyncSession, peer: str,
                            headers: list[BlockHeader]) -> tuple[int, bool]:
        """Fetch and import the blocks of ``headers`` we lack, continuing after short replies.

        Returns ``(imported, go_on)``; ``go_on`` is False once a block was rejected.
        """
        missing = [h.hash for h in headers if not self._chain.has_block(h.hash)]
        fetched = 0
        while fetched < len(missing):
            wanted = tuple(missing[fetched:fetched + BLOCKS_BATCH])
            reply = await session.blocks(wanted)
            blocks = [Block.decode(raw) for raw in reply.blocks]
            if not blocks:  # why: it sent the headers, so it has the blocks
                raise ProtocolViolation("sync-bad-reply", f"no block of {len(wanted)} asked")
            if [b.hash for b in blocks] != list(wanted[:len(blocks)]):
                raise ProtocolViolation("sync-bad-reply", "blocks not in request order")
            with self._group():
                imported = self._import_all(blocks, peer)
            fetched += imported
            if imported < len(blocks):
                return fetched, False
            await trio.sleep(0)
        return fetched, True
