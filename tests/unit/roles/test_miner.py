"""The miner role and the dispatch table: table-driven cases plus a hypothesis invariant."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.errors import ProtocolViolation
from crowdmesh.p2p.messages import MESSAGE_TYPES
from crowdmesh.roles import (
    DISPATCH,
    EVENT_TYPES,
    SINGLETON,
    BlockMined,
    CompetingTipSeen,
    GenerateCancelled,
    GenerateRequested,
    HeadChanged,
    MempoolChanged,
    MineOn,
    MinerState,
    MiningModeSet,
    MiningRetryDue,
    MiningStopped,
    Role,
    RoleContext,
    ScheduleAt,
    StopMining,
    dispatch,
    event_types,
    wants_to_mine,
)
from crowdmesh.roles.events import Event
from crowdmesh.roles.miner import (
    GATHER_JITTER_MS,
    GATHER_MS,
    QUIET_MANY_MS,
    QUIET_MS,
    RETRY_S,
    SHARED_WINDOW,
)

H0, H1 = b"\x00" * 32, b"\x01" * 32
CTX = RoleContext(now=1_700_000_000)
MINER = frozenset({Role.MINER})


def gather(height: int, salt: bytes = b"") -> int:
    """The gather wait the miner must choose at ``height`` (recomputed independently)."""
    digest = hashlib.sha256(salt + height.to_bytes(8, "big")).digest()
    return GATHER_MS + int.from_bytes(digest[:4], "big") % GATHER_JITTER_MS


ME, OTHER = b"\x05" * 32, b"\x06" * 32


def test_gather_jitter_differs_between_nodes_and_stays_in_range() -> None:
    """With another miner about, each node waits its own jittered gather time."""
    waits = {gather(7, bytes([i]) * 32) for i in range(20)}
    assert len(waits) > 10 and all(GATHER_MS <= w < GATHER_MS + GATHER_JITTER_MS for w in waits)
    shared = MinerState(H0, 7, "on-demand", salt=ME, other_miner_height=7)
    _, effects = run(shared, MempoolChanged(1))
    assert effects == [MineOn(H0, 8, gather(7, ME))]


def test_a_sole_miner_starts_once_the_mempool_is_quiet() -> None:
    """No other miner seen: no fork to avoid, so no jitter; the search starts after QUIET_MS
    without a new transaction (at most GATHER_MS)."""
    state, effects = run(MinerState(H0, 7, "on-demand", salt=ME), MempoolChanged(1))
    assert effects == [MineOn(H0, 8, GATHER_MS, QUIET_MS, QUIET_MANY_MS)]
    state, effects = run(state, HeadChanged(H1, 8, ME))  # our own block: still sole
    assert effects == [MineOn(H1, 9, GATHER_MS, QUIET_MS, QUIET_MANY_MS)]


@pytest.mark.parametrize("seen", ["tip", "competing"])
def test_another_miner_brings_back_the_jitter_for_a_window(seen: str) -> None:
    state = MinerState(H0, 7, "on-demand", salt=ME)
    event = HeadChanged(H1, 8, OTHER) if seen == "tip" else CompetingTipSeen(7, H1)
    state, _ = run(state, event)
    at = 8 if seen == "tip" else 7
    assert state.other_miner_height == at
    state, effects = run(state, HeadChanged(H0, at + SHARED_WINDOW - 1, ME), MempoolChanged(1))
    assert effects[-1] == MineOn(H0, at + SHARED_WINDOW, gather(at + SHARED_WINDOW - 1, ME))
    state, effects = run(state, HeadChanged(H1, at + SHARED_WINDOW, ME))
    assert effects == [MineOn(H1, at + SHARED_WINDOW + 1, GATHER_MS, QUIET_MS,
                                QUIET_MANY_MS)]


def run(state: MinerState, *events: Event) -> tuple[MinerState, list]:
    states = {Role.MINER: {SINGLETON: state}}
    out: list = []
    for ev in events:
        states, effects = dispatch(MINER, states, ev, CTX)
        out.extend(r.effect for r in effects)
    return states[Role.MINER][SINGLETON], out


@pytest.mark.parametrize(
    ("mode", "mempool", "generate", "want"),
    [
        ("off", 0, 0, False), ("off", 5, 0, False), ("off", 0, 2, True),
        ("continuous", 0, 0, True), ("on-demand", 0, 0, False), ("on-demand", 1, 0, True),
    ],
)
def test_wants_to_mine_table(mode, mempool, generate, want) -> None:
    assert wants_to_mine(MinerState(H0, 0, mode, generate, mempool)) is want


def test_on_demand_mines_only_while_mempool_non_empty() -> None:
    state, effects = run(MinerState(H0, 0), MiningModeSet("on-demand"))
    assert effects == []
    state, effects = run(state, MempoolChanged(3))
    assert effects == [MineOn(H0, 1, GATHER_MS, QUIET_MS, QUIET_MANY_MS)]
    state, effects = run(state, HeadChanged(H1, 1))
    assert effects == [MineOn(H1, 2, GATHER_MS, QUIET_MS, QUIET_MANY_MS)]
    state, effects = run(state, MempoolChanged(0))
    assert effects == [StopMining()] and state.mining_on is None
    state, effects = run(state, MempoolChanged(0))
    assert effects == []


def test_generate_counts_down_then_stops() -> None:
    state, effects = run(MinerState(H0, 0), GenerateRequested(2))
    assert effects == [MineOn(H0, 1)]
    state, effects = run(state, HeadChanged(H1, 1), BlockMined(H1, 1))
    assert effects == [MineOn(H1, 2)] and state.generate_left == 1
    state, effects = run(state, HeadChanged(H0, 2), BlockMined(H0, 2))
    assert effects == [MineOn(H0, 3), StopMining()] and state.generate_left == 0


def test_generate_cancelled_stops_the_asked_block() -> None:
    """A generate whose caller left withdraws its asked block: no search goes on for it."""
    state, effects = run(MinerState(H0, 0), GenerateRequested(1))
    assert effects == [MineOn(H0, 1)]
    state, effects = run(state, GenerateCancelled(1))
    assert effects == [StopMining()] and state.generate_left == 0
    state, effects = run(state, GenerateCancelled(1))  # never below zero
    assert effects == [] and state.generate_left == 0


def test_mining_off_drops_asked_generate_blocks() -> None:
    state, _ = run(MinerState(H0, 0, "continuous"), GenerateRequested(3))
    state, effects = run(state, MiningModeSet("off"))
    assert effects == [StopMining()] and state.generate_left == 0


def test_competing_tip_lower_hash_side_mines_one_more_block() -> None:
    state, effects = run(MinerState(H0, 5, "on-demand"), CompetingTipSeen(5, H1))
    assert effects == [MineOn(H0, 6, gather(5))] and state.tie_break  # gather: see all tips
    state, effects = run(state, CompetingTipSeen(5, H1))
    assert effects == [] and state.tie_break and state.generate_left == 0  # no pile-up
    state, effects = run(state, HeadChanged(H1, 6))
    assert effects == [StopMining()] and not state.tie_break  # the tie is settled
    # the side with the higher hash waits for the other's next block
    state, effects = run(MinerState(H1, 5, "on-demand"), CompetingTipSeen(5, H0))
    assert effects == [] and not wants_to_mine(state)
    state, effects = run(MinerState(H0, 5, "off"), CompetingTipSeen(5, H1))
    assert effects == [] and not wants_to_mine(state)
    state, effects = run(MinerState(H0, 5, "on-demand"), CompetingTipSeen(4, H1))
    assert effects == []


TIP_A, TIP_B, TIP_C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


def test_a_lower_rival_seen_later_withdraws_the_tie_break() -> None:
    """Three equal tips A < B < C: B's holder hears C first (B is lower, so it would extend),
    then A. Extending B as well as A forks again at the next height: the livelock of three
    or more on-demand miners. B must stop; only A's holder mines."""
    state, effects = run(MinerState(TIP_B, 5, "on-demand"), CompetingTipSeen(5, TIP_C))
    assert effects == [MineOn(TIP_B, 6, gather(5))]
    state, effects = run(state, CompetingTipSeen(5, TIP_A))
    assert effects == [StopMining()] and not wants_to_mine(state)
    state, effects = run(state, CompetingTipSeen(5, TIP_C))
    assert effects == [] and not wants_to_mine(state)  # A stays the lowest rival


@given(st.permutations([TIP_A, TIP_B, TIP_C, b"\x0d" * 32]))
def test_exactly_one_of_several_tied_miners_extends(tips) -> None:
    """Every miner holds one tip and hears all the others in any order: exactly the holder of
    the lowest hash ends up mining (before the fix, every tip lower than some rival did)."""
    extending = []
    for own in tips:
        state = MinerState(own, 5, "on-demand")
        state, _ = run(state, *(CompetingTipSeen(5, t) for t in tips if t != own))
        if wants_to_mine(state):
            extending.append(own)
    assert extending == [min(tips)]


def test_a_search_that_stops_by_itself_is_retried_so_generate_cannot_stall() -> None:
    state, effects = run(MinerState(H0, 0), GenerateRequested(1))
    assert effects == [MineOn(H0, 1)]
    # the runner gave up on H0 (no template, or our block was rejected): without a report the
    # role would think it is still mining on the head and never emit another MineOn
    state, effects = run(state, MiningStopped(H0))
    assert state.mining_on is None
    assert effects == [ScheduleAt(CTX.now + RETRY_S, MiningRetryDue())]
    state, effects = run(state, MiningRetryDue())
    assert effects == [MineOn(H0, 1)] and state.mining_on == H0


def test_a_stop_for_a_replaced_search_or_when_not_wanted_changes_nothing() -> None:
    state, _ = run(MinerState(H0, 0, "continuous"), HeadChanged(H1, 1))
    assert state.mining_on == H1
    assert run(state, MiningStopped(H0)) == (state, [])  # the head moved on; H1 is searched
    state, effects = run(MinerState(H0, 0, "on-demand", mempool_size=1), MiningStopped(H0))
    assert effects == [] and state.mining_on is None  # was not mining on H0 at all
    state, _ = run(MinerState(H0, 0), GenerateRequested(1), BlockMined(H1, 1))
    assert state.mining_on is None
    assert run(state, MiningRetryDue()) == (state, [])  # nothing wanted any more


def test_block_mined_never_goes_negative() -> None:
    state, _ = run(MinerState(H0, 0, "continuous"), BlockMined(H1, 1))
    assert state.generate_left == 0


def test_dispatch_rejects_unknown_and_ignores_events_no_role_takes() -> None:
    class Unknown(Event):
        TYPE = "unknown-event"

    with pytest.raises(ProtocolViolation) as info:
        dispatch(MINER, {Role.MINER: {SINGLETON: MinerState(H0, 0)}}, Unknown(), CTX)
    assert info.value.code == "no-handler"
    # The role-host issue made this a no-op (it was ``wrong-role``): an event none of the
    # node's roles takes changes nothing and produces nothing.
    assert dispatch(frozenset({Role.WORKER}), {}, MempoolChanged(1), CTX) == ({}, [])


def test_table_covers_every_event_and_tags_do_not_collide_with_wire_messages() -> None:
    ours = {tag for tag, cls in event_types().items() if cls.__module__.startswith("crowdmesh.")}
    assert set(EVENT_TYPES) <= ours <= set(DISPATCH)
    assert not ours & set(MESSAGE_TYPES)


EVENTS = st.one_of(
    st.builds(HeadChanged, st.sampled_from([H0, H1, b"\x02" * 32]), st.integers(0, 100)),
    st.builds(MempoolChanged, st.integers(0, 5)),
    st.builds(MiningModeSet, st.sampled_from(["off", "continuous", "on-demand"])),
    st.builds(GenerateRequested, st.integers(0, 3)),
    st.builds(BlockMined, st.just(H1), st.integers(0, 100)),
    st.builds(CompetingTipSeen, st.integers(0, 100), st.sampled_from([H0, H1, b"\x02" * 32])),
    st.builds(MiningStopped, st.sampled_from([H0, H1, b"\x02" * 32])),
)


@given(st.lists(EVENTS, max_size=40))
def test_invariant_mining_on_head_iff_wanted(events) -> None:
    """After any event sequence and a final retry: mining exactly when wanted, always on the
    current head, and a model of the search runner driven by the effects (and by the stops it
    reported itself) is searching on exactly ``mining_on``."""
    states = {Role.MINER: {SINGLETON: MinerState(H0, 0)}}
    searching = None
    for ev in [*events, MiningRetryDue()]:
        if isinstance(ev, MiningStopped):
            if ev.parent != searching:
                continue  # the runner only reports a stop of the search it runs
            searching = None
        states, routed = dispatch(MINER, states, ev, CTX)
        for eff in (r.effect for r in routed):
            if isinstance(eff, MineOn):
                searching = eff.parent
            elif isinstance(eff, StopMining):
                searching = None
    state = states[Role.MINER][SINGLETON]
    assert state.generate_left >= 0
    if wants_to_mine(state):
        assert state.mining_on == state.head
    else:
        assert state.mining_on is None
    assert searching == state.mining_on
