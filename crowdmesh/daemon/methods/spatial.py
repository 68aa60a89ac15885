"""Spatial crowdsourcing methods, backed by :class:`~crowdmesh.daemon.api.SpatialService` only.

Rule: coordinates are integer micro-degrees (``lat_e6``, ``lon_e6``); a node without a spatial
role answers every method with ``spatial-off``. ``report_submit`` is idempotent by ``id``.
"""

from __future__ import annotations

from typing import Any, Final

from crowdmesh.chain.codec import U64_MAX
from crowdmesh.daemon.api import Services, SpatialService
from crowdmesh.daemon.methods import (
    Method,
    MethodTable,
    param_choice,
    param_hex,
    param_int,
    param_optional,
    param_str,
)
from crowdmesh.errors import UsageError

__all__ = ["METHODS"]

_LAT = param_int(-90_000_000, 90_000_000)
_LON = param_int(-180_000_000, 180_000_000)


def _spatial(services: Services) -> SpatialService:
    if services.spatial is None:
        raise UsageError("spatial-off", "add spatial-requester or spatial-worker to roles")
    return services.spatial


def _near(s: Services, a: list[Any]) -> Any:
    near = None if a[0] is None or a[1] is None else (a[0], a[1])
    return _spatial(s).report_list(near, a[2], a[3])


METHODS: Final[MethodTable] = {
    "location_set": Method((("lat_e6", _LAT), ("lon_e6", _LON)),
                           lambda s, a: _spatial(s).location_set(a[0], a[1]),
                           doc="move this node (re-subscribes to the cells around it)"),
    "report_submit": Method(
        (("type", param_str), ("lat_e6", _LAT), ("lon_e6", _LON), ("id", param_str)),
        lambda s, a: _spatial(s).report_submit(a[0], a[1], a[2], a[3]),
        doc="report an event at a point (idempotent by id)"),
    "report_vote": Method(
        (("report", param_hex), ("vote", param_choice(("confirm", "reject")))),
        lambda s, a: _spatial(s).report_vote(a[0], a[1]),
        doc="vote on a pending report within its commit window"),
    "report_pending": Method((), lambda s, a: _spatial(s).report_pending(),
                             doc="reports waiting for this node's vote"),
    "report_list": Method(
        (("lat_e6", param_optional(_LAT)), ("lon_e6", param_optional(_LON)),
         ("radius_m", param_optional(param_int(1, U64_MAX))),
         ("status", param_optional(param_choice(("confirmed", "rejected"))))),
        _near, doc="decided reports, optionally near a point or by status"),
    "report_show": Method((("report", param_hex),),
                          lambda s, a: _spatial(s).report_show(a[0]),
                          doc="one report: its decision or this node's part in it"),
    "rewards": Method((("account", param_hex),), lambda s, a: _spatial(s).rewards(a[0]),
                      doc="earned as requester, worker and miner"),
}
