"""Five daemons converge; 500 transfers to random nodes are mined once; one state everywhere."""

from __future__ import annotations

import random

import pytest
import trio

from crowdmesh.daemon.client.harness import Testnet
from crowdmesh.daemon.client.wallet import TestnetWallet
from tests.functional.framework import (
    balances,
    log,
    running_testnet,
    wait_until,
)

pytestmark = pytest.mark.functional

N_TRANSFERS = 500


async def mempools_empty(net: Testnet) -> bool:
    for node in net.nodes:
        pool = await node.rpc("mempool")
        if pool["size"] or pool["gap_buffered"]:
            return False
    return True


async def test_five_daemons_500_transfers_mined_once_same_head_and_balances() -> None:
    rng = random.Random(4)
    async with running_testnet(n=5, topology="line") as net:
        tips = await net.tips()
        assert len({t["hash"] for t in tips}) == 1
        for node in net.nodes:
            async def has_peer(node=node) -> bool:
                return len(await node.rpc("peers")) >= 1
            await wait_until(has_peer, 20, f"{node} to connect to a peer")

        wallet = TestnetWallet(net.root, net.spec.accounts)
        sink = bytes(range(32))
        txids = []
        sent = {}
        for i in range(N_TRANSFERS):
            tx = wallet.transfer(i % len(wallet.keys), sink, 1 + i)
            node = net.nodes[rng.randrange(len(net.nodes))]
            reply = await node.rpc("submit_tx", [tx.encode().hex()])
            txids.append(reply["txid"])
            sent[reply["txid"]] = (i % len(wallet.keys), tx.nonce, node.index, reply["status"])
        log.info("submitted %d transfers", N_TRANSFERS)
        await wait_until(lambda: mempools_empty(net), 120, "all mempools to empty")
        head = await net.sync_blocks(timeout=60)

        # every transfer is confirmed exactly once on the main chain
        node = net.nodes[0]
        seen: dict[str, int] = {}
        for height in range(1, head["height"] + 1):
            for txid in (await node.rpc("block", [height]))["txids"]:
                seen[txid] = seen.get(txid, 0) + 1
        missing = sorted(sent[t] for t in set(txids) - set(seen))
        assert not missing, f"never mined (sender, nonce, node, status): {missing}"
        assert sorted(seen) == sorted(txids)
        assert set(seen.values()) == {1}

        accounts = [k.public for k in wallet.keys] + [sink]
        expected = await balances(net.nodes[0], accounts)
        assert expected[-1] == sum(1 + i for i in range(N_TRANSFERS))
        for other in net.nodes[1:]:
            assert await balances(other, accounts) == expected
        with trio.fail_after(5):
            statuses = [await n.rpc("status") for n in net.nodes]
        assert all(s["gossip"]["dropped"] == 0 for s in statuses)
