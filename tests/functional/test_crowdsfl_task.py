"""A whole CrowdSFL task between real daemons (started by the testnet launcher): a requester (the
one on-demand miner), a CSP and three workers, each holding a third of the built-in data. Both
parties register their ElGamal keys (``keys elgamal register``), the requester creates a
t = 2 task from the CLI (``task create``), the workers join on their own (``auto_join``), and
the task settles: every worker is paid, balances agree on every node, the supply is exact, and
``task model --out`` writes the final model as ``.npz``. A second test SIGKILLs the CSP
mid-task and restarts it; the task still settles."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from crowdmesh.chain.codec import Address
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import burned_fee
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.config import load_config, render_config
from tests.functional.framework import log, running_testnet, wait_until

pytestmark = pytest.mark.functional

FUNDS = 10**9
REQ, CSP, WORKERS = 0, 1, (2, 3, 4)
TASK_WAIT_S = 75


def _configure(net: Testnet) -> None:
    """Roles, shards and funds: only the requester mines (one miner: no equal-work forks)."""
    genesis_path = net.root / "genesis.json"
    genesis = Genesis.from_json(genesis_path.read_text())
    funded = tuple(sorted((*genesis.alloc, *((Address(bytes.fromhex(n.info.account)), FUNDS)
                                               for n in net.nodes))))
    genesis_path.write_text(dataclasses.replace(genesis, alloc=funded).to_json())
    roles = {REQ: ["miner", "requester"], CSP: ["csp"]}
    for node in net.nodes:
        cfg = load_config(node.config)
        extra = {}
        if node.index in WORKERS:
            extra = {"sfl_shard": (node.index - 1, 3), "sfl_auto_join": True}
        node.config.write_text(render_config(dataclasses.replace(
            cfg, roles=frozenset(roles.get(node.index, ["worker"])),
            mining_mode=cfg.mining_mode if node.index == REQ else "off", **extra)))


def cli(node: NodeHandle, *args: str) -> str:
    """Run ``crowdmesh --config <node> --json ARGS`` and return its stdout (status 0)."""
    done = subprocess.run([sys.executable, "-m", "crowdmesh",
                           "--config", str(node.config), "--json", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def cli_async(node: NodeHandle, *args: str) -> str:
    return await trio.to_thread.run_sync(lambda: cli(node, *args))


async def _registered(node: NodeHandle) -> bool:
    return bool((await node.rpc("elgamal_key"))["registered"])


async def _start_task(net: Testnet) -> str:
    req, csp = net.nodes[REQ], net.nodes[CSP]
    for node in (req, csp):
        reply = json.loads(await cli_async(node, "keys", "elgamal", "register"))
        assert reply["call"]["kind"] == "register-key"
    await net.mine(req, 1)
    for node in (req, csp):
        await wait_until(lambda n=node: _registered(n), 30, f"{node} key registered")
    account = (await csp.rpc("account"))["account"]
    created = json.loads(await cli_async(req, "task", "create", "--csp", account,
                                         "--rounds", "2", "--t-wait", "20", "--t-step", "30"))
    assert created["task"], created
    return str(created["task"])


async def _settled(node: NodeHandle, task: str) -> dict:
    async def done() -> bool:
        return (await node.rpc("task_show", [task]))["phase"] in ("settled", "aborted")

    await wait_until(done, TASK_WAIT_S, f"task {task[:12]} settled", poll=0.5)
    return await node.rpc("task_show", [task])


async def _quiet(net: Testnet, task: str) -> None:
    """Wait until nothing more will land: the final model is on chain (the requester posts it
    after the last selection, often a block AFTER settlement), no node holds a call that is not
    yet in a block, every mempool is empty and all nodes share one head. Reading balances or
    the supply while such a block is still spreading compares different heads."""
    req = net.nodes[REQ]

    async def final_model() -> bool:
        shown = await req.rpc("task_show", [task])
        return any(r["round"] == shown["rounds"] and "model" in r for r in shown["history"])

    await wait_until(final_model, 30, f"task {task[:12]} final model posted", poll=0.5)

    async def settled_down() -> bool:
        for node in net.nodes:
            calls = (await node.rpc("account"))["calls"]
            if any(c["included_in"] is None for c in calls):
                return False
        if await net.sync_mempools():
            return False
        head = (await net.sync_blocks())["hash"]
        return not await net.sync_mempools() and (await req.rpc("head"))["hash"] == head

    await wait_until(settled_down, 60, "no call in flight, empty mempools, one head", poll=0.5)


async def _events(node: NodeHandle, name: str) -> list[list]:
    out = []
    height = int((await node.rpc("head"))["height"])
    for h in range(1, height + 1):
        for txid in (await node.rpc("block", [h]))["txids"]:
            tx = await node.rpc("tx", [txid])
            out += [e["fields"] for e in tx.get("events", []) if e["name"] == name]
    return out


async def assert_supply_rpc(net: Testnet, node: NodeHandle) -> None:
    """Σ balances of every funded or mining account == genesis + block rewards − burned fees
    (after settlement no coin is in escrow and, every worker honest, none burned)."""
    genesis = Genesis.from_json((net.root / "genesis.json").read_text())
    accounts = {a.hex() for a, _ in genesis.alloc}
    height = int((await node.rpc("head"))["height"])
    minted = burned = 0
    for h in range(1, height + 1):
        minted += genesis.reward(h)
        for txid in (await node.rpc("block", [h]))["txids"]:
            burned += burned_fee(int((await node.rpc("tx", [txid]))["fee"]), genesis)
    total = sum([int((await node.rpc("balance", [a]))["balance"]) for a in accounts])
    assert total == genesis.alloc_total() + minted - burned, (total, minted, burned)


async def _check_settled(net: Testnet, task: str, shown: dict) -> None:
    assert shown["phase"] == "settled", shown
    assert shown["escrow"] == 0 and len(shown["workers"]) == 3
    assert [r["round"] for r in shown["history"] if "selected" in r] == [0, 1]
    await _quiet(net, task)
    paid = await _events(net.nodes[REQ], "sfl-paid")
    workers = {(await net.nodes[i].rpc("account"))["account"] for i in WORKERS}
    assert {p[1] for p in paid} == workers and all(int(p[2]) > 0 for p in paid), paid
    log.info("task %s settled: rewards %s", task[:12], [p[2] for p in paid])
    accounts = [(await n.rpc("account"))["account"] for n in net.nodes]
    views = [[(await n.rpc("balance", [a]))["balance"] for a in accounts] for n in net.nodes]
    assert all(v == views[0] for v in views), views  # every node agrees
    await assert_supply_rpc(net, net.nodes[WORKERS[0]])


async def test_a_task_runs_from_the_cli_to_settlement_between_five_daemons(tmp_path: Path):
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        _configure(net)
        await net.start_all()
        task = await _start_task(net)
        shown = await _settled(net.nodes[REQ], task)
        await _check_settled(net, task, shown)
        listed = await net.nodes[WORKERS[0]].rpc("task_list")
        assert [(t["task"], t["phase"]) for t in listed] == [(task, "settled")]
        watched = await cli_async(net.nodes[CSP], "task", "watch", task, "--for", "10")
        assert json.loads(watched)["phase"] == "settled"
        out = tmp_path / "model.npz"
        wrote = json.loads(await cli_async(net.nodes[WORKERS[1]], "task", "model", task,
                                           "--out", str(out)))
        assert wrote["round"] == 2 and wrote["layers"] == [30, 6, 2]
        with np.load(out) as npz:
            assert npz["w0"].shape == (30, 6) and npz["b1"].shape == (2,)
            assert np.all(np.isfinite(npz["w0"]))


async def test_the_task_settles_although_the_csp_is_killed_mid_task(tmp_path: Path):
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        _configure(net)
        await net.start_all()
        task = await _start_task(net)
        req, csp = net.nodes[REQ], net.nodes[CSP]

        async def training() -> bool:
            return (await req.rpc("task_show", [task]))["phase"] not in ("joining",)

        await wait_until(training, 40, "round 0 started", poll=0.2)
        await csp.kill()  # SIGKILL: its role store and calls in flight survive
        await csp.start(net.nursery)
        await csp.wait_ready()
        shown = await _settled(req, task)
        await _check_settled(net, task, shown)
