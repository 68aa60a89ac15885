"""Timers: one task and a heap, on trio's virtual clock (autojump_clock)."""

from __future__ import annotations

import math
import random

import pytest
import trio
import trio.testing

from crowdmesh.daemon.timers import MAX_SLEEP, Timers
from crowdmesh.errors import UsageError

LIMIT = 10_000.0  # virtual seconds: bounds every wait without costing real time


class Fired:
    """deliver callback recording (item, virtual time of delivery)."""

    def __init__(self):
        self.items = []

    def __call__(self, item):
        self.items.append((item, trio.current_time()))

    def names(self):
        return [item for item, _ in self.items]


async def wait_len(fired, n):
    with trio.fail_after(LIMIT):
        while len(fired.items) < n:
            await trio.sleep(0.5)


async def test_items_fire_in_time_order_at_their_times(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time)
    t0 = trio.current_time()
    for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        timers.schedule(t0 + delay, name)
    assert len(timers) == 3
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await wait_len(fired, 3)
        nursery.cancel_scope.cancel()
    assert fired.items == [("a", t0 + 1.0), ("b", t0 + 2.0), ("c", t0 + 3.0)]
    assert len(timers) == 0


async def test_equal_times_fire_in_schedule_order(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time)
    when = trio.current_time() + 5.0
    names = [f"t{i}" for i in range(50)]
    for name in names:
        timers.schedule(when, name)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await wait_len(fired, 50)
        nursery.cancel_scope.cancel()
    assert fired.names() == names
    assert {t for _, t in fired.items} == {when}


async def test_earlier_schedule_wakes_the_sleeping_task(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time)
    t0 = trio.current_time()
    timers.schedule(t0 + 100.0, "late")
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await trio.sleep(1.0)
        timers.schedule(t0 + 6.0, "early")
        await wait_len(fired, 2)
        nursery.cancel_scope.cancel()
    assert fired.items == [("early", t0 + 6.0), ("late", t0 + 100.0)]


async def test_past_time_fires_immediately(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await trio.sleep(50.0)
        now = trio.current_time()
        timers.schedule(now - 10.0, "overdue")
        timers.schedule(now, "now")
        await trio.testing.wait_all_tasks_blocked()
        assert fired.items == [("overdue", now), ("now", now)]
        nursery.cancel_scope.cancel()


async def test_many_timers_are_served_by_one_task(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time)
    t0 = trio.current_time()
    rng = random.Random(7)
    whens = [t0 + rng.randrange(1, 500) for _ in range(2000)]
    for i, when in enumerate(whens):
        timers.schedule(when, i)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        assert len(nursery.child_tasks) == 1
        await wait_len(fired, 2000)
        assert len(nursery.child_tasks) == 1
        nursery.cancel_scope.cancel()
    assert [t for _, t in fired.items] == sorted(whens)
    assert fired.names() == sorted(range(2000), key=lambda i: (whens[i], i))


async def test_past_max_pending_new_items_are_dropped_and_counted(autojump_clock):
    fired = Fired()
    timers = Timers(fired, clock=trio.current_time, max_pending=3)
    t0 = trio.current_time()
    for i in range(5):
        timers.schedule(t0 + 1.0 + i, i)
    assert (len(timers), timers.dropped) == (3, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await wait_len(fired, 3)
        timers.schedule(trio.current_time() + 1.0, "room again")
        await wait_len(fired, 4)
        nursery.cancel_scope.cancel()
    assert fired.names() == [0, 1, 2, "room again"]
    assert timers.dropped == 2


async def test_wall_clock_step_forward_is_noticed_within_max_sleep(autojump_clock):
    fired = Fired()
    offset = [0.0]
    timers = Timers(fired, clock=lambda: trio.current_time() + offset[0])
    timers.schedule(trio.current_time() + 3600.0, "hour")
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        await trio.sleep(10.0)
        assert fired.items == []
        start = trio.current_time()
        offset[0] = 3600.0  # e.g. NTP stepped the wall clock
        await wait_len(fired, 1)
        nursery.cancel_scope.cancel()
    assert fired.items[0][1] - start <= MAX_SLEEP


async def test_a_deliver_that_reschedules_itself_cannot_starve_the_loop(autojump_clock):
    timers = None
    count = [0]

    def again(item):
        count[0] += 1
        if count[0] < 1000:  # a cap, so a broken batch bound fails fast instead of hanging
            timers.schedule(trio.current_time(), item)  # always due at once

    timers = Timers(again, clock=trio.current_time)
    timers.schedule(trio.current_time(), "loop")
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        for _ in range(5):
            await trio.lowlevel.checkpoint()  # returns only because each batch yields
        nursery.cancel_scope.cancel()
    assert 1 <= count[0] <= 10


async def test_only_one_run_at_a_time():
    timers = Timers(lambda item: None, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        with pytest.raises(UsageError) as info:
            await timers.run()
        assert info.value.code == "timers-running"
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:  # after cancellation it can serve again
        await nursery.start(timers.run)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf])
def test_non_finite_times_are_refused(when):
    timers = Timers(lambda item: None)
    with pytest.raises(UsageError) as info:
        timers.schedule(when, "x")
    assert info.value.code == "bad-timer-time"
    assert len(timers) == 0
