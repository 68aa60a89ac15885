"""Crash, partition and late join: SIGKILL + restart + check-db + resync; split, mine both sides,
join → heaviest chain and the losing side's transactions mined again; a node started after
1,000 blocks syncs them over /crowdmesh/sync/1.0.0."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import trio

from crowdmesh.daemon.client.harness import NodeHandle
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.client.wallet import TestnetWallet
from tests.functional.framework import (
    balances,
    log,
    running_testnet,
    wait_until,
)

pytestmark = pytest.mark.functional


async def check_db(node: NodeHandle) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "crowdmesh", "check-db", "--config", str(node.config)],
        capture_stdout=True, capture_stderr=True, check=False)


async def test_sigkill_while_mining_and_importing_then_restart_check_db_resync() -> None:
    async with running_testnet(n=3, topology="line", mining_mode="off") as net:
        miner, victim, last = net.nodes
        await net.mine(miner, 5)
        await victim.rpc("set_mining", ["continuous"])  # mining, and importing miner's blocks
        async with trio.open_nursery() as nursery:
            nursery.start_soon(miner.rpc, "generate", [40])
            await wait_until(lambda: _height_at_least(victim, 15), 30, "victim to import")
            before = await victim.rpc("head")  # reported, hence committed
            await victim.kill()
        assert (await miner.rpc("head"))["height"] >= 45
        done = await check_db(victim)
        assert done.returncode == 0, done.stdout + done.stderr
        # why stop the others: a resync from them would hide a commit lost by the crash
        for other in (miner, last):
            await other.stop_node()
        await victim.start(net.nursery)
        await victim.wait_ready()
        await victim.rpc("set_mining", ["off"])
        after = await victim.rpc("head")
        assert after["height"] >= before["height"], (before, after)
        assert (await victim.rpc("block", [before["hash"]]))["hash"] == before["hash"]
        for other in (miner, last):
            await other.start(net.nursery)
            await other.wait_ready()
        await net.wait_connected()
        head = await net.sync_blocks(timeout=60)
        assert head["height"] >= 45
        log.info("victim resynced to %s", head)


async def _height_at_least(node: NodeHandle, height: int) -> bool:
    return bool((await node.rpc("head"))["height"] >= height)


async def test_split_mine_both_sides_join_heaviest_wins_and_losing_txs_are_mined() -> None:
    async with running_testnet(n=4, topology="line", mining_mode="off") as net:
        wallet = TestnetWallet(net.root, net.spec.accounts)
        await net.mine(net.nodes[0], 2)
        await net.split([[0, 1], [2, 3]])
        left, right = net.nodes[:2], net.nodes[2:]
        tx = wallet.transfer(0, b"\x05" * 32, 77)
        await left[0].rpc("submit_tx", [tx.encode().hex()])
        await left[0].rpc("generate", [2])  # the losing side: 2 blocks, holding the tx
        await net.sync_blocks(left)
        assert (await left[1].rpc("tx", [tx.txid.hex()]))["status"] == "confirmed"
        await right[0].rpc("generate", [5])  # the winning side: more work
        winner = await net.sync_blocks(right)
        await net.join()
        head = await net.sync_blocks(timeout=60)
        assert head["hash"] == winner["hash"]
        for node in left:  # the reorg put the tx back into their mempools
            assert (await node.rpc("tx", [tx.txid.hex()]))["status"] == "pending"
        await left[0].rpc("set_mining", ["on-demand"])

        async def confirmed_everywhere() -> bool:
            for node in net.nodes:
                try:
                    reply = await node.rpc("tx", [tx.txid.hex()])
                except RpcCallError:  # not known there yet
                    return False
                if reply["status"] != "confirmed":
                    return False
            return True
        await wait_until(confirmed_everywhere, 60, "the losing side's tx to be mined again")
        await net.sync_blocks()
        expected = await balances(net.nodes[0], [b"\x05" * 32])
        assert expected == [77]
        for node in net.nodes[1:]:
            assert await balances(node, [b"\x05" * 32]) == expected


async def test_node_started_after_1000_blocks_syncs_them() -> None:
    async with running_testnet(start=False, n=2, seed=11, topology="line", mining_mode="off",
                               difficulty_bits=4) as net:
        first, late = net.nodes
        await first.start(net.nursery)
        await first.wait_ready()
        for _ in range(4):
            await first.rpc("generate", [250])
        tip = await first.rpc("head")
        assert tip["height"] == 1000
        started = time.monotonic()
        await late.start(net.nursery)
        await late.wait_ready()
        head = await net.sync_blocks(timeout=120)
        elapsed = time.monotonic() - started
        assert head["hash"] == tip["hash"]
        log.info("late joiner synced 1000 blocks in %.1f s (incl. start-up)", elapsed)
        await late.wait_for_log(["event=sync-started", "event=sync-finished"], timeout=10)
