"""The signed-peer-record memo: py-libp2p's own check runs once per peer and record, and every
case where it could answer differently (a bad record, a newer one stored, an old entry) still
goes to it."""

from __future__ import annotations

import libp2p.pubsub.gossipsub as gossipsub_mod
import libp2p.pubsub.pubsub as pubsub_mod
import multiaddr
import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import create_signed_peer_record
from libp2p.pubsub.pb import rpc_pb2

from crowdmesh.p2p import recordmemo
from crowdmesh.p2p.host import make_host
from crowdmesh.p2p.recordmemo import consume_memoised

ADDR = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4001")


class _Counting:
    """py-libp2p's original check, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg, host, peer_id) -> bool:
        self.calls += 1
        return recordmemo._original(msg, host, peer_id)


def _rpc(keys, seq_addr=ADDR) -> tuple[rpc_pb2.RPC, ID]:
    peer = ID.from_pubkey(keys.public_key)
    envelope = create_signed_peer_record(peer, [seq_addr], keys.private_key)
    return rpc_pb2.RPC(senderRecord=envelope.marshal_envelope()), peer


@pytest.fixture
def host():
    recordmemo._memo.clear()
    return make_host(create_new_key_pair())


def test_a_record_is_checked_once_then_remembered(host):
    original = _Counting()
    rpc, peer = _rpc(create_new_key_pair())
    assert all(consume_memoised(rpc, host, peer, original) for _ in range(5))
    assert original.calls == 1


def test_a_record_from_another_peer_is_refused_every_time(host):
    original = _Counting()
    rpc, _ = _rpc(create_new_key_pair())
    impostor = ID.from_pubkey(create_new_key_pair().public_key)
    assert not any(consume_memoised(rpc, host, impostor, original) for _ in range(3))
    assert original.calls == 3  # a refusal is never remembered


def test_a_newer_record_stored_meanwhile_sends_the_old_one_back_to_the_check(host):
    original = _Counting()
    keys = create_new_key_pair()
    old, peer = _rpc(keys)
    new, _ = _rpc(keys, multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4002"))  # a later seq
    assert consume_memoised(old, host, peer, original)
    assert consume_memoised(new, host, peer, original)
    assert not consume_memoised(old, host, peer, original)  # py-libp2p refuses older records
    assert original.calls == 3


def test_an_entry_expires(host, monkeypatch):
    original = _Counting()
    rpc, peer = _rpc(create_new_key_pair())
    assert consume_memoised(rpc, host, peer, original)
    monkeypatch.setattr(recordmemo, "MEMO_S", 0.0)
    assert consume_memoised(rpc, host, peer, original)
    assert original.calls == 2


def test_the_memo_is_bounded(host, monkeypatch):
    monkeypatch.setattr(recordmemo, "MEMO_PEERS", 3)
    for _ in range(5):
        rpc, peer = _rpc(create_new_key_pair())
        assert consume_memoised(rpc, host, peer)
    assert len(recordmemo._memo) == 3


def test_an_rpc_without_a_record_passes_and_install_reaches_both_callers(host):
    assert consume_memoised(rpc_pb2.RPC(), host, ID.from_pubkey(create_new_key_pair().public_key))
    recordmemo.install()
    assert pubsub_mod.maybe_consume_signed_record is consume_memoised
    assert gossipsub_mod.maybe_consume_signed_record is consume_memoised
