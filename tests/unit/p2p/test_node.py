"""Component tests of whole nodes (run_node) in one process: mining, gossip, sync, on-demand."""

from __future__ import annotations

import contextlib
import json
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from crowdmesh.chain import Genesis, make_transaction, transfer_payload
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.node import run_node
from tests.unit.inprocess import InProcessNode

CHAIN = "nodetest"
EASY_TARGET = 1 << 250  # about 64 hashes per block: fast, but still real PoW


class Sink:
    """An EventSink that wakes waiters on every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self._changed = trio.Event()

    def publish_nowait(self, topic, event) -> None:
        self.events.append((topic, event))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()


def funded_keys(n: int) -> list[AccountKey]:
    rng = DeterministicRng(7)
    return [AccountKey.generate(rng) for _ in range(n)]


def write_genesis(path: Path, keys: list[AccountKey]) -> Genesis:
    alloc = tuple(sorted((k.public, 10**12) for k in keys))
    genesis = Genesis(chain_id=CHAIN, timestamp=1_700_000_000, target=EASY_TARGET,
                      block_interval=1, retarget_interval=0, alloc=alloc)
    path.write_text(genesis.to_json())
    return genesis


@asynccontextmanager
async def node_running(tmp: Path, name: str, genesis: Path, bootstrap: tuple[str, ...] = (),
                       mode: str = "off"):
    data = tmp / name
    data.mkdir(exist_ok=True)
    cfg = NodeConfig(data_dir=data, genesis_path=genesis, control_socket=data / "c.sock",
                     listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap,
                     roles=frozenset({"miner"}), mining_mode=mode)
    sink = Sink()
    async with trio.open_nursery() as nursery:
        node = InProcessNode(await nursery.start(run_node, cfg, sink))
        node.sink = sink  # type: ignore[attr-defined]
        try:
            yield node
        finally:
            node.request_stop()


@asynccontextmanager
async def meshed_pair(tmp: Path, keys: list[AccountKey]):
    """Nodes ``a`` and ``b`` (b bootstraps from a) on a genesis funding ``keys``, meshed on the
    blocks topic."""
    gpath = tmp / "genesis.json"
    write_genesis(gpath, keys)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_running(tmp, "a", gpath))
        b = await stack.enter_async_context(node_running(tmp, "b", gpath, (a.net.addrs()[0],)))
        await b.net.gossip.wait_for_mesh(a.net.host.get_id(), "blocks")
        yield a, b


async def wait_height(node: InProcessNode, height: int, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while node.ledger.chain.height < height:
            await node.sink.wait_changed()  # type: ignore[attr-defined]


async def test_generate_gossip_and_late_joiner_sync(tmp_path: Path) -> None:
    keys = funded_keys(2)
    async with meshed_pair(tmp_path, keys) as (a, b):
        hashes = await a.generate(3)
        assert len(hashes) == 3
        await wait_height(b, 3)
        assert b.ledger.chain.head_hash.hex() == hashes[-1]

        tx = make_transaction(keys[0], CHAIN, 0, "transfer", transfer_payload(keys[1].public, 5),
                              fee=100_000)
        reply = await b.submit_tx(tx.encode().hex())
        assert reply["txid"] == tx.txid.hex()
        with trio.fail_after(10):
            while tx.txid not in a.ledger.mempool:
                await a.sink.wait_changed()  # type: ignore[attr-defined]
        a.set_mining("on-demand")
        await wait_height(b, 4)
        assert b.tx(tx.txid.hex())["status"] == "confirmed"
        assert b.balance(keys[1].public.hex())["balance"] == 10**12 + 5
        assert len(a.ledger.mempool) == 0
        a.set_mining("off")

        await a.generate(40)
        late = node_running(tmp_path, "c", tmp_path / "genesis.json", (b.net.addrs()[0],))
        async with late as c:
            await wait_height(c, a.ledger.chain.height)
            assert c.ledger.chain.head_hash == a.ledger.chain.head_hash
            assert c.balance(keys[1].public.hex())["balance"] == 10**12 + 5


async def test_split_mine_both_sides_join_reorgs_and_remines_losing_txs(tmp_path: Path) -> None:
    keys = funded_keys(2)
    gpath = tmp_path / "genesis.json"
    write_genesis(gpath, keys)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_running(tmp_path, "a", gpath))
        b = await stack.enter_async_context(node_running(tmp_path, "b", gpath))
        tx = make_transaction(keys[0], CHAIN, 0, "transfer", transfer_payload(keys[1].public, 9),
                              fee=100_000)
        await a.submit_tx(tx.encode().hex())
        await a.generate(2)
        assert a.tx(tx.txid.hex())["status"] == "confirmed"
        await b.generate(4)
        assert await a.net.connect(b.net.addrs()[0])
        json.dumps([a.status(), a.peers(), a.head(), a.mempool()])  # the control layer sends JSON
        await wait_height(a, 4)
        assert a.ledger.chain.head_hash == b.ledger.chain.head_hash
        assert a.tx(tx.txid.hex())["status"] == "pending"  # back in the mempool after the reorg
        assert any(ev.get("reorg") for topic, ev in a.sink.events if topic == "heads")
        a.set_mining("on-demand")
        await wait_height(b, 5)
        with trio.fail_after(10):
            while b.ledger.chain.height < 5 or len(a.ledger.mempool):
                await a.sink.wait_changed()
        assert b.tx(tx.txid.hex())["status"] == "confirmed"
        assert b.balance(keys[1].public.hex())["balance"] == 10**12 + 9


async def test_block_over_the_gossip_cap_is_announced_and_fetched_by_sync(tmp_path: Path) -> None:
    keys = funded_keys(9)
    async with meshed_pair(tmp_path, keys) as (a, b):
        for sender in keys[:8]:
            for nonce in range(60):
                t = make_transaction(sender, CHAIN, nonce, "transfer",
                                     transfer_payload(keys[8].public, 1), fee=100_000)
                a.ledger.add_tx(t)
        (block_hash,) = await a.generate(1)
        block = a.ledger.chain.get_block(bytes.fromhex(block_hash))
        assert len(block.encode()) > 64 * 1024 and len(block.txs) == 480
        await wait_height(b, 1)
        assert b.ledger.chain.head_hash.hex() == block_hash
        assert b.sync.blocks_fetched >= 1  # the body came over /crowdmesh/sync/1.0.0


async def test_lying_sync_peer_is_scored_down_and_the_node_keeps_its_chain(tmp_path: Path) -> None:
    from libp2p.peer.id import ID

    from crowdmesh.errors import ProtocolViolation
    from crowdmesh.p2p.messages import GetStatus, Headers, Status
    from crowdmesh.p2p.sync import SYNC_PROTOCOL, read_frame, write_frame
    from tests.functional.fakepeer import open_fake_peer

    gpath = tmp_path / "genesis.json"
    write_genesis(gpath, funded_keys(1))

    async def liar(stream) -> None:  # claims huge work, then serves undecodable headers
        with contextlib.suppress(ProtocolViolation):  # until the node hangs up
            while True:
                request = await read_frame(stream)
                if isinstance(request, GetStatus):
                    await write_frame(stream, Status(CHAIN, 50, b"\x07" * 32, str(10**30)))
                else:
                    await write_frame(stream, Headers(request.start, (b"\x91\x00",)))

    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node_running(tmp_path, "a", gpath))
        await a.generate(2)
        fake = await stack.enter_async_context(open_fake_peer(CHAIN))
        fake.host.set_stream_handler(SYNC_PROTOCOL, liar)
        await fake.connect(a.net.addrs()[0])
        await a.sync.sync_with(ID.from_base58(fake.peer_id))
        assert a.net.scores.score(fake.peer_id) < 0
        assert set(a.net.scores.rejects(fake.peer_id)) <= {"bad-shape", "sync-bad-reply",
                                                         "bad-msgpack"}
        assert a.ledger.chain.height == 2
