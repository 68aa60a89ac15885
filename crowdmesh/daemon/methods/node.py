"""The node's own methods, backed by :class:`~crowdmesh.daemon.api.NodeService` only.

``ready`` and ``stop`` are not here: they must answer before the node has started, so the
control server serves them itself.
"""

from __future__ import annotations

from typing import Final

from crowdmesh.daemon.methods import Method, MethodTable

__all__ = ["METHODS"]

METHODS: Final[MethodTable] = {
    "status": Method((), lambda s, a: s.node.status(), doc="node summary"),
}
