"""Fetching announced transactions over sync: Bitcoin's inv/getdata for transactions that are
too large to gossip (``TxAnnounce`` → ``GetTxs`` → ``Txs``).

Invariants:
- :meth:`TxFetcher.announced` never awaits: the gossip intake loop calls it, and it only records
  what to fetch from whom and queues a request on a bounded channel (a full channel drops the
  request and counts it; another holder's announcement asks again).
- Each txid is wanted by at most one request at a time; the other peers that announced it are
  kept (at most :data:`MAX_SOURCES`) and asked, one by one, only if the current one does not
  deliver it. At most :data:`MAX_WANTED` txids are tracked, at most
  :data:`MAX_WANTED_PER_PEER` of them first announced by one peer (so announcing random txids
  cannot crowd out everyone else), and :data:`MAX_IN_FLIGHT` requests run at once, each bounded
  by :data:`FETCH_TIMEOUT_S` (stream open plus reply).
- A peer that serves some of what it announced is not penalised for the rest (a tx may be
  mined or evicted meanwhile), nor is one whose stream broke (it left). A peer that answers
  (or times out, or refuses) with none of the txids it announced costs ``sync-tx-unserved``, a
  small penalty: honest peers rarely do it, an announcer of made-up txids always does. A reply
  that is not what was asked costs more: an item that is not one of the requested txids (or
  repeats one) ``sync-tx-mismatch``, an undecodable item its decode code, a wrong reply type
  ``sync-bad-reply``; the whole reply is then dropped.
- Bodies that match go to ``accept(raws, peer)``, which validates and pools them exactly as
  gossiped transactions and re-announces them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import trio
from libp2p.peer.id import ID

from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import DecodeError, ProtocolViolation, ValidationError
from crowdmesh.p2p.messages import MAX_TXIDS_PER_MESSAGE
from crowdmesh.p2p.sync import SyncSession

__all__ = ["FETCH_TIMEOUT_S", "MAX_IN_FLIGHT", "MAX_WANTED_PER_PEER", "MISMATCH", "UNSERVED",
           "TxFetcher"]

log = logging.getLogger("crowdmesh.sync")

FETCH_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 4
QUEUE_SIZE = 256
MAX_WANTED = 4096
MAX_WANTED_PER_PEER = 256
MAX_SOURCES = 8
MISMATCH = "sync-tx-mismatch"
UNSERVED = "sync-tx-unserved"
# The stream broke: the peer left, which honest peers do; nothing it sent was wrong.
GONE = frozenset({"sync-io", "sync-eof"})
# It answered without any of the txids it announced (or not in time, or refused).
NOT_SERVED = frozenset({"sync-timeout", "sync-refused"})

OpenSync = Callable[[ID], AbstractAsyncContextManager[SyncSession]]
AcceptFn = Callable[[list[bytes], str], Awaitable[None]]
RejectFn = Callable[[str, str, str], None]
"""``reject(peer_b58, code, detail)``: count invalid data against a peer."""


@dataclass
class _Want:
    """One txid being fetched: who was asked, who else announced it."""

    first: str
    asked: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)


class TxFetcher:
    """Fetches announced txids from their announcers with bounded, deduplicated requests."""

    def __init__(self, open_sync: OpenSync, unknown: Callable[[tuple[bytes, ...]], list[bytes]],
                 accept: AcceptFn, reject: RejectFn) -> None:
        self._open_sync = open_sync
        self._unknown = unknown
        self._accept = accept
        self._reject = reject
        self._send, self._queue = trio.open_memory_channel[tuple[str, tuple[bytes, ...]]](
            QUEUE_SIZE)
        self._wanted: dict[bytes, _Want] = {}
        self._per_peer: dict[str, int] = {}  # wants each peer announced first
        self.fetched = 0
        self.dropped = 0

    @property
    def wanted(self) -> int:
        """How many txids are queued or being fetched."""
        return len(self._wanted)

    def announced(self, peer: str, txids: tuple[bytes, ...]) -> None:
        """``peer`` holds ``txids``: queue a fetch of the ones we lack and nobody is fetching."""
        new = []
        for txid in self._unknown(txids):
            want = self._wanted.get(txid)
            if want is not None:
                if peer not in want.asked and peer not in want.sources:
                    want.sources = [*want.sources, peer][:MAX_SOURCES]
            elif len(self._wanted) < MAX_WANTED and self.wanted_from(peer) < MAX_WANTED_PER_PEER:
                self._wanted[txid] = _Want(peer)
                self._per_peer[peer] = self.wanted_from(peer) + 1
                new.append(txid)
            else:
                self.dropped += 1
        self._enqueue(peer, new)

    def wanted_from(self, peer: str) -> int:
        """How many tracked txids ``peer`` announced first."""
        return self._per_peer.get(peer, 0)

    def _forget(self, txid: bytes) -> None:
        want = self._wanted.pop(txid, None)
        if want is None:
            return
        left = self._per_peer.pop(want.first) - 1
        if left:
            self._per_peer[want.first] = left

    def _enqueue(self, peer: str, txids: list[bytes]) -> None:
        for i in range(0, len(txids), MAX_TXIDS_PER_MESSAGE):
            chunk = tuple(txids[i:i + MAX_TXIDS_PER_MESSAGE])
            for txid in chunk:
                self._wanted[txid].asked.add(peer)
            try:
                self._send.send_nowait((peer, chunk))
            except trio.WouldBlock:
                self._give_up(chunk)

    def _give_up(self, txids: tuple[bytes, ...]) -> None:
        self.dropped += len(txids)
        for txid in txids:
            self._forget(txid)

    async def run(self) -> None:
        """Serve the request queue with :data:`MAX_IN_FLIGHT` workers, forever."""
        async with trio.open_nursery() as nursery:
            for _ in range(MAX_IN_FLIGHT):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        async for peer, txids in self._queue:
            await self.fetch(peer, txids)

    async def fetch(self, peer: str, txids: tuple[bytes, ...]) -> None:
        """Ask ``peer`` for ``txids`` once; pass on what matches, ask others for the rest."""
        wanted = tuple(self._unknown(txids))  # a block or another peer may have brought some
        for txid in set(txids).difference(wanted):
            self._forget(txid)
        got = await self._request(peer, wanted) if wanted else []
        if got:
            self.fetched += len(got)
            await self._accept(got, peer)
        self._next_sources([t for t in wanted if t in self._wanted])

    async def _request(self, peer: str, wanted: tuple[bytes, ...]) -> list[bytes]:
        raws: tuple[bytes, ...] = ()
        try:
            with trio.move_on_after(FETCH_TIMEOUT_S):
                async with self._open_sync(ID.from_base58(peer)) as session:
                    raws = (await session.txs(wanted, FETCH_TIMEOUT_S)).txs
            if not raws:
                raise ProtocolViolation(UNSERVED, f"none of {len(wanted)} announced txids")
            delivered = _match(raws, wanted)
        except (ProtocolViolation, DecodeError, ValidationError) as exc:
            if exc.code in GONE:
                log.debug("tx fetch from %s failed: %s", peer, exc)
            else:
                code = UNSERVED if exc.code in NOT_SERVED else exc.code
                self._reject(peer, code, exc.detail)
            return []
        for txid in delivered:
            self._forget(txid)
        return list(raws)

    def _next_sources(self, missing: list[bytes]) -> None:
        """Ask each missing txid's next announcer; forget txids nobody else announced."""
        by_peer: dict[str, list[bytes]] = {}
        for txid in missing:
            want = self._wanted[txid]
            if not want.sources:
                self._forget(txid)
                continue
            peer, want.sources = want.sources[0], want.sources[1:]
            by_peer.setdefault(peer, []).append(txid)
        for peer, txids in by_peer.items():
            self._enqueue(peer, txids)


def _match(raws: tuple[bytes, ...], wanted: tuple[bytes, ...]) -> list[bytes]:
    """The txids of ``raws`` if each is a distinct requested txid.

    Raises:
        ProtocolViolation: ``sync-tx-mismatch``. DecodeError: an item is not a transaction.
    """
    open_ids = set(wanted)
    out: list[bytes] = []
    for raw in raws:
        txid = Transaction.decode(raw).txid
        if txid not in open_ids:
            raise ProtocolViolation(MISMATCH, f"unrequested or repeated txid {txid.hex()[:16]}")
        open_ids.discard(txid)
        out.append(txid)
    return out
