"""The events and effects of spatial crowdsourcing (SPATIAL.md §2.3), shared by the pure roles
(``roles/spatial_requester.py``, ``roles/spatial_worker.py``) and the daemon that feeds and
executes them.

Invariants:
- Gossip: a report travels on the topic of its H3 cell (only nodes near it subscribe); commits
  and reveals travel on the network's one votes topic, which every spatial node subscribes to,
  so a requester hears its committee without subscribing to (and so revealing) any cell.
  :class:`SpatialHeard` carries one message as the topic validator accepted it (decoded and
  size-checked, signature not yet verified: roles verify).
- Operator intents (:class:`ReportRequested`, :class:`VoteGiven`, :class:`LocationSet`,
  :class:`SpatialConfigured`) come from the config at start or the control socket;
  :class:`SpatialDeadline` and :class:`SpatialResumed` from the roles' own ``ScheduleAt``.
- Events carry plain values; instance keys are report ids in hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from crowdmesh.roles.effects import Effect
from crowdmesh.roles.events import AddressedEvent, Event

__all__ = [
    "SPATIAL_KINDS",
    "VOTE_POLICIES",
    "LocationSet",
    "PublishSpatial",
    "ReportRequested",
    "SpatialConfigured",
    "SpatialDeadline",
    "SpatialHeard",
    "SpatialKind",
    "SpatialResumed",
    "VoteGiven",
    "VotePolicyName",
]

SpatialKind = Literal["report", "commit", "reveal"]
SPATIAL_KINDS: tuple[SpatialKind, ...] = ("report", "commit", "reveal")
VotePolicyName = Literal["operator", "honest", "always-confirm", "always-reject", "oracle"]
VOTE_POLICIES: tuple[VotePolicyName, ...] = (
    "operator", "honest", "always-confirm", "always-reject", "oracle")
_MAX_TRUTHS = 4096


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
class SpatialConfigured(Event):
    """How the node's worker votes (config at start, or the control socket).

    ``policy``: ``operator`` waits for a :class:`VoteGiven` per report; ``always-confirm`` /
    ``always-reject`` vote fixed; ``honest`` confirms; ``oracle`` confirms iff one of
    ``truths`` (``(type, lat_e6, lon_e6)`` of the true events) of the report's type lies within
    the genesis ``dup_distance_m`` of it. ``honest`` and ``oracle`` flip their vote with
    probability ``error_permille``/1000 (a deterministic per-report draw): simulated workers.

    Raises:
        ValueError: an unknown policy, an error rate outside 0..1000, or a malformed truth.
    """

    TYPE: ClassVar[str] = "spatial-configured"
    policy: VotePolicyName
    error_permille: int = 0
    truths: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.policy not in VOTE_POLICIES:
            raise ValueError(f"unknown vote policy {self.policy!r}")
        if type(self.error_permille) is not int or not 0 <= self.error_permille <= 1000:
            raise ValueError("error_permille must be an int in 0..1000")
        if len(self.truths) > _MAX_TRUTHS or not all(_is_truth(t) for t in self.truths):
            raise ValueError(f"truths: at most {_MAX_TRUTHS} (type, lat_e6, lon_e6) triples")


def _is_truth(truth: object) -> bool:
    return (isinstance(truth, tuple) and len(truth) == 3 and isinstance(truth[0], str)
            and type(truth[1]) is int and abs(truth[1]) <= 90_000_000
            and type(truth[2]) is int and abs(truth[2]) <= 180_000_000)


@dataclass(frozen=True, slots=True)
class SpatialResumed(AddressedEvent):
    """After a restart, rebuild instance ``instance`` (a report id in hex) of spatial role
    ``role`` from its store: the role's ``RolesStarted`` handler asks for one per report it
    kept (``ScheduleAt`` at the current time), since a handler is not told its instance key."""

    TYPE: ClassVar[str] = "spatial-resumed"


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
