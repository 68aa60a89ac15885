"""Peer methods, backed by :class:`~crowdmesh.daemon.api.PeerService` only.

``connect`` dials a ``/ip4/…/tcp/…/p2p/<id>`` address once (never our own: ``connect-self``);
``disconnect`` drops the connections to a base58 peer id (``bad-peer-id`` for text that is
not one, ``peer-not-connected`` for a peer we neither hold nor redial); the testnet harness
uses both for split/join. ``setnetworkactive`` turns the node's networking off and on
(bitcoind's ``setnetworkactive``); the chaos harness splits the network with it.
"""

from __future__ import annotations

from typing import Any, Final

from crowdmesh.daemon.methods import (
    INVALID_PARAMS,
    Method,
    MethodTable,
    RpcError,
    param_str,
)

__all__ = ["METHODS", "param_bool"]



def param_bool(v: Any, name: str) -> bool:
    """A JSON boolean (not 0/1, not "true")."""
    if not isinstance(v, bool):
        raise RpcError(INVALID_PARAMS, f"{name} must be true or false")
    return v




METHODS: Final[MethodTable] = {
    "peers": Method((), lambda s, a: s.peers.peers(), doc="connected peers"),
    "connect": Method((("addr", param_str),), lambda s, a: s.peers.connect_peer(a[0]),
                      doc="dial a peer multiaddr once"),
    "disconnect": Method((("peer", param_str),), lambda s, a: s.peers.disconnect_peer(a[0]),
                         doc="drop a peer's connections"),
    "setnetworkactive": Method((("active", param_bool),),
                               lambda s, a: s.peers.set_network_active(a[0]),
                               doc="turn networking off (drop and refuse peers) or on"),
}
