"""The miner role: a pure state machine deciding when and on which parent to mine.

Invariants:
- The miner wants to mine iff blocks were requested (``generate``), or the mode is
  ``continuous``, or the mode is ``on-demand`` and the mempool is non-empty (geth --dev).
- While it wants to mine, it mines on the current head: a new head restarts the search
  (``MineOn``); when it stops wanting, it emits ``StopMining`` exactly once.
- ``generate_left`` never goes below 0 and falls by one per block we mined.
- Mining only because the mempool is non-empty (``on-demand``) first gathers, so a burst of
  transactions lands in one block instead of one block each. While another miner mined one of
  the last :data:`SHARED_WINDOW` blocks (a tip mined by another address, or a competing tip),
  the wait is :data:`GATHER_MS` plus a per-node, per-height jitter below
  :data:`GATHER_JITTER_MS` (a hash of the node's ``salt`` and the height, so still
  deterministic): nodes that all mine rarely start at the same instant (fewer equal-height
  forks). A sole miner has no fork to avoid, so it starts as soon as no transaction arrived
  for :data:`QUIET_MS` (:data:`QUIET_MANY_MS` while two or more senders are pooled: several
  nodes answering one block arrive spread out), and at the latest after :data:`GATHER_MS`:
  each step of a protocol that waits for the previous step's block (CrowdSFL's five per round)
  costs tens of milliseconds instead of a quarter second. (The runner may end a sole miner's
  wait sooner, or hold it to the cap, from what the pooled calls say: ``daemon/mining.py``.)
- A tie (a peer's tip with our head's work) makes a mining node (mode not ``off``) mine one
  more block iff our head's hash is the lowest of every equal-work tip it has seen at that
  height (``rival`` keeps the lowest other one; it is cleared with each new head). With "first
  seen wins" fork choice and mining that stops when the mempool is empty, nodes would otherwise
  stay on equal-work forks forever. Comparing only with the tip just seen is not enough: with
  three tips A < B < C the holder of B, hearing C, would extend too, and two new blocks tie
  again (a livelock with three or more on-demand miners). So a lower rival arriving later
  withdraws a pending tie-break (``tie_break``), and the tie-break waits the on-demand gather
  time first, which gives the lower tips time to arrive. The hash order is the same on every
  node, so once the tips have spread exactly one side extends and the others follow. Fork
  choice itself is unchanged.
- A search that stops by itself (:class:`MiningStopped` on the parent we mine on) clears
  ``mining_on``, and if mining is still wanted the miner asks for a :class:`MiningRetryDue`
  after :data:`RETRY_S` seconds (``ScheduleAt``) and then mines on the head again: generate and
  on-demand mining never stall, and a persistent failure retries at a bounded rate instead of
  spinning. A stop for another parent (the head moved on meanwhile) changes nothing.
- The miner is a singleton role: :func:`handle_roles_started` creates its state from the chain
  view's head and the node's reward address, and keeps an existing state as it is.
- Handlers are sync, take ``(state, event, ctx)`` and return ``(new_state, effects)``; the state
  is immutable, so a handler that raises leaves the node's state unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TypeVar

from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import Effect, MineOn, ScheduleAt, StopMining
from crowdmesh.roles.events import (
    BlockMined,
    CompetingTipSeen,
    Event,
    GenerateCancelled,
    GenerateRequested,
    HeadChanged,
    MempoolChanged,
    MiningMode,
    MiningModeSet,
    MiningRetryDue,
    MiningStopped,
    RolesStarted,
)

__all__ = [
    "GATHER_JITTER_MS",
    "GATHER_MS",
    "QUIET_MANY_MS",
    "QUIET_MS",
    "RETRY_S",
    "SHARED_WINDOW",
    "MinerState",
    "handle_block_mined",
    "handle_competing_tip_seen",
    "handle_generate_requested",
    "handle_head_changed",
    "handle_mempool_changed",
    "handle_mining_mode_set",
    "handle_mining_retry_due",
    "handle_mining_stopped",
    "handle_roles_started",
    "wants_to_mine",
]


@dataclass(frozen=True, slots=True)
class MinerState:
    """The miner's view: mode, outstanding generate requests, head, mempool size."""

    head: bytes
    height: int
    mode: MiningMode = "off"
    generate_left: int = 0
    mempool_size: int = 0
    mining_on: bytes | None = None
    salt: bytes = b""
    rival: bytes | None = None  # the lowest equal-work tip seen at our head's height
    other_miner_height: int = -1  # the last height another miner produced a tip at (-1: never)
    tie_break: bool = False  # mine one block: our head is the lowest tip of a tie


Result = tuple[MinerState, list[Effect]]
GATHER_MS = 150
GATHER_JITTER_MS = 150
QUIET_MS = 30
QUIET_MANY_MS = 60
SHARED_WINDOW = 64  # blocks: another miner seen this recently means mining is shared
RETRY_S = 1
_E = TypeVar("_E", bound=Event)

# Whether each mode wants to mine, given "the mempool is non-empty".
_MODE_WANTS: dict[str, tuple[bool, bool]] = {
    "off": (False, False),
    "continuous": (True, True),
    "on-demand": (False, True),
}


def wants_to_mine(state: MinerState) -> bool:
    """True iff the miner should be searching for a block now."""
    return (state.generate_left > 0 or (state.tie_break and state.mode != "off")
            or _MODE_WANTS[state.mode][state.mempool_size > 0])


def _shared(state: MinerState) -> bool:
    return (state.other_miner_height >= 0
            and state.height - state.other_miner_height < SHARED_WINDOW)


def _mine_on(state: MinerState) -> MineOn:
    """The search on the head, with the gather wait on-demand mining takes first."""
    if state.mode != "on-demand" or state.generate_left > 0:
        return MineOn(state.head, state.height + 1)
    if not _shared(state):
        return MineOn(state.head, state.height + 1, GATHER_MS, QUIET_MS, QUIET_MANY_MS)
    digest = hashlib.sha256(state.salt + state.height.to_bytes(8, "big")).digest()
    jitter = int.from_bytes(digest[:4], "big") % GATHER_JITTER_MS
    return MineOn(state.head, state.height + 1, GATHER_MS + jitter)


def _reconcile(state: MinerState) -> Result:
    if wants_to_mine(state):
        if state.mining_on == state.head:
            return state, []
        return replace(state, mining_on=state.head), [_mine_on(state)]
    if state.mining_on is not None:
        return replace(state, mining_on=None), [StopMining()]
    return state, []


def _expect(event: Event, cls: type[_E]) -> _E:
    assert isinstance(event, cls), f"dispatch routed {type(event).__name__} to {cls.__name__}"
    return event


def handle_head_changed(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """A new tip: mine on it if mining."""
    ev = _expect(event, HeadChanged)
    # why salt: it is our reward address (handle_roles_started), the tip's ``miner`` field
    other = ev.height if ev.miner and ev.miner != state.salt else state.other_miner_height
    return _reconcile(replace(state, head=ev.head, height=ev.height, rival=None,
                              tie_break=False, other_miner_height=other))


def handle_mempool_changed(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """The mempool size matters in on-demand mode."""
    ev = _expect(event, MempoolChanged)
    return _reconcile(replace(state, mempool_size=ev.size))


def handle_mining_mode_set(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """Switch mode; start or stop accordingly."""
    ev = _expect(event, MiningModeSet)
    # why reset: ``off`` ends every generate call, so no asked block is wanted any more
    left = 0 if ev.mode == "off" else state.generate_left
    return _reconcile(replace(state, mode=ev.mode, generate_left=left))


def handle_generate_requested(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """Add ``count`` blocks to mine regardless of mode."""
    ev = _expect(event, GenerateRequested)
    return _reconcile(replace(state, generate_left=state.generate_left + ev.count))


def handle_generate_cancelled(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """``count`` asked blocks are no longer wanted: stop searching for them."""
    ev = _expect(event, GenerateCancelled)
    return _reconcile(replace(state, generate_left=max(0, state.generate_left - ev.count)))


def handle_block_mined(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """One of ours was accepted: one fewer to generate."""
    _expect(event, BlockMined)
    return _reconcile(replace(state, generate_left=max(0, state.generate_left - 1),
                              tie_break=False))


def handle_competing_tip_seen(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """Break an equal-work fork: mine one more block iff our head is the lowest tip seen."""
    ev = _expect(event, CompetingTipSeen)
    if ev.height < state.height or ev.tip == state.head:
        return state, []
    rival = ev.tip if state.rival is None else min(state.rival, ev.tip)
    tie_break = state.mode != "off" and state.head < rival
    other = max(state.other_miner_height, ev.height)
    return _reconcile(replace(state, rival=rival, tie_break=tie_break,
                              other_miner_height=other))


def handle_mining_stopped(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """Our search ended without a block: forget it, and retry after :data:`RETRY_S` if wanted."""
    ev = _expect(event, MiningStopped)
    if state.mining_on is None or ev.parent != state.mining_on:
        return state, []  # a search we had already replaced (the head moved on)
    state = replace(state, mining_on=None)
    if not wants_to_mine(state):
        return state, []
    return state, [ScheduleAt(ctx.now + RETRY_S, MiningRetryDue())]


def handle_mining_retry_due(state: MinerState, event: Event, ctx: RoleContext) -> Result:
    """Mine on the head again if still wanted and not already mining."""
    _expect(event, MiningRetryDue)
    return _reconcile(state)


def handle_roles_started(state: MinerState | None, event: Event, ctx: RoleContext) -> Result:
    """Create the miner's state on the head (mode ``off`` until the node sets it)."""
    _expect(event, RolesStarted)
    if state is not None:
        return state, []
    head = ctx.chain.head()
    return MinerState(head.hash, head.height, salt=ctx.identity.miner), []
