"""The control socket's ``PeerService`` over the running network.

Invariant: a thin adapter; every rule about peers (caps, scoring, redialling) lives in
``crowdmesh.p2p``.
"""

from __future__ import annotations

from crowdmesh.daemon.api import JsonObj
from crowdmesh.p2p.network import Network

__all__ = ["PeerApi"]


class PeerApi:
    """Implements :class:`crowdmesh.daemon.api.PeerService`."""

    def __init__(self, net: Network) -> None:
        self._net = net

    def peers(self) -> list[JsonObj]:
        """Connected peers with scores and reject counts."""
        return self._net.peers()

    async def connect_peer(self, addr: str) -> JsonObj:
        """Dial ``/ip4/…/tcp/…/p2p/<id>`` once."""
        ok = await self._net.connect(addr)
        return {"addr": addr, "connected": ok}

    async def disconnect_peer(self, peer_id: str) -> JsonObj:
        """Drop a peer's connections and stop redialling it."""
        await self._net.disconnect(peer_id)
        return {"peer": peer_id, "disconnected": True}

    def set_bootstrap(self, addrs: tuple[str, ...]) -> JsonObj:
        """Apply a reloaded ``[p2p] bootstrap`` list (SIGHUP)."""
        self._net.set_bootstrap(addrs)
        return {"bootstrap": list(addrs)}
