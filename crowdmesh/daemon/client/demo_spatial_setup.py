"""``make demo-spatial``, its ground: the testnet's places, parameters and configs, what the
demo found (:class:`DemoResult`), and the waits every phase shares.

See ``demo_spatial.py`` for what the demo shows and why it is set up this way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.table import Table

from crowdmesh.chain.codec import Address
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.config import load_config, render_config

__all__ = [
    "CENTRE",
    "DEFAULT_SEED",
    "DIFFICULTY_BITS",
    "FAR",
    "FIRE",
    "FLOOD",
    "NEAR",
    "N_NODES",
    "PARAMS",
    "DemoFailed",
    "DemoResult",
    "Place",
    "configure",
    "console",
    "log_lines",
    "nodes",
    "nodes_table",
    "settle",
]

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


def configure(root: Path, requester: str) -> None:
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


def nodes_table() -> None:
    table = Table("node", "role", "place", "to flood", "to fire", "joins cell", "vote",
                  title=f"the testnet: R = {PARAMS.radius_m} m, K = {PARAMS.committee_k}, "
                        f"T_c = {PARAMS.commit_window_s} s, T_r = {PARAMS.reveal_window_s} s")
    table.add_row("node0", "requester", "(private)", "", "", "never", "")
    for i, place in enumerate(WORKERS, start=1):
        far = i in FAR
        table.add_row(f"node{i}", "worker", place.name,
                      f"{_distance(place.point, FLOOD.point)} m",
                      f"{_distance(place.point, FIRE.point)} m",
                      "yes" if geo.cell_of(*FLOOD.point, PARAMS.h3_resolution) in geo.cells_for(
                          *place.point, PARAMS) else "no",
                      "oracle", style="yellow" if far else None)
    console.print(table)
    console.print(f"  all 9 are on-demand miners; ground truth: a flood at "
                  f"({FLOOD.point[0] / 1e6:.4f}, {FLOOD.point[1] / 1e6:.4f})")


def log_lines(node: NodeHandle, rid: str) -> list[str]:
    """This run's log lines of ``node`` naming report ``rid`` (without the timestamp)."""
    return [line.split(" ", 1)[-1] for line in node.stderr_text().splitlines() if rid in line]


async def settle(net: Testnet) -> dict[str, Any]:
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



def nodes(indices: Iterable[int]) -> str:
    """``node1,2,5`` (or ``-``)."""
    items = sorted(indices)
    return "node" + ",".join(str(i) for i in items) if items else "-"
