"""Proof-of-work search off the trio thread, in bounded batches that cancel promptly.

Invariants:
- At most one search runs at a time per node; :meth:`MiningRunner.mine_on` cancels the previous
  search before starting the next (a new head makes the old template stale).
- Each batch is ``chain.mine(header, start, batch)`` in a worker thread through
  ``trio.to_thread.run_sync`` with a ``CapacityLimiter``; cancellation takes effect between
  batches, so a stop or a new head waits at most one batch (tens of milliseconds).
- The template is rebuilt every :data:`TEMPLATE_REFRESH_S` so transactions that arrived while
  searching get into the block and the timestamp stays fresh.
- The gather wait before a search ends after ``gather_s``, or earlier once the pending count
  (``pending()`` = (transactions, senders), polled every :data:`QUIET_POLL_S`) has not changed
  for ``quiet_s`` (``quiet_many_s`` while two or more senders are pooled). ``pace()`` (asked
  again only when the pending count changes; ``crowdsfl.pool_pace``) overrides the quiet rule:
  COMPLETE (the pool completes every protocol step it touches) ends the wait at once, AWAITING
  (a step certainly has more calls due) waits for them up to ``gather_s``.
- A search that ends by itself without a block (no template could be built) is reported once
  through ``on_stopped(parent)``; a cancelled search (``stop``, a newer ``mine_on``) is not, as
  whoever cancelled it knows.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from crowdmesh.chain.block import Block, BlockHeader, mine
from crowdmesh.chain.chain import ImportResult, ImportStatus
from crowdmesh.chain.contracts.crowdsfl import PoolPace, pool_pace
from crowdmesh.daemon.api import JsonObj, MiningMode
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.logs import log_event, log_reject
from crowdmesh.errors import UsageError, ValidationError
from crowdmesh.roles.events import (
    BlockMined,
    Event,
    GenerateCancelled,
    GenerateRequested,
    MiningModeSet,
    MiningStopped,
)

__all__ = [
    "DEFAULT_BATCH",
    "MAX_GENERATE",
    "MAX_GENERATE_STALLS",
    "BlockProducer",
    "MiningRunner",
    "MiningStats",
    "search_nonce",
]

log = logging.getLogger("crowdmesh.mining")
node_log = logging.getLogger("crowdmesh.node")  # block-mined & co. read as the node's events

DEFAULT_BATCH = 20_000
TEMPLATE_REFRESH_S = 1.0
QUIET_POLL_S = 0.005
U64_LIMIT = 1 << 64

TemplateFn = Callable[[bytes], Block | None]
"""``build_template(parent_hash)``: a block on ``parent`` with nonce 0, or None if the parent is
no longer known (the search then stops until the next head)."""
FoundFn = Callable[[Block], Awaitable[None]]
StoppedFn = Callable[[bytes], None]
Deliver = Callable[[Event], None]
Imported = Callable[[ImportResult, str], None]


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


def _still_gathering(pace: PoolPace, quiet_for: float, quiet_s: float) -> bool:
    """Before the gather cap: COMPLETE mines now, AWAITING waits on, UNKNOWN waits until the
    pool has been quiet for ``quiet_s``."""
    return pace is PoolPace.AWAITING or (pace is PoolPace.UNKNOWN and quiet_for < quiet_s)


class MiningRunner:
    """Runs one cancellable PoW search at a time inside the node's nursery."""

    def __init__(
        self,
        nursery: trio.Nursery,
        build_template: TemplateFn,
        on_found: FoundFn,
        batch: int = DEFAULT_BATCH,
        on_stopped: StoppedFn | None = None,
        pending: Callable[[], tuple[int, int]] | None = None,
        pace: Callable[[], PoolPace] = lambda: PoolPace.UNKNOWN,
    ) -> None:
        self._nursery = nursery
        self._pending = pending
        self._pace = pace
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

    def mine_on(self, parent: bytes, gather_s: float = 0.0, quiet_s: float = 0.0,
                quiet_many_s: float = 0.0) -> None:
        """Cancel any running search and start one on ``parent`` after the gather wait (at most
        ``gather_s`` seconds; see the module invariants for the quiet times)."""
        self.stop()
        scope = trio.CancelScope()
        self._scope = scope
        self.stats.searches += 1
        quiet = (quiet_s, max(quiet_s, quiet_many_s))
        self._nursery.start_soon(self._run, parent, scope, gather_s, quiet)

    def stop(self) -> None:
        """Cancel the running search, if any (it ends after its current batch)."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _gather(self, gather_s: float, quiet: tuple[float, float]) -> None:
        if self._pending is None or not 0 < quiet[0] < gather_s:
            await trio.sleep(gather_s)
            return
        now = trio.current_time()
        end, quiet_from, seen = now + gather_s, now, self._pending()
        pace = self._pace()
        while now < end and _still_gathering(pace, now - quiet_from, quiet[seen[1] >= 2]):
            await trio.sleep(QUIET_POLL_S)
            now, pending = trio.current_time(), self._pending()
            if pending != seen:
                quiet_from, seen, pace = now, pending, self._pace()

    async def _run(self, parent: bytes, scope: trio.CancelScope, gather_s: float,
                   quiet: tuple[float, float]) -> None:
        with scope:
            await self._gather(gather_s, quiet)
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


MAX_GENERATE = 10_000
MAX_GENERATE_STALLS = 3  # stops without a block before generate fails (retries are RETRY_S apart)


@dataclass(eq=False, slots=True)
class _GenerateCall:
    """One running ``generate``: done when ``mined_count`` reaches ``target``."""

    target: int
    cancel_code: str = ""


class BlockProducer:
    """The node's mining: templates from the ledger, found blocks into the chain, ``generate``
    and the mining mode (implements :class:`crowdmesh.daemon.api.MiningService`).

    A search that ends without a block joining the chain (no template, our block rejected or
    not connected) while the head is still its parent is reported to the miner role
    (``MiningStopped``), which retries; ``generate`` gives up with ``mining-stalled`` after
    :data:`MAX_GENERATE_STALLS` such stops in a row, so it never waits forever.

    ``generate`` asks the miner role for one block at a time (``GenerateRequested(1)``) while a
    call still wants blocks, and withdraws the asked block (``GenerateCancelled``) once no call
    wants it: after the caller went away (the control server cancels the call) or after
    ``set_mining("off")`` (which ends every running call with ``generate-cancelled``). Only a
    block found before the withdrawal reaches the role can still be mined.
    """

    def __init__(self, ledger: Ledger, miner: bytes, is_miner: bool, deliver: Deliver,
                 imported: Imported, publish_block: Callable[[bytes], Awaitable[None]]) -> None:
        self._ledger = ledger
        self.miner = miner
        self.is_miner = is_miner
        self._deliver = deliver
        self._imported = imported
        self._publish_block = publish_block
        # why bounded: a node mining for months must not grow; generate needs ≤ MAX_GENERATE
        self._mined: deque[str] = deque(maxlen=MAX_GENERATE)
        self.mined_count = 0
        self._stalls = 0
        self._stall_code = ""
        self._changed = trio.Event()  # a block mined or a search stopped
        self._calls: list[_GenerateCall] = []
        self._asked = 0  # blocks asked of the miner role and not yet mined (0 or 1)
        self.runner: MiningRunner

    def attach(self, nursery: trio.Nursery) -> MiningRunner:
        """Create the search runner in the node's nursery."""
        self.runner = MiningRunner(nursery, self._template, self._on_mined,
                                   on_stopped=self._on_search_stopped,
                                   pending=lambda: (len(self._ledger.mempool),
                                                    self._ledger.mempool.senders),
                                   pace=self._pool_pace)
        return self.runner

    def _pool_pace(self) -> PoolPace:
        return pool_pace(self._ledger.chain.state_get, self._ledger.mempool.transactions())

    def _template(self, parent: bytes) -> Block | None:
        try:
            return self._ledger.template(parent, self.miner, int(time.time()))
        except ValidationError as exc:
            log_event(node_log, "mining-paused", logging.WARNING, code=exc.code)
            self._stall_code = exc.code
            return None

    def _on_search_stopped(self, parent: bytes) -> None:
        self._search_stopped(parent, self._stall_code or "no-template")

    def _search_stopped(self, parent: bytes, code: str) -> None:
        """A search on ``parent`` ended without a block: tell the miner role, wake generate."""
        if parent != self._ledger.chain.head_hash:
            return  # why: the head moved on, and the new head has restarted the search
        self._stalls += 1
        self._stall_code = code
        self._wake()
        self._deliver(MiningStopped(parent))

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _on_mined(self, block: Block) -> None:
        try:
            result = self._ledger.import_block(block, int(time.time()))
        except ValidationError as exc:
            log_reject(node_log, exc.code, block=block.hash.hex(), source="miner")
            self._search_stopped(block.header.parent, exc.code)
            return
        if result.status is not ImportStatus.CONNECTED:
            # usually a race lost to a peer's block (the new head restarts mining); if the
            # head is still our parent, nothing would
            self._search_stopped(block.header.parent, f"mined-block-{result.status.value}")
            return
        log_event(node_log, "block-mined", height=block.height, hash=block.hash.hex(),
                  txs=len(block.txs))
        self._imported(result, "miner")
        self._mined.append(block.hash.hex())
        self.mined_count += 1
        self._wake()
        self._deliver(BlockMined(block.hash, block.height))
        self._asked = max(0, self._asked - 1)  # the role counts any block of ours against it
        self._ask_for_next_block()
        await self._publish_block(block.encode())

    def _ask_for_next_block(self) -> None:
        """Keep one block asked of the miner role while a ``generate`` call still wants one."""
        wanted = any(c.target > self.mined_count and not c.cancel_code for c in self._calls)
        if wanted and self._asked == 0:
            self._asked = 1
            self._deliver(GenerateRequested(1))
        elif not wanted and self._asked:
            # why: the caller left or mining was switched off; without this the role would
            # still mine the one block asked for
            self._deliver(GenerateCancelled(self._asked))
            self._asked = 0

    # -- MiningService ----------------------------------------------------------------------

    def set_mining(self, mode: MiningMode) -> JsonObj:
        """Switch the mining mode (``off``, ``continuous``, ``on-demand``); ``off`` also ends
        every running ``generate`` (with ``generate-cancelled``)."""
        self._need_miner()
        if mode == "off":
            self._cancel_generate("generate-cancelled")
        self._deliver(MiningModeSet(mode))
        return {"mining": mode}

    def _cancel_generate(self, code: str) -> None:
        for call in self._calls:
            call.cancel_code = code
        if self._calls:
            log_event(node_log, "generate-cancelled", calls=len(self._calls), code=code)
            self._wake()

    async def generate(self, n_blocks: int) -> list[str]:
        """Mine ``n_blocks`` blocks now (any mode) and return their hashes.

        Raises:
            UsageError: ``not-a-miner``; ``bad-generate-count``; ``mining-stalled`` when
                :data:`MAX_GENERATE_STALLS` searches in a row ended without a block (the role
                keeps retrying the block asked for); ``generate-cancelled`` when mining was
                switched off meanwhile. Cancelling the caller stops asking for blocks too.
        """
        self._need_miner()
        if not 0 < n_blocks <= MAX_GENERATE:
            raise UsageError("bad-generate-count", f"1..{MAX_GENERATE}")
        start = self.mined_count
        call = _GenerateCall(start + n_blocks)
        self._calls.append(call)
        try:
            self._ask_for_next_block()
            await self._wait_generated(call, n_blocks)
        finally:
            self._calls.remove(call)
            self._ask_for_next_block()  # withdraws the asked block if no call wants it
        newer = self.mined_count - start  # ours are the first n of the blocks mined since
        return list(self._mined)[-newer:][:n_blocks]

    async def _wait_generated(self, call: _GenerateCall, n_blocks: int) -> None:
        start, progress, stalls = call.target - n_blocks, self.mined_count, self._stalls
        while self.mined_count < call.target:
            await self._changed.wait()
            if call.cancel_code:
                raise UsageError(call.cancel_code, f"{self.mined_count - start} of {n_blocks} "
                                 "blocks mined; mining was switched off")
            if self.mined_count > progress:
                progress, stalls = self.mined_count, self._stalls
            elif self._stalls - stalls >= MAX_GENERATE_STALLS:
                raise UsageError("mining-stalled", f"{self.mined_count - start} of {n_blocks} "
                                 f"blocks mined; the search keeps stopping: {self._stall_code}")

    def _need_miner(self) -> None:
        if not self.is_miner:
            raise UsageError("not-a-miner", "add \"miner\" to roles in the config")
