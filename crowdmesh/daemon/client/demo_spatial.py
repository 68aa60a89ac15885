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

import dataclasses
import hashlib
import itertools
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.table import Table

from crowdmesh.chain.codec import Address, unpack
from crowdmesh.chain.contracts.spatial import geo, rewards
from crowdmesh.chain.contracts.spatial.protocol import Commit, committee_hash
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import ControlClient, RpcCallError
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet
from crowdmesh.daemon.config import load_config, render_config

__all__ = ["DemoFailed", "DemoResult", "Place", "run_demo", "run_demo_in_tmp"]

console = Console()

CENTRE: Final = (35_227_100, -80_843_100)  # Charlotte, NC, in micro-degrees
PARAMS: Final = SpatialParams(committee_k=3, commit_window_s=10, reveal_window_s=4)
N_NODES: Final = 9
# The seed picks the ports (and chain id). Seed 2's block, 25454-25462, lies below Linux's
# ephemeral range (32768-60999), where an outgoing connection of any process can take a port
# between the testnet's init and a daemon's listen.
DEFAULT_SEED: Final = 2
NEAR: Final = frozenset(range(1, 7))  # the workers within R
FAR: Final = frozenset({7, 8})  # 3 km and 12 km away
DIFFICULTY_BITS: Final = 19  # see "Mining and forks" in the module docstring
FUNDING: Final = 10**9  # node0's genesis balance: pays its beacon, tick and tally fees
REPORT_TIMEOUT_S: Final = 40.0
SETTLE_TIMEOUT_S: Final = 60.0
DEMO_TIMEOUT_S: Final = 240.0
POLL_S: Final = 0.2
SPLIT_S: Final = 5.0  # equal-work tips split this long: node0 mines one more block
WATCH_S: Final = 0.5  # how often the workers' role state is polled
ROUND_TRIES: Final = 3  # a report lost to a fork of its beacon block is made again
DUP_TRIES: Final = 3
# Codes that end a report through no fault of its own: a fork of the beacon block lost the
# commits, or the K lowest tickets repeated a used committee. Such a report is made again.
RETRY_CODES: Final = frozenset({"spatial-too-few-commits", "spatial-no-beacon",
                                "spatial-combination-used"})


@dataclass(frozen=True, slots=True)
class Place:
    """A named point ``north_m`` / ``east_m`` metres from :data:`CENTRE`."""

    name: str
    north_m: int
    east_m: int

    @property
    def point(self) -> tuple[int, int]:
        """The point in micro-degrees (a local flat offset; every distance shown is then
        measured by the network's own haversine)."""
        lat = CENTRE[0] + round(self.north_m * 1e6 / 111_195)
        scale = 111_195 * math.cos(math.radians(CENTRE[0] / 1e6))
        return lat, CENTRE[1] + round(self.east_m * 1e6 / scale)


WORKERS: Final = (  # node1..node8
    Place("150 m N", 150, 0), Place("250 m E", 0, 250), Place("250 m SW", -200, -150),
    Place("460 m NW", 350, -300), Place("530 m SE", -400, 350), Place("510 m W", 100, -500),
    Place("3 km N", 3000, 0), Place("12 km E", 0, 12_000),
)
FLOOD: Final = Place("centre", 0, 0)
FIRE: Final = Place("300 m N", 300, 0)


class DemoFailed(Exception):
    """A step could not go on (the message says which and why)."""


@dataclass(slots=True)
class DemoResult:
    """What :func:`run_demo` found.

    Attributes:
        failures: every unmet expectation (empty: the demo passed).
        reports: per report (``fire``, ``flood``, ``duplicate``): its id, outcome, height,
            committee, confirmers, and which workers held it.
        attempts: every report id submitted (a report made again has several);
            ``held``: per report id, the workers whose role state held it.
        height: the final common height; ``retries``: why reports were made again;
            ``timings``: seconds per phase.
    """

    failures: list[str] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)
    held: dict[str, set[int]] = field(default_factory=dict)
    height: int = 0
    retries: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True iff every expectation held."""
        return not self.failures

    def expect(self, ok: bool, what: str) -> bool:
        """Record ``what`` as failed unless ``ok``; print it either way."""
        console.print(("  [green]ok[/green]     " if ok else "  [red]FAILED[/red] ") + what)
        if not ok:
            self.failures.append(what)
        return ok


# ---- setup --------------------------------------------------------------------------------


def _distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    return geo.distance_m(a[0], a[1], b[0], b[1])


def _joins_cell(worker: tuple[int, int], report: tuple[int, int]) -> bool:
    """Whether a worker at ``worker`` joins the cell topic of ``report``, as the daemon does:
    the cells within ``max(h3_rings, ring_bound(R))`` rings of its own."""
    rings = max(PARAMS.h3_rings, geo.ring_bound(PARAMS.radius_m, PARAMS.h3_resolution))
    return geo.cell_of(*report, PARAMS.h3_resolution) in geo.cells_around(
        *worker, PARAMS.h3_resolution, rings)


def _configure(root: Path, requester: str) -> None:
    """Short windows and the requester's funds in the genesis; role, place and the oracle
    policy in every config."""
    truth = root / "truth.csv"
    lat, lon = FLOOD.point
    truth.write_text(f"type,lat,lon\nflood,{lat / 1e6:.6f},{lon / 1e6:.6f}\n")
    genesis_path = root / "genesis.json"
    genesis = Genesis.from_json(genesis_path.read_text())
    alloc = tuple(sorted([*genesis.alloc, (Address(bytes.fromhex(requester)), FUNDING)]))
    genesis_path.write_text(dataclasses.replace(genesis, spatial=PARAMS, alloc=alloc).to_json())
    for i in range(N_NODES):
        config = root / f"node{i}" / "crowdmesh.toml"
        cfg = load_config(config)
        if i == 0:
            cfg = dataclasses.replace(cfg, roles=frozenset({"miner", "spatial-requester"}))
        else:
            cfg = dataclasses.replace(
                cfg, roles=frozenset({"miner", "spatial-worker"}), location=WORKERS[i - 1].point,
                vote_policy="oracle", ground_truth_path=truth)
        config.write_text(render_config(cfg))


def _nodes_table() -> None:
    table = Table("node", "role", "place", "to flood", "to fire", "joins cell", "vote",
                  title=f"the testnet: R = {PARAMS.radius_m} m, K = {PARAMS.committee_k}, "
                        f"T_c = {PARAMS.commit_window_s} s, T_r = {PARAMS.reveal_window_s} s")
    table.add_row("node0", "requester", "(private)", "", "", "never", "")
    for i, place in enumerate(WORKERS, start=1):
        far = i in FAR
        table.add_row(f"node{i}", "worker", place.name,
                      f"{_distance(place.point, FLOOD.point)} m",
                      f"{_distance(place.point, FIRE.point)} m",
                      "yes" if _joins_cell(place.point, FLOOD.point) else "no",
                      "oracle", style="yellow" if far else None)
    console.print(table)
    console.print(f"  all 9 are on-demand miners; ground truth: a flood at "
                  f"({FLOOD.point[0] / 1e6:.4f}, {FLOOD.point[1] / 1e6:.4f})")


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


def _log_lines(node: NodeHandle, rid: str) -> list[str]:
    """This run's log lines of ``node`` naming report ``rid`` (without the timestamp)."""
    return [line.split(" ", 1)[-1] for line in node.stderr_text().splitlines() if rid in line]


def _logged_code(node: NodeHandle, rid: str) -> str | None:
    """How the requester ended ``rid``: the code it logged, ``recorded``, or None yet."""
    for line in _log_lines(node, rid):
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
                     f"requester log: {_log_lines(node, rid)}")


async def _settle(net: Testnet) -> dict[str, Any]:
    """Wait for empty mempools and one head on every node. Equal-work tips that stay split
    (on-demand miners keep answering each other's ties) are ended by node0 mining one
    more block, as ``make demo`` does."""
    deadline = trio.current_time() + SETTLE_TIMEOUT_S
    split_since: float | None = None
    while trio.current_time() < deadline:
        tips = await net.tips()
        pools = [(await n.rpc("mempool"))["size"] for n in net.nodes]
        if len({t.get("hash") for t in tips}) == 1 and not any(pools):
            return tips[0]
        if len({t.get("hash") for t in tips}) > 1:
            split_since = split_since or trio.current_time()
            if trio.current_time() - split_since > SPLIT_S:
                console.print(f"  tips split for {SPLIT_S:.0f} s (heights "
                              f"{sorted({int(t.get('height') or 0) for t in tips})}): "
                              "node0 mines one more block")
                await net.nodes[0].rpc("generate", [1])
                split_since = None
        else:
            split_since = None
        await trio.sleep(POLL_S)
    tips = await net.tips()
    raise DemoFailed(f"no common head within {SETTLE_TIMEOUT_S:.0f} s: "
                     + ", ".join(f"node{t['node']}@{t.get('height')}" for t in tips))


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
    for line in _log_lines(node, rid):
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
            await _settle(net)
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
                             f"{_log_lines(net.nodes[0], rid)}")
        result.retries.append(f"{kind}: {why}")
        console.print(f"  [yellow]{kind} {rid[:12]} lost ({why}; a fork of its beacon block?): "
                      "reporting it once more[/yellow]")
    raise AssertionError("unreachable")


async def _duplicate(net: Testnet, holders: _Holders, rids: list[str],
                     result: DemoResult) -> dict[str, Any]:
    """A flood 20 m from the confirmed one; the requester must refuse its tally."""
    code, rid, place = "", "", FLOOD
    for attempt in range(DUP_TRIES):
        await _settle(net)
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
        await _settle(net)

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
        tip = await _settle(net)
        result.height = int(tip["height"])
        helpers.cancel_scope.cancel()
    result.held = holders.held
    for report in result.reports.values():
        report["held"] = holders.held.get(report["id"], set())
    console.print(f"  (the role state of the 8 workers was polled {holders.polls} times)")


# ---- checking ---------------------------------------------------------------------------


def _nodes(indices: Iterable[int]) -> str:
    """``node1,2,5`` (or ``-``)."""
    items = sorted(indices)
    return "node" + ",".join(str(i) for i in items) if items else "-"


def _names(accounts: Sequence[str], keys: Iterable[str]) -> str:
    index = {a: i for i, a in enumerate(accounts)}
    return _nodes(index[k] for k in keys if k in index)


def _committee_of(h_s: str, accounts: Sequence[str], members: Iterable[int]) -> list[int]:
    """Which K of ``members`` have committee hash ``h_s`` (a reject names only H(S))."""
    for combo in itertools.combinations(sorted(members), PARAMS.committee_k):
        if committee_hash([bytes.fromhex(accounts[i]) for i in combo]).hex() == h_s:
            return list(combo)
    return []


async def _tally_commits(node: NodeHandle, rid: str, height: int) -> list[str]:
    """The workers whose commits the confirmed report's tally carries (S first, in ticket
    order, then every other valid commit the requester heard)."""
    block = await node.rpc("block", [height])
    for txid in block["txids"]:
        tx = await node.rpc("tx", [txid])
        if tx["kind"] != "spatial-tally":
            continue
        _, raw_commits, _ = unpack(bytes.fromhex(tx["payload"]), 1 << 24)
        commits = [Commit.decode(c) for c in raw_commits]
        if commits and commits[0].report_id.hex() == rid:
            return [c.worker.hex() for c in commits]
    raise DemoFailed(f"no spatial-tally for {rid[:12]} in block {height}")


async def _check_reports(net: Testnet, accounts: Sequence[str], result: DemoResult) -> None:
    fire, flood, dup = (result.reports[k] for k in ("fire", "flood", "duplicate"))
    for name, report in (("fire", fire), ("flood", flood)):
        views = [await n.rpc("report_show", [report["id"]]) for n in net.nodes]
        first = views[0]
        report.update(height=first["height"], h_s=first["committee"],
                      confirmers=first.get("confirmers", []))
        result.expect(all(v == first for v in views),
                      f"{name}: all {N_NODES} nodes record the same decision "
                      f"({first['status']} at height {first['height']})")
    bundle = await _tally_commits(net.nodes[0], flood["id"], flood["height"])
    index = {a: i for i, a in enumerate(accounts)}
    flood["committee"] = [index[w] for w in bundle[:PARAMS.committee_k]]
    flood["committed"] = {index[w] for w in bundle}
    fire["committee"] = _committee_of(fire["h_s"], accounts, fire["held"])
    result.expect(fire["outcome"] == "rejected",
                  "FALSE report (fire, not in the ground truth) rejected by committee "
                  f"{_nodes(fire['committee'])}")
    result.expect(flood["outcome"] == "confirmed" and len(flood["confirmers"]) >= PARAMS.majority,
                  f"TRUE report (flood) confirmed by {_names(accounts, flood['confirmers'])} "
                  f"(committee {_nodes(flood['committee'])})")
    result.expect("spatial-duplicate" in " ".join(_log_lines(net.nodes[0], dup["id"])),
                  "DUPLICATE refused: the requester's log shows spatial-duplicate")
    try:
        await net.nodes[4].rpc("report_show", [dup["id"]])
        on_chain = True
    except RpcCallError:
        on_chain = False
    result.expect(not on_chain, "the duplicate never reached the chain (report-not-found)")
    for name, report in result.reports.items():
        held = report["held"]
        result.expect(len(held & NEAR) >= PARAMS.committee_k,
                      f"{name}: held by {len(held & NEAR)} of the 6 workers within R "
                      f"({_nodes(held)})")
    far_held = set().union(*(result.held.get(rid, set()) for rid in result.attempts)) & FAR
    result.expect(not far_held, f"node7 and node8 held none of the {len(result.attempts)} "
                                "reports made (their role state, polled all along)"
                                + (f": {_nodes(far_held)} did" if far_held else ""))
    far_keys = {accounts[i] for i in FAR}
    result.expect(not far_keys & set(bundle),
                  f"the flood's tally carries commits of {_nodes(flood['committed'])} only: "
                  "none from node7 (3 km) or node8 (12 km)")
    result.expect(not far_keys & set(flood["confirmers"]),
                  "node7 and node8 are not among the confirmers")
    quiet = not any(rid in line for i in FAR for line in net.nodes[i].stderr_text().splitlines()
                    for rid in result.attempts)
    result.expect(quiet, "no line of node7's or node8's log names any report")


def _reports_table(result: DemoResult, accounts: Sequence[str]) -> None:
    def ids(nodes: Iterable[int]) -> str:
        return ",".join(str(i) for i in sorted(nodes)) or "-"

    index = {a: i for i, a in enumerate(accounts)}
    table = Table("report", "outcome", "held by (node)", "committee", "confirmers",
                  title="reports (the workers by node number)")
    for name, r in result.reports.items():
        outcome = r["outcome"].replace(" (", "\n").rstrip(")")
        if "height" in r:
            outcome += f"\nat height {r['height']}"
        table.add_row(f"{name}\n{r['place']}\n{r['id'][:10]}", outcome, ids(r["held"]),
                      ids(r.get("committee", [])),
                      ids(index[c] for c in r.get("confirmers", []) if c in index))
    console.print(table)


async def _rewards_table(net: Testnet, accounts: Sequence[str], result: DemoResult) -> None:
    """``rewards ACCOUNT`` of every node's account, read from one node at one head."""
    confirmers = set(result.reports["flood"]["confirmers"])
    want_req = rewards.requester_reward(PARAMS, 0, 1)
    want_worker = rewards.worker_reward(PARAMS, 0, 1, len(confirmers))
    node = net.nodes[5]
    for _ in range(10):
        before = await node.rpc("head")
        rows = [await node.rpc("rewards", [a]) for a in accounts]
        if await node.rpc("head") == before:
            break
    else:
        raise DemoFailed("the head kept moving while rewards were read")
    table = Table("node", "requester", "worker", "confirmed", "blocks", "miner", "§3 formula",
                  title=f"rewards ACCOUNT, as requester, worker and miner (asked node5 at "
                        f"height {before['height']})")
    all_ok = True
    for i, (account, row) in enumerate(zip(accounts, rows, strict=True)):
        want = (want_req, 0) if i == 0 else (0, want_worker if account in confirmers else 0)
        ok = (row["requester"], row["worker"]) == want
        all_ok &= ok
        table.add_row(f"node{i}", str(row["requester"]), str(row["worker"]),
                      str(row["confirmations"]), str(row["blocks"]), str(row["miner"]),
                      f"{sum(want)} {'ok' if ok else 'DIFFERS'}")
    console.print(table)
    console.print(f"  requester ⌊B·α_r·Φ(0,1)⌋ = {want_req}; each of N_w = {len(confirmers)} "
                  f"confirmers ⌊B·α_w·Φ(0,1)·m/N_w⌋ = {want_worker} (m = {PARAMS.majority}); "
                  "a miner earns the block reward per block")
    result.expect(all_ok, "rewards match SPATIAL.md §3: the requester, each confirmer; the "
                          "rejecting, unselected and far workers nothing")
    blocks = sum(r["blocks"] for r in rows)
    result.expect(blocks == before["height"],
                  f"every block's miner is paid ({blocks} blocks of {before['height']})")


async def _snapshot(net: Testnet, accounts: Sequence[str]) -> tuple[
        list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Every node's head and every account's balance as every node sees it, read at one
    common head (read again if a block arrived meanwhile)."""
    for _ in range(10):
        before = await net.tips()
        rows = [[await n.rpc("balance", [a]) for a in accounts] for n in net.nodes]
        after = await net.tips()
        if before == after and len({t.get("hash") for t in after}) == 1:
            return after, rows
        await _settle(net)
    raise DemoFailed("the head kept moving while balances were read")


def _balances_tables(tips: list[dict[str, Any]], rows: list[list[dict[str, Any]]],
                     accounts: Sequence[str], result: DemoResult) -> None:
    table = Table("account", "balance", "nonce", "identical on",
                  title=f"balances at height {tips[0]['height']} (base units)")
    same = True
    for k in range(len(accounts)):
        seen = {(rows[n][k]["balance"], rows[n][k]["nonce"]) for n in range(N_NODES)}
        same &= len(seen) == 1
        agree = sum((rows[n][k]["balance"], rows[n][k]["nonce"]) ==
                    (rows[0][k]["balance"], rows[0][k]["nonce"]) for n in range(N_NODES))
        table.add_row(f"node{k} {accounts[k][:8]}", f"{rows[0][k]['balance']:,}",
                      str(rows[0][k]["nonce"]), f"{agree}/{N_NODES} nodes")
    console.print(table)
    view = Table("node", "height", "head", "balances digest", "sum of balances",
                 title="what each node sees")
    for n, tip in enumerate(tips):
        pairs = [(r["account"], r["balance"], r["nonce"]) for r in rows[n]]
        digest = hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]
        view.add_row(f"node{n}", str(tip["height"]), str(tip["hash"])[:16], digest,
                     f"{sum(r['balance'] for r in rows[n]):,}")
    console.print(view)
    result.expect(len({(t["height"], t["hash"]) for t in tips}) == 1,
                  f"all {N_NODES} nodes have the same head at height {tips[0]['height']}")
    result.expect(same, f"every balance and nonce is identical on all {N_NODES} nodes")


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
    _configure(root, accounts[0])
    console.rule(f"{N_NODES}-daemon spatial crowdsourcing around Charlotte, NC")
    console.print(f"  testnet in {root}")
    _nodes_table()
    with trio.fail_after(DEMO_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            net = Testnet(root, nursery)
            await net.start_all(progress=lambda n: console.print(f"  node{n.index} ready"))
            result.timings["start"] = time.monotonic() - started
            console.print(f"all {N_NODES} daemons ready, connected (mesh) and on genesis in "
                          f"{result.timings['start']:.1f} s")
            await _run_rounds(net, result)
            await _check_reports(net, accounts, result)
            _reports_table(result, accounts)
            await _rewards_table(net, accounts, result)
            tips, rows = await _snapshot(net, accounts)
            result.height = int(tips[0]["height"])
            _balances_tables(tips, rows, accounts, result)
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
