"""The daemon side of the roles: a PoW search that stops by itself is reported (so the miner
role can retry it), and effect executors log outside-input errors instead of crashing."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from crowdmesh.chain import Block
from crowdmesh.chain.contracts.crowdsfl import PoolPace
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.mining import MiningRunner
from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.roles.effects import PublishTx, SubmitTx

Z, P = b"\x00" * 32, b"\x07" * 32


async def _never_found(block: Block) -> None:
    raise AssertionError("no template, no block")


async def test_a_search_without_template_reports_its_parent_once() -> None:
    stopped: list[bytes] = []
    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, lambda parent: None, _never_found,
                              on_stopped=stopped.append)
        runner.mine_on(P)
        with trio.fail_after(5):
            while not stopped:
                await trio.sleep(0.01)
        await trio.sleep(0.05)  # a second report would arrive within this window
    assert stopped == [P] and not runner.active


async def test_a_cancelled_search_is_not_reported() -> None:
    stopped: list[bytes] = []
    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, lambda parent: None, _never_found,
                              on_stopped=stopped.append)
        runner.mine_on(P, gather_s=0.2)  # still gathering when stopped or replaced
        runner.stop()
        runner.mine_on(Z, gather_s=0.2)
        runner.stop()
        await trio.sleep(0.4)
    assert stopped == []


def _pace(pooled: int, ready_at: int, awaiting_from: int) -> PoolPace:
    if 0 < ready_at <= pooled:
        return PoolPace.COMPLETE
    return PoolPace.AWAITING if 0 < awaiting_from <= pooled else PoolPace.UNKNOWN


async def _gather_ends(changes: list[tuple[float, int]], ready_at: int = 0,
                       awaiting_from: int = 0) -> float:
    """When a 1 s gather with a 50 ms quiet window (100 ms with two or more senders pooled)
    ends, if the pool gains a transaction from sender ``s`` at each virtual time ``(t, s)``
    (t < 0: already pooled when the search starts);
    ``ready_at`` > 0: the pool completes its steps once it holds that many transactions;
    ``awaiting_from`` > 0: before that, from this many on, more are known to be due."""
    stopped: list[float] = []
    pool: list[int] = []
    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, lambda parent: None, _never_found,
                              on_stopped=lambda parent: stopped.append(trio.current_time()),
                              pending=lambda: (len(pool), len(set(pool))),
                              pace=lambda: _pace(len(pool), ready_at, awaiting_from))
        start = trio.current_time()
        pool.extend(sender for at, sender in changes if at < 0)  # pooled before the search
        runner.mine_on(P, gather_s=1.0, quiet_s=0.05, quiet_many_s=0.1)
        for at, sender in (c for c in changes if c[0] >= 0):
            await trio.sleep_until(start + at)
            pool.append(sender)
        with trio.fail_after(5):
            while not stopped:
                await trio.sleep(0.001)
    return stopped[0] - start


@pytest.mark.parametrize(("changes", "low", "high"), [
    ([], 0.05, 0.06),  # quiet from the start
    ([(0.02, 1), (0.04, 1)], 0.09, 0.10),  # one sender: 50 ms after its last transaction
    ([(0.02, 1), (0.04, 2)], 0.14, 0.15),  # two senders: 100 ms after the last arrival
    ([(i * 0.03, 1) for i in range(1, 40)], 1.0, 1.01),  # never quiet: the gather cap
])
async def test_the_gather_ends_after_a_quiet_window_or_at_its_cap(
        changes: list[tuple[float, int]], low: float, high: float,
        autojump_clock: trio.testing.MockClock) -> None:
    assert low <= await _gather_ends(changes) < high


@pytest.mark.parametrize(("changes", "ready_at", "awaiting_from", "low", "high"), [
    ([(-1.0, 1)], 1, 0, 0.0, 0.001),  # the pool is complete when the search starts: no wait
    ([(0.02, 1), (0.04, 2), (0.06, 3)], 3, 0, 0.06, 0.066),  # the third of three: a poll later
    ([(0.02, 1), (0.04, 2)], 3, 0, 0.14, 0.15),  # never complete, nothing known: quiet rule
    # more known to be due: no quiet window ends the wait, only the third arrival ...
    ([(0.02, 1), (0.04, 2), (0.5, 3)], 3, 1, 0.5, 0.506),
    ([(0.02, 1), (0.04, 2)], 3, 1, 1.0, 1.01),  # ... or the gather cap
])
async def test_the_pools_pace_overrides_the_quiet_window(
        changes: list[tuple[float, int]], ready_at: int, awaiting_from: int, low: float,
        high: float, autojump_clock: trio.testing.MockClock) -> None:
    assert low <= await _gather_ends(changes, ready_at, awaiting_from) < high


class _Ports:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    async def fail(self, raw: bytes) -> None:
        self.calls += 1
        raise self.exc

    def make(self) -> EffectPorts:
        async def noop(raw: bytes) -> None:
            return None

        return EffectPorts(mine_on=lambda p, g: None, stop_mining=lambda: None,
                           publish_block=noop, publish_tx=self.fail, submit_tx=self.fail,
                           deliver=lambda e: None)


async def test_submit_and_publish_errors_from_outside_input_are_logged_not_raised(caplog):
    caplog.set_level(logging.INFO, logger="crowdmesh.node")
    for exc in (ValidationError("bad-tx-sig", "signature does not verify"),
                DecodeError("bad-tx-encoding", "truncated")):
        ports = _Ports(exc)
        async with trio.open_nursery() as nursery:
            executor = EffectExecutor(ports.make(), nursery)
            executor.run([SubmitTx(b"\x01"), PublishTx(b"\x02")])
        assert ports.calls == 2
        failed = {(r.kv["effect"], r.kv["code"]) for r in caplog.records
                  if r.getMessage() == "effect-failed"}
        assert {("submit-tx", exc.code), ("publish-tx", exc.code)} <= failed, caplog.text


async def test_a_bug_in_an_effect_still_propagates():
    ports = _Ports(RuntimeError("bug"))
    with pytest.RaisesGroup(RuntimeError):
        async with trio.open_nursery() as nursery:
            EffectExecutor(ports.make(), nursery).run([SubmitTx(b"\x01")])
