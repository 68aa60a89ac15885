"""One timer task with a heap, instead of one spawned task per scheduled event.

Roles return ``ScheduleAt`` effects; the daemon puts each one here and a single task hands
the item back to ``deliver`` when its time comes.

Invariants:
- ONE task (:meth:`Timers.run`) serves every timer: a heap of ``(when, seq, item)`` where
  ``seq`` grows with every ``schedule``, so items with equal ``when`` fire in schedule order
  and items themselves are never compared.
- ``when`` is unix seconds by the injected ``clock``; an item fires once ``clock() >= when``,
  so a time already past fires at once (on the timer task, never inside ``schedule``).
- A ``schedule`` earlier than the current earliest wakes the sleeping task. The task also
  re-reads ``clock`` at least every :data:`MAX_SLEEP` seconds while items are pending,
  because it sleeps on trio's monotonic clock while ``when`` is wall time, which can step.
- Bounded: past ``max_pending`` pending items a new item is dropped and counted in
  ``dropped`` (STYLE f: when full, drop and count).
- A batch fires only the items that were due and scheduled before it began; items
  ``deliver`` schedules wait for the next batch, after a checkpoint, so a deliver that keeps
  rescheduling itself cannot starve the event loop.
- ``deliver`` runs on the timer task; if it raises, that is a bug and propagates.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from crowdmesh.errors import UsageError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["MAX_SLEEP", "Timers"]

T = TypeVar("T")

MAX_SLEEP = 1.0


class Timers(Generic[T]):
    """Items handed to ``deliver`` at their scheduled times by one task."""

    def __init__(
        self,
        deliver: Callable[[T], None],
        clock: Callable[[], float] = time.time,
        max_pending: int = 65536,
    ) -> None:
        self._deliver = deliver
        self._clock = clock
        self._max_pending = max_pending
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()
        self._running = False
        self.dropped = 0

    def __len__(self) -> int:
        """Items scheduled and not yet delivered."""
        return len(self._heap)

    def schedule(self, when: float, item: T) -> None:
        """Deliver ``item`` once ``clock() >= when`` (at once if that is already so).

        Raises:
            UsageError: ``bad-timer-time`` if ``when`` is NaN or infinite.
        """
        if not math.isfinite(when):
            raise UsageError("bad-timer-time", f"{when!r} is not a finite time")
        if len(self._heap) >= self._max_pending:
            self.dropped += 1
            return
        entry = (when, next(self._seq), item)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:  # new earliest: the task may be sleeping past it
            self._wake.set()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver items as they come due, until cancelled.

        Raises:
            UsageError: ``timers-running`` if another ``run`` is already serving these timers.
        """
        if self._running:
            raise UsageError("timers-running", "one task serves a Timers")
        self._running = True
        task_status.started()
        try:
            while True:
                self._fire_due()
                await self._wait_next()
        finally:
            self._running = False

    def _fire_due(self) -> None:
        now = self._clock()
        batch_end = next(self._seq)  # items deliver schedules get a higher seq and wait
        heap = self._heap
        while heap and heap[0][0] <= now and heap[0][1] < batch_end:
            _, _, item = heapq.heappop(heap)
            self._deliver(item)

    async def _wait_next(self) -> None:
        # why: a fresh Event before reading the heap, so a schedule() after this line wakes us
        self._wake = trio.Event()
        delay = math.inf  # nothing pending: only a schedule() can give us work
        if self._heap:
            delay = min(max(self._heap[0][0] - self._clock(), 0.0), MAX_SLEEP)
        with trio.move_on_after(delay):
            await self._wake.wait()
