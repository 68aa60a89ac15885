"""The sync driver: pull headers and blocks from peers with more work until we converge.

Invariants:
- Sync runs in one task; requests for it (a new peer, an orphan, an announcement of a block we
  lack) arrive on a bounded channel and are coalesced; a periodic round every
  :data:`SYNC_INTERVAL_S` repairs whatever gossip lost.
- We fetch from a peer only while its advertised cumulative work exceeds ours. The fork point
  is found by probing the peer's main chain at exponentially spaced heights below our height
  (height 0 always matches on the same network), so a reorg of any depth is found in
  O(log n) round trips.
- Every reply is checked: wrong chain id, undecodable headers or blocks, and blocks we did not
  ask for count against the peer (``sync-bad-reply``) and end that round; the import function
  decides validity and reports rejects itself.
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
from crowdmesh.errors import DecodeError, ProtocolViolation, ValidationError
from crowdmesh.p2p.network import Network
from crowdmesh.p2p.sync import SyncSession

__all__ = ["HEADERS_BATCH", "SYNC_INTERVAL_S", "ChainSync", "ChainView"]

log = logging.getLogger("crowdmesh.sync")

SYNC_INTERVAL_S = 5.0
HEADERS_BATCH = 1024
BLOCKS_BATCH = 128
HINT_QUEUE = 64


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
            async with self._net.open_sync(peer) as session:
                await self._pull(session, b58)
        except (ProtocolViolation, DecodeError, ValidationError) as exc:
            if exc.code not in ("sync-io", "sync-eof", "sync-timeout"):
                self._net.gossip.reject(b58, "sync", exc.code, exc.detail)
            else:
                log.debug("sync with %s ended: %s", b58, exc)

    async def _pull(self, session: SyncSession, peer: str) -> None:
        status = await session.status()
        if status.chain_id != self._chain_id:
            raise ProtocolViolation("bad-chain-id", status.chain_id)
        if int(status.total_work) <= self._chain.total_work:
            return
        start = await self._fork_height(session, min(self._chain.height, status.height)) + 1
        log_event(log, "sync-started", peer=peer, from_height=start, to_height=status.height)
        fetched = 0
        while start <= status.height:
            headers = await self._headers(session, start)
            if not headers:
                break
            fetched += await self._fetch_blocks(session, peer, headers)
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
        return header.height == height and header.hash == self._chain.get_hash_at(height)

    async def _headers(self, session: SyncSession, start: int) -> list[BlockHeader]:
        reply = await session.headers(start, HEADERS_BATCH)
        headers = [BlockHeader.decode(raw) for raw in reply.headers]
        if any(h.height != start + i for i, h in enumerate(headers)):
            raise ProtocolViolation("sync-bad-reply", "headers out of order")
        return headers

    def _import_all(self, blocks: list[Block], peer: str) -> int:
        for n, block in enumerate(blocks):
            if not self._import(block, peer):
                return n
            self.blocks_fetched += 1
        return len(blocks)

    async def _fetch_blocks(self, session: SyncSession, peer: str,
                            headers: list[BlockHeader]) -> int:
        missing = [h.hash for h in headers if not self._chain.has_block(h.hash)]
        fetched = 0
        for i in range(0, len(missing), BLOCKS_BATCH):
            wanted = tuple(missing[i:i + BLOCKS_BATCH])
            reply = await session.blocks(wanted)
            blocks = [Block.decode(raw) for raw in reply.blocks]
            if [b.hash for b in blocks] != list(wanted[:len(blocks)]):
                raise ProtocolViolation("sync-bad-reply", "blocks not in request order")
            with self._group():
                imported = self._import_all(blocks, peer)
            fetched += imported
            if imported < len(blocks):
                return fetched
            await trio.sleep(0)
            if len(blocks) < len(wanted):
                break
        return fetched
