"""Host helpers: capped backoff, address parsing, digest-only equivocation memory."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from crowdmesh.errors import UsageError
from crowdmesh.p2p.gossip import CrowdmeshGossipSub
from crowdmesh.p2p.host import Backoff, make_host, parse_peer_addr


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(first=0.25, cap=2.0)
    assert [b.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.reset()
    assert b.next_delay() == 0.25


def test_parse_peer_addr() -> None:
    pid = ID.from_pubkey(create_new_key_pair().public_key).to_base58()
    info = parse_peer_addr(f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}")
    assert info.peer_id.to_base58() == pid
    for bad in ("/ip4/127.0.0.1/tcp/4001", "nonsense", f"/ip4/1.2.3/tcp/1/p2p/{pid}"):
        with pytest.raises(UsageError) as exc:
            parse_peer_addr(bad)
        assert exc.value.code == "bad-peer-addr"


def test_equivocation_memory_keeps_digests_and_detects_conflicts() -> None:
    router = CrowdmeshGossipSub(protocols=[], degree=6, degree_low=4, degree_high=12)
    origin = ID.from_pubkey(create_new_key_pair().public_key).to_bytes()
    big = rpc_pb2.Message(from_id=origin, seqno=b"\x00" * 8, data=b"x" * 200_000,
                          topicIDs=["t"])
    assert router._check_equivocation(big)
    assert router._check_equivocation(big)  # the same message again is fine
    stored = next(iter(router.equivocation_detection.values()))
    assert isinstance(stored, bytes) and len(stored) == 32  # not the 200 kB message
    other = rpc_pb2.Message(from_id=origin, seqno=b"\x00" * 8, data=b"y", topicIDs=["t"])
    assert not router._check_equivocation(other)


async def test_idontwant_goes_out_only_for_messages_past_the_threshold(monkeypatch) -> None:
    """py-libp2p's own publish asks for IDONTWANT on every message; ours passes the ask on only
    for a message of at least ``idontwant_min_bytes`` (the base emitter, recorded here, is the
    one step replaced)."""
    emitted: list[bytes] = []

    async def base_emit(self, msg_id, topic_ids) -> None:
        emitted.append(msg_id)

    monkeypatch.setattr(GossipSub, "_emit_idontwant_for_message", base_emit)
    router = CrowdmeshGossipSub(protocols=[], degree=6, degree_low=4, degree_high=12)
    router.idontwant_min_bytes = 1000
    host = make_host(create_new_key_pair())
    pubsub = Pubsub(host, router)  # attaches the router: publish needs its message ids
    me = host.get_id()
    msgs = [rpc_pb2.Message(from_id=me.to_bytes(), seqno=bytes([i]) * 8, data=data,
                            topicIDs=["t"])
            for i, data in enumerate((bytes(999), bytes(1000), b"tiny"))]
    for msg in msgs:
        await router.publish(me, msg)
    assert emitted == [pubsub.get_message_id(msgs[1])]
