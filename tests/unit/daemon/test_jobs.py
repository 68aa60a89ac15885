"""JobPool: outcomes, failure codes, cancellation, duplicate ids, thread bound, bugs propagate."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from crowdmesh.crypto.elgamal import generator
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.daemon.jobs import JobOutcome, JobPool, warm_crypto_tables
from crowdmesh.errors import UsageError, ValidationError

WAIT = 5.0  # every wait in a job thread or the test is bounded by this


class Outcomes:
    """Collects outcomes and lets the test wait (bounded) for a number of them."""

    def __init__(self):
        self.items = []
        self._changed = trio.Event()

    def __call__(self, outcome):
        self.items.append(outcome)
        self._changed.set()

    async def wait_count(self, n):
        with trio.fail_after(WAIT):
            while len(self.items) < n:
                self._changed = trio.Event()
                await self._changed.wait()

    def ids(self):
        return [o.job_id for o in self.items]


async def wait_thread_event(event):
    """Wait in trio for a threading.Event set by a job thread (bounded)."""
    assert await trio.to_thread.run_sync(event.wait, WAIT), "job thread never got there"


def blocker(entered, release, exited=None):
    """A job that signals it is running, then holds its thread until released."""
    entered.set()
    assert release.wait(WAIT)
    if exited is not None:
        exited.set()
    return "released"


async def test_result_is_delivered():
    outcomes = Outcomes()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes)
        assert pool.start("sum", sum, ([1, 2, 3],))
        await outcomes.wait_count(1)
    assert outcomes.items == [JobOutcome("sum", result=6)]
    assert (pool.stats.started, pool.stats.finished, pool.stats.failed) == (1, 1, 0)
    assert pool.running() == pool.queued() == 0


def _reject():
    raise ValidationError("bad-fl-shape", "expected 10 weights")


async def test_crowdmesh_error_is_a_failed_outcome_with_its_code():
    outcomes = Outcomes()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes)
        pool.start("train", _reject, ())
        await outcomes.wait_count(1)
    expected = JobOutcome("train", error="bad-fl-shape", detail="expected 10 weights")
    assert outcomes.items == [expected]
    assert pool.stats.failed == 1
    assert pool.stats.finished == 0


async def test_cancel_right_after_start_never_runs_or_delivers():
    outcomes = Outcomes()
    ran = threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes)
        pool.start("x", ran.set, ())
        assert pool.cancel("x")
        assert not pool.cancel("x")
        assert pool.queued() == 0
    assert not ran.is_set()
    assert outcomes.items == []
    assert pool.stats.cancelled == 1


async def test_cancel_while_queued_never_runs_or_delivers():
    outcomes = Outcomes()
    entered, release, ran = threading.Event(), threading.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes, threads=1)
        pool.start("hold", blocker, (entered, release))
        await wait_thread_event(entered)
        pool.start("queued", ran.set, ())
        await trio.testing.wait_all_tasks_blocked()
        assert (pool.running(), pool.queued()) == (1, 1)
        assert pool.cancel("queued")
        release.set()
        await outcomes.wait_count(1)
    assert outcomes.ids() == ["hold"]
    assert not ran.is_set()


async def test_cancel_while_running_discards_the_result():
    outcomes = Outcomes()
    entered, release, exited = threading.Event(), threading.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes, threads=1)
        pool.start("run", blocker, (entered, release, exited))
        await wait_thread_event(entered)
        assert pool.running() == 1
        assert pool.cancel("run")
        assert pool.running() == 0
        # the same id can start again while the abandoned thread still runs
        assert pool.start("run", lambda: "second", ())
        await trio.testing.wait_all_tasks_blocked()
        # the abandoned thread still holds the only token, so the new job waits
        assert (pool.running(), pool.queued()) == (0, 1)
        release.set()
        await wait_thread_event(exited)
        await outcomes.wait_count(1)
    assert outcomes.items == [JobOutcome("run", result="second")]


async def test_duplicate_id_is_refused_while_live():
    outcomes = Outcomes()
    entered, release = threading.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes)
        assert pool.start("j", blocker, (entered, release))
        assert not pool.start("j", lambda: "other", ())
        release.set()
        await outcomes.wait_count(1)
        assert pool.start("j", lambda: "again", ())  # done, so the id is free again
        await outcomes.wait_count(2)
    assert [o.result for o in outcomes.items] == ["released", "again"]
    assert pool.stats.started == 2


async def test_at_most_threads_jobs_run_at_once():
    outcomes = Outcomes()
    lock = threading.Lock()
    active, peak = [0], [0]
    entered, release = threading.Semaphore(0), threading.Event()

    def job(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        entered.release()
        assert release.wait(WAIT)
        with lock:
            active[0] -= 1
        return i

    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes, threads=2)
        for i in range(5):
            pool.start(f"j{i}", job, (i,))
        for _ in range(2):  # trio starts tasks in no fixed order: wait for any two
            assert await trio.to_thread.run_sync(entered.acquire, True, WAIT)
        await trio.sleep(0.05)  # real time: give a wrongly started third thread a chance
        assert (pool.running(), pool.queued(), peak[0]) == (2, 3, 2)
        release.set()
        await outcomes.wait_count(5)
    assert peak[0] == 2
    assert sorted(o.result for o in outcomes.items) == [0, 1, 2, 3, 4]


async def test_jobs_full_past_max_queued():
    outcomes = Outcomes()
    entered, release = threading.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes, threads=1, max_queued=2)
        pool.start("hold", blocker, (entered, release))
        await wait_thread_event(entered)
        pool.start("q1", lambda: 1, ())
        pool.start("q2", lambda: 2, ())
        with pytest.raises(UsageError) as info:
            pool.start("q3", lambda: 3, ())
        assert info.value.code == "jobs-full"
        assert pool.stats.started == 3
        release.set()
        await outcomes.wait_count(3)


def _bug():
    raise ZeroDivisionError("a bug, not a reject")


async def test_other_exceptions_propagate_out_of_the_nursery():
    outcomes = Outcomes()
    with pytest.raises(ExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            JobPool(nursery, outcomes).start("bug", _bug, ())
            with trio.fail_after(WAIT):
                await trio.sleep_forever()
    assert info.group_contains(ZeroDivisionError, match="a bug")
    assert outcomes.items == []


async def test_job_thread_may_release_the_gil_for_gmpy2():
    import gmpy2

    outcomes = Outcomes()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes)
        pool.start("ctx", lambda: gmpy2.get_context().allow_release_gil, ())
        await outcomes.wait_count(1)
    assert outcomes.items[0].result is True


async def test_cancelling_the_whole_nursery_forgets_jobs_without_outcomes():
    outcomes = Outcomes()
    entered, release = threading.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        pool = JobPool(nursery, outcomes, threads=1)
        pool.start("run", blocker, (entered, release))
        await wait_thread_event(entered)
        pool.start("queued", lambda: 1, ())
        assert (pool.running(), pool.queued()) == (1, 1)
        nursery.cancel_scope.cancel()
    release.set()
    assert (pool.running(), pool.queued()) == (0, 0)
    assert outcomes.items == []


async def test_the_start_up_warm_up_builds_every_table_profiles_generator() -> None:
    generator.cache_clear()
    await warm_crypto_tables()
    tabled = [p for p in PROFILES.values() if p.tables]
    assert tabled and generator.cache_info().currsize == len(tabled)
    hits = generator.cache_info().hits
    generator(tabled[0])  # the first encryption or check finds the table built
    assert generator.cache_info().hits == hits + 1
