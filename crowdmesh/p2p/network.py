"""One node's network endpoint: host, gossip, sync server and bootstrap peers, run together.

Invariants:
- :func:`open_network` owns every task it starts; leaving the block stops them, then shuts
  down in the order LIBP2P.md §11 verified: unsubscribe and ``host.close()`` while pubsub still
  runs (shielded, bounded), then the pubsub and router services, then ``host.run()``.
- Bootstrap peers are redialled forever with capped backoff (``host.maintain_peer``).
- Every reject, gossip or sync, goes through :meth:`Gossip.reject`: one place penalises, counts,
  reports (``gossip-reject``, or ``sync-reject`` for the sync topic) and checks the ban, so a
  peer whose score falls to the ban threshold is blacklisted in pubsub and disconnected
  whichever protocol it misbehaved on.
- A new peer that takes the connected count above ``max_peers`` is refused (disconnected,
  ``peer-refused`` instead of ``peer-up``) unless it is a maintained bootstrap peer; those are
  always kept, so our own bootstrap dials are never refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from libp2p.tools.anyio_service import background_trio_service

from crowdmesh.errors import UsageError
from crowdmesh.p2p.gossip import CheckFn, Gossip, GossipConfig
from crowdmesh.p2p.host import (
    Backoff,
    PeerWatch,
    dial,
    load_or_create_node_key,
    maintain_peer,
    make_host,
    parse_peer_addr,
)
from crowdmesh.p2p.messages import Message
from crowdmesh.p2p.scoring import PeerScores
from crowdmesh.p2p.sync import SYNC_PROTOCOL, SyncProvider, SyncServer, SyncSession
from crowdmesh.p2p.sync import open_sync_session as _open_sync_session

__all__ = ["SYNC_TOPIC", "EventFn", "Network", "NetworkConfig", "open_network"]

log = logging.getLogger("crowdmesh.p2p")

SHUTDOWN_TIMEOUT_S = 5.0

EventFn = Callable[[str, dict[str, Any]], None]
"""``on_event(name, fields)``: peer-up, peer-down, peer-refused, gossip-reject, sync-reject,
peer-banned."""

TOO_MANY_PEERS = "too-many-peers"
SYNC_TOPIC = "sync"
"""The ``topic`` of rejects for data received over sync (not a gossip topic)."""


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """What the network layer needs from the node's configuration."""

    data_dir: Path
    listen: str
    chain_id: str
    bootstrap: tuple[str, ...] = ()
    gossip: GossipConfig = field(default_factory=GossipConfig)
    max_peers: int = 50


class Network:
    """Handles to the running host, gossip and scores; created by :func:`open_network`."""

    def __init__(self, host: IHost, gossip: Gossip, watch: PeerWatch, nursery: trio.Nursery,
                 max_peers: int = 50):
        self.host = host
        self.gossip = gossip
        self.watch = watch
        self.scores = gossip.scores
        self._nursery = nursery
        self._maintainers: dict[ID, trio.CancelScope] = {}
        self.banned: set[str] = set()
        self.max_peers = max_peers
        self.refused = 0

    @property
    def peer_id(self) -> str:
        """Our peer id (base58)."""
        return str(self.host.get_id().to_base58())

    def addrs(self) -> list[str]:
        """Our listen addresses including ``/p2p/<id>``."""
        return [str(a) for a in self.host.get_addrs()]

    def connected(self) -> list[ID]:
        """Currently connected peers."""
        return list(self.host.get_connected_peers())

    def peers(self) -> list[dict[str, Any]]:
        """One JSON-able row per connected peer: id, addresses, score, reject counts."""
        rows = []
        for pid in self.connected():
            b58 = pid.to_base58()
            rows.append({"id": b58, "addrs": self._addrs_of(pid),
                         "score": round(self.scores.score(b58), 3),
                         "rejects": self.scores.rejects(b58)})
        return rows

    def _addrs_of(self, pid: ID) -> list[str]:
        try:
            return [str(a) for a in self.host.get_peerstore().addrs(pid)]
        except PeerStoreError:
            return []  # why: inbound peers that never told us a listen address

    async def publish(self, kind: str, msg: Message) -> None:
        """Gossip ``msg`` on the topic of ``kind`` (``gossip.BLOCKS`` or ``gossip.TXS``)."""
        await self.gossip.publish(kind, msg)

    async def publish_to(self, topic: str, msg: Message) -> None:
        """Gossip ``msg`` on a spatial topic, joined or not (see ``Gossip.publish_to``)."""
        await self.gossip.publish_to(topic, msg)

    async def subscribe(self, topic: str) -> None:
        """Join a spatial topic; its drain task runs in the network's nursery."""
        await self.gossip.subscribe(topic, self._nursery)

    async def unsubscribe(self, topic: str) -> None:
        """Leave a spatial topic joined with :meth:`subscribe`."""
        await self.gossip.unsubscribe(topic)

    def open_sync(self, peer: ID) -> AbstractAsyncContextManager[SyncSession]:
        """A sync session to ``peer`` (see ``sync.open_sync_session``)."""
        return _open_sync_session(self.host, peer)

    async def connect(self, addr: str) -> bool:
        """Dial ``addr`` once (bounded); True on success."""
        return await dial(self.host, parse_peer_addr(addr))

    def add_bootstrap(self, addr: str) -> None:
        """Keep a connection to ``addr`` until :meth:`disconnect` (or the network stops)."""
        info = parse_peer_addr(addr)
        if info.peer_id in self._maintainers:
            return
        scope = trio.CancelScope()
        self._maintainers[info.peer_id] = scope
        self._nursery.start_soon(self._maintain, info, scope)

    def set_bootstrap(self, addrs: tuple[str, ...]) -> None:
        """Keep exactly ``addrs`` maintained (SIGHUP reload): start new ones, stop dropped ones
        (their connections stay until either side closes them).

        Raises:
            UsageError: ``bad-peer-addr`` before anything changes.
        """
        wanted = {parse_peer_addr(a).peer_id: a for a in addrs}
        for pid in [p for p in self._maintainers if p not in wanted]:
            self._maintainers.pop(pid).cancel()
        for addr in wanted.values():
            self.add_bootstrap(addr)

    async def _maintain(self, info: PeerInfo, scope: trio.CancelScope) -> None:
        with scope:
            await maintain_peer(self.host, self.watch, info, Backoff())

    async def disconnect(self, peer: str) -> None:
        """Stop keeping ``peer`` connected and drop its connections.

        Raises:
            UsageError: ``bad-peer-id`` for text that is not a base58 peer id.
        """
        try:
            pid = ID.from_base58(peer)
        except Exception as exc:  # base58/multihash raise assorted types
            raise UsageError("bad-peer-id", peer) from exc
        scope = self._maintainers.pop(pid, None)
        if scope is not None:
            scope.cancel()
        # why: py-libp2p's auto-connector redials every peer with a known address
        self.host.get_peerstore().clear_addrs(pid)
        await self._disconnect(pid)

    def admit(self, peer: ID) -> bool:
        """Whether newly connected ``peer`` may stay: bootstrap peers always, others while at
        most ``max_peers`` are connected. A refused peer is counted and disconnected."""
        if peer in self._maintainers or len(self.watch.connected_peers()) <= self.max_peers:
            return True
        self.refused += 1
        # why: py-libp2p's auto-connector would otherwise dial it straight back
        self.host.get_peerstore().clear_addrs(peer)
        self._nursery.start_soon(self._disconnect, peer)
        return False

    def ban(self, peer: str) -> None:
        """Blacklist ``peer`` in pubsub and drop its connections (once)."""
        if peer in self.banned:
            return
        self.banned.add(peer)
        pid = ID.from_base58(peer)
        self.gossip.pubsub.add_to_blacklist(pid)
        self.host.get_peerstore().clear_addrs(pid)
        self._nursery.start_soon(self._disconnect, pid)

    async def _disconnect(self, pid: ID) -> None:
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S):
            await self.host.disconnect(pid)


@asynccontextmanager
async def open_network(
    cfg: NetworkConfig, provider: SyncProvider, check: CheckFn, on_event: EventFn
) -> AsyncIterator[Network]:
    """Start the host on ``cfg.listen`` with gossip and sync; yield once serving."""
    host = make_host(load_or_create_node_key(cfg.data_dir))
    scores = PeerScores(time.monotonic)
    holder: list[Network] = []

    def on_reject(peer: str, topic: str, code: str, detail: str) -> None:
        name = "sync-reject" if topic == SYNC_TOPIC else "gossip-reject"
        on_event(name, {"peer": peer, "topic": topic, "code": code, "detail": detail,
                        "score": round(scores.score(peer), 3)})
        if scores.is_banned(peer) and holder and peer not in holder[0].banned:
            on_event("peer-banned", {"peer": peer})
            holder[0].ban(peer)

    def on_bad_sync(peer: str, code: str, detail: str) -> None:
        gossip.reject(peer, SYNC_TOPIC, code, detail)

    def on_peer(kind: str, pid: ID) -> None:
        fields: dict[str, Any] = {"peer": pid.to_base58()}
        if kind == "up" and holder and not holder[0].admit(pid):
            on_event("peer-refused", {**fields, "code": TOO_MANY_PEERS,
                                      "max_peers": cfg.max_peers})
            return  # why no peer-up: the node would start a sync round with it
        on_event(f"peer-{kind}", fields)

    gossip = Gossip(host, cfg.chain_id, scores, check, on_reject, cfg.gossip)
    watch = PeerWatch(on_peer)
    host.get_network().register_notifee(watch)
    host.set_stream_handler(SYNC_PROTOCOL, SyncServer(provider, on_bad_sync).handle_stream)
    async with (
        host.run([multiaddr.Multiaddr(cfg.listen)]),
        background_trio_service(gossip.pubsub),
        background_trio_service(gossip.router),
    ):
        await gossip.pubsub.wait_until_ready()
        subs: list[Any] = []
        async with trio.open_nursery() as nursery:
            subs = await gossip.subscribe_all(nursery)
            net = Network(host, gossip, watch, nursery, cfg.max_peers)
            holder.append(net)
            for addr in cfg.bootstrap:
                net.add_bootstrap(addr)
            try:
                yield net
            finally:
                nursery.cancel_scope.cancel()
        await _close_host(host, subs)


async def _close_host(host: IHost, subs: list[Any]) -> None:
    # why shielded: we often get here because the caller was cancelled (SIGTERM), and an
    # unclosed host leaves peers connected until our process exits (LIBP2P.md §11).
    with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT_S):
        for sub in subs:
            await sub.unsubscribe()
        await host.close()
