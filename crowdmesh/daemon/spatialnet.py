"""The node's spatial gossip (SPATIAL.md §2.3): cell subscriptions around its location, the votes
topic, and the ``PublishSpatial`` effect port.

Invariants:
- Every spatial node (role ``spatial-worker`` or ``spatial-requester``) joins the votes topic, so
  a requester hears its committee without joining (and so revealing) any cell.
- A ``spatial-worker`` with a location joins exactly the cells of :func:`cells_for` around it:
  ``geo.cells_around(lat, lon, res, rings)`` with ``rings = max(h3_rings, ring_bound(R, res))``,
  so every report within R of the worker reaches it. A requester never joins a cell: it
  publishes its report to the report's cell through gossipsub fanout (its location stays
  private).
- :meth:`SpatialNet.set_location` moves the subscriptions by the difference only (leave the
  cells no longer covered, join the new ones), one move at a time (a lock), then tells the
  roles (``LocationSet``).
- At start the roles hear ``LocationSet`` (if a location is configured) and
  ``SpatialConfigured`` after ``RolesStarted``; a node without a spatial role hears neither and
  joins nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import trio

from crowdmesh.chain.contracts.spatial.geo import (
    cell_hex,
    cell_of,
    cells_for,
    check_point,
    rings_for,
)
from crowdmesh.chain.contracts.spatial.protocol import Report
from crowdmesh.chain.genesis import Genesis
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.errors import UsageError, ValidationError
from crowdmesh.p2p.gossip import spatial_cell_topic
from crowdmesh.p2p.messages import SpatialGossip
from crowdmesh.p2p.network import Network
from crowdmesh.roles.dispatch import Role
from crowdmesh.roles.events import Event
from crowdmesh.roles.spatial_events import LocationSet, SpatialConfigured, VotePolicyName

__all__ = ["SPATIAL_ROLES", "SpatialNet", "cells_for", "rings_for", "subscription_diff"]

SPATIAL_ROLES = frozenset({Role.SPATIAL_WORKER, Role.SPATIAL_REQUESTER})


def subscription_diff(joined: frozenset[int],
                      wanted: frozenset[int]) -> tuple[list[int], list[int]]:
    """``(leave, join)``: the cells to leave and to join, each sorted."""
    return sorted(joined - wanted), sorted(wanted - joined)


class SpatialNet:
    """Spatial topics of one node: joins, location moves and publishing."""

    def __init__(self, net: Network, genesis: Genesis, roles: frozenset[Role], cfg: NodeConfig,
                 deliver: Callable[[Event], None]) -> None:
        self._net = net
        self._chain_id = genesis.chain_id
        self._params = genesis.spatial
        self._cfg = cfg
        self._deliver = deliver
        self.enabled = bool(roles & SPATIAL_ROLES)
        self._worker = Role.SPATIAL_WORKER in roles
        self.location = cfg.location
        self.cells: frozenset[int] = frozenset()
        """The cells joined now."""
        self._lock = trio.Lock()

    def topic_of(self, cell: int) -> str:
        """The report topic of H3 cell ``cell``."""
        return spatial_cell_topic(self._chain_id, cell_hex(cell))

    def start_roles(self) -> None:
        """Tell the roles the configured location and vote policy (after ``RolesStarted``)."""
        if not self.enabled:
            return
        if self.location is not None:
            self._deliver(LocationSet(*self.location))
        policy = cast(VotePolicyName, self._cfg.vote_policy)  # the config checked the name
        self._deliver(SpatialConfigured(policy, self._cfg.error_permille, self._cfg.ground_truth))

    async def start(self) -> None:
        """Join the votes topic and the cells around the configured location."""
        if not self.enabled:
            return
        await self._net.subscribe(self._net.gossip.votes_topic)
        if self.location is not None:
            async with self._lock:
                await self._cover(*self.location)

    async def set_location(self, lat_e6: int, lon_e6: int) -> JsonObj:
        """Move to ``(lat_e6, lon_e6)``: re-join the cells around it, then tell the roles.

        Returns:
            ``{"lat_e6", "lon_e6", "cells"}`` (the number of cells joined now).
        Raises:
            UsageError: ``not-spatial`` on a node without a spatial role; ``bad-location``
                for a point out of range.
        """
        if not self.enabled:
            raise UsageError("not-spatial", "the node has no spatial role")
        try:
            check_point(lat_e6, lon_e6)
        except ValidationError as exc:
            raise UsageError("bad-location", exc.detail) from None
        async with self._lock:
            await self._cover(lat_e6, lon_e6)
            self.location = (lat_e6, lon_e6)
        self._deliver(LocationSet(lat_e6, lon_e6))
        return {"lat_e6": lat_e6, "lon_e6": lon_e6, "cells": len(self.cells)}

    async def _cover(self, lat_e6: int, lon_e6: int) -> None:
        """Join the cells around the point, leaving the others (workers only)."""
        wanted = cells_for(lat_e6, lon_e6, self._params) if self._worker else frozenset()
        leave, join = subscription_diff(self.cells, wanted)
        for cell in leave:
            await self._net.unsubscribe(self.topic_of(cell))
            self.cells = self.cells - {cell}
        for cell in join:
            await self._net.subscribe(self.topic_of(cell))
            self.cells = self.cells | {cell}

    async def publish(self, kind: str, raw: bytes, cell: int) -> None:
        """The ``PublishSpatial`` port: a report to its cell's topic (joined or not), a commit
        or reveal to the votes topic.

        ``cell`` 0 means the cell of the report's own point.

        Raises:
            DecodeError, ValidationError: the message fails the gossip checks (not sent).
        """
        msg = SpatialGossip(kind, raw)
        if kind != "report":
            await self._net.publish_to(self._net.gossip.votes_topic, msg)
            return
        if cell == 0:
            report = Report.decode(raw)
            cell = cell_of(report.lat_e6, report.lon_e6, self._params.h3_resolution)
        await self._net.publish_to(self.topic_of(cell), msg)
