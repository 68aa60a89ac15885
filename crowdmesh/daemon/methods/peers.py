"""Peer methods, backed by :class:`~crowdmesh.daemon.api.PeerService` only.

``connect`` dials a ``/ip4/…/tcp/…/p2p/<id>`` address once; ``disconnect`` drops the
connections to a base58 peer id (the testnet harness uses both for split/join).
"""

from __future__ import annotations

from typing import Final

from crowdmesh.daemon.methods import Method, MethodTable, param_str

__all__ = ["METHODS"]

METHODS: Final[MethodTable] = {
    "peers": Method((), lambda s, a: s.peers.peers(), doc="connected peers"),
    "connect": Method((("addr", param_str),), lambda s, a: s.peers.connect_peer(a[0]),
                      doc="dial a peer multiaddr once"),
    "disconnect": Method((("peer", param_str),), lambda s, a: s.peers.disconnect_peer(a[0]),
                         doc="drop a peer's connections"),
}
