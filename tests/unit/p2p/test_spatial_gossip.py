"""Spatial gossip (SPATIAL.md §2.3): the SpatialGossip codec, topic rules, the ledger's cheap
checks (every reject code), cell subscriptions and their re-subscription diff, the PublishSpatial
executor, the intake, and two real hosts / two whole nodes where a report published to a cell
without subscribing reaches the node that joined it."""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgpack
import pytest
import trio

from crowdmesh.chain import Chain, Genesis, MemoryStore, Mempool
from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.protocol import Commit, Report, Reveal
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.intake import GossipIntake
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.node import run_node
from crowdmesh.daemon.spatialnet import SpatialNet, cells_for, rings_for, subscription_diff
from crowdmesh.errors import DecodeError, UsageError, ValidationError
from crowdmesh.p2p.gossip import (
    SPATIAL_CELL,
    SPATIAL_VOTES,
    Gossip,
    Incoming,
    spatial_cell_topic,
    spatial_votes_topic,
)
from crowdmesh.p2p.host import load_or_create_node_key, make_host
from crowdmesh.p2p.messages import (
    MAX_SPATIAL_BYTES,
    SpatialGossip,
    TxGossip,
    decode_message,
    encode_message,
)
from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from crowdmesh.p2p.scoring import PeerScores
from crowdmesh.roles.dispatch import Role
from crowdmesh.roles.spatial_events import (
    SPATIAL_KINDS,
    VOTE_POLICIES,
    LocationSet,
    PublishSpatial,
    SpatialConfigured,
    SpatialHeard,
)
from tests.functional.fakepeer import open_fake_peer
from tests.unit.inprocess import InProcessNode
from tests.unit.p2p.test_node import Sink, write_genesis

CHAIN = "spatialtest"
NOW = 1_700_000_500
PARAMS = SpatialParams()
SKEW = PARAMS.commit_window_s + PARAMS.reveal_window_s
GENESIS = Genesis(chain_id=CHAIN, timestamp=1_700_000_000, target=1 << 250, block_interval=1,
                  retarget_interval=0, alloc=())
KEY = AccountKey.generate(DeterministicRng(11))
CHARLOTTE = (35_227_100, -80_843_100)


def report(ts: int = NOW, type_: str = "fire", chain_id: str = CHAIN,
           point: tuple[int, int] = CHARLOTTE) -> Report:
    return Report.create(KEY, chain_id, type_, *point, ts=ts, anchor=0)


def raw_report(**changes: object) -> bytes:
    """A report's wire array with fields replaced (to build what Report.create refuses)."""
    fields = report().to_list()
    names = ["chain_id", "type", "lat_e6", "lon_e6", "ts", "anchor", "requester", "sig"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return pack(fields)


def commit() -> Commit:
    return Commit(b"\x01" * 32, KEY.public, b"\x02" * 80, b"\x03" * 32, b"\x04" * 64)


def reveal() -> Reveal:
    return Reveal(b"\x01" * 32, KEY.public, 1, b"\x05" * 32, b"\x06" * 32, b"\x07" * 64)


def ledger(now: float = NOW) -> Ledger:
    chain = Chain.open(MemoryStore(), GENESIS)
    return Ledger(chain, Mempool(chain), clock=lambda: now)


def code_of(fn, *args) -> str:
    with pytest.raises((DecodeError, ValidationError)) as info:
        fn(*args)
    return info.value.code


# -- codec -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SPATIAL_KINDS)
def test_spatial_gossip_round_trips(kind: str) -> None:
    msg = SpatialGossip(kind, b"\x01\x02")
    assert decode_message(encode_message(msg)) == msg


def test_spatial_gossip_codec_rejects() -> None:
    assert code_of(SpatialGossip, "vote", b"x") == "bad-msg-field"
    assert code_of(SpatialGossip, "report", b"") == "bad-msg-item"
    assert code_of(SpatialGossip, "report", b"x" * (MAX_SPATIAL_BYTES + 1)) == "bad-msg-item"
    SpatialGossip("report", b"x" * MAX_SPATIAL_BYTES)
    wrong_type = msgpack.packb(["spatial", "report", "not bytes"], use_bin_type=True)
    assert code_of(decode_message, wrong_type) == "bad-msg-field-type"
    extra = msgpack.packb(["spatial", "report", b"x", 1], use_bin_type=True)
    assert code_of(decode_message, extra) == "bad-msg-shape"


def test_kinds_and_policies_agree_with_the_roles() -> None:
    from crowdmesh.daemon import config
    from crowdmesh.p2p import messages

    assert messages.SPATIAL_KINDS == SPATIAL_KINDS
    assert config.VOTE_POLICIES == VOTE_POLICIES


# -- topics ------------------------------------------------------------------------------------


def test_topic_names() -> None:
    cell = geo.cell_hex(geo.cell_of(*CHARLOTTE, 7))
    assert spatial_cell_topic(CHAIN, cell) == f"crowdmesh/{CHAIN}/spatial/1/cell/{cell}"
    assert spatial_votes_topic(CHAIN) == f"crowdmesh/{CHAIN}/spatial/1/votes"
    with pytest.raises(ValueError):
        spatial_cell_topic(CHAIN, "8744D84D1FFFFFF")


def offline_gossip(tmp_path: Path) -> Gossip:
    host = make_host(load_or_create_node_key(tmp_path))
    return Gossip(host, CHAIN, PeerScores(time.monotonic), lambda m: None,
                  lambda *a: None)


def test_messages_must_fit_their_topic(tmp_path: Path) -> None:
    gossip = offline_gossip(tmp_path)
    cell = spatial_cell_topic(CHAIN, geo.cell_hex(geo.cell_of(*CHARLOTTE, 7)))
    votes = gossip.votes_topic
    assert gossip.kind_of(cell) == SPATIAL_CELL and gossip.kind_of(votes) == SPATIAL_VOTES
    assert gossip.kind_of(spatial_cell_topic("other", "8744d84d1ffffff")) is None
    assert gossip.kind_of(cell + "0") is None
    rep = encode_message(SpatialGossip("report", report().encode()))
    vote = encode_message(SpatialGossip("commit", commit().encode()))
    assert gossip.decode(cell, rep) == SpatialGossip("report", report().encode())
    assert gossip.decode(votes, vote).kind == "commit"
    assert code_of(gossip.decode, votes, rep) == "wrong-topic"
    assert code_of(gossip.decode, cell, vote) == "wrong-topic"
    assert code_of(gossip.decode, cell, encode_message(TxGossip(b"tx"))) == "wrong-topic"
    assert code_of(gossip.decode, gossip.topics["txs"], rep) == "wrong-topic"
    other_chain = spatial_cell_topic("other", "8744d84d1ffffff")
    assert code_of(gossip.decode, other_chain, rep) == "wrong-topic"


# -- ledger checks -----------------------------------------------------------------------------


def check(kind: str, raw: bytes, now: float = NOW) -> None:
    ledger(now).check_gossip(SpatialGossip(kind, raw))


def test_valid_spatial_messages_pass_without_signature_checks() -> None:
    check("report", report().encode())
    check("report", report(ts=NOW - SKEW).encode())  # the window's edges are inside
    check("report", report(ts=NOW + SKEW).encode())
    check("commit", commit().encode())  # made-up signature and proof: the roles verify them
    check("reveal", reveal().encode())


@pytest.mark.parametrize(("kind", "raw", "code"), [
    ("report", b"\xc1", "bad-msgpack"),
    ("report", b"\x00" * 300, "oversize"),
    ("report", commit().encode(), "bad-shape"),
    ("commit", report().encode(), "bad-shape"),
    ("reveal", commit().encode(), "bad-shape"),
    ("report", raw_report(lat_e6="35.2"), "bad-field"),
    ("reveal", pack([b"\x01" * 32, KEY.public, 2, b"\x05" * 32, b"\x06" * 32, b"\x07" * 64]),
     "bad-field"),
    ("report", report(chain_id="other").encode(), "bad-spatial-chain-id"),
    ("report", raw_report(chain_id="caf\u00e9"), "bad-chain-id"),
    ("report", report(type_="meteor").encode(), "bad-spatial-type"),
    ("report", raw_report(type="Fire"), "bad-spatial-field"),
    ("report", raw_report(lat_e6=90_000_001), "bad-spatial-point"),
    ("report", raw_report(lon_e6=-180_000_001), "bad-spatial-point"),
    ("report", report(ts=NOW - SKEW - 1).encode(), "bad-spatial-ts"),
    ("report", report(ts=NOW + SKEW + 1).encode(), "bad-spatial-ts"),
])
def test_spatial_checks_reject_with_codes(kind: str, raw: bytes, code: str) -> None:
    assert code_of(check, kind, raw) == code


def test_the_ts_window_follows_the_injected_clock() -> None:
    late = report(ts=NOW).encode()
    assert code_of(check, "report", late, NOW + SKEW + 1) == "bad-spatial-ts"
    check("report", late, NOW + SKEW)


# -- cells -------------------------------------------------------------------------------------


def test_rings_cover_the_radius() -> None:
    assert rings_for(PARAMS) == max(PARAMS.h3_rings, geo.ring_bound(PARAMS.radius_m, 7))
    wide = SpatialParams(radius_m=5000, h3_rings=1)
    assert rings_for(wide) == geo.ring_bound(5000, wide.h3_resolution) > 1
    assert rings_for(SpatialParams(h3_rings=6)) == 6


def test_cells_for_covers_every_point_within_r() -> None:
    cells = cells_for(*CHARLOTTE, PARAMS)
    k = rings_for(PARAMS)
    assert len(cells) == 1 + 3 * k * (k + 1)
    assert geo.cell_of(*CHARLOTTE, 7) in cells
    # points on a circle of radius R (about 1 km: 9,000 micro-degrees of latitude)
    for dlat, dlon in [(9000, 0), (-9000, 0), (0, 11_000), (0, -11_000), (6300, 7800)]:
        point = (CHARLOTTE[0] + dlat, CHARLOTTE[1] + dlon)
        assert geo.distance_m(*CHARLOTTE, *point) <= 1010
        assert geo.cell_of(*point, 7) in cells


def test_subscription_diff() -> None:
    here = cells_for(*CHARLOTTE, PARAMS)
    assert subscription_diff(here, here) == ([], [])
    assert subscription_diff(frozenset(), here) == ([], sorted(here))
    assert subscription_diff(here, frozenset()) == (sorted(here), [])
    near = cells_for(CHARLOTTE[0] + 20_000, CHARLOTTE[1], PARAMS)  # about 2.2 km north
    leave, join = subscription_diff(here, near)
    assert leave and join and here & near
    assert set(leave) == here - near and set(join) == near - here


# -- SpatialNet over a recording network ---------------------------------------------------------


class FakeGossip:
    votes_topic = spatial_votes_topic(CHAIN)


class FakeNet:
    """Records joins, leaves and publishes in order."""

    def __init__(self) -> None:
        self.gossip = FakeGossip()
        self.calls: list[tuple[str, str]] = []
        self.published: list[tuple[str, object]] = []

    async def subscribe(self, topic: str) -> None:
        self.calls.append(("join", topic))

    async def unsubscribe(self, topic: str) -> None:
        self.calls.append(("leave", topic))

    async def publish_to(self, topic: str, msg: object) -> None:
        self.published.append((topic, msg))


def spatial_net(roles: set[Role], location: tuple[int, int] | None = CHARLOTTE,
                **cfg: object) -> tuple[SpatialNet, FakeNet, list]:
    net, heard = FakeNet(), []
    config = NodeConfig(data_dir=Path("/x"), genesis_path=Path("/g"),
                        control_socket=Path("/s"), location=location, **cfg)  # type: ignore
    return SpatialNet(net, GENESIS, frozenset(roles), config, heard.append), net, heard


def cell_topic(cell: int) -> str:
    return spatial_cell_topic(CHAIN, geo.cell_hex(cell))


async def test_a_worker_joins_votes_and_the_cells_around_it() -> None:
    sn, net, heard = spatial_net({Role.SPATIAL_WORKER}, vote_policy="honest", error_permille=50)
    sn.start_roles()
    assert heard == [LocationSet(*CHARLOTTE), SpatialConfigured("honest", 50, ())]
    await sn.start()
    here = cells_for(*CHARLOTTE, PARAMS)
    assert net.calls == [("join", FakeGossip.votes_topic)] + [
        ("join", cell_topic(c)) for c in sorted(here)]
    assert sn.cells == here


async def test_moving_rejoins_only_the_difference_then_tells_the_roles() -> None:
    sn, net, heard = spatial_net({Role.SPATIAL_WORKER})
    await sn.start()
    net.calls.clear()
    moved = (CHARLOTTE[0] + 20_000, CHARLOTTE[1])
    reply = await sn.set_location(*moved)
    here, there = cells_for(*CHARLOTTE, PARAMS), cells_for(*moved, PARAMS)
    assert net.calls == [("leave", cell_topic(c)) for c in sorted(here - there)] + [
        ("join", cell_topic(c)) for c in sorted(there - here)]
    assert sn.cells == there and sn.location == moved
    assert reply == {"lat_e6": moved[0], "lon_e6": moved[1], "cells": len(there)}
    assert heard[-1] == LocationSet(*moved)
    net.calls.clear()
    await sn.set_location(*moved)  # same place: nothing to do, the roles still hear it
    assert net.calls == [] and heard[-1] == LocationSet(*moved)


async def test_a_worker_without_location_joins_only_votes_until_set() -> None:
    sn, net, heard = spatial_net({Role.SPATIAL_WORKER}, location=None)
    sn.start_roles()
    assert heard == [SpatialConfigured("operator", 0, ())]
    await sn.start()
    assert net.calls == [("join", FakeGossip.votes_topic)] and not sn.cells
    await sn.set_location(*CHARLOTTE)
    assert sn.cells == cells_for(*CHARLOTTE, PARAMS)


async def test_a_requester_never_joins_a_cell() -> None:
    sn, net, heard = spatial_net({Role.SPATIAL_REQUESTER})
    await sn.start()
    await sn.set_location(CHARLOTTE[0] + 20_000, CHARLOTTE[1])
    assert net.calls == [("join", FakeGossip.votes_topic)] and not sn.cells
    assert heard == [LocationSet(CHARLOTTE[0] + 20_000, CHARLOTTE[1])]


async def test_a_node_without_spatial_roles_joins_and_hears_nothing() -> None:
    sn, net, heard = spatial_net({Role.MINER})
    sn.start_roles()
    await sn.start()
    assert net.calls == [] and heard == []
    with pytest.raises(UsageError) as info:
        await sn.set_location(*CHARLOTTE)
    assert info.value.code == "not-spatial"


async def test_a_bad_location_is_refused_before_anything_moves() -> None:
    sn, net, heard = spatial_net({Role.SPATIAL_WORKER})
    await sn.start()
    net.calls.clear()
    with pytest.raises(UsageError) as info:
        await sn.set_location(90_000_001, 0)
    assert info.value.code == "bad-location"
    assert net.calls == [] and sn.location == CHARLOTTE and heard == []


async def test_publish_routes_reports_to_cells_and_votes_to_the_votes_topic() -> None:
    sn, net, _ = spatial_net({Role.SPATIAL_REQUESTER})
    raw = report().encode()
    await sn.publish("report", raw, 0)  # 0: the cell of the report's point
    here = geo.cell_of(*CHARLOTTE, PARAMS.h3_resolution)
    other = geo.cell_of(0, 0, PARAMS.h3_resolution)
    await sn.publish("report", raw, other)
    await sn.publish("commit", commit().encode(), 0)
    await sn.publish("reveal", reveal().encode(), here)  # the cell is ignored for votes
    assert net.published == [
        (cell_topic(here), SpatialGossip("report", raw)),
        (cell_topic(other), SpatialGossip("report", raw)),
        (FakeGossip.votes_topic, SpatialGossip("commit", commit().encode())),
        (FakeGossip.votes_topic, SpatialGossip("reveal", reveal().encode())),
    ]


# -- effect executor and intake ----------------------------------------------------------------


async def _never(*_: object) -> None:
    raise AssertionError("not expected")


async def test_publish_spatial_effect_uses_its_port_and_survives_refusals(caplog) -> None:
    sent: list[tuple[str, bytes, int]] = []

    async def publish(kind: str, raw: bytes, cell: int) -> None:
        if raw == b"bad":
            raise ValidationError("bad-spatial-ts", "test")
        sent.append((kind, raw, cell))

    caplog.set_level(logging.INFO, logger="crowdmesh.node")
    async with trio.open_nursery() as nursery:
        executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=_never, publish_spatial=publish), nursery)
        executor.run([PublishSpatial("report", b"bad", 5), PublishSpatial("commit", b"c")])
    assert sent == [("commit", b"c", 0)]
    assert executor.executed == {PublishSpatial.NAME: 2}
    failed = [(r.kv["effect"], r.kv["code"]) for r in caplog.records
              if r.getMessage() == "effect-failed"]
    assert failed == [("publish-spatial", "bad-spatial-ts")]


def test_intake_delivers_spatial_messages_to_the_roles() -> None:
    heard: list[object] = []
    intake = GossipIntake(None, None, None, None, heard.append)  # type: ignore[arg-type]
    for kind in SPATIAL_KINDS:
        msg = SpatialGossip(kind, b"raw-" + kind.encode())
        intake.handlers[SpatialGossip](Incoming("peer", SPATIAL_VOTES, msg, 10))
    assert heard == [SpatialHeard(k, b"raw-" + k.encode()) for k in SPATIAL_KINDS]


# -- two real hosts ----------------------------------------------------------------------------


async def open_net(stack: AsyncExitStack, tmp: Path, name: str, led: Ledger,
                   events: list, bootstrap: tuple[str, ...] = ()) -> Network:
    (tmp / name).mkdir()
    cfg = NetworkConfig(tmp / name, "/ip4/127.0.0.1/tcp/0", CHAIN, bootstrap)
    return await stack.enter_async_context(open_network(
        cfg, led, led.check_gossip, lambda ev, f: events.append((ev, f))))


async def wait_known_subscriber(pubsub, peer, topic: str, timeout: float = 10.0) -> None:
    """Until ``pubsub`` has heard that ``peer`` joined ``topic`` (needed for fanout)."""
    with trio.fail_after(timeout):
        while peer not in pubsub.peer_topics.get(topic, ()):
            await trio.sleep(0.02)


async def test_a_report_reaches_the_cell_without_the_publisher_joining(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    now = int(time.time())
    led = ledger(now)
    async with AsyncExitStack() as stack:
        a = await open_net(stack, tmp_path, "a", led, events)
        b = await open_net(stack, tmp_path, "b", led, events, (a.addrs()[0],))
        topic = cell_topic(geo.cell_of(*CHARLOTTE, 7))
        await b.subscribe(topic)
        await b.subscribe(topic)  # joining twice is one subscription
        assert b.gossip.joined == {topic}
        await wait_known_subscriber(a.gossip.pubsub, b.host.get_id(), topic)
        good = SpatialGossip("report", report(ts=now).encode())
        await a.publish_to(topic, good)
        with trio.fail_after(10):
            got = await b.gossip.incoming.receive()
        assert got.msg == good and got.kind == SPATIAL_CELL and got.origin == a.peer_id
        assert topic not in a.gossip.pubsub.topic_ids  # a published through fanout

        # our own publish is checked first: nothing leaves, the caller hears the code
        with pytest.raises(ValidationError) as info:
            await a.publish_to(topic, SpatialGossip("report", report(ts=now - 10**6).encode()))
        assert info.value.code == "bad-spatial-ts"

        async with open_fake_peer(CHAIN) as fake:
            await fake.connect(b.addrs()[0])
            await wait_known_subscriber(fake.pubsub, b.host.get_id(), topic)
            bad = encode_message(SpatialGossip("report", report(now, "meteor").encode()))
            await fake.pubsub.publish(topic, bad)
            late = encode_message(SpatialGossip("report", report(ts=now + 1).encode()))
            await fake.pubsub.publish(topic, late)
            with trio.fail_after(10):
                got = await b.gossip.incoming.receive()
            assert got.msg == SpatialGossip("report", report(ts=now + 1).encode())
            codes = [f["code"] for ev, f in events
                     if ev == "gossip-reject" and f["peer"] == fake.peer_id]
            assert codes == ["bad-spatial-type"]
            assert b.scores.rejects(fake.peer_id) == {"bad-spatial-type": 1}

        await b.unsubscribe(topic)
        assert not b.gossip.joined and topic not in b.gossip.pubsub.topic_ids
        assert topic not in b.gossip.pubsub.topic_validators


# -- two whole nodes ---------------------------------------------------------------------------


@asynccontextmanager
async def spatial_node(tmp: Path, name: str, genesis: Path, roles: set[str],
                       location: tuple[int, int] | None = None,
                       bootstrap: tuple[str, ...] = ()):
    data = tmp / name
    data.mkdir()
    cfg = NodeConfig(data_dir=data, genesis_path=genesis, control_socket=data / "c.sock",
                     listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap,
                     roles=frozenset(roles), location=location)
    async with trio.open_nursery() as nursery:
        node = InProcessNode(await nursery.start(run_node, cfg, Sink()))
        try:
            yield node
        finally:
            node.request_stop()


async def test_nodes_a_requester_reaches_a_located_worker_through_its_cell(
        tmp_path: Path) -> None:
    gpath = tmp_path / "genesis.json"
    genesis = write_genesis(gpath, [KEY])
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            spatial_node(tmp_path, "a", gpath, {"spatial-requester"}))
        b = await stack.enter_async_context(spatial_node(
            tmp_path, "b", gpath, {"spatial-worker"}, CHARLOTTE, (a.net.addrs()[0],)))
        here = cells_for(*CHARLOTTE, genesis.spatial)
        topics = {spatial_cell_topic(genesis.chain_id, geo.cell_hex(c)) for c in here}
        assert b.net.gossip.joined == topics | {b.net.gossip.votes_topic}
        assert a.net.gossip.joined == {a.net.gossip.votes_topic}  # a requester joins no cell

        heard: list[object] = []
        forward = b.intake._deliver
        b.intake._deliver = lambda event: (heard.append(event), forward(event))
        cell = geo.cell_of(*CHARLOTTE, genesis.spatial.h3_resolution)
        topic = spatial_cell_topic(genesis.chain_id, geo.cell_hex(cell))
        await wait_known_subscriber(a.net.gossip.pubsub, b.net.host.get_id(), topic)
        raw = Report.create(KEY, genesis.chain_id, "fire", *CHARLOTTE, ts=int(time.time()),
                            anchor=0).encode()
        await a.spatial.publish("report", raw, 0)
        with trio.fail_after(10):
            while SpatialHeard("report", raw) not in heard:
                await trio.sleep(0.02)
        assert topic not in a.net.gossip.pubsub.topic_ids

        far = (CHARLOTTE[0] + 50_000, CHARLOTTE[1])
        reply = await b.location_set(*far)
        there = cells_for(*far, genesis.spatial)
        assert reply["cells"] == len(there) and b.spatial.cells == there
        assert b.net.gossip.joined == {b.net.gossip.votes_topic} | {
            spatial_cell_topic(genesis.chain_id, geo.cell_hex(c)) for c in there}
