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
- Networking can be switched off and on (bitcoind's ``setnetworkactive``): while off the host
  still listens, but the swarm's connection gate denies every address (inbound connections are
  closed before any handshake, dials fail), a connection that was already being upgraded is
  refused when it comes up (``network-inactive``), no maintainer runs and no peer has an
  address in the peerstore, so neither our redialling nor py-libp2p's auto-connector dials
  anyone. Switching on lifts the gate and restores the addresses and maintainers it took.
- Peer ids from outside are checked (:func:`parse_peer_id`): base58 text that is not an
  identity or SHA-256 multihash is ``bad-peer-id``; dialling our own id is ``connect-self``.
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
from multihash import decode as decode_multihash

from crowdmesh.errors import NotFound, UsageError
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

__all__ = ["SYNC_TOPIC", "EventFn", "Network", "NetworkConfig", "open_network", "parse_peer_id"]

log = logging.getLogger("crowdmesh.p2p")

SHUTDOWN_TIMEOUT_S = 5.0
PEER_ADDR_TTL_S = 120  # restored addresses: as long as py-libp2p keeps dialled ones

EventFn = Callable[[str, dict[str, Any]], None]
"""``on_event(name, fields)``: peer-up, peer-down, peer-refused, gossip-reject, sync-reject,
peer-banned."""

TOO_MANY_PEERS = "too-many-peers"
NETWORK_INACTIVE = "network-inactive"
DENY_ALL = ("0.0.0.0/0", "::/0")  # connection-gate entries while networking is off
PEER_ID_HASHES = (0x00, 0x12)  # identity (Ed25519 keys) and sha2-256 (larger keys) multihashes
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
        self.active = True
        self._parked: dict[ID, PeerInfo] = {}  # maintained peers while networking is off
        self._infos: dict[ID, PeerInfo] = {}  # every maintained peer's configured address
        self._refusing: set[ID] = set()  # refused, their connections still closing
        self._known: dict[ID, list[multiaddr.Multiaddr]] = {}  # addresses taken while off

    @property
    def peer_id(self) -> str:
        """Our peer id (base58)."""
        return str(self.host.get_id().to_base58())

    def addrs(self) -> list[str]:
        """Our listen addresses including ``/p2p/<id>``."""
        return [str(a) for a in self.host.get_addrs()]

    def connected(self) -> list[ID]:
        """Currently connected peers (not those we refused whose connections are closing)."""
        return [p for p in self.host.get_connected_peers() if p not in self._refusing]

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
        """Dial ``addr`` once (bounded); True on success.

        Raises:
            UsageError: ``bad-peer-addr``; ``connect-self`` for our own peer id;
                ``network-inactive`` while networking is off.
        """
        info = parse_peer_addr(addr)
        if info.peer_id == self.host.get_id():
            raise UsageError("connect-self", f"{addr} is this node")
        if not self.active:
            raise UsageError(NETWORK_INACTIVE, "networking is off (setnetworkactive true)")
        return await dial(self.host, info)

    def add_bootstrap(self, addr: str) -> None:
        """Keep a connection to ``addr`` until :meth:`disconnect` (or the network stops)."""
        info = parse_peer_addr(addr)
        if info.peer_id in self._maintainers or info.peer_id in self._parked:
            return
        self._infos[info.peer_id] = info
        if not self.active:
            self._parked[info.peer_id] = info
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
        for pid in [p for p in self._parked if p not in wanted]:
            del self._parked[pid]
        for addr in wanted.values():
            self.add_bootstrap(addr)

    async def _maintain(self, info: PeerInfo, scope: trio.CancelScope) -> None:
        with scope:
            await maintain_peer(self.host, self.watch, info, Backoff())

    async def disconnect(self, peer: str) -> None:
        """Stop keeping ``peer`` connected and drop its connections.

        Raises:
            UsageError: ``bad-peer-id`` for text that is not a base58 peer id.
            NotFound: ``peer-not-connected`` for a peer neither connected nor maintained.
        """
        pid = parse_peer_id(peer)
        scope = self._maintainers.pop(pid, None)
        parked = self._parked.pop(pid, None)
        if scope is None and parked is None and pid not in self.watch.connected_peers():
            raise NotFound("peer-not-connected", peer)
        if scope is not None:
            scope.cancel()
        # why: py-libp2p's auto-connector redials every peer with a known address
        self.host.get_peerstore().clear_addrs(pid)
        await self._disconnect(pid)

    def admit(self, peer: ID) -> str | None:
        """Why newly connected ``peer`` may not stay (None: it may). While networking is off
        nobody stays; otherwise bootstrap peers always, others while at most ``max_peers`` are
        connected. A refused peer is counted and disconnected."""
        if not self.active:
            code = NETWORK_INACTIVE
            self._take_addrs(peer)
        elif peer in self._maintainers or len(self.watch.connected_peers()) <= self.max_peers:
            return None
        else:
            code = TOO_MANY_PEERS
            # why: py-libp2p's auto-connector would otherwise dial it straight back
            self.host.get_peerstore().clear_addrs(peer)
        self.refused += 1
        self._refusing.add(peer)
        self._nursery.start_soon(self._refuse, peer)
        return code

    async def _refuse(self, peer: ID) -> None:
        try:
            await self._disconnect(peer)
        finally:
            self._refusing.discard(peer)

    async def set_active(self, active: bool) -> int:
        """Switch networking off (drop every peer, dial nobody, refuse everyone) or back on
        (restore the addresses and maintainers taken, dial the known peers once).

        Returns:
            How many peers were dropped (off) or are being dialled (on).
        """
        if active == self.active:
            return 0
        self.active = active
        return self._resume() if active else await self._suspend()

    def _gate_all(self, deny: bool) -> None:
        gate: Any = getattr(self.host.get_network(), "connection_gate", None)
        for net in DENY_ALL if gate is not None else ():
            (gate.add_to_deny_list if deny else gate.remove_from_deny_list)(net)

    async def _suspend(self) -> int:
        self._gate_all(True)
        for pid, scope in list(self._maintainers.items()):
            scope.cancel()
            self._parked[pid] = self._infos.get(pid) or PeerInfo(pid, self._addrs_known(pid))
        self._maintainers.clear()
        store = self.host.get_peerstore()
        for pid in store.peers_with_addrs():
            self._take_addrs(pid)
        dropped = self.watch.connected_peers()
        async with trio.open_nursery() as nursery:
            for pid in dropped:
                nursery.start_soon(self._disconnect, pid)
        return len(dropped)

    def _addrs_known(self, pid: ID) -> list[multiaddr.Multiaddr]:
        try:
            return list(self.host.get_peerstore().addrs(pid))
        except PeerStoreError:
            return []

    def _take_addrs(self, pid: ID) -> None:
        """Keep ``pid``'s addresses aside and clear them, so nothing can dial it while off."""
        if pid == self.host.get_id():
            return
        addrs = self._addrs_known(pid)
        if addrs:
            self._known.setdefault(pid, []).extend(
                a for a in addrs if a not in self._known.get(pid, []))
        self.host.get_peerstore().clear_addrs(pid)

    def _resume(self) -> int:
        self._gate_all(False)
        store = self.host.get_peerstore()
        known, self._known = self._known, {}
        for pid, addrs in known.items():
            store.add_addrs(pid, addrs, PEER_ADDR_TTL_S)
        parked, self._parked = self._parked, {}
        for info in parked.values():
            scope = trio.CancelScope()
            self._maintainers[info.peer_id] = scope
            self._nursery.start_soon(self._maintain, info, scope)
        others = [PeerInfo(pid, addrs) for pid, addrs in known.items() if pid not in parked]
        for info in others:
            self._nursery.start_soon(dial, self.host, info)
        return len(parked) + len(others)

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
        refused = holder[0].admit(pid) if kind == "up" and holder else None
        if refused is not None:
            extra = {"max_peers": cfg.max_peers} if refused == TOO_MANY_PEERS else {}
            on_event("peer-refused", {**fields, "code": refused, **extra})
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


def parse_peer_id(text: str) -> ID:
    """A base58 peer id whose bytes are an identity or SHA-256 multihash.

    Raises:
        UsageError: ``bad-peer-id`` (``ID.from_base58`` alone accepts any base58, e.g. "abc").
    """
    try:
        pid = ID.from_base58(text)
        ok = decode_multihash(pid.to_bytes()).code in PEER_ID_HASHES and pid.to_base58() == text
    except Exception:  # base58 and multihash raise assorted types for bad text
        ok = False
    if not ok:
        raise UsageError("bad-peer-id", f"{text!r} is not a base58 peer id")
    return pid


async def _close_host(host: IHost, subs: list[Any]) -> None:
    # why shielded: we often get here because the caller was cancelled (SIGTERM), and an
    # unclosed host leaves peers connected until our process exits (LIBP2P.md §11).
    with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT_S):
        for sub in subs:
            await sub.unsubscribe()
        await host.close()
