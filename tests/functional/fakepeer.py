"""A misbehaving libp2p peer for tests (Bitcoin's ``P2PInterface``): real host, no validators.

It speaks the same gossipsub (Noise, yamux, ``/meshsub/1.1.0``/``1.2.0``, strict signing,
payload-hash ids) but installs no topic validators, so it can publish bytes that a crowdmesh
node must reject. :meth:`FakePeer.raw_sync_stream` opens a raw ``/crowdmesh/sync/1.0.0`` stream
on which a test writes whatever frames it likes (bad ones included).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import libp2p.pubsub.pubsub as ps_mod
import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from crowdmesh.p2p.gossip import message_id, topic_name
from crowdmesh.p2p.host import dial, make_host, parse_peer_addr
from crowdmesh.p2p.sync import SYNC_PROTOCOL


@dataclass
class FakePeer:
    host: IHost
    pubsub: Pubsub
    router: GossipSub
    chain_id: str

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id().to_base58())

    def topic(self, kind: str) -> str:
        return topic_name(self.chain_id, kind)

    async def connect(self, addr: str) -> None:
        info = parse_peer_addr(addr)
        assert await dial(self.host, info), f"FakePeer could not dial {addr}"
        await self.pubsub.wait_for_peer(info.peer_id, timeout=10)

    async def wait_for_mesh(self, peer: ID | str, kind: str) -> None:
        pid = ID.from_base58(peer) if isinstance(peer, str) else peer
        await self.pubsub.wait_for_mesh(pid, self.topic(kind), timeout=15)

    async def publish_raw(self, kind: str, data: bytes) -> None:
        """Publish arbitrary bytes (our own pubsub does not validate them)."""
        await self.pubsub.publish(self.topic(kind), data)

    @asynccontextmanager
    async def raw_sync_stream(self, peer: ID | str) -> AsyncIterator[INetStream]:
        """A raw sync stream to ``peer`` (opened within 5 s), closed on exit."""
        pid = ID.from_base58(peer) if isinstance(peer, str) else peer
        with trio.fail_after(5):
            stream = await self.host.new_stream(pid, [SYNC_PROTOCOL])
        try:
            yield stream
        finally:
            with trio.move_on_after(1), contextlib.suppress(Exception):
                await stream.close()


@asynccontextmanager
async def open_fake_peer(chain_id: str) -> AsyncIterator[FakePeer]:
    """A running FakePeer on 127.0.0.1, subscribed to the chain's topics."""
    host = make_host(create_new_key_pair())
    router = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11], degree=6, degree_low=4,
                       degree_high=12, heartbeat_interval=1,
                       max_messages_per_topic_per_second=100_000,
                       adaptive_gossip_enabled=False, eclipse_protection_enabled=False)
    pubsub = Pubsub(host, router, strict_signing=True, msg_id_constructor=message_id)
    peer = FakePeer(host, pubsub, router, chain_id)
    async with (
        host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        ps_mod.SUBSCRIPTION_CHANNEL_SIZE = 4096
        subs = [await pubsub.subscribe(peer.topic(k)) for k in ("blocks", "txs")]
        async with trio.open_nursery() as nursery:
            for sub in subs:
                nursery.start_soon(_drain, sub)
            try:
                yield peer
            finally:
                nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            for sub in subs:
                await sub.unsubscribe()
            await host.close()


async def _drain(sub: object) -> None:
    async for _msg in sub:  # type: ignore[attr-defined]
        pass
