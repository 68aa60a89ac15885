"""The chaos harness: an N-daemon testnet under a steady load, hit by random faults, checked.

It starts the testnet exactly as the functional tests and the demo do
(``testnet.init_testnet`` then ``harness.Testnet``), runs every load of a table of loads
(``chaos_load.LOADS``) in the background, and for ``faults`` rounds picks a fault kind from a
table (``chaos_faults.FAULTS``) and a target node, seeded (``random.Random(seed)``). After
each fault it pauses the loads, checks the invariants (``chaos_checks``) and prints one row;
at the end it drains, checks again, stops every daemon with SIGTERM and runs ``check-db`` on
every stopped data dir.

Rules:
- Reproducible choices: the fault kinds, targets, durations, skews and the load's transfers
  come from the seed (timings on a shared machine do not).
- Every kind runs at least once when ``faults >= len(kinds)`` (the first rounds are the kinds
  in a seeded order), so a short run covers every fault.
- Everything is bounded and every daemon is a child of one nursery: a failing or interrupted
  run kills them all (the testnet dir is kept on a violation or error for its logs).
- A violation never stops the run; a fault that cannot heal (a daemon that will not restart)
  is a ``fault-failed`` violation and ends it, since later checks would only repeat it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.client.chaos_base import ChaosRun, Fault, Load, LoadFactory, LoadSetup
from crowdmesh.daemon.client.chaos_checks import (
    ChainTracker,
    check_tracebacks,
    wait_converged,
    wait_drained,
)
from crowdmesh.daemon.client.chaos_faults import FAULTS
from crowdmesh.daemon.client.chaos_load import LOADS
from crowdmesh.daemon.client.harness import Testnet
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet
from crowdmesh.daemon.client.wallet import TestnetWallet
from crowdmesh.errors import CrowdmeshError

__all__ = ["ChaosConfig", "ChaosReport", "fault_schedule", "format_row", "run_chaos"]

START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """One chaos run."""

    nodes: int = 5
    faults: int = 100
    seed: int = 1
    topology: str = "mesh"
    accounts: int = 8
    tx_rate: float = 4.0  # transfers per second (each load)
    converge_s: float = 60.0  # the convergence bound after a heal
    kinds: tuple[str, ...] = ()  # () = every kind of the fault table
    root: Path | None = None  # default: a fresh /tmp/chaos-* dir, removed after a clean run
    timeout_factor: float = 1.0


@dataclass(slots=True)
class ChaosReport:
    """What a run found; :meth:`to_json` has the keys ``bench/chaos.py --json`` writes."""

    seed: int
    nodes: int
    rows: list[JsonObj] = field(default_factory=list)
    violations: list[JsonObj] = field(default_factory=list)
    lost_confirmed_txs: int = 0
    final: JsonObj = field(default_factory=dict)
    loads: dict[str, JsonObj] = field(default_factory=dict)
    root: str = ""
    duration_s: float = 0.0

    def to_json(self) -> JsonObj:
        converge = [r["converge_s"] for r in self.rows if r.get("converge_s") is not None]
        kinds: dict[str, int] = {}
        for row in self.rows:
            kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        return {"faults": len(self.rows), "violations": len(self.violations),
                "max_converge_s": max(converge, default=0.0),
                "lost_confirmed_txs": self.lost_confirmed_txs, "seed": self.seed,
                "tiebreaks": sum(int(r.get("tiebreaks", 0)) for r in self.rows),
                "nodes": self.nodes, "kinds": kinds, "duration_s": round(self.duration_s, 1),
                "final": self.final, "loads": self.loads, "rows": self.rows,
                "violation_details": self.violations, "root": self.root}


def fault_schedule(kinds: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` fault kinds: every kind once in a seeded order first, then uniformly at random."""
    first = list(kinds)
    rng.shuffle(first)
    return (first + [rng.choice(kinds) for _ in range(max(0, n - len(first)))])[:n]


ROW_FORMAT = ("{i:>4} {kind:<7} {nodes:<10} {detail:<14} {converge:>10} {height:>7} {ties:>4} "
              "{viol:>5}")


def format_row(row: JsonObj | None) -> str:
    """One line of the per-fault table (the header for ``None``)."""
    if row is None:
        return ROW_FORMAT.format(i="#", kind="fault", nodes="nodes", detail="detail",
                                 converge="converge_s", height="height", ties="ties",
                                 viol="viol")
    detail = " ".join(f"{k}={v}" for k, v in row["detail"].items() if k != "nodes")
    converge = "-" if row["converge_s"] is None else f"{row['converge_s']:.2f}"
    return ROW_FORMAT.format(i=row["fault"], kind=row["kind"],
                             nodes=",".join(map(str, row["detail"].get("nodes", []))),
                             detail=detail, converge=converge, height=row["height"],
                             ties=row.get("tiebreaks", 0), viol=row["violations"])


class _Gate:
    """Lets loads run only between checks."""

    def __init__(self) -> None:
        self.open = trio.Event()
        self.open.set()
        self.busy = 0

    async def close(self) -> None:
        """Stop new steps and wait for the ones under way (each is bounded)."""
        self.open = trio.Event()
        while self.busy:
            await trio.sleep(0.05)

    async def run_loads(self, run: ChaosRun, loads: Sequence[Load]) -> None:
        async with trio.open_nursery() as nursery:
            for load in loads:
                nursery.start_soon(self._loop, run, load)

    async def _loop(self, run: ChaosRun, load: Load) -> None:
        while True:
            await self.open.wait()
            self.busy += 1
            try:
                await load.step(run)
            finally:
                self.busy -= 1


class _Chaos:
    """One run's state: the checks and the table rows."""

    def __init__(self, cfg: ChaosConfig, net: Testnet, faults: Mapping[str, Fault],
                 loads: Sequence[Load], tracker: ChainTracker, out: Callable[[str], None]):
        self.cfg, self.net, self.faults, self.loads = cfg, net, faults, loads
        self.run = ChaosRun(net, random.Random(cfg.seed))
        self.tracker, self.out = tracker, out
        self.gate = _Gate()
        self.log_offsets: dict[int, int] = {}
        self.report = ChaosReport(cfg.seed, cfg.nodes, root=str(net.root))

    async def checks(self, healed_at: float) -> tuple[float | None, int]:
        """Pause the loads, check every invariant, resume; (converge seconds, height)."""
        await self.gate.close()
        bound = self.cfg.converge_s * self.cfg.timeout_factor
        converge, height = None, -1
        try:
            converge = await wait_converged(self.run, max(1.0, bound - (time.monotonic()
                                                                        - healed_at)))
            if converge is not None:  # measured from the heal, not from the pause
                converge = round(time.monotonic() - healed_at, 2)
            if converge is not None and await wait_drained(self.run, bound):
                height = await self.tracker.check(self.run)
            for load in self.loads:
                await load.resync(self.run)
        except CrowdmeshError as exc:  # a daemon that stopped answering: evidence, not a crash
            self.run.violate("rpc", f"{exc}; tips {await self.net.tips()}")
        check_tracebacks(self.run, self.log_offsets)
        self.gate.open.set()
        return converge, height

    async def one_fault(self, index: int, kind: str) -> bool:
        """Inject, heal, check, print a row; False when the fault could not heal."""
        run = self.run
        run.fault_index = index
        target = run.rng.choice(run.nodes)
        before, ties = len(run.violations), run.tiebreaks
        ok = True
        try:
            detail = await self.faults[kind].inject(run, target)
        except (AssertionError, trio.TooSlowError, CrowdmeshError) as exc:  # could not heal
            run.violate("fault-failed", f"{kind} on node{target.index}: {exc}")
            detail, ok = {"nodes": [target.index], "error": "fault-failed"}, False
        healed_at = time.monotonic()
        converge, height = await self.checks(healed_at) if ok else (None, -1)
        row = {"fault": index, "kind": kind, "target": target.index, "detail": detail,
               "converge_s": converge, "height": height, "tiebreaks": run.tiebreaks - ties,
               "violations": len(run.violations) - before}
        self.report.rows.append(row)
        self.out(format_row(row))
        return ok

    async def finish(self) -> None:
        """Drain, check, stop every daemon (SIGTERM), check-db each stopped node."""
        run = self.run
        run.fault_index = -1
        converge, height = await self.checks(time.monotonic())
        await self.gate.close()
        unconfirmed: list[JsonObj] = []
        try:
            if run.available():
                await self.tracker.refresh(run, run.available()[0])
                unconfirmed = await self._unconfirmed()
        except CrowdmeshError as exc:  # a daemon that died: evidence, then stop the rest
            run.violate("rpc", f"final read failed: {exc}")
        for node in run.nodes:
            try:
                await node.stop_node()
            except AssertionError as exc:
                run.violate("stop", str(exc))
        check_tracebacks(run, self.log_offsets)
        for node in run.nodes:
            if node.running:
                await node.kill()
            await run.check_db(node)
        self.report.final = {"height": height, "converge_s": converge,
                             "confirmed_txs": self.tracker.confirmed_total,
                             "unconfirmed_sent_txs": len(unconfirmed),
                             "unconfirmed_sample": unconfirmed[:10]}

    async def _unconfirmed(self) -> list[JsonObj]:
        """Transactions a node answered ``submit_tx`` for that never made the main chain (not
        an invariant: a daemon SIGKILLed before relaying loses its mempool, issue 11 item 7),
        with the node they went to and what it says now."""
        confirmed = {t for ts in self.tracker.txids for t in ts}
        rows = []
        node = self.run.available()[0]
        for txid, index in self.run.sent_to.items():
            if txid in confirmed:
                continue
            try:
                status = (await node.rpc("tx", [txid])).get("status")
            except RpcCallError as exc:
                status = exc.code
            rows.append({"txid": txid, "sent_to": index, "status": status})
        return rows


async def run_chaos(cfg: ChaosConfig, faults: Mapping[str, Fault] = FAULTS,
                    loads: Mapping[str, LoadFactory] = LOADS,
                    out: Callable[[str], None] = print) -> ChaosReport:
    """Run ``cfg`` (see the module docstring); print a row per fault through ``out``."""
    kinds = cfg.kinds or tuple(faults)
    root = cfg.root or Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp"))
    infos = init_testnet(root, TestnetSpec(n=cfg.nodes, seed=cfg.seed, topology=cfg.topology,
                                           accounts=cfg.accounts, mining_mode="on-demand"))
    users = [k.public for k in TestnetWallet(root, cfg.accounts).keys]
    recipients = (*users, *(bytes.fromhex(i.account) for i in infos))
    setup = LoadSetup(root, cfg.accounts, recipients, cfg.tx_rate)
    tracker = ChainTracker.for_testnet(root, [a.hex() for a in recipients])
    started = time.monotonic()
    chaos: _Chaos | None = None
    try:
        async with trio.open_nursery() as nursery:
            net = Testnet(root, nursery, cfg.timeout_factor)
            try:
                with trio.fail_after(START_TIMEOUT_S * cfg.timeout_factor):
                    await net.start_all()
                chaos = _Chaos(cfg, net, faults, [f(setup) for f in loads.values()], tracker, out)
                await _rounds(chaos, fault_schedule(kinds, cfg.faults, chaos.run.rng))
            finally:
                nursery.cancel_scope.cancel()
    finally:
        _cleanup(root, chaos, cfg.root is None)
    assert chaos is not None
    report = chaos.report
    report.violations = [v.to_json() for v in chaos.run.violations]
    report.lost_confirmed_txs = len(tracker.lost_confirmed)
    report.loads = {load.name: load.stats() for load in chaos.loads}
    report.duration_s = time.monotonic() - started
    return report


async def _rounds(chaos: _Chaos, schedule: list[str]) -> None:
    chaos.out(format_row(None))
    await chaos.checks(time.monotonic())  # the baseline checkpoint
    async with trio.open_nursery() as loads:
        loads.start_soon(chaos.gate.run_loads, chaos.run, chaos.loads)
        for index, kind in enumerate(schedule, start=1):
            if not await chaos.one_fault(index, kind):
                break
        await chaos.finish()
        loads.cancel_scope.cancel()


def _cleanup(root: Path, chaos: _Chaos | None, remove: bool) -> None:
    clean = chaos is not None and not chaos.run.violations and chaos.report.final
    if remove and clean:
        shutil.rmtree(root, ignore_errors=True)
        if chaos is not None:
            chaos.report.root = ""


def summary_lines(report: ChaosReport) -> list[str]:
    """The human summary printed after the table."""
    doc: dict[str, Any] = report.to_json()
    lines = [f"faults {doc['faults']} {doc['kinds']}  violations {doc['violations']}  "
             f"tiebreaks {doc['tiebreaks']}  "
             f"max_converge_s {doc['max_converge_s']}  lost_confirmed_txs "
             f"{doc['lost_confirmed_txs']}  duration {doc['duration_s']} s",
             f"final {doc['final']}  loads {doc['loads']}"]
    lines += [f"VIOLATION after fault {v['fault']}: {v['check']}: {v['detail'][:800]}"
              for v in doc["violation_details"]]
    if doc["root"]:
        lines.append(f"testnet kept in {doc['root']}")
    return lines
