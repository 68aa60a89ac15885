"""``make demo-spatial``: spatial crowdsourcing between 9 real daemons around Charlotte, NC.

Run as ``python -m crowdmesh.daemon.client.cli_demo_spatial [--seed 2] [--keep]`` (the
arguments are parsed there; this module is the demo itself).

The testnet: 9 daemons on 127.0.0.1, mesh topology, every node a miner in ``on-demand`` mode;
node0 is the ``spatial-requester`` (it has no location: its position never leaves it),
node1-node8 are ``spatial-worker`` s voting by the ``oracle`` policy from a ground-truth CSV the
demo writes (it lists only the flood). Six workers stand within R = 1 km of both reported
points, one 3 km away (it joins the report's cell topic, but the exact distance check refuses
the report) and one 12 km away (it does not even join that cell). Before any daemon starts, the
genesis gets short windows (K = 3, T_c = 10 s, T_r = 4 s) and node0's funds, and every config
its role, place and policy, as ``tests/functional/test_spatial_report.py`` does.

What it shows, in order, each an expectation that fails the demo if it does not hold:

1. a FALSE report (a fire 300 m from the centre: not in the ground truth, so the nearby
   workers vote reject) is rejected, the same on every node;
2. a TRUE report (a flood at the centre, 1.5 s after the fire) is confirmed by its committee,
   the same on every node;
3. a DUPLICATE (a flood 20 m from the confirmed one, just after) is refused: the requester's
   log shows ``spatial-duplicate`` and the report never reaches the chain;
4. the two workers outside R are never asked: their role state never holds a report (polled
   through ``report_show`` all along), they are not among the confirmers, the flood's tally
   bundle (which carries every commit the requester heard) holds no commit of theirs, and no
   line of their logs names a report;
5. the rewards of SPATIAL.md §3 (``rewards ACCOUNT``: requester, each worker, miners) match the
   formulas, and the head and every balance are identical on all 9 nodes;
6. every daemon stops on SIGTERM with exit code 0.

Mining and forks: nine on-demand miners that get a transaction at about the same time may
each find a block. Blocks are therefore made slow (2**19 hashes, about a second for the whole
network) next to the time a block takes to cross the mesh (0.2 s to seconds on a busy 2-core
machine): with cheap blocks the miners' tie rule (each node on the lower-hash tip mines one more
block) answers itself for ever. A fork of a report's beacon block can still lose the report
(its commits, or its committee, differ between nodes); such a report is made once more and the
demo says so (``RETRY_CODES``, :func:`_round`). Equal-work tips split for
:data:`SPLIT_S` are ended by node0 mining one more block, as ``make demo`` does.

Rule: the library never exits the process; :func:`run_demo` returns a :class:`DemoResult`
whose ``failures`` name every unmet expectation, and :func:`run_demo_in_tmp` turns it into the
exit status.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from crowdmesh.daemon.client.demo_spatial_checks import (
    balances_tables,
    check_reports,
    reports_table,
    rewards_table,
    snapshot,
)
from crowdmesh.daemon.client.demo_spatial_setup import (
    DEFAULT_SEED,
    DEMO_TIMEOUT_S,
    DIFFICULTY_BITS,
    DUP_TRIES,
    FAR,
    FIRE,
    FLOOD,
    N_NODES,
    NEAR,
    PARAMS,
    POLL_S,
    REPORT_TIMEOUT_S,
    RETRY_CODES,
    ROUND_TRIES,
    WATCH_S,
    DemoFailed,
    DemoResult,
    Place,
    configure,
    console,
    log_lines,
    nodes_table,
    settle,
)
from crowdmesh.daemon.client.demo_spatial_setup import nodes as _nodes
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import ControlClient, RpcCallError
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet

__all__ = ["DEFAULT_SEED", "DIFFICULTY_BITS", "FAR", "NEAR", "DemoFailed", "DemoResult",
           "Place", "run_demo", "run_demo_in_tmp"]

# ---- watching ---------------------------------------------------------------------------


class _Holders:
    """Which workers' role state held which report: ``report_show`` answers ``"as":
    "spatial-worker"`` while a worker works on it. Polled over dedicated connections."""

    def __init__(self) -> None:
        self.held: dict[str, set[int]] = {}
        self.polls = 0

    async def watch(self, nodes: Sequence[NodeHandle], rids: list[str]) -> None:
        clients = [await ControlClient.connect(n.socket) for n in nodes]
        try:
            while True:
                for node, client in zip(nodes, clients, strict=True):
                    for rid in list(rids):
                        try:
                            shown = await client.call("report_show", [rid])
                        except RpcCallError:
                            continue  # report-not-found: this worker does not hold it
                        if shown.get("as") == "spatial-worker":
                            self.held.setdefault(rid, set()).add(node.index)
                self.polls += 1
                await trio.sleep(WATCH_S)
        finally:
            with trio.CancelScope(shield=True):
                for client in clients:
                    await client.aclose()


def _logged_code(node: NodeHandle, rid: str) -> str | None:
    """How the requester ended ``rid``: the code it logged, ``recorded``, or None yet."""
    for line in log_lines(node, rid):
        if "spatial-call-rejected" in line or "spatial-report-dropped" in line:
            return next((w.removeprefix("code=") for w in line.split()
                         if w.startswith("code=")), "?")
        if "spatial-report-recorded" in line:
            return "recorded"
    return None


async def _outcome(node: NodeHandle, rid: str) -> tuple[str, dict[str, Any]]:
    """Wait until the requester is done with ``rid``: (``decided``, its chain view) or
    (the code it was dropped or refused with, {})."""
    with trio.move_on_after(REPORT_TIMEOUT_S):
        while True:
            try:
                shown: dict[str, Any] = await node.rpc("report_show", [rid])
                if shown["status"] != "pending":
                    return "decided", shown
            except RpcCallError:
                pass  # report-not-found: dropped (its log says why) or not yet signed
            code = _logged_code(node, rid)
            if code not in (None, "recorded"):
                return code, {}
            await trio.sleep(POLL_S)
    raise DemoFailed(f"report {rid[:12]}: no outcome within {REPORT_TIMEOUT_S:.0f} s; "
                     f"requester log: {log_lines(node, rid)}")


# ---- the rounds -------------------------------------------------------------------------


async def _submit(node: NodeHandle, kind: str, place: Place) -> str:
    lat, lon = place.point
    reply = await node.rpc("report_submit", [kind, lat, lon, uuid.uuid4().hex])
    rid = str(reply["report_id"])
    console.print(f"  node0 reports a {kind} at {place.name} ({lat / 1e6:.6f}, {lon / 1e6:.6f})"
                  f": report {rid[:12]}")
    return rid


def _held_line(holders: _Holders, rid: str) -> str:
    held = holders.held.get(rid, set())
    return f"held by {_nodes(held)}" if held else "held by no worker"


def _revealed(node: NodeHandle, rid: str) -> int:
    """How many of the committee's reveals the requester counted for ``rid`` (its log)."""
    for line in log_lines(node, rid):
        if "spatial-report-decided" in line:
            return next((int(w.removeprefix("revealed=")) for w in line.split()
                         if w.startswith("revealed=")), 0)
    return 0


async def _round(net: Testnet, kind: str, place: Place, want: str, holders: _Holders,
                 rids: list[str], result: DemoResult, delay: float = 0.0) -> dict[str, Any]:
    """Report after ``delay`` s; return the report's id and outcome.

    A report is made once more (up to :data:`ROUND_TRIES` times) if it was lost through no
    fault of its own: dropped with one of :data:`RETRY_CODES`, or decided although fewer than
    a majority of its committee's reveals counted (after a fork of the beacon block the
    workers froze another committee than the requester did)."""
    await trio.sleep(delay)
    for attempt in range(ROUND_TRIES):
        if attempt:
            await settle(net)
        rid = await _submit(net.nodes[0], kind, place)
        rids.append(rid)
        result.attempts.append(rid)
        code, shown = await _outcome(net.nodes[0], rid)
        rids.remove(rid)  # decided: the watcher stops asking about it
        revealed = _revealed(net.nodes[0], rid)
        console.print(f"  {kind} {rid[:12]}: "
                      + (f"{shown['status']} at height {shown['height']} ({revealed} of "
                         f"{PARAMS.committee_k} reveals counted)" if shown else code)
                      + f"; {_held_line(holders, rid)}")
        if shown and shown["status"] == want and revealed >= PARAMS.majority:
            return {"id": rid, "place": place.name, "outcome": shown["status"],
                    "revealed": revealed}
        if shown and revealed >= PARAMS.majority:
            raise DemoFailed(f"the {kind} report was {shown['status']}, not {want}, with "
                             f"{revealed} reveals counted")
        why = code if not shown else f"{shown['status']} on {revealed} reveals"
        if attempt + 1 == ROUND_TRIES or (not shown and code not in RETRY_CODES):
            raise DemoFailed(f"the {kind} report was lost ({why}); requester log: "
                             f"{log_lines(net.nodes[0], rid)}")
        result.retries.append(f"{kind}: {why}")
        console.print(f"  [yellow]{kind} {rid[:12]} lost ({why}; a fork of its beacon block?): "
                      "reporting it once more[/yellow]")
    raise AssertionError("unreachable")


async def _duplicate(net: Testnet, holders: _Holders, rids: list[str],
                     result: DemoResult) -> dict[str, Any]:
    """A flood 20 m from the confirmed one; the requester must refuse its tally."""
    code, rid, place = "", "", FLOOD
    for attempt in range(DUP_TRIES):
        await settle(net)
        place = Place(f"{20 + 5 * attempt} m N", 20 + 5 * attempt, 0)
        rid = await _submit(net.nodes[0], "flood", place)
        rids.append(rid)
        result.attempts.append(rid)
        code, shown = await _outcome(net.nodes[0], rid)
        rids.remove(rid)
        if shown:
            raise DemoFailed(f"the duplicate {rid[:12]} reached the chain: {shown}")
        console.print(f"  duplicate {rid[:12]}: the requester logged code={code}; "
                      f"{_held_line(holders, rid)}")
        if code not in RETRY_CODES:
            break
        # The K lowest tickets repeated the confirmed flood's committee (freeze refuses a used
        # combination before the duplicate rule is reached), or a fork lost the commits.
        result.retries.append(f"duplicate: {code}")
        console.print(f"  [yellow]refused for another reason ({code}): reporting it once "
                      "more[/yellow]")
    return {"id": rid, "place": place.name, "outcome": f"refused ({code})"}


async def _run_rounds(net: Testnet, result: DemoResult) -> None:
    holders = _Holders()
    rids: list[str] = []
    async with trio.open_nursery() as helpers:
        helpers.start_soon(holders.watch, net.nodes[1:], rids)
        console.rule("a false report (a fire 300 m N) and, 1.5 s later, a true one (a flood)")
        t0 = time.monotonic()
        await settle(net)

        async def one(name: str, kind: str, place: Place, want: str, delay: float) -> None:
            result.reports[name] = await _round(net, kind, place, want, holders, rids, result,
                                                delay)

        # The fire first: its committee is frozen before the flood's tally can use up a
        # combination (report times are whole seconds).
        async with trio.open_nursery() as rounds:
            rounds.start_soon(one, "fire", "fire", FIRE, "rejected", 0.0)
            rounds.start_soon(one, "flood", "flood", FLOOD, "confirmed", 1.5)
        result.reports = {k: result.reports[k] for k in ("fire", "flood")}
        result.timings["fire + flood"] = time.monotonic() - t0
        console.rule("a duplicate: a flood 20 m from the confirmed one, just after")
        t0 = time.monotonic()
        result.reports["duplicate"] = await _duplicate(net, holders, rids, result)
        result.timings["duplicate"] = time.monotonic() - t0
        console.rule("every node agrees")
        tip = await settle(net)
        result.height = int(tip["height"])
        helpers.cancel_scope.cancel()
    result.held = holders.held
    for report in result.reports.values():
        report["held"] = holders.held.get(report["id"], set())
    console.print(f"  (the role state of the 8 workers was polled {holders.polls} times)")


# ---- checking ---------------------------------------------------------------------------

# ---- the demo -----------------------------------------------------------------------------


async def run_demo(root: Path, seed: int = DEFAULT_SEED,
                   difficulty_bits: int = DIFFICULTY_BITS) -> DemoResult:
    """Run the demo in ``root`` (a fresh directory with a short path); return what it found.

    Raises:
        DemoFailed: a step could not go on (the message says which and why).
        AssertionError: from the harness: a daemon did not start, sync or stop cleanly.
        trio.TooSlowError: the whole demo took over :data:`DEMO_TIMEOUT_S`.
    """
    result = DemoResult()
    started = time.monotonic()
    spec = TestnetSpec(n=N_NODES, seed=seed, topology="mesh", accounts=1,
                       difficulty_bits=difficulty_bits)
    accounts = [info.account for info in init_testnet(root, spec)]
    configure(root, accounts[0])
    console.rule(f"{N_NODES}-daemon spatial crowdsourcing around Charlotte, NC")
    console.print(f"  testnet in {root}")
    nodes_table()
    with trio.fail_after(DEMO_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            net = Testnet(root, nursery)
            await net.start_all(progress=lambda n: console.print(f"  node{n.index} ready"))
            result.timings["start"] = time.monotonic() - started
            console.print(f"all {N_NODES} daemons ready, connected (mesh) and on genesis in "
                          f"{result.timings['start']:.1f} s")
            await _run_rounds(net, result)
            await check_reports(net, accounts, result)
            reports_table(result, accounts)
            await rewards_table(net, accounts, result)
            tips, rows = await snapshot(net, accounts)
            result.height = int(tips[0]["height"])
            balances_tables(tips, rows, accounts, result)
            console.rule("stopping (SIGTERM)")
            t0 = time.monotonic()
            times = await net.stop_all()  # raises unless each exits 0 without a traceback
            result.timings["stop"] = time.monotonic() - t0
            console.print("stopped in " + ", ".join(f"{t:.1f}" for t in sorted(times)) + " s")
            result.expect(len(times) == N_NODES,
                          f"all {N_NODES} daemons stopped on SIGTERM with exit code 0")
    result.timings["total"] = time.monotonic() - started
    return result


_EXPECTED = (DemoFailed, AssertionError, trio.TooSlowError)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def run_demo_in_tmp(seed: int = DEFAULT_SEED, keep: bool = False,
                    difficulty_bits: int = DIFFICULTY_BITS) -> int:
    """Run the demo in a fresh ``/tmp/cmspatial-*`` directory, removed afterwards on success
    unless ``keep``.

    Returns:
        The exit status: 0 if every expectation held, else 1 (each failure is printed).
    """
    root = Path(tempfile.mkdtemp(prefix="cmspatial-", dir="/tmp"))
    result = DemoResult()
    try:
        result = trio.run(run_demo, root / "tn", seed, difficulty_bits)
    except (*_EXPECTED, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, _EXPECTED) for e in leaves):
            raise
        result.failures += [str(e) or f"the demo took over {DEMO_TIMEOUT_S:.0f} s"
                            for e in leaves]
    finally:
        if keep or not result.passed:
            console.print(f"testnet kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not result.passed:
        console.print("[red]demo FAILED[/red]:")
        for failure in result.failures:
            console.print(f"  - {failure}", markup=False)
        return 1
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    retries = f"; reported again: {', '.join(result.retries)}" if result.retries else ""
    console.print(f"[green]demo passed[/green] ({timings}{retries})")
    return 0
