"""How the crypto core runs its independent per-slice jobs: in order here, or in parallel.

Invariants:
- The pure core never starts threads or processes. Functions with per-chunk work take a
  ``mapper``; :data:`SERIAL` (the default) runs jobs in order in the calling thread. The daemon
  may pass a process-pool mapper (``crowdmesh.daemon.jobs``) with the same interface.
- Jobs are top-level functions of picklable arguments, and carry all their randomness with them
  (the caller draws it from its ``rng`` first), so results do not depend on the mapper: the
  same seed gives the same ciphertexts serially or in parallel.
- ``map`` yields results in job order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

__all__ = ["SERIAL", "Mapper", "SerialMapper", "split"]

T = TypeVar("T")
R = TypeVar("R")


class Mapper(Protocol):
    """Runs ``fn`` over jobs, yielding results in order; ``parallelism`` workers at most."""

    @property
    def parallelism(self) -> int: ...

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        """Apply ``fn`` to every job; results come back in job order."""
        ...


class SerialMapper:
    """In-order, in-thread execution (the pure core's default)."""

    @property
    def parallelism(self) -> int:
        return 1

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        """Plain ``map``."""
        return map(fn, jobs)


SERIAL = SerialMapper()


def split(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` items covering range(n)."""
    return [slice(start, min(n, start + size)) for start in range(0, n, max(1, size))]
