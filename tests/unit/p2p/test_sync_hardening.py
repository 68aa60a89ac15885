"""Remote-triggered faults in the sync path: wire constructors that let a non-ASCII digit or an
absurd height through, a peer holding the single sync task, a reorg during the fork probe, one
peer taking every inbound sync slot, and garbage announcements tying up the tx fetcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from crowdmesh.chain.block import MAX_TARGET, BlockHeader
from crowdmesh.daemon.chainsync import ChainSync
from crowdmesh.daemon.txfetch import MAX_WANTED_PER_PEER, UNSERVED, TxFetcher
from crowdmesh.errors import DecodeError, NotFound
from crowdmesh.p2p.gossip import TXS, Gossip
from crowdmesh.p2p.host import make_host
from crowdmesh.p2p.messages import (
    MAX_HEIGHT,
    MESSAGE_TYPES,
    Blocks,
    GetHeaders,
    Headers,
    Status,
    SyncFailed,
    TxGossip,
    Txs,
    decode_message,
    encode_message,
)
from crowdmesh.p2p.scoring import PeerScores
from crowdmesh.p2p.sync import MAX_SERVED_HEADERS, MAX_STREAMS_PER_PEER, SyncServer

CHAIN = "testchain"
HEAD = b"\x07" * 32


# -- wire constructors -----------------------------------------------------------------------

@pytest.mark.parametrize("work", ["\u00b2", "\u0661\u0662", "１", "-1", "+1", " 1", "1 ", "",
                                  "01", "1" * 81, "1_000"])
def test_status_work_must_be_canonical_ascii_decimal(work: str) -> None:
    with pytest.raises(DecodeError) as err:
        Status(CHAIN, 1, HEAD, work)
    assert err.value.code == "bad-msg-field"
    frame = msgpack.packb(["status", CHAIN, 1, HEAD, work], use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_message(frame)


def test_status_golden_encoding_and_work() -> None:
    msg = Status(CHAIN, 5, HEAD, "1234")
    assert encode_message(msg).hex() == (
        "95a6737461747573a974657374636861696e05c420" + "07" * 32 + "a431323334")
    assert decode_message(encode_message(msg)) == msg
    assert msg.work == 1234 and Status(CHAIN, 0, HEAD, "0").work == 0


@pytest.mark.parametrize("make", [
    lambda h: Status(CHAIN, h, HEAD, "1"),
    lambda h: GetHeaders(h, 1),
    lambda h: Headers(h, ()),
])
def test_heights_are_bounded(make: Any) -> None:
    make(MAX_HEIGHT)
    for bad in (-1, MAX_HEIGHT + 1, 2**64 - 1):
        with pytest.raises(DecodeError):
            make(bad)


_LEAF = st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(max_size=40), st.text(max_size=12),
                  st.lists(st.binary(max_size=40), max_size=3), st.booleans(), st.none(),
                  st.floats())


@given(st.sampled_from(sorted(MESSAGE_TYPES)), st.lists(_LEAF, max_size=6))
def test_decoding_peer_data_raises_only_decode_error(tag: str, fields: list[Any]) -> None:
    frame = msgpack.packb([tag, *fields], use_bin_type=True)
    try:
        msg = decode_message(frame)
    except DecodeError:
        return
    assert encode_message(msg) == frame  # what decodes is canonical
    if isinstance(msg, Status):
        assert msg.work == int(msg.total_work)  # int() never raises on a decoded Status


# -- the sync driver against a lying peer ------------------------------------------------------

class Chain:
    """What ChainSync reads: a main chain of opaque hashes, which tests may shorten."""

    def __init__(self, height: int) -> None:
        self.hashes = [bytes([i % 256]) * 32 for i in range(height + 1)]
        self.total_work = height

    @property
    def height(self) -> int:
        return len(self.hashes) - 1

    def get_hash_at(self, height: int) -> bytes:
        if not 0 <= height <= self.height:
            raise NotFound("block-not-found", str(height))
        return self.hashes[height]

    def has_block(self, block_hash: bytes) -> bool:
        return True


def header(height: int, parent: bytes = HEAD, target: int = MAX_TARGET,
           chain_id: str = CHAIN) -> BlockHeader:
    return BlockHeader(chain_id, height, parent, 0, target, HEAD, HEAD, HEAD, 0)


def chain_of(start: int, n: int, **kw: Any) -> tuple[bytes, ...]:
    out: list[bytes] = []
    parent = HEAD
    for h in range(start, start + n):
        hd = header(h, parent, **kw)
        out.append(hd.encode())
        parent = hd.hash
    return tuple(out)


class LyingPeer:
    """A sync session whose replies a test scripts; counts requests."""

    def __init__(self, headers: Any, blocks: Any = lambda hashes: Blocks(()),
                 on_probe: Any = None) -> None:
        self.status_reply = Status(CHAIN, MAX_HEIGHT, HEAD, str(10**30))
        self._headers = headers
        self._blocks = blocks
        self._on_probe = on_probe
        self.requests = 0

    async def status(self) -> Status:
        return self.status_reply

    async def headers(self, start: int, count: int) -> Headers:
        self.requests += 1
        await trio.sleep(0)
        if count == 1 and self._on_probe is not None:
            self._on_probe()
        return Headers(start, self._headers(start, count))

    async def blocks(self, hashes: tuple[bytes, ...]) -> Blocks:
        self.requests += 1
        await trio.sleep(0)
        return self._blocks(hashes)


class Net:
    """What ChainSync needs from the network: sessions to one peer and the reject path."""

    def __init__(self, session: LyingPeer) -> None:
        self.session = session
        self.gossip = self
        self.rejects: list[tuple[str, str]] = []

    @asynccontextmanager
    async def open_sync(self, peer: Any) -> AsyncIterator[LyingPeer]:
        yield self.session

    def reject(self, peer: str, topic: str, code: str, detail: str = "") -> None:
        self.rejects.append((topic, code))

    def connected(self) -> list[Any]:
        return []


PEER = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"


async def run_sync(session: LyingPeer, chain: Chain | None = None,
                   budget: float = 5.0, have: bool = True) -> tuple[Net, ChainSync]:
    net = Net(session)
    view = chain or Chain(3)
    if not have:
        view.has_block = lambda h: False  # type: ignore[method-assign]
    sync = ChainSync(net, view, CHAIN, lambda b, p: True)  # type: ignore[arg-type]
    sync.budget_s = budget
    with trio.fail_after(budget + 5):
        await sync.sync_with(ID.from_base58(PEER))
    return net, sync


@pytest.mark.parametrize(("kw", "code"), [
    ({"chain_id": "otherchain"}, "bad-block-chain-id"),
    ({"target": 1}, "bad-block-pow"),
])
async def test_made_up_headers_end_the_round_and_cost_the_peer(kw: dict[str, Any],
                                                               code: str) -> None:
    peer = LyingPeer(lambda start, count: chain_of(start, min(count, 8), **kw))
    net, sync = await run_sync(peer)
    assert net.rejects == [("sync", code)]
    assert sync.budget_hits == 0


async def test_headers_out_of_sequence_cost_the_peer() -> None:
    peer = LyingPeer(lambda start, count: (header(start).encode(), header(start + 1).encode()))
    net, _ = await run_sync(peer)  # second header's parent is not the first one's hash
    assert net.rejects == [("sync", "sync-bad-reply")]


async def test_no_block_for_missing_headers_ends_the_round() -> None:
    peer = LyingPeer(lambda start, count: chain_of(start, min(count, 8)))
    net, sync = await run_sync(peer, have=False)
    assert net.rejects == [("sync", "sync-bad-reply")]
    assert peer.requests < 10 and sync.blocks_fetched == 0


async def test_endless_headers_are_cut_off_by_the_budget() -> None:
    peer = LyingPeer(lambda start, count: chain_of(start, min(count, 8)))
    started = trio.current_time()
    net, sync = await run_sync(peer, budget=0.5)  # we "have" every block it names
    assert trio.current_time() - started < 3
    assert sync.budget_hits == 1 and net.rejects == []
    assert sync._hints.receive_nowait() is not None  # a later round continues with it


async def test_reorg_to_a_shorter_chain_during_the_fork_probe_is_no_match() -> None:
    chain = Chain(40)

    def reorg() -> None:  # our chain switches to a shorter heavier one meanwhile
        del chain.hashes[5:]

    peer = LyingPeer(lambda start, count: chain_of(start, min(count, 1)), on_probe=reorg)
    peer.status_reply = Status(CHAIN, 50, HEAD, str(10**30))
    net, _ = await run_sync(peer, chain)
    assert peer.requests > 1  # it probed, then carried on from height 0
    assert all(code != "block-not-found" for _, code in net.rejects)


# -- the sync server --------------------------------------------------------------------------

class Provider:
    def __init__(self) -> None:
        self.counts: list[int] = []

    def sync_status(self) -> Status:
        return Status(CHAIN, 0, HEAD, "1")

    def sync_headers(self, start: int, count: int) -> Headers:
        self.counts.append(count)
        raise NotFound("block-not-found", "pruned meanwhile")

    def sync_blocks(self, hashes: tuple[bytes, ...]) -> Blocks:
        return Blocks(())

    def sync_txs(self, txids: tuple[bytes, ...]) -> Txs:
        return Txs(())


def test_server_bounds_headers_per_reply_and_answers_provider_errors() -> None:
    provider = Provider()
    server = SyncServer(provider, lambda *a: None)
    assert server.answer(GetHeaders(0, 2048)) == SyncFailed("block-not-found")
    assert provider.counts == [MAX_SERVED_HEADERS]


class Stream:
    """An inbound stream that sends nothing until closed."""

    def __init__(self, peer: str) -> None:
        self.muxed_conn = type("Conn", (), {"peer_id": ID.from_base58(peer)})()
        self.closed = trio.Event()

    async def read(self, n: int) -> bytes:
        await self.closed.wait()
        return b""

    async def write(self, data: bytes) -> None:
        raise AssertionError("nothing was asked")

    async def close(self) -> None:
        self.closed.set()


OTHER = "12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9iSwYntZ9WjHa"


async def test_one_peer_cannot_take_every_inbound_sync_slot() -> None:
    server = SyncServer(Provider(), lambda *a: None)
    streams = [Stream(PEER) for _ in range(MAX_STREAMS_PER_PEER + 1)] + [Stream(OTHER)]
    async with trio.open_nursery() as nursery:
        for s in streams:
            nursery.start_soon(server.handle_stream, s)
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        assert sum(s.closed.is_set() for s in streams) == 1  # the one over the cap
        assert server.streams_of(PEER) == MAX_STREAMS_PER_PEER and server.streams_of(OTHER) == 1
        assert server.refused == 1
        for s in streams:
            await s.close()
    assert server.streams_of(PEER) == 0 and server.streams_of(OTHER) == 0


# -- announcements of made-up txids --------------------------------------------------------------

class EmptyHolder:
    async def txs(self, wanted: tuple[bytes, ...], timeout: float) -> Txs:
        return Txs(())


async def test_an_announcer_is_capped_and_one_serving_none_is_penalised() -> None:
    @asynccontextmanager
    async def open_sync(peer: Any) -> AsyncIterator[EmptyHolder]:
        yield EmptyHolder()

    async def accept(raws: list[bytes], peer: str) -> None:
        raise AssertionError("nothing to accept")

    rejects: list[tuple[str, str]] = []
    fetcher = TxFetcher(open_sync, list, accept,  # type: ignore[arg-type]
                        lambda p, code, d: rejects.append((p, code)))
    made_up = [i.to_bytes(32, "big") for i in range(1, MAX_WANTED_PER_PEER + 65)]
    for i in range(0, len(made_up), 64):
        fetcher.announced(PEER, tuple(made_up[i:i + 64]))
    assert fetcher.wanted_from(PEER) == MAX_WANTED_PER_PEER == fetcher.wanted
    assert fetcher.dropped == 64
    fetcher.announced(OTHER, (b"\xff" * 32,))  # another peer is not crowded out
    assert fetcher.wanted_from(OTHER) == 1
    await fetcher.fetch(PEER, tuple(made_up[:64]))
    assert rejects == [(PEER, UNSERVED)]
    assert fetcher.wanted_from(PEER) == MAX_WANTED_PER_PEER - 64
    assert fetcher.wanted == MAX_WANTED_PER_PEER - 64 + 1


def test_a_crowdmesh_error_of_ours_in_the_validator_drops_the_message_without_penalty() -> None:
    def check(msg: Any) -> None:
        raise NotFound("block-not-found", "a store race of ours")

    rejects: list[str] = []
    gossip = Gossip(make_host(create_new_key_pair()), CHAIN, PeerScores(lambda: 0.0), check,
                    lambda p, t, code, d: rejects.append(code))
    msg = rpc_pb2.Message(data=encode_message(TxGossip(b"tx")), topicIDs=[gossip.topics[TXS]])
    assert gossip._validator(ID.from_base58(PEER), msg) is False
    assert rejects == [] and gossip.scores.score(PEER) == 0
