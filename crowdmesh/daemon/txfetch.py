"""Fetching announced transactions over sync: Bitcoin's inv/getdata for transactions that are
too large to gossip (``TxAnnounce`` → ``GetTxs`` → ``Txs``).

Invariants:
- :meth:`TxFetcher.announced` never awaits: the gossip intake loop calls it, and it only records
  what to fetch from whom and puts the announcer on a bounded queue of peers to visit (a full
  queue drops that peer's txids and counts them; another holder's announcement asks again).
- Each txid is wanted by at most one request at a time; the other peers that announced it are
  kept (at most :data:`MAX_SOURCES`) and asked, one by one, only if the current one does not
  deliver it. At most :data:`MAX_WANTED` txids are tracked, at most
  :data:`MAX_WANTED_PER_PEER` of them first announced by one peer (so announcing random txids
  cannot crowd out everyone else).
- One session (one sync stream) per peer at a time, and at most :data:`MAX_IN_FLIGHT` sessions
  at once: a session asks for everything we want from that peer, :data:`FETCH_BATCH` txids
  per request, so a reply stays near 1 MiB even for transactions at the item cap, and each
  request is bounded by :data:`FETCH_TIMEOUT_S`. Why: a stream open costs far more than a
  request under load (0.5–5 s measured with multi-MiB transfers in flight), and the server
  refuses a peer's fifth concurrent stream.
- A peer that serves some of what it announced is not penalised for the rest (a tx may be
  mined or evicted meanwhile), nor is one whose stream broke (it left). A session that ends
  with none of the txids delivered because the peer answered without them (or refused) costs
  ``sync-tx-unserved`` once, a small penalty, unless :data:`UNSERVED_GRACE_S` later every
  txid asked has reached us other than by a fetch (a miner's own txs, mined before we asked):
  honest peers rarely do it, an announcer of made-up txids always does. A reply that is not
  what was asked costs more: an item that is not one of the requested txids (or repeats one)
  ``sync-tx-mismatch``, an undecodable item its decode code, a wrong reply type
  ``sync-bad-reply``; the whole reply is then dropped.
- A request that timed out, or a stream that broke, is retried: by the next announcer, or by
  the same one after :data:`RETRY_DELAY_S`, at most :data:`MAX_TRIES` times per txid. Why: a
  txid given up on is lost for good when its announcer was the only holder (it announces once),
  and a lost nonce holds every later transaction of its sender in the gap buffer. A peer whose
  last allowed try timed out without delivering anything costs ``sync-tx-unserved`` too.
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
from crowdmesh.p2p.sync import SyncSession

__all__ = ["FETCH_BATCH", "FETCH_TIMEOUT_S", "MAX_IN_FLIGHT", "MAX_TRIES", "MAX_WANTED_PER_PEER",
           "MISMATCH", "RETRY_DELAY_S", "UNSERVED", "UNSERVED_GRACE_S", "TxFetcher"]

log = logging.getLogger("crowdmesh.sync")

FETCH_TIMEOUT_S = 10.0
FETCH_BATCH = 16  # txids per GetTxs: ≤ 16 × 128 KiB (the item cap) = 2 MiB per reply
MAX_IN_FLIGHT = 4
QUEUE_SIZE = 256
MAX_WANTED = 4096
MAX_WANTED_PER_PEER = 256
MAX_SOURCES = 8
MAX_TRIES = 4
RETRY_DELAY_S = 1.0
UNSERVED_GRACE_S = 5.0
MISMATCH = "sync-tx-mismatch"
UNSERVED = "sync-tx-unserved"
# The stream broke: the peer left, which honest peers do; nothing it sent was wrong.
GONE = frozenset({"sync-io", "sync-eof"})
# Worth asking again: a busy peer is slow to open a stream or to answer; a broken one may be back.
RETRY = frozenset({"sync-timeout", *GONE})

OpenSync = Callable[[ID], AbstractAsyncContextManager[SyncSession]]
AcceptFn = Callable[[list[bytes], str], Awaitable[None]]
RejectFn = Callable[[str, str, str], None]
"""``reject(peer_b58, code, detail)``: count invalid data against a peer."""


@dataclass
class _Want:
    """One txid being fetched: who was asked, who else announced it, failed tries."""

    first: str
    asked: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)
    tries: int = 0


@dataclass
class _Session:
    """What one session with a peer achieved."""

    delivered: int = 0
    unserved: bool = False  # a reply (or refusal) without any of the txids asked
    asked: list[bytes] = field(default_factory=list)


class TxFetcher:
    """Fetches announced txids from their announcers with bounded, deduplicated requests."""

    def __init__(self, open_sync: OpenSync, unknown: Callable[[tuple[bytes, ...]], list[bytes]],
                 accept: AcceptFn, reject: RejectFn) -> None:
        self._open_sync = open_sync
        self._unknown = unknown
        self._accept = accept
        self._reject = reject
        self._send, self._queue = trio.open_memory_channel[str](QUEUE_SIZE)
        self._wanted: dict[bytes, _Want] = {}
        self._per_peer: dict[str, int] = {}  # wants each peer announced first
        self._pending: dict[str, list[bytes]] = {}  # per peer: txids to ask it for
        self._scheduled: set[str] = set()  # peers queued or in a session
        self._nursery: trio.Nursery | None = None  # for delayed retries, once running
        self._recent: dict[bytes, None] = {}  # txids we fetched lately (oldest first)
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
        txids = [t for t in txids if t in self._wanted]  # a delayed retry may be stale
        if not txids:
            return
        for txid in txids:
            self._wanted[txid].asked.add(peer)
        self._pending.setdefault(peer, []).extend(txids)
        if peer in self._scheduled:
            return  # its session (queued or running) picks them up
        try:
            self._send.send_nowait(peer)
        except trio.WouldBlock:
            self._give_up(self._pending.pop(peer))
            return
        self._scheduled.add(peer)

    def _give_up(self, txids: list[bytes]) -> None:
        self.dropped += len(txids)
        for txid in txids:
            self._forget(txid)

    async def run(self) -> None:
        """Serve the peer queue with :data:`MAX_IN_FLIGHT` workers, forever."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for _ in range(MAX_IN_FLIGHT):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        async for peer in self._queue:
            try:
                await self._visit(peer, self._pending.pop(peer, []), follow=True)
            finally:
                self._scheduled.discard(peer)
            if self._pending.get(peer):  # arrived while the session was closing
                self._enqueue(peer, self._pending.pop(peer))

    async def fetch(self, peer: str, txids: tuple[bytes, ...]) -> None:
        """Ask ``peer`` for ``txids`` in one session; pass on what matches, ask others (or it
        again, later) for the rest."""
        await self._visit(peer, list(txids), follow=False)

    async def _visit(self, peer: str, txids: list[bytes], follow: bool) -> None:
        """One session with ``peer`` for ``txids`` (and, if ``follow``, for whatever it
        announces meanwhile); then the penalty and the retries it earned."""
        done = _Session()
        batch: list[bytes] = []
        try:
            async with self._open_sync(ID.from_base58(peer)) as session:
                while batch := self._next_batch(peer, txids, follow):
                    await self._ask(session, peer, batch, done)
                    batch = []
        except (ProtocolViolation, DecodeError, ValidationError) as exc:
            failed = [*batch, *txids, *(self._pending.pop(peer, []) if follow else [])]
            self._failed(peer, exc, failed, done)
        if done.unserved and not done.delivered:
            if self._nursery is None:
                self._judge(peer, done.asked)
            else:
                self._nursery.start_soon(self._judge_later, peer, done.asked)

    async def _judge_later(self, peer: str, asked: list[bytes]) -> None:
        # why wait: a miner announces its own txs and may mine them before we ask; the block
        # that explains the empty answer reaches us a moment later (0.4-2.3 s measured)
        await trio.sleep(UNSERVED_GRACE_S)
        self._judge(peer, asked)

    def _judge(self, peer: str, asked: list[bytes]) -> None:
        """Penalise ``peer`` unless all it failed to serve reached us since without a fetch
        (in a block, so it had them until it mined them)."""
        if self._unknown(tuple(asked)) or any(t in self._recent for t in asked):
            self._reject(peer, UNSERVED, f"{len(asked)} announced txids not served")

    def _next_batch(self, peer: str, txids: list[bytes], follow: bool) -> list[bytes]:
        """Up to :data:`FETCH_BATCH` txids still worth asking for, taken out of ``txids``
        (refilled from what ``peer`` announced meanwhile if ``follow``)."""
        while True:
            if follow and not txids:
                txids.extend(self._pending.pop(peer, []))
            if not txids:
                return []
            batch = txids[:FETCH_BATCH]
            del txids[:FETCH_BATCH]
            lacking = set(self._unknown(tuple(batch)))  # a block or a peer may have brought some
            for txid in batch:
                if txid not in lacking:
                    self._forget(txid)
            batch = [t for t in batch if t in self._wanted]
            if batch:
                return batch

    async def _ask(self, session: SyncSession, peer: str, batch: list[bytes],
                   done: _Session) -> None:
        """One request; raises what ends the session (a refusal marks it unserved first)."""
        done.asked += batch
        try:
            raws = (await session.txs(tuple(batch), FETCH_TIMEOUT_S)).txs
        except ProtocolViolation as exc:
            done.unserved = done.unserved or exc.code == "sync-refused"
            raise
        delivered = _match(raws, tuple(batch))
        for txid in delivered:
            self._forget(txid)
            self._remember(txid)
        if raws:
            done.delivered += len(raws)
            self.fetched += len(raws)
            await self._accept(list(raws), peer)
        else:
            done.unserved = True
        # what it did not send it lacks (mined or evicted meanwhile, or never had): ask others
        self._next_sources([t for t in batch if t in self._wanted], peer)

    def _remember(self, txid: bytes) -> None:
        self._recent[txid] = None
        if len(self._recent) > MAX_WANTED:
            del self._recent[next(iter(self._recent))]

    def _failed(self, peer: str, exc: ProtocolViolation | DecodeError | ValidationError,
                txids: list[bytes], done: _Session) -> None:
        """The session ended early: count what the peer did wrong, then place its txids."""
        missing = [t for t in dict.fromkeys(txids) if t in self._wanted]
        if exc.code not in RETRY and exc.code != "sync-refused":
            self._reject(peer, exc.code, exc.detail)  # it sent something wrong
        elif exc.code in RETRY:
            log.debug("tx fetch from %s failed: %s", peer, exc)
            for txid in missing:
                want = self._wanted[txid]
                want.tries += 1
                if want.tries < MAX_TRIES and peer not in want.sources:
                    want.sources.append(peer)  # ask it again once the others had their turn
            if exc.code == "sync-timeout" and any(self._wanted[t].tries >= MAX_TRIES
                                                   for t in missing):
                done.unserved = True  # its last chance: it announced, then never answered
                done.asked += missing
        self._next_sources(missing, peer)

    def _next_sources(self, missing: list[bytes], failed: str) -> None:
        """Ask each missing txid's next announcer (``failed`` itself only after a delay);
        forget txids nobody else announced."""
        by_peer: dict[str, list[bytes]] = {}
        for txid in missing:
            want = self._wanted[txid]
            if not want.sources:
                self._forget(txid)
                continue
            peer, want.sources = want.sources[0], want.sources[1:]
            by_peer.setdefault(peer, []).append(txid)
        for peer, txids in by_peer.items():
            if peer == failed and self._nursery is not None:
                self._nursery.start_soon(self._retry_later, peer, txids)
            else:
                self._enqueue(peer, txids)

    async def _retry_later(self, peer: str, txids: list[bytes]) -> None:
        await trio.sleep(RETRY_DELAY_S)
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
