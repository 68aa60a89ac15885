"""A whole spatial report between real daemons (started by the testnet launcher): a requester
reports a flooded street in Charlotte from the CLI's RPC, the nearby workers (and only they)
commit and reveal, the committee confirms, one tally lands on every node with the rewards of
SPATIAL.md §3; a false report is rejected; a duplicate is refused; a worker outside R is never
asked. The requester survives a SIGKILL mid-report."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
import trio

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import burned_fee
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.config import load_config, render_config
from tests.functional.framework import log, running_testnet, wait_until

pytestmark = pytest.mark.functional

CLT = (35_227_100, -80_843_100)  # Charlotte, NC (micro-degrees)
FAR = (35_327_100, -80_843_100)  # ≈ 11 km north: outside R = 1 km
NEAR = [(35_229_100, -80_843_100), (35_225_100, -80_841_100), (35_227_100, -80_846_100),
        (35_230_100, -80_840_100)]
PARAMS = SpatialParams(committee_k=3, commit_window_s=6, reveal_window_s=4)


def _configure(net: Testnet, roles: list[list[str]], places: list, policies: list[str]) -> None:
    genesis_path = net.root / "genesis.json"
    genesis = Genesis.from_json(genesis_path.read_text())
    genesis_path.write_text(dataclasses.replace(genesis, spatial=PARAMS).to_json())
    for node, role, place, policy in zip(net.nodes, roles, places, policies, strict=True):
        cfg = load_config(node.config)
        # why one miner (the requester): on-demand miners that all answer the same transaction
        # within milliseconds keep making equal-work forks; one miner keeps the test about
        # the protocol, not about fork races
        mode = cfg.mining_mode if "miner" in role else "off"
        node.config.write_text(render_config(dataclasses.replace(
            cfg, roles=frozenset(role), location=place, vote_policy=policy, mining_mode=mode)))


async def _report(node: NodeHandle, kind: str, point: tuple[int, int]) -> str:
    reply = await node.rpc("report_submit", [kind, point[0], point[1], uuid.uuid4().hex])
    return str(reply["report_id"])


async def _decided(node: NodeHandle, rid: str) -> dict:
    async def done() -> bool:
        try:
            return (await node.rpc("report_show", [rid]))["status"] != "pending"
        except Exception:
            return False

    await wait_until(done, 60, f"report {rid[:12]} decided")
    return await node.rpc("report_show", [rid])


async def assert_supply_rpc(net: Testnet, node: NodeHandle) -> None:
    """Over RPC, after ``net.sync_blocks()``: Σ balances of every account that can hold funds
    (the genesis allocations and the nodes' accounts, which also take the block rewards) ==
    genesis + block rewards + the spatial rewards in the tallies' receipts − burned fees."""
    genesis = Genesis.from_json((net.root / "genesis.json").read_text())
    accounts = {a.hex() for a, _ in genesis.alloc}
    accounts |= {(await n.rpc("account"))["account"] for n in net.nodes}
    height = int((await node.rpc("head"))["height"])
    minted = burned = spatial = 0
    for h in range(1, height + 1):
        minted += genesis.reward(h)
        for txid in (await node.rpc("block", [h]))["txids"]:
            tx = await node.rpc("tx", [txid])
            burned += burned_fee(int(tx["fee"]), genesis)
            spatial += sum(int(e["fields"][1]) for e in tx.get("events", [])
                           if e["name"] == "spatial-reward")
    total = 0
    for account in accounts:
        total += int((await node.rpc("balance", [account]))["balance"])
    expected = genesis.alloc_total() + minted + spatial - burned
    assert total == expected, (total, genesis.alloc_total(), minted, spatial, burned)
    log.info("supply %s = genesis + %s block rewards + %s spatial rewards - %s burned",
             total, minted, spatial, burned)


async def test_a_report_is_confirmed_by_nearby_workers_and_rewarded_on_every_node(
        tmp_path: Path) -> None:
    roles = [["miner", "spatial-requester"]] + [["spatial-worker"]] * 5
    places = [None, *NEAR, FAR]
    policies = ["operator", "always-confirm", "always-confirm", "always-confirm",
                "always-confirm", "always-confirm"]
    async with running_testnet(n=6, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        _configure(net, roles, places, policies)
        await net.start_all()
        requester, far = net.nodes[0], net.nodes[5]
        await net.mine(requester, 3)  # block rewards fund the requester's calls
        rid = await _report(requester, "flood", CLT)
        shown = await _decided(requester, rid)
        assert shown["status"] == "confirmed", shown
        far_account = (await far.rpc("account"))["account"]
        assert far_account not in shown["confirmers"] and len(shown["confirmers"]) >= 2
        head = await net.sync_blocks()
        for node in net.nodes:  # every validator recorded the same decision and rewards
            assert (await node.rpc("report_show", [rid]))["status"] == "confirmed"
        account = (await requester.rpc("account"))["account"]
        earned = await net.nodes[1].rpc("rewards", [account])
        assert earned["requester"] == 60_000 and earned["reports"] == 1
        log.info("report %s confirmed at height %s by %s", rid[:12], head["height"],
                 [c[:8] for c in shown["confirmers"]])
        again = await _report(requester, "flood", (CLT[0] + 90, CLT[1]))  # 10 m away, same type
        await requester.wait_for_log(["spatial-duplicate"], timeout=60)
        with pytest.raises(RpcCallError, match="report-not-found"):
            await requester.rpc("report_show", [again])  # never on chain, dropped locally
        await net.sync_blocks()
        await assert_supply_rpc(net, net.nodes[1])


async def test_a_false_report_is_rejected_even_across_a_requester_crash(tmp_path: Path) -> None:
    roles = [["miner", "spatial-requester"]] + [["spatial-worker"]] * 3
    places = [None, *NEAR[:3]]
    policies = ["operator", "always-reject", "always-reject", "always-confirm"]
    async with running_testnet(n=4, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        _configure(net, roles, places, policies)
        await net.start_all()
        requester = net.nodes[0]
        await net.mine(requester, 3)
        rid = await _report(requester, "fire", CLT)
        await trio.sleep(1)
        await requester.kill()  # SIGKILL mid-report: the role store keeps it
        await requester.start(net.nursery)
        await requester.wait_ready()
        shown = await _decided(requester, rid)
        assert shown["status"] == "rejected" and "lat_e6" not in shown, shown
        account = (await requester.rpc("account"))["account"]
        assert (await requester.rpc("rewards", [account]))["requester"] == 0
        await net.sync_blocks()
        await assert_supply_rpc(net, net.nodes[1])


async def test_a_worker_outside_r_is_never_asked_and_one_inside_is(tmp_path: Path) -> None:
    """Both workers leave the vote to their operator: the one 250 m away gets the report in
    ``report pending`` and can commit; the one 11 km away (same mesh, same gossip) never holds
    it, so its operator is never asked and it cannot commit."""
    roles = [["miner", "spatial-requester"], ["spatial-worker"], ["spatial-worker"]]
    async with running_testnet(n=3, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        _configure(net, roles, [None, NEAR[0], FAR], ["operator"] * 3)
        await net.start_all()
        requester, near, far = net.nodes
        await net.mine(requester, 3)
        rid = await _report(requester, "accident", CLT)

        async def near_asked() -> bool:
            return rid in [r["report_id"] for r in await near.rpc("report_pending")]

        await wait_until(near_asked, 30, "the near worker is asked")
        assert (await near.rpc("report_vote", [rid, "confirm"]))["vote"] == "confirm"
        assert not await near_asked()  # voted: it committed and is no longer waiting
        await trio.sleep(PARAMS.commit_window_s)  # the whole commit window
        assert await far.rpc("report_pending") == []
        with pytest.raises(RpcCallError, match="report-not-pending"):
            await far.rpc("report_vote", [rid, "confirm"])  # it could not commit if it tried
        assert rid not in far.stderr_text()  # it never held, logged or relayed a vote on it
        log.info("report %s: near worker asked and committed, far worker never asked", rid[:12])
        await net.sync_blocks()
        await assert_supply_rpc(net, near)
