"""A test hook: run the daemon with its wall clock skewed (``CROWDMESH_CLOCK_SKEW_S``).

The chaos harness restarts a node with this variable set to see the network hold with clocks
that disagree by less than the chain's future-time bound (Bitcoin's ``-mocktime`` plays the
same part in its functional tests).

Invariants:
- Read once, at daemon start (:func:`install_clock_skew` from ``run_node``); unset or 0 changes
  nothing.
- The skew is bounded: ``|skew| <= MAX_CLOCK_SKEW_S`` (half of ``MAX_FUTURE_SECONDS``, so two
  skewed nodes still accept each other's blocks); anything else is ``UsageError
  ("bad-clock-skew")`` and the daemon exits 78.
- Process-wide on purpose: the daemon reads ``time.time()`` directly in ``mining.py``
  (templates, own imports), ``intake.py`` (peer blocks) and ``chainfeed.py``, and through
  injected ``clock=time.time`` defaults in ``ledger.py``, ``rolehost.py`` and ``timers.py``;
  this hook shifts them all at once. Monotonic clocks (trio, peer scores) are untouched.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from crowdmesh.chain.rules import MAX_FUTURE_SECONDS
from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import UsageError

__all__ = ["CLOCK_SKEW_ENV", "MAX_CLOCK_SKEW_S", "clock_skew_from_env", "install_clock_skew"]

CLOCK_SKEW_ENV = "CROWDMESH_CLOCK_SKEW_S"
MAX_CLOCK_SKEW_S = MAX_FUTURE_SECONDS // 2

log = logging.getLogger("crowdmesh.node")


def clock_skew_from_env(environ: Mapping[str, str]) -> float:
    """The skew in seconds that ``environ`` asks for (0.0 when unset).

    Raises:
        UsageError: ``bad-clock-skew`` for a non-number or one beyond ±``MAX_CLOCK_SKEW_S``.
    """
    raw = environ.get(CLOCK_SKEW_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        skew = float(raw)
    except ValueError:
        raise UsageError("bad-clock-skew", f"{CLOCK_SKEW_ENV}={raw!r} is not a number") from None
    if not abs(skew) <= MAX_CLOCK_SKEW_S:  # also rejects nan
        raise UsageError("bad-clock-skew",
                         f"{CLOCK_SKEW_ENV}={raw} is beyond ±{MAX_CLOCK_SKEW_S} s")
    return skew


def install_clock_skew(environ: Mapping[str, str] = os.environ) -> float:
    """Shift this process's ``time.time`` by the skew ``environ`` asks for; return it.

    Raises:
        UsageError: see :func:`clock_skew_from_env`.
    """
    skew = clock_skew_from_env(environ)
    if skew:
        real = getattr(time.time, "__wrapped__", time.time)

        def skewed() -> float:
            return real() + skew

        skewed.__wrapped__ = real  # type: ignore[attr-defined]
        time.time = skewed
        log_event(log, "clock-skewed", logging.WARNING, skew_s=skew, env=CLOCK_SKEW_ENV)
    return skew
