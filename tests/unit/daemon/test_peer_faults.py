"""Issue 11 fault 7 (peer input) and ``setnetworkactive``, on real libp2p hosts in one process.

- ``connect`` to our own address is refused (``connect-self``) and we never list ourselves.
- ``disconnect`` of base58 text that is no peer id (``"abc"``) is ``bad-peer-id``; of a valid
  id we neither hold nor redial, ``peer-not-connected``; neither claims to have disconnected.
- Networking off drops every peer and stays isolated while peers keep redialling us; on
  redials the bootstrap peer and the peers we knew.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from crowdmesh.daemon.clock import MAX_CLOCK_SKEW_S, clock_skew_from_env
from crowdmesh.daemon.methods import RpcError, bind_params
from crowdmesh.daemon.methods.peers import METHODS, param_bool
from crowdmesh.daemon.peerapi import PeerApi
from crowdmesh.errors import NotFound, UsageError
from crowdmesh.p2p.network import Network, parse_peer_id
from tests.unit.p2p.test_network import start

Events = list[tuple[str, dict]]
OTHER_ID = "12D3KooWQYV9dGMFoRzNStwpXztXaBUjtPqi6aU76ZgUriHhKust"  # valid, never running


async def wait_until(net: Network, cond, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            with trio.move_on_after(0.5):
                await net.watch.wait_changed()


async def test_connect_to_own_address_is_refused(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        node = await start(stack, tmp_path, "node", [])
        api = PeerApi(node)
        with pytest.raises(UsageError) as err:
            await api.connect_peer(node.addrs()[0])
        assert err.value.code == "connect-self"
        assert api.peers() == []


@pytest.mark.parametrize("text", ["abc", "1111", "Qm", " " + OTHER_ID, OTHER_ID + "x", "0OIl"])
def test_text_that_is_not_a_peer_id_is_bad_peer_id(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_peer_id(text)
    assert err.value.code == "bad-peer-id"


async def test_disconnect_checks_the_peer(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        node = await start(stack, tmp_path, "node", [])
        other = await start(stack, tmp_path, "other", [])
        api = PeerApi(node)
        with pytest.raises(UsageError) as bad:
            await api.disconnect_peer("abc")
        assert bad.value.code == "bad-peer-id"
        with pytest.raises(NotFound) as unknown:
            await api.disconnect_peer(OTHER_ID)
        assert unknown.value.code == "peer-not-connected"

        assert (await api.connect_peer(other.addrs()[0]))["connected"]
        await wait_until(node, lambda: other.peer_id in [p["id"] for p in api.peers()])
        assert await api.disconnect_peer(other.peer_id) == {"peer": other.peer_id,
                                                            "disconnected": True}
        await wait_until(node, lambda: not node.connected())


def test_setnetworkactive_takes_a_json_boolean_only() -> None:
    spec = METHODS["setnetworkactive"].params
    assert bind_params(spec, [False]) == [False]
    assert bind_params(spec, {"active": True}) == [True]
    for bad in ([1], ["true"], [None], []):
        with pytest.raises(RpcError):
            bind_params(spec, bad)
    assert param_bool(True, "active") is True


async def test_network_off_isolates_and_on_reconnects(tmp_path: Path) -> None:
    events: Events = []
    async with AsyncExitStack() as stack:
        boot = await start(stack, tmp_path, "boot", [])
        node = await start(stack, tmp_path, "node", events, bootstrap=(boot.addrs()[0],))
        # ``dialer`` keeps dialling ``node`` (its bootstrap): the auto-dial that must be refused
        dialer = await start(stack, tmp_path, "dialer", [], bootstrap=(node.addrs()[0],))
        api = PeerApi(node)
        want = {boot.host.get_id(), dialer.host.get_id()}
        await wait_until(node, lambda: want <= set(node.connected()))

        seen = len(events)
        off = await api.set_network_active(False)
        assert off == {"network_active": False, "dropped": 2}
        await wait_until(node, lambda: not node.connected())
        with pytest.raises(UsageError) as err:
            await api.connect_peer(boot.addrs()[0])
        assert err.value.code == "network-inactive"
        late = await start(stack, tmp_path, "late", [])  # a new peer dialling in while off
        with trio.move_on_after(7):  # longer than the dialer's 5 s backoff cap
            while True:
                assert not await late.connect(node.addrs()[0]), "the gate let a dial in"
                await trio.sleep(1)
        assert not [f for ev, f in events[seen:] if ev == "peer-up"], "nobody got through"
        # (py-libp2p's dialer may not notice our close: a half-open connection on its side)
        # our own bootstrap peer is no longer dialled (only the dialer's refused tries remain)
        assert boot.host.get_id() not in node.connected()
        assert (await api.set_network_active(False))["dropped"] == 0  # idempotent

        on = await api.set_network_active(True)
        assert on["network_active"] is True and on["redialling"] >= 1
        await wait_until(node, lambda: boot.host.get_id() in node.connected(), timeout=20)
        assert (await api.connect_peer(late.addrs()[0]))["connected"]


def test_clock_skew_env_is_bounded() -> None:
    assert clock_skew_from_env({}) == 0.0
    assert clock_skew_from_env({"CROWDMESH_CLOCK_SKEW_S": "-90"}) == -90.0
    for bad in ("soon", "nan", str(MAX_CLOCK_SKEW_S + 1)):
        with pytest.raises(UsageError) as err:
            clock_skew_from_env({"CROWDMESH_CLOCK_SKEW_S": bad})
        assert err.value.code == "bad-clock-skew"


def test_chaos_clock_constants_match_the_daemon() -> None:
    from crowdmesh.daemon import clock
    from crowdmesh.daemon.client import chaos_faults

    assert chaos_faults.CLOCK_SKEW_ENV == clock.CLOCK_SKEW_ENV
    assert chaos_faults.MAX_CLOCK_SKEW_S == clock.MAX_CLOCK_SKEW_S
