"""The events and effects of spatial crowdsourcing (SPATIAL.md §2.3), shared by the pure roles
(``roles/spatial_requester.py``, ``roles/spatial_worker.py``) and the daemon that feeds and
executes them.

Invariants:
- Gossip: a report travels on the topic of its H3 cell (only nodes near it subscribe); commits
  and reveals travel on the network's one votes topic, which every spatial node subscribes to,
  so a requester hears its committee without subscribing to (and so revealing) any cell.
  :class:`SpatialHeard` carries one message as the topic validator accepted it (decoded and
  size-checked, signature not yet verified: roles verify).
- Operator intents (:class:`ReportRequested`, :class:`VoteGiven`, :class:`LocationSet`) come
  from the control socket; :class:`SpatialDeadline` from the role's own ``ScheduleAt``.
- Events carry plain values; instance keys are report ids in hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from crowdmesh.roles.effects import Effect
from crowdmesh.roles.events import Event

__all__ = [
    "SPATIAL_KINDS",
    "LocationSet",
    "PublishSpatial",
    "ReportRequested",
    "SpatialDeadline",
    "SpatialHeard",
    "SpatialKind",
    "VoteGiven",
]

SpatialKind = Literal["report", "commit", "reveal"]
SPATIAL_KINDS: tuple[SpatialKind, ...] = ("report", "commit", "reveal")


@dataclass(frozen=True, slots=True)
class SpatialHeard(Event):
    """A spatial gossip message (``kind``: report, commit or reveal) arrived; ``raw`` is the
    message's canonical encoding (``crowdmesh.chain.contracts.spatial.protocol``)."""

    TYPE: ClassVar[str] = "spatial-heard"
    kind: SpatialKind
    raw: bytes


@dataclass(frozen=True, slots=True)
class ReportRequested(Event):
    """The operator reports an event of ``type`` at a point (``report submit``);
    ``request_id`` is the operator's id for it (idempotent: asking twice reports once)."""

    TYPE: ClassVar[str] = "report-requested"
    request_id: str
    type: str
    lat_e6: int
    lon_e6: int


@dataclass(frozen=True, slots=True)
class VoteGiven(Event):
    """The operator's vote on a pending report (``report vote ID confirm|reject``): 1 or 0."""

    TYPE: ClassVar[str] = "vote-given"
    report_id: bytes
    vote: int


@dataclass(frozen=True, slots=True)
class LocationSet(Event):
    """The node's location changed (config at start, or ``location set``)."""

    TYPE: ClassVar[str] = "location-set"
    lat_e6: int
    lon_e6: int


@dataclass(frozen=True, slots=True)
class SpatialDeadline(Event):
    """A window of report ``report_id`` ended: ``phase`` is ``commit`` or ``reveal``."""

    TYPE: ClassVar[str] = "spatial-deadline"
    report_id: bytes
    phase: Literal["commit", "reveal"]


@dataclass(frozen=True, slots=True)
class PublishSpatial(Effect):
    """Gossip one spatial message: a report to the topic of H3 cell ``cell`` (published without
    subscribing), a commit or reveal to the votes topic (``cell`` is then ignored)."""

    NAME: ClassVar[str] = "publish-spatial"
    kind: SpatialKind
    raw: bytes
    cell: int = 0
