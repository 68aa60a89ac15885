"""The spatial worker: votes on the reports near it, by commit and reveal (SPATIAL.md §2.3).

States: the singleton ``""`` is :class:`WorkerSettings` (the node's location and vote policy,
mirrored in the store as ``location`` and ``policy`` so that per-report handlers read them
through ``ctx.store``); every other instance, keyed by the report id in hex, is a
:class:`WorkerReport`. Store layout: see ``roles/_spatial.py``.

Invariants:
- A report instance exists only if: the report decodes and verifies, has this network's chain
  id and a known type, its commit window is open (allowing :data:`MAX_SKEW_S` of clock skew),
  the node has an account and a location within R of the reported point, and the requester is
  not this node. So a worker never commits to its own report (SPATIAL.md §5 A4) nor outside R
  (A3). At most :data:`MAX_OPEN` reports are open at once.
- The vote is fixed by the policy when the report is heard (``operator``: pending until a
  :class:`VoteGiven`) and stored (``o/``) before any commit leaves the node. The commit is made
  as soon as the vote is known, the beacon block (``anchor + 1``) is on the main chain and the
  commit window is open, re-checked on every head change; it is deterministic (the salt is
  ``commit_salt(signer, report_id)``), so publishing it again is harmless. A new beacon (a
  reorg of block ``anchor + 1`` inside the commit window) gets a new commit, which replaces
  ours in the freeze; the old one is invalid on the new beacon anyway. The vote and the salt
  never change once committed, so the one reveal opens whichever of our commits counts. Other
  workers' commits are kept for every beacon (the freeze picks the valid ones).
- At the commit deadline (``report.ts + T_c``) the worker freezes S from the commits it holds
  (heard before the deadline, and its own); if it is in S it reveals, signing H(S), and keeps
  the instance until the reveal deadline; otherwise (or if the freeze fails) it drops it.
  A dropped instance leaves nothing in the store.
- A restart rebuilds every kept report from the store (``RolesStarted`` asks for a
  ``SpatialResumed`` per report) and re-schedules its deadline; a past one fires at once.
- Handlers never raise on well-formed events and do nothing without a signer (no account).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.committee import freeze
from crowdmesh.chain.contracts.spatial.protocol import (
    VOTE_CONFIRM,
    VOTE_REJECT,
    Commit,
    Report,
    Reveal,
    commit_salt,
    committee_hash,
)
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.crypto.identity import Signer
from crowdmesh.errors import ValidationError
from crowdmesh.roles._spatial import (
    COMMITS,
    REPORTS,
    VOTES,
    beacon_of,
    combination_used,
    commit_deadline,
    commit_key,
    decode_commit,
    decode_report,
    forget,
    heard_commit_key,
    log,
    params,
    resume_all,
    reveal_deadline,
    rid_of,
    stored_messages,
    with_commit,
)
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import Effect, ScheduleAt, StorePut
from crowdmesh.roles.events import Event
from crowdmesh.roles.spatial_events import (
    LocationSet,
    PublishSpatial,
    SpatialConfigured,
    SpatialDeadline,
    SpatialHeard,
    SpatialResumed,
    VoteGiven,
    VotePolicyName,
)

if TYPE_CHECKING:
    from crowdmesh.roles.dispatch import Role

__all__ = [
    "ERR_DOMAIN",
    "LOCATION",
    "MAX_OPEN",
    "MAX_SKEW_S",
    "POLICY",
    "ROLE_NAME",
    "VotePolicy",
    "WorkerReport",
    "WorkerSettings",
    "handle_head_changed",
    "handle_location_set",
    "handle_roles_started",
    "handle_spatial_configured",
    "handle_spatial_deadline",
    "handle_spatial_heard",
    "handle_spatial_resumed",
    "handle_vote_given",
    "heard_keys",
    "policy_vote",
    "refusal",
    "vote_keys",
]

ROLE_NAME = "spatial-worker"  # Role.SPATIAL_WORKER.value (dispatch imports this module)
LOCATION = b"location"
POLICY = b"policy"
ERR_DOMAIN = b"crowdmesh/spatial/err/1"
MAX_OPEN = 256  # open reports at once: a flood of nearby reports cannot grow the state further
MAX_SKEW_S = 120  # a report may be this far ahead of our clock

Result = tuple[Any, list[Effect]]


@dataclass(frozen=True, slots=True)
class VotePolicy:
    """How this worker votes (see :class:`~crowdmesh.roles.spatial_events.SpatialConfigured`)."""

    policy: VotePolicyName = "operator"
    error_permille: int = 0
    truths: tuple[tuple[str, int, int], ...] = ()

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.policy, self.error_permille, [list(t) for t in self.truths]])

    @classmethod
    def decode(cls, raw: bytes) -> VotePolicy:
        """Parse the stored form (written by :meth:`encode`)."""
        policy, error, truths = unpack(raw, 1 << 20)
        return cls(policy, error, tuple((t, lat, lon) for t, lat, lon in truths))


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The singleton: where the node is and how it votes."""

    location: tuple[int, int] | None = None
    policy: VotePolicy = VotePolicy()


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """One report this node works on.

    Attributes:
        vote: 1 confirm, 0 reject, None while the operator has not voted.
        commits: the commits held for the freeze, sorted by worker and encoding: others' for
            every beacon they committed on (``roles/_spatial.py``), ours for the latest only.
        committed_on: the beacon our latest commit was drawn on (empty before we commit).
        phase: ``commit`` until the freeze, then ``reveal`` (we are in S and revealed).
    """

    report: Report
    vote: int | None = None
    commits: tuple[Commit, ...] = ()
    committed_on: bytes = b""
    phase: Literal["commit", "reveal"] = "commit"

    @property
    def awaiting_operator(self) -> bool:
        """True while the operator's vote is wanted (``report pending`` lists these)."""
        return self.vote is None and self.phase == "commit"


# -- settings (the singleton) -------------------------------------------------------------------


def _location(ctx: RoleContext) -> tuple[int, int] | None:
    raw = ctx.store.get(LOCATION)
    if raw is None:
        return None
    lat, lon = unpack(raw, 64)
    return int(lat), int(lon)


def _policy(ctx: RoleContext) -> VotePolicy:
    raw = ctx.store.get(POLICY)
    return VotePolicy() if raw is None else VotePolicy.decode(raw)


def handle_roles_started(state: WorkerSettings | None, event: Event,
                         ctx: RoleContext) -> Result:
    """Rebuild the settings from the store and resume every kept report."""
    return WorkerSettings(_location(ctx), _policy(ctx)), resume_all(ROLE_NAME, ctx)


def handle_location_set(state: WorkerSettings | None, event: Event, ctx: RoleContext) -> Result:
    """Keep the node's location (reports already open keep their eligibility)."""
    assert isinstance(event, LocationSet)
    try:
        geo.check_point(event.lat_e6, event.lon_e6)
    except ValidationError as exc:
        return state, [log("spatial-location-refused", code=exc.code)]
    settings = state or WorkerSettings(policy=_policy(ctx))
    point = (event.lat_e6, event.lon_e6)
    return replace(settings, location=point), [StorePut(LOCATION, pack(list(point)))]


def handle_spatial_configured(state: WorkerSettings | None, event: Event,
                              ctx: RoleContext) -> Result:
    """Keep the vote policy (it applies to reports heard from now on)."""
    assert isinstance(event, SpatialConfigured)
    policy = VotePolicy(event.policy, event.error_permille, event.truths)
    settings = state or WorkerSettings(location=_location(ctx))
    return replace(settings, policy=policy), [StorePut(POLICY, policy.encode())]


# -- the vote -----------------------------------------------------------------------------------


def _flipped(signer: Signer, report_id: bytes, error_permille: int) -> bool:
    """A deterministic draw with probability error_permille/1000 (a simulated mistake)."""
    if error_permille == 0:
        return False
    digest = hashlib.sha256(signer.sign(ERR_DOMAIN + report_id)).digest()
    return int.from_bytes(digest[:2], "big") % 1000 < error_permille


def _is_true(report: Report, policy: VotePolicy, p: SpatialParams) -> bool:
    return any(kind == report.type
               and geo.distance_m(lat, lon, report.lat_e6, report.lon_e6) <= p.dup_distance_m
               for kind, lat, lon in policy.truths)


_BASE_VOTE: dict[str, Callable[[Report, VotePolicy, SpatialParams], int | None]] = {
    "operator": lambda r, policy, p: None,
    "always-confirm": lambda r, policy, p: VOTE_CONFIRM,
    "always-reject": lambda r, policy, p: VOTE_REJECT,
    "honest": lambda r, policy, p: VOTE_CONFIRM,
    "oracle": lambda r, policy, p: VOTE_CONFIRM if _is_true(r, policy, p) else VOTE_REJECT,
}
_ERRS = frozenset({"honest", "oracle"})  # the policies that simulate mistakes


def policy_vote(report: Report, policy: VotePolicy, p: SpatialParams,
                signer: Signer) -> int | None:
    """The vote ``policy`` gives ``report`` (None: ask the operator)."""
    vote = _BASE_VOTE[policy.policy](report, policy, p)
    if vote is not None and policy.policy in _ERRS \
            and _flipped(signer, report.report_id, policy.error_permille):
        return 1 - vote
    return vote


# -- eligibility, commit, freeze ----------------------------------------------------------------


def refusal(report: Report, ctx: RoleContext) -> str | None:
    """Why this node does not work on ``report`` (None: it does); cheapest checks first."""
    p = params(ctx)
    if ctx.signer is None:
        return "no-account"
    if report.requester == ctx.signer.public:
        return "spatial-own-report"
    if report.chain_id != ctx.chain.genesis().chain_id or report.type not in p.report_types:
        return "spatial-unknown-type"
    if not report.ts - MAX_SKEW_S <= ctx.now < commit_deadline(report, p):
        return "spatial-outside-window"
    location = _location(ctx)
    if location is None or geo.distance_m(*location, report.lat_e6, report.lon_e6) > p.radius_m:
        return "spatial-out-of-range"
    try:
        report.verify()
    except ValidationError as exc:
        return exc.code
    return None


def _try_commit(state: WorkerReport, ctx: RoleContext) -> Result:
    """Commit if the vote is known, the beacon exists and the window is open (once per beacon)."""
    signer = ctx.signer
    report = state.report
    if signer is None or state.phase != "commit" or state.vote is None \
            or ctx.now >= commit_deadline(report, params(ctx)):
        return state, []
    beacon = beacon_of(report, ctx)
    if beacon is None or beacon == state.committed_on:
        return state, []
    rid = report.report_id
    commit = Commit.create(signer, rid, beacon, state.vote, commit_salt(signer, rid))
    others = [c for c in state.commits if c.worker != signer.public]
    commits = tuple(sorted([*others, commit], key=lambda c: (c.worker, c.encoded)))
    return replace(state, commits=commits, committed_on=beacon), [
        StorePut(COMMITS + rid + signer.public, commit.encode()),
        PublishSpatial("commit", commit.encode())]


def _freeze(state: WorkerReport, ctx: RoleContext) -> Result:
    """The commit deadline: freeze S; reveal if we are in it, else drop the report."""
    if state.phase != "commit":
        return state, []
    report, signer, p = state.report, ctx.signer, params(ctx)
    rid = report.report_id
    beacon = beacon_of(report, ctx)
    if beacon is None or signer is None:
        return None, [log("spatial-freeze-failed", report=rid.hex(), code="spatial-no-beacon"),
                      *forget(rid, ctx)]
    try:
        committee = freeze(report, state.commits, beacon, p.committee_k,
                           used=combination_used(ctx))
    except ValidationError as exc:  # detail: how many were valid; workers: how many heard
        return None, [log("spatial-freeze-failed", report=rid.hex(), code=exc.code,
                          detail=exc.detail, workers=len({c.worker for c in state.commits})),
                      *forget(rid, ctx)]
    workers = [c.worker for c in committee]
    if signer.public not in workers or state.vote is None:
        return None, forget(rid, ctx)
    reveal = Reveal.create(signer, rid, state.vote, commit_salt(signer, rid),
                           committee_hash(workers))
    return replace(state, phase="reveal"), [
        PublishSpatial("reveal", reveal.encode()),
        ScheduleAt(reveal_deadline(report, p), SpatialDeadline(rid, "reveal"))]


def _expire(state: WorkerReport, ctx: RoleContext) -> Result:
    """The reveal deadline: nothing left to do."""
    return None, forget(state.report.report_id, ctx)


def _open(report: Report, ctx: RoleContext, vote: int | None,
          commits: tuple[Commit, ...]) -> Result:
    """Start (or restart) work on ``report``: schedule the freeze, commit if possible."""
    state = WorkerReport(report, vote, commits)
    deadline = ScheduleAt(commit_deadline(report, params(ctx)),
                          SpatialDeadline(report.report_id, "commit"))
    state, effects = _try_commit(state, ctx)
    return state, [deadline, *effects]


# -- handlers -----------------------------------------------------------------------------------


def _heard_report(state: WorkerReport | None, event: SpatialHeard, ctx: RoleContext) -> Result:
    if state is not None:
        return state, []
    report = decode_report(event.raw)
    if report is None or ctx.signer is None or refusal(report, ctx) is not None:
        return None, []
    rid = report.report_id
    vote = policy_vote(report, _policy(ctx), params(ctx), ctx.signer)
    kept: list[Effect] = [StorePut(REPORTS + rid, report.encode())]
    if vote is not None:
        kept.append(StorePut(VOTES + rid, bytes([vote])))
    state, effects = _open(report, ctx, vote, ())
    return state, [*kept, *effects]


def _heard_commit(state: WorkerReport | None, event: SpatialHeard, ctx: RoleContext) -> Result:
    commit = decode_commit(event.raw)
    if state is None or commit is None or state.phase != "commit" \
            or ctx.now >= commit_deadline(state.report, params(ctx)) \
            or (ctx.signer is not None and commit.worker == ctx.signer.public):
        return state, []  # ours is the one we made; late commits do not count
    commits = with_commit(state.commits, commit)  # every beacon's: a reorg may bring another
    if commits is None:
        return state, []
    key = commit_key(state.commits, commit)
    return replace(state, commits=commits), [StorePut(key, commit.encode())]


def _ignore(state: Any, event: SpatialHeard, ctx: RoleContext) -> Result:
    return state, []


_HEARD: dict[str, Callable[[Any, SpatialHeard, RoleContext], Result]] = {
    "report": _heard_report,
    "commit": _heard_commit,
    "reveal": _ignore,
}


def handle_spatial_heard(state: WorkerReport | None, event: Event, ctx: RoleContext) -> Result:
    """A report near us opens an instance; a commit for an open report is kept."""
    assert isinstance(event, SpatialHeard)
    return _HEARD[event.kind](state, event, ctx)


def handle_vote_given(state: WorkerReport | None, event: Event, ctx: RoleContext) -> Result:
    """The operator's vote on an open report: kept, then committed if the beacon exists."""
    assert isinstance(event, VoteGiven)
    report = event.report_id.hex()
    if state is None:
        return None, [log("spatial-vote-ignored", report=report, reason="unknown-report")]
    if event.vote not in (VOTE_REJECT, VOTE_CONFIRM):
        return state, [log("spatial-vote-ignored", report=report, reason="bad-vote")]
    if state.committed_on or state.phase != "commit":
        return state, [log("spatial-vote-ignored", report=report, reason="committed")]
    state, effects = _try_commit(replace(state, vote=event.vote), ctx)
    return state, [StorePut(VOTES + event.report_id, bytes([event.vote])), *effects]


def handle_head_changed(state: WorkerReport, event: Event, ctx: RoleContext) -> Result:
    """The head moved: the beacon may exist now."""
    return _try_commit(state, ctx)


_DEADLINES: dict[str, Callable[[WorkerReport, RoleContext], Result]] = {
    "commit": _freeze,
    "reveal": _expire,
}


def handle_spatial_deadline(state: WorkerReport | None, event: Event,
                            ctx: RoleContext) -> Result:
    """The commit window closed (freeze, reveal) or the reveal window did (drop)."""
    assert isinstance(event, SpatialDeadline)
    if state is None:
        return None, []
    return _DEADLINES[event.phase](state, ctx)


def handle_spatial_resumed(state: WorkerReport | None, event: Event,
                           ctx: RoleContext) -> Result:
    """After a restart: rebuild a kept report from the store and the chain view."""
    assert isinstance(event, SpatialResumed)
    rid = rid_of(event.instance)
    if state is not None or rid is None:
        return state, []
    raw = ctx.store.get(REPORTS + rid)
    report = None if raw is None else decode_report(raw)
    if report is None or ctx.signer is None \
            or ctx.now >= reveal_deadline(report, params(ctx)):
        return None, forget(rid, ctx)
    stored_vote = ctx.store.get(VOTES + rid)
    vote = None if stored_vote is None else stored_vote[0]
    # Our own commit is made again (the same bytes: the vote is stored before it, the salt is
    # recomputed) and published again, in case the crash came between storing and sending it.
    return _open(report, ctx, vote, stored_messages(ctx, COMMITS, rid, decode_commit))


# -- instance keys ------------------------------------------------------------------------------


def _heard_report_key(event: SpatialHeard, live: frozenset[str]) -> tuple[str, ...]:
    report = decode_report(event.raw)
    if report is None:
        return ()
    key = report.report_id.hex()
    return (key,) if key in live or len(live) <= MAX_OPEN else ()


_HEARD_KEYS: dict[str, Callable[[SpatialHeard, frozenset[str]], tuple[str, ...]]] = {
    "report": _heard_report_key,
    "commit": heard_commit_key,
    "reveal": lambda event, live: (),
}


def heard_keys(event: Event, role: Role, live: frozenset[str],
               ctx: RoleContext) -> Iterable[str]:
    """A heard report names its own instance; a commit names the open report it is for."""
    assert isinstance(event, SpatialHeard)
    return _HEARD_KEYS[event.kind](event, live)


def vote_keys(event: Event, role: Role, live: frozenset[str],
              ctx: RoleContext) -> Iterable[str]:
    """The report a vote is for."""
    assert isinstance(event, VoteGiven)
    return (event.report_id.hex(),)
