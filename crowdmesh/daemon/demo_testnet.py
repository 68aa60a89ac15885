"""``python -m crowdmesh.daemon.demo_testnet``: 5 daemons doing real work, then a clean stop.

What it shows, in order: five daemons start on 127.0.0.1 (line topology, every node a miner
in ``on-demand`` mode) and converge on genesis; transfers between funded accounts are submitted
(each account through its own node); each new block is reported as it arrives on every node
(from the ``heads`` subscription of each control socket) with its delay after the first node
had it; at the end every node shows the same head and the same balances, and every daemon stops
on SIGTERM with exit code 0. The testnet directory is removed unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
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

from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.tx import make_transaction
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rpc_client import ControlClient
from crowdmesh.daemon.testnet import NodeHandle, Testnet, TestnetSpec, init_testnet

__all__ = ["main", "run_demo"]

console = Console()


class _Arrivals:
    """First-seen time of every block hash on every node."""

    def __init__(self, n_nodes: int) -> None:
        self.n = n_nodes
        self.seen: dict[str, dict[int, float]] = {}
        self.height: dict[str, int] = {}

    def record(self, node: int, event: dict[str, Any]) -> None:
        times = self.seen.setdefault(event["hash"], {})
        self.height[event["hash"]] = int(event["height"])
        times.setdefault(node, time.monotonic())
        if len(times) == self.n:
            first = min(times.values())
            delays = "  ".join(f"node{i} +{(times[i] - first) * 1000:4.0f} ms"
                               for i in sorted(times))
            console.print(f"  block {event['height']:>3} {event['hash'][:12]}  {delays}")


async def _watch_heads(node: NodeHandle, arrivals: _Arrivals) -> None:
    async with await ControlClient.connect(node.socket) as client:
        await client.call("subscribe", ["heads"])
        while True:
            note = await client.next_notification()
            arrivals.record(node.index, note["params"]["result"])


async def _send_transfers(net: Testnet, users: Sequence[AccountKey], count: int,
                          rng: random.Random) -> None:
    chain_id = f"testnet-{net.spec.seed}"
    nonces = {u.public: 0 for u in users}
    for _ in range(count):
        k, j = rng.sample(range(len(users)), 2)
        frm, to = users[k], users[j]
        tx = make_transaction(frm, chain_id, nonces[frm.public], TRANSFER,
                              transfer_payload(to.public, rng.randrange(1, 1000)), 0)
        nonces[frm.public] += 1
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


async def _balances_table(net: Testnet, users: Sequence[AccountKey]) -> bool:
    table = Table("account", *(f"node{n.index}" for n in net.nodes), title="balances")
    same = True
    for k, user in enumerate(users):
        row = [(await n.rpc("balance", [user.public.hex()]))["balance"] for n in net.nodes]
        same &= len(set(row)) == 1
        table.add_row(f"user{k}", *(str(b) for b in row))
    console.print(table)
    return same


async def run_demo(root: Path, n_nodes: int = 5, transfers: int = 40, seed: int = 1) -> bool:
    """Run the demo in ``root``; return True if every node agreed and stopped cleanly."""
    spec = TestnetSpec(n=n_nodes, seed=seed, topology="line", accounts=5)
    nodes = init_testnet(root, spec)
    console.rule(f"{n_nodes}-daemon testnet in {root}")
    console.print(f"ports {nodes[0].port}-{nodes[-1].port}, chain testnet-{seed}, line topology")
    users = [Keystore(root / "keys").load(f"user{k}", None) for k in range(spec.accounts)]
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
            console.rule(f"{transfers} transfers to random nodes; blocks as they arrive")
            await _send_transfers(net, users, transfers, random.Random(seed))
            await _wait_drained(net, timeout=120)
            watchers.cancel_scope.cancel()
        tip = await net.sync_blocks()
        console.print(f"every node at height {tip['height']} head {str(tip['hash'])[:16]}")
        same = await _balances_table(net, users)
        console.rule("stopping (SIGTERM)")
        times = await net.stop_all()
        console.print("stopped: " + ", ".join(f"{t:.2f} s" for t in times) + ", exit code 0")
    return same


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--transfers", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cmdemo-", dir="/tmp"))
    ok = False
    try:
        ok = trio.run(run_demo, root / "tn", args.n, args.transfers, args.seed)
    finally:
        if args.keep or not ok:
            console.print(f"testnet kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    console.print("[green]demo passed[/green]" if ok else "[red]balances differ[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
