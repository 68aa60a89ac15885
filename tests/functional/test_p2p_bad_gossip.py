"""A misbehaving peer's gossip is dropped with the right reject code; its score falls; the daemon
keeps serving and forwards none of it."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
import trio

from crowdmesh.chain import Block, BlockHeader, Transaction
from crowdmesh.daemon.client.wallet import TestnetWallet
from crowdmesh.p2p.messages import NewBlock, TxGossip, encode_message
from tests.functional.fakepeer import open_fake_peer
from tests.functional.framework import log, running_testnet, wait_until

pytestmark = pytest.mark.functional


def bad_pow_block(genesis: dict, timestamp: int) -> bytes:
    """A block on genesis whose header misses its target (nonce chosen to fail)."""
    target = int(genesis["target"], 16)
    for nonce in range(1000):
        header = BlockHeader(genesis["chain_id"], 1, bytes.fromhex(genesis["hash"]), timestamp,
                             target, b"\x00" * 32, b"\x00" * 32, b"\x01" * 32, nonce)
        if not header.meets_target():
            return Block(header).encode()
    raise AssertionError("every nonce met the target")


def forged(tx: Transaction) -> bytes:
    sig = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    return dataclasses.replace(tx, signature=sig).encode()


async def test_bad_gossip_is_rejected_with_codes_and_lowers_score() -> None:
    async with running_testnet(n=2, mining_mode="off") as net:
        victim, bystander = net.nodes
        wallet = TestnetWallet(net.root, net.spec.accounts)
        genesis = {**await victim.rpc("block", [0]), "chain_id": wallet.chain_id}
        spent = wallet.transfer(0, b"\x02" * 32, 5)
        await victim.rpc("submit_tx", [spent.encode().hex()])
        await net.mine(victim, 1)
        wallet.nonces[0] = 0  # replay nonce 0 with other bytes (a higher fee)
        replay = wallet.transfer(0, b"\x02" * 32, 6)

        cases = [
            ("txs", b"\xc1\xc1 not msgpack", "bad-msgpack"),
            ("txs", msgpack.packb(["nope", b"x"]), "unknown-msg-type"),
            ("txs", encode_message(NewBlock(b"x" * 10)), "wrong-topic"),
            ("txs", msgpack.packb(["tx", "text not bytes"]), "bad-msg-field-type"),
            ("txs", encode_message(TxGossip(forged(wallet.transfer(1, b"\x03" * 32, 1)))),
             "bad-tx-sig"),
            ("blocks", encode_message(NewBlock(bad_pow_block(genesis, genesis["timestamp"] + 1))),
             "bad-block-pow"),
            ("blocks", b"\x91" + b"\x00" * (65 * 1024), "oversize"),
            ("txs", encode_message(TxGossip(replay.encode())), "bad-tx-nonce"),
        ]
        async with open_fake_peer(wallet.chain_id) as fake:
            await fake.connect(victim.info.addr)
            await fake.wait_for_mesh(victim.info.peer_id, "txs")
            await fake.wait_for_mesh(victim.info.peer_id, "blocks")
            for kind, data, code in cases:
                await fake.publish_raw(kind, data)
                log.info("sent %s expecting %s", kind, code)
            # an exact replay of a mined transaction: dropped (seen or stale), never pooled
            await fake.publish_raw("txs", encode_message(TxGossip(spent.encode())))
            needles = [f"code={code} " for _, _, code in cases]
            await victim.wait_for_log(needles, timeout=20)

            async def score_fell() -> bool:
                rows = [p for p in await victim.rpc("peers") if p["id"] == fake.peer_id]
                return bool(rows) and rows[0]["score"] < -100
            await wait_until(score_fell, 10, "the fake peer's score to fall")

            for _, _, code in cases:
                assert f"peer={fake.peer_id}" in next(
                    line for line in victim.stderr_text().splitlines() if f"code={code} " in line)
            assert (await victim.rpc("mempool"))["size"] == 0
            # only what needs chain state to judge (a stale nonce) passed the cheap validator
            rejected = (await bystander.rpc("status"))["gossip"]["rejected"]
            assert set(rejected) <= {"bad-tx-nonce", "tx-already-mined"}, rejected
            # still serving: a good transaction is pooled, mined and reaches the bystander
            good = wallet.transfer(2, b"\x04" * 32, 7)
            await victim.rpc("submit_tx", [good.encode().hex()])
            await net.mine(victim, 1)
            with trio.fail_after(10):
                assert (await bystander.rpc("tx", [good.txid.hex()]))["status"] == "confirmed"
