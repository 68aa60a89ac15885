"""Mempool persistence with a real daemon (issue 11, fault 7): a transaction answered
``pending`` (or ``queued``) survives a SIGKILL, and a damaged ``mempool.dat`` is not fatal."""

from __future__ import annotations

import pytest

from crowdmesh.daemon.client import TestnetWallet
from tests.functional.framework import log, running_testnet

pytestmark = pytest.mark.functional

SINK = b"\x5a" * 32


async def test_a_pending_tx_survives_sigkill_and_a_damaged_file_is_ignored() -> None:
    # one node: no peers to relay to, and mining off, so the tx can only be in its own pool
    async with running_testnet(n=1, accounts=2, mining_mode="off") as net:
        (node,) = net.nodes
        wallet = TestnetWallet(net.root, 2)
        pending, skipped, queued = (wallet.transfer(0, SINK, 7) for _ in range(3))
        answer = await node.rpc("submit_tx", [pending.encode().hex()])
        assert answer == {"txid": pending.txid.hex(), "status": "pending"}
        answer = await node.rpc("submit_tx", [queued.encode().hex()])  # nonce 2: a gap at 1
        assert answer["status"] == "queued"
        await node.kill()  # SIGKILL right after the answers: no clean shutdown ran
        await node.start(net.nursery)
        await node.wait_ready()
        pool = await node.rpc("mempool")
        assert pool["txids"] == [pending.txid.hex()] and pool["gap_buffered"] == 1
        assert (await node.rpc("tx", [pending.txid.hex()]))["status"] == "pending"
        await node.wait_for_log(["event=mempool-loaded", "kept=2", "dropped=0"])
        # the queued one is still waiting for nonce 1 and follows it into the pool
        assert (await node.rpc("submit_tx", [skipped.encode().hex()]))["status"] == "pending"
        assert (await node.rpc("mempool"))["size"] == 3
        log.info("pool restored after SIGKILL: %s", pool["txids"])

        await node.stop_node()  # the clean stop writes the file too
        data_file = node.datadir / "mempool.dat"
        data = bytearray(data_file.read_bytes())
        data[-1] ^= 0xFF  # damage: the checksum no longer matches
        data_file.write_bytes(bytes(data))
        await node.start(net.nursery)
        await node.wait_ready()
        assert (await node.rpc("mempool"))["size"] == 0
        await node.wait_for_log(["event=mempool-file-ignored", "mempool-file-checksum"])
