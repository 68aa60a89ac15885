"""Blobs too large to gossip reach every daemon (real daemons, a 5-node mesh, no miner).

Regression for the 1 MiB-model CrowdSFL round that stalled until T_wait: three uploads of blob
parts (each a transaction just under the 64 KiB payload cap, so announced with ``TxAnnounce``
and fetched over sync) enter the network through one daemon, which every other daemon then
fetches them from. Each part used to be announced and fetched on a stream of its own; under
that load stream opens timed out, the fetcher forgot those txids (``sync-tx-unserved``),
nobody announced them again, and every later part of that sender stayed in the gap buffer
behind the hole (104 of 150 parts pooled, for good).
"""

from __future__ import annotations

import hashlib

import pytest

from crowdmesh.chain.contracts.blob import KIND, PART_BYTES, split_blob
from crowdmesh.chain.tx import make_transaction, minimum_fee
from crowdmesh.daemon.client import TestnetWallet
from crowdmesh.p2p.messages import MAX_GOSSIP_BYTES
from tests.functional.framework import log, running_testnet, wait_until

pytestmark = pytest.mark.functional

SENDERS, PARTS = 3, 50  # three workers' uploads, ≈ 3.3 MB each


async def test_three_blobs_submitted_to_one_daemon_reach_every_daemon() -> None:
    async with running_testnet(n=5, accounts=SENDERS, mining_mode="off", topology="mesh") as net:
        await net.wait_connected()
        wallet = TestnetWallet(net.root, SENDERS)
        uploads = []
        for sender in range(SENDERS):
            data = hashlib.sha256(bytes([sender])).digest() * (PARTS * PART_BYTES // 32)
            txs = [make_transaction(wallet.keys[sender], wallet.chain_id, i, KIND, part,
                                    minimum_fee(part, wallet.min_gas_price))
                   for i, part in enumerate(split_blob(data))]
            assert len(txs) == PARTS and len(txs[0].encode()) > MAX_GOSSIP_BYTES
            uploads.append(txs)
        want = {tx.txid.hex() for txs in uploads for tx in txs}

        for txs in uploads:
            for tx in txs:
                answer = await net.nodes[0].rpc("submit_tx", [tx.encode().hex()])
                assert answer["status"] == "pending"

        async def everywhere() -> bool:
            pools = [set((await n.rpc("mempool"))["txids"]) for n in net.nodes]
            return all(want <= pool for pool in pools)

        await wait_until(everywhere, 30 * net.timeout_factor, "every part in every pool")
        logs = net.combined_logs()
        assert "sync-tx-unserved" not in logs
        status = await net.nodes[0].rpc("status")
        log.info("node0 tx_fetch %s", status.get("tx_fetch"))
