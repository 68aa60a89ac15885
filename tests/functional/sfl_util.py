"""Shared helpers of the multi-daemon CrowdSFL tests: roles and funds in the testnet's
configs (``crowdmesh.daemon.client.sfl_layout``), the CLI, key registration, task creation,
waiting on a phase, and the coin checks (per-account gain net of fees and block rewards,
balances equal on every live node, exact supply). Used by test_crowdsfl_task.py and
test_crowdsfl_abort.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import trio

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import burned_fee
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.client.sfl_layout import fund, lay_out_node
from tests.functional.framework import wait_until

FUNDS = 10**9


def configure(net: Testnet, roles: dict[int, list[str]], miner: int,
              workers: Sequence[int]) -> None:
    """Fund every node, give each its roles (``workers`` get ``worker`` and a shard of the
    built-in data and auto-join); only ``miner`` mines (on demand: no equal-work forks)."""
    fund(net.root / "genesis.json", [n.info.account for n in net.nodes], FUNDS)
    for node in net.nodes:
        is_worker = node.index in workers
        shard = (list(workers).index(node.index) + 1, len(workers)) if is_worker else None
        lay_out_node(node.config, ["worker"] if is_worker else roles.get(node.index, []),
                     node.index == miner, shard)


def cli(node: NodeHandle, *args: str) -> str:
    """Run ``crowdmesh --config <node> --json ARGS`` and return its stdout (status 0)."""
    done = subprocess.run([sys.executable, "-m", "crowdmesh",
                           "--config", str(node.config), "--json", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def cli_async(node: NodeHandle, *args: str) -> str:
    return await trio.to_thread.run_sync(lambda: cli(node, *args))


async def register_keys(net: Testnet, parties: Sequence[NodeHandle], miner: NodeHandle) -> None:
    """``keys elgamal register`` on each party, mined by ``miner``, until registered."""
    for node in parties:
        reply = json.loads(await cli_async(node, "keys", "elgamal", "register"))
        assert reply["call"]["kind"] == "register-key"
    await net.mine(miner, 1)

    for node in parties:
        async def registered(n: NodeHandle = node) -> bool:
            return bool((await n.rpc("elgamal_key"))["registered"])

        await wait_until(registered, 30, f"{node} key registered")


async def start_parties(net: Testnet, miner: int, workers: Sequence[int],
                        req: int = 0, csp: int = 1) -> tuple[NodeHandle, NodeHandle]:
    """Lay the testnet out (:func:`configure`), start every daemon and register the requester's
    and the CSP's ElGamal keys (mined by ``miner``); the (requester, CSP) handles."""
    configure(net, {req: ["requester"], csp: ["csp"]}, miner, workers)
    await net.start_all()
    parties = (net.nodes[req], net.nodes[csp])
    await register_keys(net, parties, net.nodes[miner])
    return parties


async def create_task(req: NodeHandle, csp: NodeHandle, *flags: str) -> str:
    """``task create --csp <csp> FLAGS`` on the requester; the task id."""
    account = (await csp.rpc("account"))["account"]
    created = json.loads(await cli_async(req, "task", "create", "--csp", account, *flags))
    assert created["task"], created
    return str(created["task"])


async def wait_phase(node: NodeHandle, task: str, phases: Sequence[str], timeout: float,
                     what: str) -> dict[str, Any]:
    """Poll ``task_show`` until the phase is one of ``phases``; the last view."""
    async def reached() -> bool:
        try:
            return (await node.rpc("task_show", [task]))["phase"] in phases
        except RpcCallError as exc:  # the create call is not in a block yet
            if "sfl-unknown-task" not in str(exc):
                raise
            return False

    await wait_until(reached, timeout, f"task {task[:12]} {what}", poll=0.3)
    return dict(await node.rpc("task_show", [task]))


async def step_to_phase(miner: NodeHandle, task: str, phases: Sequence[str], what: str,
                        max_blocks: int = 60) -> dict[str, Any]:
    """With ``miner`` (the only miner) switched to ``set_mining off`` beforehand, ``generate``
    one block at a time until the miner's view of ``task`` is in one of ``phases``; that view.

    Why: a task now runs a round in well under a second, faster than any poll, so a test that
    must act between two steps (kill a party after the blinded list, before its next call lands)
    holds the chain and lets it advance one block, that is one step, at a time."""
    for _ in range(max_blocks):
        try:
            shown = dict(await miner.rpc("task_show", [task]))
        except RpcCallError as exc:  # the create call is not in a block yet
            if "sfl-unknown-task" not in str(exc):
                raise
            shown = {"phase": None}
        if shown["phase"] in phases:
            return shown
        await trio.sleep(0.25)  # the parties' calls for the next step reach the miner's pool
        await miner.rpc("generate", [1])
    raise AssertionError(f"task {task[:12]} not {what} after {max_blocks} blocks")


async def quiet(net: Testnet, live: Sequence[NodeHandle]) -> None:
    """Nothing more will land: no call of a live node outside a block, the live mempools empty
    and equal, one head on every live node."""
    async def settled_down() -> bool:
        for node in live:
            if any(c["included_in"] is None for c in (await node.rpc("account"))["calls"]):
                return False
        if await net.sync_mempools(live, timeout=20):
            return False
        head = (await net.sync_blocks(live, timeout=20))["hash"]
        heads = [(await n.rpc("head"))["hash"] for n in live]
        return not await net.sync_mempools(live, timeout=20) and set(heads) == {head}

    await wait_until(settled_down, 40, "no call in flight, empty mempools, one head", poll=0.5)


@dataclasses.dataclass(frozen=True)
class Dump:
    """A node's main chain read once: block views by height, and (block, tx view) pairs."""

    blocks: list[dict[str, Any]]
    txs: list[tuple[dict[str, Any], dict[str, Any]]]

    def events(self, name: str) -> list[list[Any]]:
        """The fields of every contract event called ``name``."""
        return [e["fields"] for _, tx in self.txs for e in tx.get("events", [])
                if e["name"] == name]


async def dump(node: NodeHandle) -> Dump:
    """Read ``node``'s main chain (call it once nothing more will land: :func:`quiet`)."""
    blocks, txs = [], []
    height = int((await node.rpc("head"))["height"])
    for h in range(1, height + 1):
        block = await node.rpc("block", [h])
        blocks.append(block)
        for txid in block["txids"]:
            txs.append((block, await node.rpc("tx", [txid])))
    return Dump(blocks, txs)


async def gains(net: Testnet, node: NodeHandle, chain: Dump,
                accounts: Sequence[str]) -> list[int]:
    """Per account: balance − genesis funds + fees it paid − what it earned mining (block
    rewards and the unburned part of the fees in its blocks). 0 means every coin it escrowed
    came back."""
    genesis = Genesis.from_json((net.root / "genesis.json").read_text())
    start: dict[str, int] = {}
    for address, amount in genesis.alloc:
        start[address.hex()] = start.get(address.hex(), 0) + amount
    paid: dict[str, int] = {}
    mined: dict[str, int] = {}
    for block, tx in chain.txs:
        paid[tx["sender"]] = paid.get(tx["sender"], 0) + int(tx["fee"])
        tip = int(tx["fee"]) - burned_fee(int(tx["fee"]), genesis)  # the miner's share
        mined[block["miner"]] = mined.get(block["miner"], 0) + tip
    for block in chain.blocks:
        reward = genesis.reward(int(block["height"]))
        mined[block["miner"]] = mined.get(block["miner"], 0) + reward
    out = []
    for a in accounts:
        balance = int((await node.rpc("balance", [a]))["balance"])
        out.append(balance - start.get(a, 0) + paid.get(a, 0) - mined.get(a, 0))
    return out


async def assert_balances_agree(live: Sequence[NodeHandle], accounts: Sequence[str]) -> None:
    views = [[(await n.rpc("balance", [a]))["balance"] for a in accounts] for n in live]
    assert all(v == views[0] for v in views), views


async def assert_supply_rpc(net: Testnet, node: NodeHandle, chain: Dump) -> None:
    """Σ balances of every funded or mining account == genesis + block rewards − burned fees
    (no coin in escrow, none burned: what an abort leaves)."""
    genesis = Genesis.from_json((net.root / "genesis.json").read_text())
    accounts = {a.hex() for a, _ in genesis.alloc} | {b["miner"] for b in chain.blocks}
    minted = sum(genesis.reward(int(b["height"])) for b in chain.blocks)
    burned = sum(burned_fee(int(tx["fee"]), genesis) for _, tx in chain.txs)
    total = sum([int((await node.rpc("balance", [a]))["balance"]) for a in accounts])
    assert total == genesis.alloc_total() + minted - burned, (total, minted, burned)
