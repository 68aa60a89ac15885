"""Long big-integer work releases the GIL, so a daemon thread running it never freezes the node.

A worker thread runs one long exponentiation call; the main thread spins and records its longest
stall. A control run with gmpy2's default context (which holds the GIL) shows the probe can fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import gmpy2

from crowdmesh.crypto import groups
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.rng import DeterministicRng

P = DEFAULT.group.p


def longest_stall(work: Callable[[], object]) -> tuple[float, float, int]:
    """Run ``work`` in a thread; return (its duration, main thread's longest stall, spins)."""
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run)
    start = last = time.perf_counter()
    thread.start()
    stall, spins = 0.0, 0
    while not done.is_set() and spins < 50_000_000:
        now = time.perf_counter()
        stall, last, spins = max(stall, now - last), now, spins + 1
    thread.join(timeout=30)
    return time.perf_counter() - start, stall, spins


def test_powmod_batch_in_a_thread_lets_the_main_thread_run() -> None:
    rng = DeterministicRng(1)
    bases = [gmpy2.mpz(rng.randbelow(P)) for _ in range(30)]
    exp = gmpy2.mpz(rng.randbits(3072))  # ~30 full-length powmods in one C call: ~0.3 s
    duration, stall, spins = longest_stall(lambda: groups.pow_bases(bases, exp, P))
    assert stall < 0.5 * duration and spins > 1000, (duration, stall, spins)


def test_released_gil_context_for_a_single_long_powmod() -> None:
    exp = gmpy2.mpz(DeterministicRng(2).randbits(40_000))

    def released() -> None:
        with groups.released_gil():
            gmpy2.powmod(3, exp, P)

    duration, stall, _ = longest_stall(released)
    assert stall < 0.5 * duration, (duration, stall)
    # Control: the default context holds the GIL for the whole call.
    duration, stall, _ = longest_stall(lambda: gmpy2.powmod(3, exp, P))
    assert stall > 0.5 * duration, (duration, stall)
