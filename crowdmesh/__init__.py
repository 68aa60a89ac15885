"""crowdmesh: a peer-to-peer daemon for decentralised crowdsourcing.

The pure core lives in :mod:`crowdmesh.crypto`, :mod:`crowdmesh.chain`, :mod:`crowdmesh.fl` and
:mod:`crowdmesh.roles`; all I/O (sockets, files, processes, clocks) lives in
:mod:`crowdmesh.p2p` and :mod:`crowdmesh.daemon`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
