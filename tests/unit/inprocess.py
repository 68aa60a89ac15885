"""A whole node started in this process (``run_node``), seen as one object for tests.

``run_node`` hands out :class:`~crowdmesh.daemon.api.Services` (one narrow interface per
feature); tests that drive a node directly find each operation on whichever service has it,
and the wired parts (``ledger``, ``net``, ``host``, ``calls``…) on the node itself.
"""

from __future__ import annotations

from typing import Any

from crowdmesh.daemon.api import Services


class InProcessNode:
    """Attribute lookup across a running node's services, then the node object."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def __getattr__(self, name: str) -> Any:
        s = self.__dict__["services"]
        for part in (s.chain, s.mining, s.peers, s.account, s.spatial, s.node):
            if part is not None and hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)
