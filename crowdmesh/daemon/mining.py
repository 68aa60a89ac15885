"""Proof-of-work search off the trio thread, in bounded batches that cancel promptly.

Invariants:
- At most one search runs at a time per node; :meth:`MiningRunner.mine_on` cancels the previous
  search before starting the next (a new head makes the old template stale).
- Each batch is ``chain.mine(header, start, batch)`` in a worker thread through
  ``trio.to_thread.run_sync`` with a ``CapacityLimiter``; cancellation takes effect between
  batches, so a stop or a new head waits at most one batch (tens of milliseconds).
- The template is rebuilt every :data:`TEMPLATE_REFRESH_S` so transactions that arrived while
  searching get into the block and the timestamp stays fresh.
- A search that ends by itself without a block (no template could be built) is reported once
  through ``on_stopped(parent)``; a cancelled search (``stop``, a newer ``mine_on``) is not, as
  whoever cancelled it knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from crowdmesh.chain.block import Block, BlockHeader, mine

__all__ = ["DEFAULT_BATCH", "MiningRunner", "MiningStats", "search_nonce"]

log = logging.getLogger("crowdmesh.mining")

DEFAULT_BATCH = 20_000
TEMPLATE_REFRESH_S = 1.0
U64_LIMIT = 1 << 64

TemplateFn = Callable[[bytes], Block | None]
"""``build_template(parent_hash)``: a block on ``parent`` with nonce 0, or None if the parent is
no longer known (the search then stops until the next head)."""
FoundFn = Callable[[Block], Awaitable[None]]
StoppedFn = Callable[[bytes], None]


@dataclass
class MiningStats:
    """Counters for status output and benchmarks."""

    hashes: int = 0
    found: int = 0
    searches: int = 0


async def search_nonce(
    header: BlockHeader,
    limiter: trio.CapacityLimiter,
    batch: int,
    deadline: float,
    stats: MiningStats,
) -> BlockHeader | None:
    """Search batches until a nonce meets the target or ``deadline`` (monotonic) passes."""
    start = 0
    while start < U64_LIMIT and time.monotonic() < deadline:
        nonce = await trio.to_thread.run_sync(mine, header, start, batch, limiter=limiter)
        stats.hashes += batch if nonce is None else nonce - start + 1
        if nonce is not None:
            return BlockHeader(header.chain_id, header.height, header.parent, header.timestamp,
                               header.target, header.tx_root, header.state_root, header.miner,
                               nonce)
        start += batch
    return None


class MiningRunner:
    """Runs one cancellable PoW search at a time inside the node's nursery."""

    def __init__(
        self,
        nursery: trio.Nursery,
        build_template: TemplateFn,
        on_found: FoundFn,
        batch: int = DEFAULT_BATCH,
        on_stopped: StoppedFn | None = None,
    ) -> None:
        self._nursery = nursery
        self._build = build_template
        self._on_found = on_found
        self._on_stopped = on_stopped
        self._batch = batch
        self._limiter = trio.CapacityLimiter(1)
        self._scope: trio.CancelScope | None = None
        self.stats = MiningStats()

    @property
    def active(self) -> bool:
        """True while a search is running."""
        return self._scope is not None

    def mine_on(self, parent: bytes, gather_s: float = 0.0) -> None:
        """Cancel any running search and start one on ``parent`` after ``gather_s`` seconds."""
        self.stop()
        scope = trio.CancelScope()
        self._scope = scope
        self.stats.searches += 1
        self._nursery.start_soon(self._run, parent, scope, gather_s)

    def stop(self) -> None:
        """Cancel the running search, if any (it ends after its current batch)."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _run(self, parent: bytes, scope: trio.CancelScope, gather_s: float) -> None:
        with scope:
            await trio.sleep(gather_s)
            while True:
                template = self._build(parent)
                if template is None:
                    break
                deadline = time.monotonic() + TEMPLATE_REFRESH_S
                header = await search_nonce(template.header, self._limiter, self._batch,
                                            deadline, self.stats)
                if header is not None:
                    self.stats.found += 1
                    self._finish(scope)
                    await self._on_found(Block(header, template.txs))
                    return
        self._finish(scope)
        if not scope.cancel_called and self._on_stopped is not None:
            self._on_stopped(parent)  # why: nothing else would restart this search

    def _finish(self, scope: trio.CancelScope) -> None:
        if self._scope is scope:
            self._scope = None
