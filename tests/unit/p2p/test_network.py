"""Component tests: several real libp2p hosts in one process (pytest-trio), no sleeps as waits."""

from __future__ import annotations

import contextlib
import hashlib
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from crowdmesh.errors import ProtocolViolation, ValidationError
from crowdmesh.p2p.gossip import BLOCKS, TXS
from crowdmesh.p2p.messages import (
    Blocks,
    Headers,
    Message,
    NewBlock,
    Status,
    TxGossip,
    encode_message,
)
from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from crowdmesh.p2p.scoring import BAN_SCORE, PENALTIES
from tests.functional.fakepeer import open_fake_peer

CHAIN = "testchain"


class BytesChain:
    """A sync provider over a list of opaque 'blocks' (the hash is SHA-256 of the bytes)."""

    def __init__(self, n: int) -> None:
        self.blocks = [f"block-{i}".encode() * 4 for i in range(n)]
        self.by_hash = {hashlib.sha256(b).digest(): b for b in self.blocks}

    def sync_status(self) -> Status:
        head = hashlib.sha256(self.blocks[-1]).digest()
        return Status(CHAIN, len(self.blocks) - 1, head, str(len(self.blocks)))

    def sync_headers(self, start: int, count: int) -> Headers:
        return Headers(start, tuple(self.blocks[start:start + count]))

    def sync_blocks(self, hashes: tuple[bytes, ...]) -> Blocks:
        return Blocks(tuple(self.by_hash[h] for h in hashes if h in self.by_hash))


def reject_marked(msg: Message) -> None:
    """The node's cheap check stand-in: transactions starting with b'bad' have bad signatures."""
    if isinstance(msg, TxGossip) and msg.tx.startswith(b"bad"):
        raise ValidationError("bad-tx-sig", "test marker")


async def start(stack: AsyncExitStack, tmp: Path, name: str, events: list[tuple[str, dict]],
                bootstrap: tuple[str, ...] = (), n_blocks: int = 3) -> Network:
    (tmp / name).mkdir()
    cfg = NetworkConfig(tmp / name, "/ip4/127.0.0.1/tcp/0", CHAIN, bootstrap)
    return await stack.enter_async_context(
        open_network(cfg, BytesChain(n_blocks), reject_marked,
                     lambda ev, f: events.append((ev, f))))


async def recv(net: Network, timeout: float = 10.0):
    with trio.fail_after(timeout):
        return await net.gossip.incoming.receive()


async def recv_until(net: Network, wanted: Message) -> int:
    """Receive until ``wanted`` arrives; return how many messages that took."""
    for n in range(1, 100):
        if (await recv(net)).msg == wanted:
            return n
    raise AssertionError(f"{wanted} never arrived")


async def test_line_of_three_relays_gossip_and_rejects_garbage(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events)
        b = await start(stack, tmp_path, "b", events, (a.addrs()[0],))
        c = await start(stack, tmp_path, "c", events, (b.addrs()[0],))
        for kind in (TXS, BLOCKS):
            await a.gossip.wait_for_mesh(b.host.get_id(), kind)
            await c.gossip.wait_for_mesh(b.host.get_id(), kind)
        await a.publish(TXS, TxGossip(b"tx-1"))
        got = await recv(c)
        assert got.msg == TxGossip(b"tx-1") and got.origin == a.peer_id and got.kind == TXS
        await c.publish(BLOCKS, NewBlock(b"blk"))
        assert (await recv(a)).msg == NewBlock(b"blk")
        # the same payload again is one message (payload-hash id): nothing new arrives
        await a.publish(TXS, TxGossip(b"tx-1"))
        await a.publish(TXS, TxGossip(b"tx-2"))
        assert (await recv(c)).msg == TxGossip(b"tx-2")

        async with open_fake_peer(CHAIN) as fake:
            await fake.connect(b.addrs()[0])
            await fake.wait_for_mesh(b.host.get_id(), TXS)
            await fake.publish_raw(TXS, b"\xc1 not msgpack")
            await fake.publish_raw(TXS, encode_message(NewBlock(b"x")))  # wrong topic
            await fake.publish_raw(TXS, encode_message(TxGossip(b"bad signature")))
            await fake.publish_raw(BLOCKS, b"\x00" * (70 * 1024))
            await fake.publish_raw(TXS, encode_message(TxGossip(b"good")))
            # barrier: the bad ones were handled first; b also holds the earlier messages
            assert await recv_until(b, TxGossip(b"good")) == 4
            assert (await recv(c)).msg == TxGossip(b"good")
            codes = [f["code"] for ev, f in events
                     if ev == "gossip-reject" and f["peer"] == fake.peer_id]
            assert codes == ["bad-msgpack", "wrong-topic", "bad-tx-sig", "oversize"]
            assert b.scores.score(fake.peer_id) < -50
            assert b.scores.rejects(fake.peer_id)["bad-tx-sig"] == 1
            # nothing invalid was forwarded to c
            assert c.gossip.counters.received == 3
            assert not c.gossip.counters.rejected


async def test_sync_status_headers_blocks(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events, n_blocks=50)
        b = await start(stack, tmp_path, "b", events, (a.addrs()[0],))
        await b.gossip.wait_for_mesh(a.host.get_id(), BLOCKS)
        async with b.open_sync(a.host.get_id()) as session:
            status = await session.status()
            assert status.height == 49 and status.chain_id == CHAIN
            headers = await session.headers(40, 100)
            assert headers.start == 40 and len(headers.headers) == 10
            wanted = tuple(hashlib.sha256(h).digest() for h in headers.headers[:3])
            blocks = await session.blocks((*wanted, b"\x00" * 32))
            assert blocks.blocks == headers.headers[:3]


async def test_node_key_persists_and_restart_reconnects(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as outer:
        a = await start(outer, tmp_path, "a", events)
        addr_a = a.addrs()[0]
        async with AsyncExitStack() as inner:
            b = await start(inner, tmp_path, "b", events, (addr_a,))
            first_id = b.peer_id
            await b.gossip.wait_for_mesh(a.host.get_id(), TXS)
        with trio.fail_after(10):
            while any(p.to_base58() == first_id for p in a.connected()):
                await a.watch.wait_changed()
        (tmp_path / "b").rename(tmp_path / "b-old")
        (tmp_path / "b").mkdir()
        (tmp_path / "b-old" / "node_key").rename(tmp_path / "b" / "node_key")
        async with AsyncExitStack() as inner:
            cfg = NetworkConfig(tmp_path / "b", "/ip4/127.0.0.1/tcp/0", CHAIN, (addr_a,))
            b2 = await inner.enter_async_context(
                open_network(cfg, BytesChain(3), reject_marked, lambda *_: None))
            assert b2.peer_id == first_id
            assert (tmp_path / "b" / "node_key").stat().st_mode & 0o777 == 0o600
            await b2.gossip.wait_for_mesh(a.host.get_id(), TXS)
            await a.publish(TXS, TxGossip(b"after-restart"))
            assert (await recv(b2)).msg == TxGossip(b"after-restart")
    assert any(ev == "peer-down" for ev, _ in events)


async def test_sync_request_to_unknown_protocol_peer_fails_cleanly(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events)
        async with open_fake_peer(CHAIN) as fake:
            await fake.connect(a.addrs()[0])
            try:
                async with a.open_sync(fake.host.get_id()) as session:
                    await session.status()
            except ProtocolViolation as exc:
                assert exc.code in ("sync-io", "sync-timeout")
            else:
                raise AssertionError("a peer without the sync protocol answered")


async def test_disconnect_drops_the_peer_and_stops_our_redial(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events)
        b = await start(stack, tmp_path, "b", events, (a.addrs()[0],))
        await b.gossip.wait_for_mesh(a.host.get_id(), TXS)
        await b.disconnect(a.peer_id)
        assert ("peer-down", {"peer": a.peer_id}) in events
        assert not b._maintainers  # our redial loop is gone
        assert b.host.get_peerstore().addrs(a.host.get_id()) == []
        # (a may dial back on its own, like any peer; an explicit dial from b still works)
        assert await b.connect(a.addrs()[0])


async def test_set_bootstrap_adds_and_drops_maintained_peers(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events)
        c = await start(stack, tmp_path, "c", events)
        b = await start(stack, tmp_path, "b", events, (a.addrs()[0],))
        b.set_bootstrap((c.addrs()[0],))
        with trio.fail_after(10):
            while c.host.get_id() not in b.connected():
                await b.watch.wait_changed()
        assert set(b._maintainers) == {c.host.get_id()}


async def test_a_peer_sending_only_bad_sync_requests_is_banned(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    async with AsyncExitStack() as stack:
        a = await start(stack, tmp_path, "a", events)
        fake = await stack.enter_async_context(open_fake_peer(CHAIN))
        await fake.connect(a.addrs()[0])
        garbage = b"\x00\x00\x00\x03\xc1\xc1\xc1"  # a frame that is not msgpack
        for _ in range(int(-BAN_SCORE / PENALTIES["bad-msgpack"]) + 1):
            if fake.peer_id in a.banned:
                break
            with contextlib.suppress(Exception):  # the ban may reset the stream or connection
                async with fake.raw_sync_stream(a.host.get_id()) as stream:
                    await stream.write(garbage)
                    with trio.fail_after(5):
                        await stream.read(1)  # the server closes the stream after the reject
        assert fake.peer_id in a.banned
        names = [ev for ev, f in events if f.get("peer") == fake.peer_id]
        assert "sync-reject" in names and names[-1] == "peer-banned"
        assert a.gossip.counters.rejected["bad-msgpack"] == names.count("sync-reject")
