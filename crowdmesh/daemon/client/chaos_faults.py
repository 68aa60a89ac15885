"""The built-in chaos fault kinds (see ``chaos_base``, Rules 1 and 2).

- ``kill``: SIGKILL, ``check-db`` on the stopped data dir, restart (a crash).
- ``freeze``: SIGSTOP for a few seconds, then SIGCONT (a frozen or swapped-out peer).
- ``split``: the target and up to ``n//2 - 1`` more nodes turn their networking off
  (``setnetworkactive false``) for a few seconds while the load goes on, then on again.
- ``skew``: SIGTERM, ``check-db``, restart with ``CROWDMESH_CLOCK_SKEW_S`` set to a value within
  ±``max_skew_s`` (by default just inside half the chain's future-time bound, so any two nodes'
  clocks differ by less than ``MAX_FUTURE_SECONDS``); the skew stays on that node until another
  skew fault hits it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Final

import trio

from crowdmesh.chain.rules import MAX_FUTURE_SECONDS
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.client.chaos_base import ChaosRun, Fault
from crowdmesh.daemon.client.harness import NodeHandle

# why restated, not imported: the client may not import server modules (daemon/clock.py holds
# the same two values; tests/unit/daemon/test_peer_faults.py checks they agree)
CLOCK_SKEW_ENV: Final = "CROWDMESH_CLOCK_SKEW_S"
MAX_CLOCK_SKEW_S: Final = MAX_FUTURE_SECONDS // 2

__all__ = ["FAULTS", "ClockSkew", "Freeze", "KillRestart", "Split"]

SKEW_MARGIN_S: Final = 60


async def _restart_after(run: ChaosRun, node: NodeHandle) -> None:
    """check-db on the stopped node, then start it again (Rule 2: heal before returning)."""
    await run.check_db(node)
    await run.start(node)


@dataclass(frozen=True, slots=True)
class KillRestart:
    name: str = "kill"

    async def inject(self, run: ChaosRun, target: NodeHandle) -> JsonObj:
        run.unavailable.add(target.index)
        try:
            await target.kill()
            await _restart_after(run, target)
        finally:
            run.unavailable.discard(target.index)
        return {"nodes": [target.index]}


@dataclass(frozen=True, slots=True)
class Freeze:
    name: str = "freeze"
    min_s: float = 2.0
    max_s: float = 5.0

    async def inject(self, run: ChaosRun, target: NodeHandle) -> JsonObj:
        seconds = round(run.rng.uniform(self.min_s, self.max_s), 1)
        assert target.process is not None
        run.unavailable.add(target.index)
        try:
            target.process.send_signal(signal.SIGSTOP)
            await trio.sleep(seconds)
        finally:
            target.process.send_signal(signal.SIGCONT)
            run.unavailable.discard(target.index)
        return {"nodes": [target.index], "seconds": seconds}


@dataclass(frozen=True, slots=True)
class Split:
    name: str = "split"
    min_s: float = 3.0
    max_s: float = 8.0

    async def inject(self, run: ChaosRun, target: NodeHandle) -> JsonObj:
        others = [n for n in run.nodes if n is not target]
        extra = run.rng.randint(0, max(0, len(run.nodes) // 2 - 1))
        cut = [target, *run.rng.sample(others, min(extra, len(others)))]
        seconds = round(run.rng.uniform(self.min_s, self.max_s), 1)
        try:
            for node in cut:
                await node.rpc("setnetworkactive", [False])
            await trio.sleep(seconds)
        finally:
            with trio.CancelScope(shield=True):
                for node in cut:
                    await node.rpc("setnetworkactive", [True])
        return {"nodes": sorted(n.index for n in cut), "seconds": seconds}


@dataclass(frozen=True, slots=True)
class ClockSkew:
    name: str = "skew"
    max_skew_s: int = MAX_CLOCK_SKEW_S - SKEW_MARGIN_S

    async def inject(self, run: ChaosRun, target: NodeHandle) -> JsonObj:
        skew = run.rng.randint(-self.max_skew_s, self.max_skew_s)
        run.unavailable.add(target.index)
        try:
            await target.stop_node()
            run.env.setdefault(target.index, {})[CLOCK_SKEW_ENV] = str(skew)
            await _restart_after(run, target)
        finally:
            run.unavailable.discard(target.index)
        return {"nodes": [target.index], "skew_s": skew}


FAULTS: Final[dict[str, Fault]] = {
    f.name: f for f in (KillRestart(), Freeze(), Split(), ClockSkew())
}
