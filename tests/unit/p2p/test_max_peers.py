"""Component test of ``[p2p] max_peers``: real libp2p hosts in one process, bounded waits."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio
from libp2p.peer.id import ID

from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from tests.unit.p2p.test_network import CHAIN, BytesChain, reject_marked

Events = list[tuple[str, dict]]


async def start(stack: AsyncExitStack, tmp: Path, name: str, events: Events,
                max_peers: int = 50) -> Network:
    (tmp / name).mkdir()
    cfg = NetworkConfig(tmp / name, "/ip4/127.0.0.1/tcp/0", CHAIN, max_peers=max_peers)
    return await stack.enter_async_context(
        open_network(cfg, BytesChain(3), reject_marked, lambda ev, f: events.append((ev, f))))


async def wait_until(net: Network, cond) -> None:
    with trio.fail_after(10):
        while not cond():
            await net.watch.wait_changed()


def event_peers(events: Events, name: str) -> list[str]:
    return [f["peer"] for ev, f in events if ev == name]


async def test_peer_over_the_limit_is_dropped_but_bootstrap_peers_are_kept(tmp_path: Path) -> None:
    events: Events = []
    async with AsyncExitStack() as stack:
        node = await start(stack, tmp_path, "node", events, max_peers=1)
        first = await start(stack, tmp_path, "first", [])
        second = await start(stack, tmp_path, "second", [])
        boot = await start(stack, tmp_path, "boot", [])
        first_id: ID = first.host.get_id()
        second_id: ID = second.host.get_id()

        assert await first.connect(node.addrs()[0])
        await wait_until(node, lambda: first_id in node.connected())
        await second.connect(node.addrs()[0])  # may report either outcome: we close at once
        await wait_until(node, lambda: second.peer_id in event_peers(events, "peer-refused"))
        await wait_until(node, lambda: second_id not in node.connected())
        refused = [f for ev, f in events if ev == "peer-refused"]
        assert refused[0] == {"peer": second.peer_id, "code": "too-many-peers", "max_peers": 1}
        assert second.peer_id not in event_peers(events, "peer-up")
        assert node.refused >= 1  # (second's auto-connector may try again)
        assert first_id in node.connected()

        # the limit is reached, yet our own bootstrap peer is dialled and kept
        node.add_bootstrap(boot.addrs()[0])
        await wait_until(node, lambda: boot.peer_id in event_peers(events, "peer-up"))
        assert boot.peer_id not in event_peers(events, "peer-refused")
        assert {first_id, boot.host.get_id()} <= set(node.connected())
