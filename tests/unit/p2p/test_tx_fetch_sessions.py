"""The tx fetcher against scripted peers (no network): one session per peer, requests in
batches, and retries of what timed out (a blob's parts must all arrive: a lost nonce holds
every later part of its sender in the gap buffer).

Regression: a 1 MiB-model CrowdSFL round stalled until T_wait because every peer fetched each
announced blob part on a stream of its own (up to four at once per announcer, which the server
refuses beyond :data:`MAX_STREAMS_PER_PEER`); under load the stream opens timed out and each
such txid was forgotten for good (``sync-tx-unserved``, 153 in one run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.tx import Transaction, make_transaction
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.txfetch import (
    FETCH_BATCH,
    MAX_TRIES,
    UNSERVED,
    UNSERVED_GRACE_S,
    TxFetcher,
)
from crowdmesh.errors import ProtocolViolation
from crowdmesh.p2p.messages import Txs
from crowdmesh.p2p.sync import MAX_STREAMS_PER_PEER

CHAIN = "testchain"
PEER = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
OTHER = "12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9iSwYntZ9WjHa"


def txs(n: int) -> list[Transaction]:
    key = AccountKey(b"\x01" * 32)
    return [make_transaction(key, CHAIN, i, "transfer", transfer_payload(b"\x02" * 32, 1),
                             fee=100_000) for i in range(n)]


class Peers:
    """Scripted holders: ``fail_opens[peer]`` opens fail with ``sync-timeout`` first, then each
    serves what it holds; counts opens, concurrent streams and request sizes."""

    def __init__(self, holds: dict[str, list[Transaction]]) -> None:
        self.holds = {p: {tx.txid: tx.encode() for tx in h} for p, h in holds.items()}
        self.fail_opens: dict[str, int] = {}
        self.opens: dict[str, int] = {}
        self.open_now: dict[str, int] = {}
        self.most_open: dict[str, int] = {}
        self.requests: list[int] = []

    @asynccontextmanager
    async def open_sync(self, peer_id: Any) -> AsyncIterator[Peers.Session]:
        peer = peer_id.to_base58()
        self.opens[peer] = self.opens.get(peer, 0) + 1
        await trio.sleep(0.3)  # a stream open is slow under load
        if self.fail_opens.get(peer, 0) > 0:
            self.fail_opens[peer] -= 1
            raise ProtocolViolation("sync-timeout", "open")
        self.open_now[peer] = self.open_now.get(peer, 0) + 1
        self.most_open[peer] = max(self.most_open.get(peer, 0), self.open_now[peer])
        try:
            yield Peers.Session(self, peer)
        finally:
            self.open_now[peer] -= 1

    class Session:
        def __init__(self, peers: Peers, peer: str) -> None:
            self.peers, self.peer = peers, peer

        async def txs(self, wanted: tuple[bytes, ...], timeout: float) -> Txs:
            self.peers.requests.append(len(wanted))
            await trio.sleep(0.01)
            held = self.peers.holds[self.peer]
            return Txs(tuple(held[t] for t in wanted if t in held))


class Harness:
    def __init__(self, peers: Peers) -> None:
        self.pooled: set[bytes] = set()
        self.rejects: list[tuple[str, str]] = []
        self.fetcher = TxFetcher(peers.open_sync, self.unknown, self.accept,  # type: ignore[arg-type]
                                 lambda p, code, d: self.rejects.append((p, code)))

    def unknown(self, txids: tuple[bytes, ...]) -> list[bytes]:
        return [t for t in txids if t not in self.pooled]

    async def accept(self, raws: list[bytes], peer: str) -> None:
        self.pooled.update(Transaction.decode(raw).txid for raw in raws)


async def settle(h: Harness, nursery: trio.Nursery) -> None:
    with trio.fail_after(120):  # virtual time (autojump clock)
        while h.fetcher.wanted:
            await trio.sleep(0.1)
    await trio.sleep(UNSERVED_GRACE_S + 1)  # for a deferred penalty
    nursery.cancel_scope.cancel()


async def test_a_peer_announcing_many_txids_is_fetched_in_one_session_of_batches(
        autojump_clock: trio.testing.MockClock) -> None:
    parts = txs(50)
    peers = Peers({PEER: parts})
    h = Harness(peers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.fetcher.run)
        for tx in parts:  # one announcement each, as they arrive from submissions
            h.fetcher.announced(PEER, (tx.txid,))
            await trio.sleep(0)
        await settle(h, nursery)
    assert h.pooled == {tx.txid for tx in parts} and h.rejects == []
    assert peers.most_open[PEER] == 1 < MAX_STREAMS_PER_PEER  # never refused by the server
    assert peers.opens[PEER] <= 2  # not one stream per txid
    assert max(peers.requests) <= FETCH_BATCH and sum(peers.requests) == 50


async def test_a_timed_out_fetch_is_retried_from_the_only_announcer(
        autojump_clock: trio.testing.MockClock) -> None:
    parts = txs(20)
    peers = Peers({PEER: parts})
    peers.fail_opens[PEER] = MAX_TRIES - 1  # busy: every open but the last times out
    h = Harness(peers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.fetcher.run)
        h.fetcher.announced(PEER, tuple(tx.txid for tx in parts))
        await settle(h, nursery)
    assert h.pooled == {tx.txid for tx in parts}  # nothing lost to the timeouts
    assert h.rejects == []  # slow, not lying: no penalty while a try is left
    assert peers.opens[PEER] == MAX_TRIES


async def test_a_timeout_moves_to_another_announcer_first_and_gives_up_after_the_last_try(
        autojump_clock: trio.testing.MockClock) -> None:
    parts = txs(3)
    peers = Peers({PEER: parts, OTHER: parts[:1]})
    peers.fail_opens[PEER] = 100  # never answers
    h = Harness(peers)
    ids = tuple(tx.txid for tx in parts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.fetcher.run)
        h.fetcher.announced(PEER, ids)
        h.fetcher.announced(OTHER, ids[:1])
        await settle(h, nursery)
    assert h.pooled == {ids[0]}  # the other announcer had it
    assert peers.opens[PEER] == MAX_TRIES and peers.opens[OTHER] == 1
    assert h.rejects == [(PEER, UNSERVED)]  # once, when its last try timed out
    assert h.fetcher.wanted == 0


async def test_an_empty_answer_is_penalised_only_if_the_txids_stay_unheard_of(
        autojump_clock: trio.testing.MockClock) -> None:
    mined, made_up = txs(2), [bytes([9]) * 32]
    peers = Peers({PEER: [], OTHER: []})  # answers without anything
    h = Harness(peers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.fetcher.run)
        h.fetcher.announced(PEER, tuple(tx.txid for tx in mined))  # mined before we asked
        h.fetcher.announced(OTHER, tuple(made_up))
        with trio.fail_after(UNSERVED_GRACE_S):
            while h.fetcher.wanted or len(peers.requests) < 2:
                await trio.sleep(0.05)
        h.pooled.update(tx.txid for tx in mined)  # the block that explains it arrives
        await trio.sleep(UNSERVED_GRACE_S + 1)
        nursery.cancel_scope.cancel()
    assert h.rejects == [(OTHER, UNSERVED)]
