"""Jobs off the event loop: one bounded, cancellable pool for CPU work.

Local training, the CSP's crypto pipeline and model evaluation run here, in threads, so the
trio thread keeps serving peers. Results come back through one ``on_done`` callback called on
the trio thread.

Invariants:
- At most ``threads`` job threads run at once. Every job calls ``trio.to_thread.run_sync``
  with the pool's one ``CapacityLimiter``; an abandoned (cancelled) thread keeps its token
  until it really returns, so cancelling never lets more than ``threads`` run.
- At most ``max_queued`` jobs wait for a thread; ``start`` past that raises ``jobs-full``.
  A job id is live (running or queued) at most once: a duplicate ``start`` returns False.
- ``on_done`` is called exactly once for every job that was neither cancelled nor crashed,
  on the trio thread; ``cancel`` returning True guarantees it is never called for that job
  (the abandoned thread's result is discarded).
- A job raising :class:`~crowdmesh.errors.CrowdmeshError` is a failed outcome carrying the
  error's code. Any other exception is a bug and propagates out of the nursery (STYLE c).
- Job threads run gmpy2 with ``allow_release_gil`` so long powmods don't stall the loop.

:class:`ProcessMapper` is the other half of CPU work: the crypto core's chunk-parallel functions
take a ``mapper``, and this one runs their slice jobs on a ``spawn``-started process pool (no
fork of a multi-threaded daemon). Every slice carries its own secret nonces, drawn by the
caller's rng before the split, so the output equals the serial one bit for bit; a job thread
that calls such a function with a :class:`ProcessMapper` spreads it over several cores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import trio

from crowdmesh.crypto.elgamal import generator
from crowdmesh.crypto.groups import PROFILES, released_gil
from crowdmesh.errors import CrowdmeshError, UsageError

__all__ = ["JobOutcome", "JobPool", "JobStats", "ProcessMapper", "warm_crypto_tables"]

T = TypeVar("T")
R = TypeVar("R")

# why: trio >= 0.23 names this flag ``abandon_on_cancel``, but the trio-typing stubs that
# libp2p pulls in shadow trio's own annotations and still call it ``cancellable``.
_ABANDON_ON_CANCEL: dict[str, Any] = {"abandon_on_cancel": True}


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended: ``error`` is None and ``result`` is set when it succeeded."""

    job_id: str
    result: object = None
    error: str | None = None
    detail: str = ""


@dataclass(slots=True)
class JobStats:
    """Counters: ``started`` jobs accepted, then ``finished`` (ok), ``failed`` or ``cancelled``."""

    started: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0


class _Job:
    """One live job; ``in_thread`` is set from the worker thread (a bool store is atomic)."""

    __slots__ = ("in_thread", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.in_thread = False


class JobPool:
    """Runs sync functions in at most ``threads`` threads, delivering outcomes to ``on_done``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        on_done: Callable[[JobOutcome], None],
        *,
        threads: int = 2,
        max_queued: int = 64,
    ) -> None:
        if threads < 1 or max_queued < 0:
            raise UsageError("bad-job-pool", "threads must be >= 1 and max_queued >= 0")
        self._nursery = nursery
        self._on_done = on_done
        self._limiter = trio.CapacityLimiter(threads)
        self._max_queued = max_queued
        self._jobs: dict[str, _Job] = {}
        self.stats = JobStats()

    def start(self, job_id: str, fn: Callable[..., object], args: tuple[object, ...]) -> bool:
        """Queue ``fn(*args)`` as job ``job_id``; it runs as soon as a thread is free.

        Returns:
            False (and starts nothing) if ``job_id`` is already running or queued.

        Raises:
            UsageError: ``jobs-full`` when ``max_queued`` jobs already wait for a thread.
        """
        if job_id in self._jobs:
            return False
        if self.queued() >= self._max_queued:
            raise UsageError("jobs-full", f"{self._max_queued} jobs already queued")
        job = _Job()
        self._jobs[job_id] = job
        self.stats.started += 1
        self._nursery.start_soon(self._run, job_id, job, fn, args, name=f"job:{job_id}")
        return True

    def cancel(self, job_id: str) -> bool:
        """Cancel a running or queued job; True if there was one (its ``on_done`` never runs)."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        job.scope.cancel()
        self.stats.cancelled += 1
        return True

    def running(self) -> int:
        """Live jobs whose thread has started."""
        return sum(1 for job in self._jobs.values() if job.in_thread)

    def queued(self) -> int:
        """Live jobs still waiting for a thread."""
        return len(self._jobs) - self.running()

    async def _run(
        self, job_id: str, job: _Job, fn: Callable[..., object], args: tuple[object, ...]
    ) -> None:
        try:
            outcome = await self._outcome(job_id, job, fn, args)
        finally:
            # why: identity, not membership: cancel() popped this job, and a new job may
            # reuse the id; the finally also forgets jobs the whole nursery cancelled
            mine = self._jobs.get(job_id) is job
            if mine:
                del self._jobs[job_id]
        if mine and outcome is not None:
            self._deliver(outcome)

    async def _outcome(
        self, job_id: str, job: _Job, fn: Callable[..., object], args: tuple[object, ...]
    ) -> JobOutcome | None:
        """Run the job in a thread; None when its own scope was cancelled."""
        with job.scope:
            try:
                result = await trio.to_thread.run_sync(
                    _in_thread, job, fn, args, limiter=self._limiter, **_ABANDON_ON_CANCEL
                )
            except CrowdmeshError as exc:
                return JobOutcome(job_id, error=exc.code, detail=exc.detail)
            return JobOutcome(job_id, result=result)
        return None

    def _deliver(self, outcome: JobOutcome) -> None:
        if outcome.error is None:
            self.stats.finished += 1
        else:
            self.stats.failed += 1
        self._on_done(outcome)


def _in_thread(job: _Job, fn: Callable[..., object], args: tuple[object, ...]) -> object:
    """The worker-thread side: mark the job running and run it with the GIL releasable."""
    job.in_thread = True
    return _released(fn, *args)


async def warm_crypto_tables() -> None:
    """Build each table profile's generator table (``elgamal.generator``) in a thread.

    Every node needs g's table at the first CrowdSFL submission it validates (and workers at
    their first encryption); built then, its ~0.1–0.2 s of CPU lands on a task's critical path.
    A long-running daemon pays it once, so it pays it at start-up, off the event loop.
    """
    for profile in PROFILES.values():
        if profile.tables:
            await trio.to_thread.run_sync(_released, generator, profile, **_ABANDON_ON_CANCEL)


def _released(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` with gmpy2 free to release the GIL (every thread of ours runs this way)."""
    with released_gil():
        return fn(*args)


class ProcessMapper:
    """A ``crowdmesh.crypto`` mapper running jobs on ``processes`` worker processes."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self._processes = processes
        self._pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn")
        )

    @property
    def parallelism(self) -> int:
        return self._processes

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        """Submit every job; yield results in job order as they complete."""
        return self._pool.map(fn, jobs)

    def warm_up(self) -> None:
        """Start every worker process now (imports take ~0.3 s each) rather than on first use."""
        list(self._pool.map(_noop, range(self._processes * 2)))

    def close(self) -> None:
        """Stop the workers (waits for running jobs)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessMapper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _noop(_: int) -> None:
    import crowdmesh.crypto  # noqa: F401  (pre-import the core in each worker)
