"""``make demo-transfer``: 5 daemons doing real work, then a clean stop.

Run as ``python -m crowdmesh.daemon.client.cli_demo_testnet [-n 5] [--transfers 40] [--seed 1]
[--keep]`` (the arguments are parsed there; this module is the demo itself).

What it shows, in order: five daemons start on 127.0.0.1 (line topology, every node a miner
in ``on-demand`` mode) and converge on genesis; transfers between funded accounts are submitted
(each account through its own node); each new block is reported as it arrives on every node
(from the ``heads`` subscription of each control socket) with its delay after the first node
had it; at the end every node shows the same head and the same balances, and every daemon stops
on SIGTERM with exit code 0. The testnet directory is removed unless ``--keep`` is given.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table

from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import ControlClient
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet
from crowdmesh.daemon.client.wallet import TestnetWallet

__all__ = ["run_demo", "run_demo_in_tmp"]

console = Console()


class _Arrivals:
    """When each block became the head of each node (from the ``heads`` subscriptions)."""

    def __init__(self, n_nodes: int) -> None:
        self.n = n_nodes
        self.seen: dict[str, dict[int, float]] = {}

    def record(self, node: int, event: dict[str, Any]) -> None:
        times = self.seen.setdefault(event["hash"], {})
        first_anywhere = not times
        times.setdefault(node, time.monotonic())
        if first_anywhere:
            console.print(f"  block {event['height']:>3} {event['hash'][:10]} "
                          f"first head on node{node}")

    def row(self, block_hash: str) -> tuple[str, str]:
        """(how many nodes had it as head, spread of those arrivals in ms)."""
        times = self.seen.get(block_hash, {})
        if not times:
            return f"0/{self.n}", "-"
        spread = (max(times.values()) - min(times.values())) * 1000
        return f"{len(times)}/{self.n}", f"{spread:.0f}"


async def _watch_heads(node: NodeHandle, arrivals: _Arrivals) -> None:
    async with await ControlClient.connect(node.socket) as client:
        await client.call("subscribe", ["heads"])
        while True:
            note = await client.next_notification()
            arrivals.record(node.index, note["params"]["result"])


async def _send_transfers(net: Testnet, wallet: TestnetWallet, count: int,
                          rng: random.Random) -> None:
    for _ in range(count):
        k, j = rng.sample(range(len(wallet.keys)), 2)
        tx = wallet.transfer(k, wallet.keys[j].public, rng.randrange(1, 1000))
        # like a wallet, each account talks to one node (user k -> node k mod n)
        await net.nodes[k % len(net.nodes)].rpc("submit_tx", [tx.encode().hex()])
        await trio.sleep(0.02)


async def _wait_drained(net: Testnet, timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            sizes = [(await n.rpc("mempool"))["size"] for n in net.nodes]
            if not any(sizes):
                break
            await trio.sleep(0.2)
    # Two miners can find competing blocks at the same height; with equal work each keeps the
    # first it saw, and on-demand mining stops once the mempool is empty. One more block
    # (like a regtest `generate 1`) breaks the tie; every node then follows the heavier chain.
    tips = {t.get("hash") for t in await net.tips()}
    if len(tips) > 1:
        console.print(f"  {len(tips)} equal-work tips after the last transfer: mining one more")
        await net.mine(net.nodes[0], 1, sync=False)
    await net.sync_blocks()


async def _blocks_table(net: Testnet, height: int, arrivals: _Arrivals) -> None:
    miners = {n.info.account: f"node{n.index}" for n in net.nodes}
    table = Table("height", "hash", "txs", "mined by", "head on", "spread ms",
                  title="main chain (a block can be skipped as head when the next came at once)")
    for h in range(1, height + 1):
        block = await net.nodes[0].rpc("block", [h])
        table.add_row(str(h), block["hash"][:12], str(block["tx_count"]),
                      miners.get(block["miner"], "?"), *arrivals.row(block["hash"]))
    console.print(table)


async def _balances_table(net: Testnet, users: Sequence[AccountKey]) -> bool:
    table = Table("account", "balance", "change", "nonce",
                  f"same on all {len(net.nodes)} nodes", title="balances after the transfers")
    same = True
    for k, user in enumerate(users):
        rows = [await n.rpc("balance", [user.public.hex()]) for n in net.nodes]
        agree = len({(r["balance"], r["nonce"]) for r in rows}) == 1
        same &= agree
        table.add_row(f"user{k}", str(rows[0]["balance"]),
                      f"{rows[0]['balance'] - net.spec.balance:+d}", str(rows[0]["nonce"]),
                      "yes" if agree else "NO")
    console.print(table)
    return same


async def run_demo(root: Path, n_nodes: int = 5, transfers: int = 40, seed: int = 1) -> bool:
    """Run the demo in ``root``; return True if every node agreed and stopped cleanly."""
    # 2**16 hashes a block (tens of ms): fewer simultaneous blocks from the five miners
    spec = TestnetSpec(n=n_nodes, seed=seed, topology="line", accounts=5, difficulty_bits=16)
    nodes = init_testnet(root, spec)
    console.rule(f"{n_nodes}-daemon testnet in {root}")
    console.print(f"ports {nodes[0].port}-{nodes[-1].port}, chain testnet-{seed}, line topology")
    wallet = TestnetWallet(root, spec.accounts)
    async with trio.open_nursery() as nursery:
        net = Testnet(root, nursery)
        started = time.monotonic()
        await net.start_all(progress=lambda n: console.print(f"  node{n.index} ready"))
        console.print(f"all {n_nodes} daemons ready and on genesis "
                      f"in {time.monotonic() - started:.1f} s")
        arrivals = _Arrivals(n_nodes)
        async with trio.open_nursery() as watchers:
            for node in net.nodes:
                watchers.start_soon(_watch_heads, node, arrivals)
            console.rule(f"{transfers} transfers; each block as it reaches every node")
            await _send_transfers(net, wallet, transfers, random.Random(seed))
            await _wait_drained(net, timeout=120)
            watchers.cancel_scope.cancel()
        tip = await net.sync_blocks()
        console.print(f"every node at height {tip['height']} head {str(tip['hash'])[:16]}")
        await _blocks_table(net, int(tip["height"]), arrivals)
        same = await _balances_table(net, wallet.keys)
        console.rule("stopping (SIGTERM)")
        times = await net.stop_all()
        console.print("stopped: " + ", ".join(f"{t:.2f} s" for t in times) + ", exit code 0")
    return same


def run_demo_in_tmp(n_nodes: int = 5, transfers: int = 40, seed: int = 1,
                    keep: bool = False) -> int:
    """Run the demo in a fresh ``/tmp/cmdemo-*`` directory, removed afterwards on success
    unless ``keep``.

    Returns:
        The exit status: 0 if every node agreed and stopped cleanly, else 1.
    """
    root = Path(tempfile.mkdtemp(prefix="cmdemo-", dir="/tmp"))
    ok = False
    try:
        ok = trio.run(run_demo, root / "tn", n_nodes, transfers, seed)
    finally:
        if keep or not ok:
            console.print(f"testnet kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    console.print("[green]demo passed[/green]" if ok else "[red]balances differ[/red]")
    return 0 if ok else 1
