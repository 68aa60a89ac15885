"""What the chaos harness's plug-ins share: the run's context and the two plug-in Protocols.

Rule 1 (plug-ins): a fault kind is a :class:`Fault` (``crowdmesh.daemon.client.chaos_faults``
has the built-in ones), a load is a :class:`Load` (``chaos_load``); the core
(``crowdmesh.daemon.client.chaos``) takes both as tables, so a new fault or a new load (CrowdSFL
tasks, spatial reports) is one class and one table entry, never a change to the core.
Rule 2 (healing): a fault's ``inject`` returns only once the network is whole again (every
daemon running, unfrozen, networking on); it may leave a node restarted with a new
environment (:attr:`ChaosRun.env`). Nodes it takes away are listed in
:attr:`ChaosRun.unavailable` meanwhile, so loads do not wait on a frozen or dead daemon.
Rule 3 (evidence): anything wrong is a :class:`Violation` with a stable ``check`` name and a
short detail (log lines, the failing output); nothing is raised past the core for it.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.client.harness import NodeHandle, Testnet

__all__ = ["CHECK_DB_TIMEOUT_S", "ChaosRun", "Fault", "Load", "LoadFactory", "LoadSetup",
           "Violation"]

CHECK_DB_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken invariant: which check, after which fault (0 = the start, -1 = the end)."""

    check: str
    fault: int
    detail: str

    def to_json(self) -> JsonObj:
        return {"check": self.check, "fault": self.fault, "detail": self.detail[-4000:]}


@dataclass(slots=True)
class ChaosRun:
    """The context every fault, load and check receives."""

    net: Testnet
    rng: random.Random
    env: dict[int, dict[str, str]] = field(default_factory=dict)  # per node, kept on restarts
    unavailable: set[int] = field(default_factory=set)
    violations: list[Violation] = field(default_factory=list)
    fees: dict[str, int] = field(default_factory=dict)  # txid → fee of every tx a load sent
    sent_to: dict[str, int] = field(default_factory=dict)  # txid → node it was submitted to
    fault_index: int = 0
    tiebreaks: int = 0  # blocks generated to break a stalled equal-work tie (chaos_checks)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def nodes(self) -> list[NodeHandle]:
        return self.net.nodes

    def available(self) -> list[NodeHandle]:
        """Running nodes no fault has taken away right now."""
        return [n for n in self.nodes if n.running and n.index not in self.unavailable]

    def violate(self, check: str, detail: str) -> None:
        """Record a broken invariant against the current fault."""
        self.violations.append(Violation(check, self.fault_index, detail))

    async def start(self, node: NodeHandle) -> None:
        """Start ``node`` with its environment and wait until it serves."""
        await node.start(self.net.nursery, extra_env=self.env.get(node.index))
        await node.wait_ready()

    async def check_db(self, node: NodeHandle) -> bool:
        """Run the offline ``crowdmesh check-db`` on a stopped node's data dir; a failure is a
        ``check-db`` violation. Returns whether it passed."""
        assert not node.running, f"{node} must be stopped for check-db"
        argv = [sys.executable, "-m", "crowdmesh", "check-db", "--config", str(node.config)]
        with trio.move_on_after(CHECK_DB_TIMEOUT_S):
            proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                          stdin=subprocess.DEVNULL, check=False)
            if proc.returncode == 0:
                return True
            out = (proc.stdout + proc.stderr).decode(errors="replace")
            self.violate("check-db", f"node{node.index} exit {proc.returncode}: {out[-2000:]}")
            return False
        self.violate("check-db", f"node{node.index}: check-db took over {CHECK_DB_TIMEOUT_S} s")
        return False

    async def rpc_all(self, method: str, params: Any = None,
                      nodes: Sequence[NodeHandle] | None = None) -> list[Any]:
        """``method`` on every node of ``nodes`` (default: the available ones), in order."""
        return [await n.rpc(method, params) for n in (nodes or self.available())]


class Fault(Protocol):
    """One kind of fault. ``inject`` hits ``target`` (and maybe more nodes), heals, and returns
    a JSON-able description for the per-fault table (Rule 2)."""

    @property
    def name(self) -> str: ...

    async def inject(self, run: ChaosRun, target: NodeHandle) -> JsonObj: ...


class Load(Protocol):
    """A steady load. The core calls ``step`` in a loop while no check runs, ``resync`` after
    each round of checks (the network is quiet then), and ``stats`` for the summary."""

    @property
    def name(self) -> str: ...

    async def step(self, run: ChaosRun) -> None: ...

    async def resync(self, run: ChaosRun) -> None: ...

    def stats(self) -> JsonObj: ...


@dataclass(frozen=True, slots=True)
class LoadSetup:
    """What a load factory gets: the testnet dir (its keys), how many funded ``user<k>``
    accounts to use, every account a load may pay (users and miners), the rate per second."""

    root: Path
    accounts: int
    recipients: tuple[bytes, ...]
    rate: float


LoadFactory = Callable[[LoadSetup], Load]
