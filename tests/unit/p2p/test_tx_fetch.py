"""Transactions too large to gossip: announced (TxAnnounce), fetched over sync (GetTxs → Txs).

Whole nodes (``run_node``) in one process. The chain's built-in contracts take only small
payloads (a transfer is ``[to, amount]``), so these nodes run the real chain with one extra
kind, ``blob``, that accepts any payload up to the chain's 64 KiB cap: it is how a future
contract with large payloads (model updates, proofs) would load the network.
"""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import trio
from libp2p.peer.id import ID

from crowdmesh.chain import CONTRACTS, MAX_PAYLOAD_BYTES, make_transaction, transfer_payload
from crowdmesh.chain.contracts import Event
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.node import run_node
from crowdmesh.daemon.txfetch import MISMATCH, UNSERVED
from crowdmesh.errors import ProtocolViolation
from crowdmesh.p2p.gossip import TXS
from crowdmesh.p2p.messages import (
    MAX_GOSSIP_BYTES,
    GetStatus,
    GetTxs,
    Status,
    TxAnnounce,
    Txs,
    encode_message,
)
from crowdmesh.p2p.scoring import PENALTIES
from crowdmesh.p2p.sync import SYNC_PROTOCOL, read_frame, write_frame
from tests.functional.fakepeer import open_fake_peer
from tests.unit.inprocess import InProcessNode
from tests.unit.p2p.test_node import CHAIN, Sink, funded_keys, wait_height, write_genesis


def apply_blob(state, tx, ctx):
    """A contract that stores nothing and accepts any payload (the fee is still paid)."""
    return (Event("blob", (tx.sender, len(tx.payload))),)


BLOB_CONTRACTS = {**CONTRACTS, "blob": apply_blob}


@asynccontextmanager
async def node_running(tmp: Path, name: str, genesis: Path, bootstrap: tuple[str, ...] = (),
                       miner: bool = False):
    data = tmp / name
    data.mkdir(exist_ok=True)
    cfg = NodeConfig(data_dir=data, genesis_path=genesis, control_socket=data / "c.sock",
                     listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap,
                     roles=frozenset({"miner"}) if miner else frozenset(),
                     mining_mode="on-demand" if miner else "off")
    sink = Sink()
    async with trio.open_nursery() as nursery:
        node = InProcessNode(
            await nursery.start(partial(run_node, contracts=BLOB_CONTRACTS), cfg, sink))
        node.sink = sink  # type: ignore[attr-defined]
        try:
            yield node
        finally:
            node.request_stop()


def fake_sync_server(answer):
    """A FakePeer's sync handler: no chain work to offer; ``await answer(request)`` replies to
    anything else (GetTxs)."""
    async def handle(stream) -> None:
        with contextlib.suppress(ProtocolViolation):  # until the node hangs up
            while True:
                request = await read_frame(stream)
                if isinstance(request, GetStatus):  # the node's sync round
                    await write_frame(stream, Status(CHAIN, 0, bytes(32), "0"))
                else:
                    await write_frame(stream, await answer(request))
    return handle


async def wait_for(node: InProcessNode, cond, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            with trio.move_on_after(0.05):
                await node.sink.wait_changed()  # type: ignore[attr-defined]


async def test_tx_at_the_payload_cap_submitted_to_a_non_miner_is_fetched_and_mined(
        tmp_path: Path) -> None:
    keys = funded_keys(2)
    gpath = tmp_path / "genesis.json"
    write_genesis(gpath, keys)
    async with AsyncExitStack() as stack:  # a line: miner a — b — c, neither b nor c mines
        a = await stack.enter_async_context(node_running(tmp_path, "a", gpath, miner=True))
        b = await stack.enter_async_context(
            node_running(tmp_path, "b", gpath, (a.net.addrs()[0],)))
        c = await stack.enter_async_context(
            node_running(tmp_path, "c", gpath, (b.net.addrs()[0],)))
        for x, y in ((b, a), (c, b)):
            for kind in ("txs", "blocks"):
                await x.net.gossip.wait_for_mesh(y.net.host.get_id(), kind)
        assert ID.from_base58(c.net.peer_id) not in a.net.connected()

        big = make_transaction(keys[0], CHAIN, 0, "blob", bytes(range(256)) * 256, fee=2_000_000)
        assert len(big.payload) == MAX_PAYLOAD_BYTES
        assert len(encode_message(TxAnnounce((big.txid,)))) < 100 < MAX_GOSSIP_BYTES
        assert len(big.encode()) > MAX_GOSSIP_BYTES  # cannot be gossiped as a TxGossip
        reply = await c.submit_tx(big.encode().hex())
        assert reply == {"txid": big.txid.hex(), "status": "pending"}

        await wait_height(a, 1, timeout=10)
        block = a.ledger.chain.get_block(a.ledger.chain.head_hash)
        assert [tx.txid for tx in block.txs] == [big.txid]
        for node in (b, c):
            await wait_height(node, 1, timeout=10)
            assert node.ledger.chain.head_hash == a.ledger.chain.head_hash
            assert node.tx(big.txid.hex())["status"] == "confirmed"
        # b fetched it from c (the originator), a from b (c's own announcement could not be
        # served to a: c is not a's peer); nobody was penalised for it
        assert b.fetcher.fetched == 1 and a.fetcher.fetched == 1 and c.fetcher.fetched == 0
        assert a.status()["gossip"]["rejected"].get("tx-announce-not-connected") == 1
        for node in (a, b, c):
            assert all(s >= 0 for s in (node.net.scores.score(p["id"]) for p in node.peers()))
            assert node.fetcher.wanted == 0


async def test_peer_serving_a_different_tx_is_penalised_one_serving_nothing_a_little(
        tmp_path: Path) -> None:
    keys = funded_keys(2)
    gpath = tmp_path / "genesis.json"
    write_genesis(gpath, keys)
    asked = make_transaction(keys[0], CHAIN, 0, "transfer", transfer_payload(keys[1].public, 1),
                             fee=100_000)
    other = make_transaction(keys[0], CHAIN, 0, "transfer", transfer_payload(keys[1].public, 2),
                             fee=100_000)
    requests: list[GetTxs] = []
    serve: list[tuple[bytes, ...]] = [()]  # what the fake peer answers to GetTxs

    async def answer(request):
        requests.append(request)
        return Txs(serve[0])

    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_running(tmp_path, "a", gpath))
        fake = await stack.enter_async_context(open_fake_peer(CHAIN))
        fake.host.set_stream_handler(SYNC_PROTOCOL, fake_sync_server(answer))
        await fake.connect(a.net.addrs()[0])
        await fake.wait_for_mesh(a.net.peer_id, TXS)

        await fake.publish_raw(TXS, encode_message(TxAnnounce((asked.txid,))))
        await wait_for(a, lambda: len(requests) == 1 and a.fetcher.wanted == 0)
        assert requests == [GetTxs((asked.txid,))]
        # announced but served none of it: a small penalty (an honest peer rarely does this)
        await wait_for(a, lambda: a.net.scores.rejects(fake.peer_id) == {UNSERVED: 1})
        assert -PENALTIES[UNSERVED] <= a.net.scores.score(fake.peer_id) < 0

        serve[0] = (other.encode(),)
        await fake.publish_raw(TXS, encode_message(TxAnnounce((asked.txid, bytes(32)))))
        await wait_for(a, lambda: a.net.scores.rejects(fake.peer_id).get(MISMATCH) == 1)
        assert a.net.scores.score(fake.peer_id) < 0
        assert asked.txid not in a.ledger.mempool and other.txid not in a.ledger.mempool
        assert a.status()["gossip"]["rejected"].get(MISMATCH) == 1
        await wait_for(a, lambda: a.fetcher.wanted == 0)


async def test_one_request_per_txid_and_the_next_announcer_is_asked_if_the_first_fails(
        tmp_path: Path) -> None:
    keys = funded_keys(2)
    gpath = tmp_path / "genesis.json"
    write_genesis(gpath, keys)
    good = make_transaction(keys[0], CHAIN, 0, "transfer", transfer_payload(keys[1].public, 3),
                            fee=100_000)
    asked: dict[str, list[GetTxs]] = {"slow": [], "holder": []}
    release = trio.Event()

    def server(name: str, serve: tuple[bytes, ...]):
        async def answer(request):
            asked[name].append(request)
            if name == "slow":
                with trio.fail_after(10):
                    await release.wait()
            return Txs(serve)
        return fake_sync_server(answer)

    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_running(tmp_path, "a", gpath))
        slow = await stack.enter_async_context(open_fake_peer(CHAIN))
        holder = await stack.enter_async_context(open_fake_peer(CHAIN))
        slow.host.set_stream_handler(SYNC_PROTOCOL, server("slow", ()))
        holder.host.set_stream_handler(SYNC_PROTOCOL, server("holder", (good.encode(),)))
        for fake in (slow, holder):
            await fake.connect(a.net.addrs()[0])
            await fake.wait_for_mesh(a.net.peer_id, TXS)
        announce = encode_message(TxAnnounce((good.txid,)))
        await slow.publish_raw(TXS, announce)
        await wait_for(a, lambda: len(asked["slow"]) == 1)
        received = a.net.gossip.counters.received
        await holder.publish_raw(TXS, announce)  # the same txid while slow's fetch is open
        await wait_for(a, lambda: a.net.gossip.counters.received > received)
        assert asked["holder"] == []  # deduplicated: the txid is already being fetched
        published = a.net.gossip.counters.published
        release.set()  # slow answers without the transaction: holder is asked next
        await wait_for(a, lambda: good.txid in a.ledger.mempool)
        assert asked == {"slow": [GetTxs((good.txid,))], "holder": [GetTxs((good.txid,))]}
        await wait_for(a, lambda: a.net.gossip.counters.published > published)  # passed on
        # served none it announced (judged a moment later: it might have been mined meanwhile)
        await wait_for(a, lambda: a.net.scores.rejects(slow.peer_id) == {UNSERVED: 1})
        assert a.net.scores.rejects(holder.peer_id) == {}
        assert a.fetcher.wanted == 0 and a.fetcher.fetched == 1
