"""A process pool that runs the crypto core's slice jobs on several cores.

The pure core (``crowdmesh.crypto``) never starts processes; its chunk-parallel functions take a
``mapper``. :class:`ProcessMapper` is that mapper backed by a ``ProcessPoolExecutor``:

- workers start with the ``spawn`` method, so forking a multi-threaded (trio) daemon is never
  an issue; each worker builds the fixed-base tables it needs once (a ``PublicKey`` pickles as
  (profile, h) and is cached per process);
- every job carries its own secret nonces, drawn by the caller's rng before the split, so the
  output equals the serial one bit for bit (a test checks this);
- gmpy2 work in the workers never touches the caller's GIL. Use it from a trio node through
  ``trio.to_thread.run_sync`` as with any other blocking call.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import TypeVar

__all__ = ["ProcessMapper"]

T = TypeVar("T")
R = TypeVar("R")


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
