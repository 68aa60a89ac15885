"""Benchmark of the daemon network (real daemon processes on 127.0.0.1) against the issue's targets.

Usage: .venv/bin/python bench/network.py [--json FILE] [--runs N] [--blocks K] [--txs N]

Rows:
  propagation_p50_ms / p95   a 5-daemon line testnet (4 hops end to end), mining off; K blocks
                             mined one at a time by ``generate 1`` on rotating nodes. For each
                             block, the delay until the LAST node connected it, from the ``ts``
                             each daemon stamps on its ``heads`` event (same host clock).
  tx_per_s                   the same testnet, every node mining on-demand: N transfers from 40
                             accounts submitted concurrently to all 5 nodes over their control
                             sockets; N / (first submit → every node has every transfer mined,
                             same head, empty mempools and gap buffers).
  sync_blocks_per_s          a 2-daemon testnet: node 0 mines 1,000 blocks, then node 1 starts and
                             syncs them over /crowdmesh/sync/1.0.0; blocks / (sync-started →
                             sync-finished in node 1's log). The wall time from spawning node 1
                             to an equal head (process start-up included) is shown beside it.
  idle_rss_mb / idle_cpu_pct the 5 daemons after the run, idle and not mining: VmRSS and
                             utime+stime over 10 s from /proc; the maximum over the daemons.
Numbers are medians over --runs runs (default 1); the load average is printed before and after
because the 2-core machine is shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import ControlClient
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet
from crowdmesh.daemon.client.wallet import TestnetWallet

TARGETS = {"propagation_p50_ms": ("<=", 100.0), "propagation_p95_ms": ("<=", 250.0),
           "tx_per_s": (">=", 200.0), "sync_blocks_per_s": (">=", 500.0),
           "idle_rss_mb": ("<=", 150.0), "idle_cpu_pct": ("<=", 2.0)}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def collect_heads(node: NodeHandle, sink: dict[str, dict[int, float]]) -> None:
    """Record, per block hash, when each node connected it (the daemon's own ``ts``)."""
    client = await ControlClient.connect(node.socket)
    async with client:
        await client.call("subscribe", ["heads"])
        while True:
            note = await client.next_notification()
            params = note.get("params", {})
            event = params.get("result", params.get("event", params))
            if isinstance(event, dict) and "hash" in event and "ts" in event:
                sink.setdefault(event["hash"], {})[node.index] = float(event["ts"])


async def measure_propagation(net: Testnet, blocks: int) -> list[float]:
    """Delays (ms) until the last node connected each of ``blocks`` blocks."""
    seen: dict[str, dict[int, float]] = {}
    delays = []
    async with trio.open_nursery() as nursery:
        for node in net.nodes:
            nursery.start_soon(collect_heads, node, seen)
        await trio.sleep(0.5)  # subscriptions registered
        for k in range(blocks):
            miner = net.nodes[k % len(net.nodes)]
            (block_hash,) = await miner.rpc("generate", [1])
            with trio.fail_after(30):
                while len(seen.get(block_hash, {})) < len(net.nodes):
                    await trio.sleep(0.01)
            stamps = seen[block_hash]
            delays.append(1000 * (max(stamps.values()) - stamps[miner.index]))
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return delays


async def submit_share(node: NodeHandle, raws: list[str]) -> None:
    client = await ControlClient.connect(node.socket)
    async with client:
        for raw in raws:
            await client.call("submit_tx", [raw])


async def settled(net: Testnet, sink: bytes, expected: int) -> bool:
    heads = set()
    for node in net.nodes:
        pool = await node.rpc("mempool")
        if pool["size"] or pool.get("gap_buffered", 0):
            return False
        if (await node.rpc("balance", [sink.hex()]))["balance"] != expected:
            return False
        heads.add((await node.rpc("head"))["hash"])
    return len(heads) == 1


async def measure_throughput(net: Testnet, n_txs: int) -> float:
    """Transfers per second, submitted → mined on every node."""
    wallet = TestnetWallet(net.root, net.spec.accounts)
    wallet.continue_from([  # after earlier runs on this testnet
        (await net.nodes[0].rpc("balance", [key.public.hex()]))["pending_nonce"]
        for key in wallet.keys])
    sink = os.urandom(32)
    rng = random.Random(1)
    shares: list[list[str]] = [[] for _ in net.nodes]
    for i in range(n_txs):
        tx = wallet.transfer(i % len(wallet.keys), sink, 1)
        shares[rng.randrange(len(net.nodes))].append(tx.encode().hex())
    for node in net.nodes:
        await node.rpc("set_mining", ["on-demand"])
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for node, share in zip(net.nodes, shares, strict=True):
            nursery.start_soon(submit_share, node, share)
    submitted = time.monotonic() - started
    with trio.fail_after(300):
        while not await settled(net, sink, n_txs):
            await trio.sleep(0.05)
    elapsed = time.monotonic() - started
    for node in net.nodes:
        await node.rpc("set_mining", ["off"])
    print(f"  {n_txs} transfers: submitted in {submitted:.2f} s, mined everywhere in "
          f"{elapsed:.2f} s")
    return n_txs / elapsed


def proc_sample(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, cpu


async def measure_idle(net: Testnet, seconds: float = 10.0) -> tuple[float, float]:
    """(max RSS MB, max CPU % of one core) over the idle daemons."""
    await trio.sleep(2.0)  # let the last blocks and heartbeats settle
    pids = [n.process.pid for n in net.nodes if n.process is not None]
    before = {pid: proc_sample(pid) for pid in pids}
    t0 = time.monotonic()
    await trio.sleep(seconds)
    dt = time.monotonic() - t0
    after = {pid: proc_sample(pid) for pid in pids}
    rss = max(after[p][0] for p in pids)
    cpu = max(100 * (after[p][1] - before[p][1]) / dt for p in pids)
    return rss, cpu


def log_times(text: str, event: str) -> list[float]:
    """Timestamps (seconds) of every ``event=<event>`` line of a daemon log."""
    out = []
    for line in text.splitlines():
        if f"event={event}" in line:
            stamp = line.split("ts=", 1)[1].split()[0]
            whole = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
            out.append(whole + float(stamp[19:23]))
    return out


async def measure_sync(root: Path, blocks: int = 1000) -> tuple[float, float]:
    """(blocks/s inside the late node, wall seconds from spawn to equal head)."""
    init_testnet(root, TestnetSpec(n=2, seed=23, topology="line", mining_mode="off",
                                   difficulty_bits=4))
    async with trio.open_nursery() as nursery:
        net = Testnet(root, nursery)
        first, late = net.nodes
        await first.start(nursery)
        await first.wait_ready()
        for _ in range(blocks // 250):
            await first.rpc("generate", [250])
        started = time.monotonic()
        await late.start(nursery)
        await late.wait_ready()
        await net.sync_blocks(timeout=300)
        wall = time.monotonic() - started
        await late.wait_for_log(["event=sync-finished"], timeout=30)  # logged after the imports
        text = late.stderr_text()
        span = log_times(text, "sync-finished")[-1] - log_times(text, "sync-started")[0]
        rate = blocks / max(1e-3, span)
        await net.stop_all()
        nursery.cancel_scope.cancel()
    return rate, wall


async def one_run(tmp: Path, blocks: int, n_txs: int, console: Console) -> dict[str, float]:
    init_testnet(tmp / "five", TestnetSpec(n=5, seed=19, topology="line", mining_mode="off",
                                           accounts=40))
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        net = Testnet(tmp / "five", nursery)
        await net.start_all()
        console.print("5 daemons up; measuring propagation")
        delays = await measure_propagation(net, blocks)
        out["propagation_p50_ms"] = statistics.median(delays)
        out["propagation_p95_ms"] = percentile(delays, 95)
        console.print("measuring transfer throughput")
        out["tx_per_s"] = await measure_throughput(net, n_txs)
        console.print("measuring idle RSS and CPU")
        out["idle_rss_mb"], out["idle_cpu_pct"] = await measure_idle(net)
        await net.stop_all()
        nursery.cancel_scope.cancel()
    console.print("measuring late-joiner sync of 1,000 blocks")
    out["sync_blocks_per_s"], out["sync_wall_s"] = await measure_sync(tmp / "sync")
    return out


def render(console: Console, runs: list[dict[str, float]]) -> dict[str, float]:
    table = Table(title=f"bench/network.py — median of {len(runs)} run(s)")
    for col in ("metric", "median", "min", "max", "target", "met"):
        table.add_column(col)
    result: dict[str, float] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        med = statistics.median(values)
        result[key] = round(med, 3)
        op, goal = TARGETS.get(key, ("", 0.0))
        met = "" if not op else ("yes" if (med <= goal if op == "<=" else med >= goal) else "NO")
        table.add_row(key, f"{med:.2f}", f"{min(values):.2f}", f"{max(values):.2f}",
                      f"{op} {goal:g}" if op else "-", met)
    console.print(table)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the medians as JSON")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=40, help="blocks for propagation")
    parser.add_argument("--txs", type=int, default=1000, help="transfers for throughput")
    parser.add_argument("--keep", action="store_true", help="keep the testnet directories")
    args = parser.parse_args(argv)
    console = Console()
    console.print(f"load average before: {os.getloadavg()}")
    runs: list[dict[str, Any]] = []
    for _ in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="cmbench-", dir="/tmp"))
        console.print(f"testnets in {tmp}")
        runs.append(trio.run(one_run, tmp, args.blocks, args.txs, console))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"load average after: {os.getloadavg()}")
    result = render(console, runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
