"""Gossipsub for crowdmesh: topics per chain id, validators, drained subscriptions, back-pressure.

Invariants (each closes a silent drop listed in LIBP2P.md):
- Offered protocols are ``/meshsub/1.2.0`` and ``/meshsub/1.1.0`` only, with strict signing, so
  other libp2p implementations can join (§14).
- Heartbeat 1 s (default 120 s), the per-peer-per-topic rate limit far above our rate (§4),
  subscription channels of :data:`SUBSCRIPTION_CHANNEL_SIZE` drained by a dedicated task into a
  bounded channel that drops and counts when the node falls behind (§5).
- :meth:`Gossip.publish` waits (bounded) while any per-peer outbound queue is above
  :data:`QUEUE_HIGH_WATER`, because a full 32-RPC queue drops silently (§5).
- Message id = SHA-256 of the payload, so the same transaction or block relayed by different
  origins is one message; only a ``TxAnnounce`` id also covers its origin (each holder of a
  large transaction announces it once).
- The topic validator does only cheap checks (stateless, plus one head-state account read per
  transaction): size cap, strict decode, message type
  allowed on the topic, and the node's ``check`` (signatures, PoW). A reject lowers the
  forwarder's score and is reported with its stable code.
- Spatial topics (SPATIAL.md §2.3) are joined and left at run time: one per H3 cell
  (``crowdmesh/<chain-id>/spatial/1/cell/<cell hex>``, reports only) and one votes topic
  (``crowdmesh/<chain-id>/spatial/1/votes``, commits and reveals only). Each joined topic gets
  the same validator and its own drain task (the task ends when the topic is left).
  :meth:`Gossip.publish_to` may publish to a topic we have not joined (gossipsub fanout), and
  runs the validator's checks on the message itself first, since no validator is registered
  for such a topic.
- Equivocation memory keeps a digest per message instead of the whole message (§7).
- IDONTWANT only for messages of at least ``GossipConfig.idontwant_min_bytes`` (16 KiB): below
  that it costs more than the duplicates it saves (:class:`CrowdmeshGossipSub`).
- The sender's signed peer record in each RPC is checked once per peer and record, not twice
  per RPC (:mod:`crowdmesh.p2p.recordmemo`, installed by the first :class:`Gossip`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import libp2p.pubsub.pubsub as ps_mod
import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from crowdmesh.errors import CrowdmeshError, DecodeError, ValidationError
from crowdmesh.p2p import recordmemo
from crowdmesh.p2p.messages import (
    MAX_GOSSIP_BYTES,
    BlockAnnounce,
    Message,
    NewBlock,
    SpatialGossip,
    TxAnnounce,
    TxBatch,
    TxGossip,
    decode_message,
    encode_message,
)
from crowdmesh.p2p.scoring import LoopbackWhitelistScorer, PeerScores, make_score_params

__all__ = [
    "BLOCKS",
    "QUEUE_HIGH_WATER",
    "SPATIAL_CELL",
    "SPATIAL_TOPIC_OF",
    "SPATIAL_VOTES",
    "SUBSCRIPTION_CHANNEL_SIZE",
    "TXS",
    "CrowdmeshGossipSub",
    "Gossip",
    "GossipConfig",
    "Incoming",
    "RejectFn",
    "message_id",
    "spatial_cell_topic",
    "spatial_votes_topic",
    "topic_name",
]

log = logging.getLogger("crowdmesh.p2p")

BLOCKS = "blocks"
TXS = "txs"
SPATIAL_CELL = "spatial-cell"
SPATIAL_VOTES = "spatial-votes"
CORE_TOPICS = (BLOCKS, TXS)
"""The topics every node joins at start (:meth:`Gossip.subscribe_all`)."""
SUBSCRIPTION_CHANNEL_SIZE = 4096
QUEUE_HIGH_WATER = 16
BACKPRESSURE_MAX_WAIT_S = 5.0
INCOMING_CHANNEL_SIZE = 8192
_STREAM_ERRORS = (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError)
_CELL_HEX = re.compile(r"[0-9a-f]{15}")  # an H3 cell index in h3's own spelling

# Which message types may appear on which topic kind; anything else is `wrong-topic`.
TOPIC_MESSAGES: dict[str, frozenset[type[Message]]] = {
    BLOCKS: frozenset({NewBlock, BlockAnnounce}),
    TXS: frozenset({TxGossip, TxBatch, TxAnnounce}),
    SPATIAL_CELL: frozenset({SpatialGossip}),
    SPATIAL_VOTES: frozenset({SpatialGossip}),
}
# Which topic kind carries each spatial message kind (a report on the votes topic, or a vote on
# a cell topic, is `wrong-topic`).
SPATIAL_TOPIC_OF: dict[str, str] = {"report": SPATIAL_CELL, "commit": SPATIAL_VOTES,
                                    "reveal": SPATIAL_VOTES}

RejectFn = Callable[[str, str, str, str], None]
"""``on_reject(peer_b58, topic, code, detail)`` — how rejects reach the log."""
CheckFn = Callable[[Message], None]
"""The node's cheap stateless check; raises DecodeError or ValidationError."""


def topic_name(chain_id: str, kind: str) -> str:
    """``crowdmesh/<chain-id>/<kind>/1`` (DESIGN: P2P)."""
    return f"crowdmesh/{chain_id}/{kind}/1"


def spatial_cell_topic(chain_id: str, cell_hex: str) -> str:
    """``crowdmesh/<chain-id>/spatial/1/cell/<cell hex>``: the reports of one H3 cell.

    Raises:
        ValueError: ``cell_hex`` is not 15 lowercase hex digits (``geo.cell_hex`` spells cells).
    """
    if not _CELL_HEX.fullmatch(cell_hex):
        raise ValueError(f"not an H3 cell in hex: {cell_hex!r}")
    return f"crowdmesh/{chain_id}/spatial/1/cell/{cell_hex}"


def spatial_votes_topic(chain_id: str) -> str:
    """``crowdmesh/<chain-id>/spatial/1/votes``: every report's commits and reveals."""
    return f"crowdmesh/{chain_id}/spatial/1/votes"


# The first bytes of every encoded TxAnnounce: ``[TYPE, …]`` as a 2-element msgpack array.
_TX_ANNOUNCE_PREFIX = b"\x92" + encode_message(TxAnnounce((bytes(32),)))[1:2 + len(
    TxAnnounce.TYPE)]


def message_id(msg: rpc_pb2.Message) -> bytes:
    """Payload-hash message id; for a :class:`TxAnnounce` also the origin's, because every
    node that holds the transactions announces them (the same txids from another holder are
    news, a relayed copy of one holder's announcement is not)."""
    if msg.data.startswith(_TX_ANNOUNCE_PREFIX):
        return hashlib.sha256(msg.from_id + msg.data).digest()
    return hashlib.sha256(msg.data).digest()


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Router settings; the defaults fix every silent drop LIBP2P.md lists."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: int = 1
    max_messages_per_topic_per_second: float = 100_000.0
    seen_ttl: int = 120
    idontwant_min_bytes: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class Incoming:
    """A gossip message that passed the validator; ``origin`` is the signing peer (base58)."""

    origin: str
    kind: str
    msg: Message
    size: int


class CrowdmeshGossipSub(GossipSub):
    """GossipSub whose equivocation memory stores a digest, not the whole message (§7), and
    which sends IDONTWANT only for messages of at least ``idontwant_min_bytes``.

    py-libp2p 0.8.1 sends IDONTWANT to every mesh peer for every message it publishes or
    forwards, whatever its size. In a small full mesh that is four more RPCs per message per
    node, and they rarely arrive before the duplicates they are meant to stop; each RPC costs
    a Python daemon far more CPU than the bytes of a small duplicate. Measured on the CrowdSFL
    bench (5 daemons, 2 cores): 30-40 % less CPU per daemon without them. go-libp2p also has a
    size threshold (``IDontWantMessageThreshold``); ours is higher because our cost is per RPC.
    """

    idontwant_min_bytes = 0
    _idontwant_wanted = True

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        # why a flag: the base publish calls _emit_idontwant_for_message without the message,
        # and nothing awaits between here and that call, so no other publish can interleave
        self._idontwant_wanted = len(pubsub_msg.data) >= self.idontwant_min_bytes
        await super().publish(msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Iterable[str]) -> None:
        if self._idontwant_wanted:
            await super()._emit_idontwant_for_message(msg_id, topic_ids)

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        key = msg.from_id + msg.seqno
        digest = hashlib.sha256(msg.data + "\x00".join(msg.topicIDs).encode()).digest()
        memory: dict[bytes, Any] = self.equivocation_detection  # typed for whole messages
        seen = memory.get(key)
        if seen is None:
            memory[key] = digest
            return True
        if seen != digest:
            log.warning("equivocation from %s", ID(msg.from_id))
            if self.scorer is not None:
                self.scorer.penalize_equivocation(ID(msg.from_id), 100.0)
            return False
        return True


class SafePubsub(Pubsub):
    """Pubsub whose blacklist teardown tolerates a peer that left meanwhile.

    py-libp2p 0.8.1 deletes ``self.peers[peer_id]`` after awaiting the stream reset; if the
    peer's dead-peer handler removed it during that await, the KeyError kills the pubsub service
    and with it the daemon (seen when banning a peer under load).
    """

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        stream = self.peers.get(peer_id)
        if stream is not None:
            with contextlib.suppress(*_STREAM_ERRORS):
                await stream.reset()
            self.peers.pop(peer_id, None)
        self._forget_all_subscriptions(peer_id)


@dataclass
class _Counters:
    dropped_incoming: int = 0
    published: int = 0
    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class Gossip:
    """The node's gossip endpoint: two topics, validators and a bounded incoming channel."""

    def __init__(
        self,
        host: IHost,
        chain_id: str,
        scores: PeerScores,
        check: CheckFn,
        on_reject: RejectFn,
        config: GossipConfig | None = None,
    ) -> None:
        cfg = config or GossipConfig()
        recordmemo.install()
        self.host = host
        self.scores = scores
        self.topics = {kind: topic_name(chain_id, kind) for kind in CORE_TOPICS}
        self.votes_topic = spatial_votes_topic(chain_id)
        self._kinds = {name: kind for kind, name in self.topics.items()}
        self._kinds[self.votes_topic] = SPATIAL_VOTES
        self._cell_prefix = spatial_cell_topic(chain_id, "0" * 15)[:-15]
        self.joined: set[str] = set()
        """Topics joined at run time (:meth:`subscribe`), beyond the core ones."""
        self._check = check
        self._on_reject = on_reject
        self.counters = _Counters()
        self.router = self._make_router(cfg)
        self.pubsub = SafePubsub(
            host,
            self.router,
            strict_signing=True,
            seen_ttl=cfg.seen_ttl,
            msg_id_constructor=message_id,
        )
        self._send, self.incoming = trio.open_memory_channel[Incoming](INCOMING_CHANNEL_SIZE)
        for name in self.topics.values():
            self.pubsub.set_topic_validator(name, self._validator, is_async_validator=False)

    def _make_router(self, cfg: GossipConfig) -> GossipSub:
        router = CrowdmeshGossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=cfg.degree,
            degree_low=cfg.degree_low,
            degree_high=cfg.degree_high,
            heartbeat_interval=cfg.heartbeat_interval,
            max_messages_per_topic_per_second=cfg.max_messages_per_topic_per_second,
            score_params=make_score_params(self.scores),
            adaptive_gossip_enabled=False,  # why: it rewrites heartbeat_interval at run time
            eclipse_protection_enabled=False,  # why: a loopback testnet has one IP
        )
        router.scorer = LoopbackWhitelistScorer(make_score_params(self.scores))
        router.idontwant_min_bytes = cfg.idontwant_min_bytes
        return router

    # -- validation ------------------------------------------------------------------------

    def kind_of(self, topic: str) -> str | None:
        """The kind of a topic name of this chain (``blocks``, ``spatial-cell``, …), or None."""
        kind = self._kinds.get(topic)
        if kind is None and topic.startswith(self._cell_prefix) \
                and _CELL_HEX.fullmatch(topic[len(self._cell_prefix):]):
            return SPATIAL_CELL
        return kind

    def decode(self, topic: str, data: bytes) -> Message:
        """Size cap, strict decode and topic check of one gossip payload.

        Raises:
            DecodeError: with the codec's code, or ``wrong-topic``.
        """
        if len(data) > MAX_GOSSIP_BYTES:
            raise DecodeError("oversize", f"{len(data)} > {MAX_GOSSIP_BYTES} bytes")
        msg = decode_message(data, MAX_GOSSIP_BYTES)
        kind = self.kind_of(topic)
        if kind is None or type(msg) not in TOPIC_MESSAGES[kind]:
            raise DecodeError("wrong-topic", f"{msg.TYPE} on {topic}")
        if isinstance(msg, SpatialGossip) and SPATIAL_TOPIC_OF[msg.kind] != kind:
            raise DecodeError("wrong-topic", f"spatial {msg.kind} on {topic}")
        return msg

    def _validator(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        topic = msg.topicIDs[0] if len(msg.topicIDs) == 1 else ""
        try:
            if not topic:
                raise DecodeError("wrong-topic", "exactly one topic per message")
            self._check(self.decode(topic, msg.data))
        except (DecodeError, ValidationError) as exc:
            self.reject(forwarder.to_base58(), topic, exc.code, exc.detail)
            return False
        except CrowdmeshError as exc:  # a fault of ours must not kill pubsub; not the peer's
            log.warning("validator failed on a message from %s: %s", forwarder, exc)
            return False
        return True

    def reject(self, peer: str, topic: str, code: str, detail: str = "") -> None:
        """Count a reject against ``peer`` and report it (also used by the node's checks)."""
        self.scores.penalize(peer, code)
        self.counters.rejected[code] = self.counters.rejected.get(code, 0) + 1
        self._on_reject(peer, topic, code, detail)

    # -- running ---------------------------------------------------------------------------

    async def subscribe_all(self, nursery: trio.Nursery) -> list[ISubscriptionAPI]:
        """Subscribe to the core topics (blocks, txs) and start one drain task per subscription."""
        ps_mod.SUBSCRIPTION_CHANNEL_SIZE = SUBSCRIPTION_CHANNEL_SIZE  # read in subscribe()
        subs = []
        for name in self.topics.values():
            sub = await self.pubsub.subscribe(name)
            nursery.start_soon(self._drain, name, sub)
            subs.append(sub)
        return subs

    async def subscribe(self, topic: str, nursery: trio.Nursery) -> None:
        """Join a spatial topic (a cell or the votes topic): validator, subscription and a
        drain task in ``nursery``. Joining a joined topic does nothing.

        Raises:
            ValueError: ``topic`` is not a spatial topic of this chain (a caller bug).
        """
        if self.kind_of(topic) not in (SPATIAL_CELL, SPATIAL_VOTES):
            raise ValueError(f"not a spatial topic of this chain: {topic!r}")
        if topic in self.joined:
            return
        self.joined.add(topic)  # before the await: a concurrent call must not join twice
        ps_mod.SUBSCRIPTION_CHANNEL_SIZE = SUBSCRIPTION_CHANNEL_SIZE  # read in subscribe()
        self.pubsub.set_topic_validator(topic, self._validator, is_async_validator=False)
        sub = await self.pubsub.subscribe(topic)
        nursery.start_soon(self._drain, topic, sub)

    async def unsubscribe(self, topic: str) -> None:
        """Leave a topic joined with :meth:`subscribe` (its drain task then ends)."""
        if topic not in self.joined:
            return
        self.joined.discard(topic)
        await self.pubsub.unsubscribe(topic)  # closes the subscription: the drain ends
        self.pubsub.remove_topic_validator(topic)

    async def _drain(self, topic: str, sub: ISubscriptionAPI) -> None:
        me = self.host.get_id().to_bytes()
        kind = self.kind_of(topic)
        assert kind is not None
        while True:
            try:
                raw = await sub.get()
            except trio.EndOfChannel:  # the topic was left
                return
            if raw.from_id == me:
                continue  # publishers receive their own messages (§6)
            self.counters.received += 1
            try:
                msg = self.decode(topic, raw.data)
            except DecodeError as exc:  # why: the validator passed it, but never die on data
                log.warning("undecodable gossip after validation: %s", exc)
                continue
            item = Incoming(ID(raw.from_id).to_base58(), kind, msg, len(raw.data))
            try:
                self._send.send_nowait(item)
            except trio.WouldBlock:
                self.counters.dropped_incoming += 1  # sync repairs what gossip loses

    async def wait_queues_drained(self, high: int = QUEUE_HIGH_WATER) -> None:
        """Wait (at most a few seconds) until every per-peer outbound queue is below ``high``."""
        with trio.move_on_after(BACKPRESSURE_MAX_WAIT_S):
            while any(len(q) >= high for q in self.pubsub.peer_queues.values()):
                await trio.sleep(0.005)

    async def publish(self, kind: str, msg: Message) -> None:
        """Encode and publish ``msg`` on the topic of ``kind`` with back-pressure.

        Raises:
            DecodeError: ``oversize`` if the encoding exceeds the gossip cap.
        """
        data = encode_message(msg)
        if len(data) > MAX_GOSSIP_BYTES:
            raise DecodeError("oversize", f"{len(data)} > {MAX_GOSSIP_BYTES} bytes")
        await self.wait_queues_drained()
        await self.pubsub.publish(self.topics[kind], data)
        self.counters.published += 1

    async def publish_to(self, topic: str, msg: Message) -> None:
        """Publish ``msg`` on a spatial ``topic``, joined or not (gossipsub fanout), after the
        validator's checks: a topic we have not joined has no validator of ours, and a
        message our peers would reject must not leave (they would lower our score).

        Raises:
            DecodeError, ValidationError: the checks' stable codes (nothing is published).
        """
        data = encode_message(msg)
        self._check(self.decode(topic, data))
        await self.wait_queues_drained()
        await self.pubsub.publish(topic, data)
        self.counters.published += 1

    async def wait_for_mesh(self, peer: ID, kind: str, timeout: float = 10.0) -> None:
        """Wait until ``peer`` is in our mesh for ``kind`` (tests and readiness)."""
        await self.pubsub.wait_for_mesh(peer, self.topics[kind], timeout=timeout)
