"""A whole CrowdSFL task between real daemons (started by the testnet launcher): a requester (the
one on-demand miner), a CSP and three workers, each holding a third of the built-in data. Both
parties register their ElGamal keys (``keys elgamal register``), the requester creates a
t = 2 task from the CLI (``task create``), the workers join on their own (``auto_join``), and
the task settles: every worker is paid, balances agree on every node, the supply is exact, and
``task model --out`` writes the final model as ``.npz``. A second test SIGKILLs the CSP
mid-task and restarts it; the task still settles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from tests.functional.framework import log, running_testnet, wait_until
from tests.functional.sfl_util import (
    assert_balances_agree,
    assert_supply_rpc,
    cli_async,
    create_task,
    dump,
    quiet,
    start_parties,
    step_to_phase,
    wait_phase,
)

pytestmark = pytest.mark.functional

REQ, CSP, WORKERS = 0, 1, (2, 3, 4)
TASK_WAIT_S = 75


async def _start_task(net: Testnet) -> str:
    """Roles, shards, funds and keys (only the requester mines: no equal-work forks), then a
    t = 2 task from the CLI."""
    req, csp = await start_parties(net, REQ, WORKERS)
    return await create_task(req, csp, "--rounds", "2", "--t-wait", "20", "--t-step", "30")


async def _settled(node: NodeHandle, task: str) -> dict:
    return await wait_phase(node, task, ("settled", "aborted"), TASK_WAIT_S, "settled")


async def _quiet(net: Testnet, task: str) -> None:
    """Wait until nothing more will land: the final model is on chain (the requester posts it
    after the last selection, often a block AFTER settlement), then no call in flight, empty
    mempools and one head. Reading balances or the supply while such a block is still
    spreading compares different heads."""
    req = net.nodes[REQ]

    async def final_model() -> bool:
        shown = await req.rpc("task_show", [task])
        return any(r["round"] == shown["rounds"] and "model" in r for r in shown["history"])

    await wait_until(final_model, 30, f"task {task[:12]} final model posted", poll=0.5)
    await quiet(net, net.nodes)


async def _check_settled(net: Testnet, task: str, shown: dict) -> None:
    assert shown["phase"] == "settled", shown
    assert shown["escrow"] == 0 and len(shown["workers"]) == 3
    assert [r["round"] for r in shown["history"] if "selected" in r] == [0, 1]
    await _quiet(net, task)
    chain = await dump(net.nodes[REQ])
    paid = chain.events("sfl-paid")
    workers = {(await net.nodes[i].rpc("account"))["account"] for i in WORKERS}
    assert {p[1] for p in paid} == workers and all(int(p[2]) > 0 for p in paid), paid
    log.info("task %s settled: rewards %s", task[:12], [p[2] for p in paid])
    accounts = [(await n.rpc("account"))["account"] for n in net.nodes]
    await assert_balances_agree(net.nodes, accounts)  # every node agrees
    await assert_supply_rpc(net, net.nodes[WORKERS[0]], chain)


async def test_a_task_runs_from_the_cli_to_settlement_between_five_daemons(tmp_path: Path):
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
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
        req, csp = await start_parties(net, REQ, WORKERS)
        await req.rpc("set_mining", ["off"])  # the requester mines: one step per block
        task = await create_task(req, csp, "--rounds", "2", "--t-wait", "20", "--t-step", "30")
        await step_to_phase(req, task, ["training"], "round 0 started")
        await csp.kill()  # SIGKILL: its role store and calls in flight survive
        await csp.start(net.nursery)
        await csp.wait_ready()
        await req.rpc("set_mining", ["on-demand"])
        shown = await _settled(req, task)
        await _check_settled(net, task, shown)


async def test_a_worker_down_when_the_task_was_created_joins_once_it_syncs(tmp_path: Path):
    """Roles learn of new tasks from the ``sfl-created`` event of a connected block, and blocks a
    node fetches by sync after a restart reach its roles like gossiped ones: the worker that was
    stopped when the task was created auto-joins once it is back, and the task settles."""
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        req, csp = await start_parties(net, REQ, WORKERS)
        late = net.nodes[WORKERS[-1]]
        await late.stop_node()
        task = await create_task(req, csp, "--rounds", "1", "--t-wait", "20", "--t-step", "30")

        async def two_joined() -> bool:
            shown = await req.rpc("task_show", [task])
            return shown["phase"] == "joining" and len(shown["workers"]) == 2

        await wait_until(two_joined, 40, "the two running workers joined", poll=0.3)
        await late.start(net.nursery)
        await late.wait_ready()
        shown = await _settled(req, task)
        assert shown["phase"] == "settled", shown
        late_account = (await late.rpc("account"))["account"]
        assert late_account in {w["account"] for w in shown["workers"]}, shown["workers"]
