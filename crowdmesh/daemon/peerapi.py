"""The control socket's ``PeerService`` over the running network.

Invariants:
- A thin adapter; every rule about peers (caps, scoring, redialling, turning networking off
  and on) lives in ``crowdmesh.p2p``.
- Bad peer input is a ``UsageError`` or ``NotFound`` with a stable code (``bad-peer-addr``,
  ``bad-peer-id``, ``connect-self``, ``peer-not-connected``, ``network-inactive``), never a
  claim of success: ``connect`` answers ``connected: false`` only for a dial that failed.
- ``setnetworkactive`` is logged (``network-active``) with how many peers it dropped or redials.
"""

from __future__ import annotations

import logging

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.logs import log_event
from crowdmesh.p2p.network import Network

__all__ = ["PeerApi"]

log = logging.getLogger("crowdmesh.p2p")


class PeerApi:
    """Implements :class:`crowdmesh.daemon.api.PeerService` (plus ``set_network_active``)."""

    def __init__(self, net: Network) -> None:
        self._net = net

    def peers(self) -> list[JsonObj]:
        """Connected peers with scores and reject counts."""
        return self._net.peers()

    async def connect_peer(self, addr: str) -> JsonObj:
        """Dial ``/ip4/…/tcp/…/p2p/<id>`` once.

        Raises:
            UsageError: ``bad-peer-addr``, ``connect-self``, ``network-inactive``.
        """
        ok = await self._net.connect(addr)
        return {"addr": addr, "connected": ok}

    async def disconnect_peer(self, peer_id: str) -> JsonObj:
        """Drop a peer's connections and stop redialling it.

        Raises:
            UsageError: ``bad-peer-id``. NotFound: ``peer-not-connected``.
        """
        await self._net.disconnect(peer_id)
        return {"peer": peer_id, "disconnected": True}

    def set_bootstrap(self, addrs: tuple[str, ...]) -> JsonObj:
        """Apply a reloaded ``[p2p] bootstrap`` list (SIGHUP)."""
        self._net.set_bootstrap(addrs)
        return {"bootstrap": list(addrs)}

    async def set_network_active(self, active: bool) -> JsonObj:
        """Turn networking off (drop every peer, refuse inbound, stop dialling; the host keeps
        listening) or back on (redial the bootstrap and known peers), like bitcoind's
        ``setnetworkactive``. Idempotent: a repeated call changes nothing and reports 0."""
        changed = self._net.active != active
        count = await self._net.set_active(active)
        key = "redialling" if active else "dropped"
        if changed:
            log_event(log, "network-active", active=active, **{key: count})
        return {"network_active": self._net.active, key: count}
