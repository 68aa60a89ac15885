"""The spatial requester: reports an event, hears its committee, and puts the decision on chain
(SPATIAL.md §2.3 steps 1, 6).

States: one :class:`RequesterReport` per report, keyed by the report id in hex; no singleton
(``RolesStarted`` only asks to resume the kept reports). Store layout: see ``roles/_spatial.py``.

Invariants:
- A :class:`ReportRequested` is reported at most once per ``request_id`` (``q/‖request_id``
  keeps its report id, also after the report is done). The report is signed with
  ``ts = ctx.now`` and ``anchor`` = the head's height; signing is deterministic, so the
  instance key function builds the very report the handler builds from the same context.
  The report and the request are stored before the report is published.
- The lottery beacon is block ``anchor + 1``, which does not exist when the report is signed.
  With on-demand mining nothing else may bring it, so the requester asks for a no-op call
  (a self-transfer of 1, call id ``beacon``) that says nothing about the report.
- Commits count only if heard before the freeze (``ts + T_c``), as at the workers, so both
  sides freeze the same S from the same messages. A worker's commits for every beacon are kept
  (a reorg of block ``anchor + 1`` inside the window makes it commit again on the new one);
  the decision freezes S for the beacon on the best chain then, the one the contract checks
  the tally against. Reveals are kept until the decision.
- One second after the reveal window (``ts + T_c + T_r + 1``) the requester freezes S and
  decides over K: confirmed → ``spatial-tally`` with every valid commit heard and the reveals
  of S (validators recompute S from the bundle); rejected → ``spatial-reject`` with H(S); too
  few commits, a used combination, no beacon, a report already decided on chain, or one too
  old for the contract → logged and dropped. A tally needs block time ≥ ``ts + T_c`` and the
  mempool checks it against the head's time, so if the head is older the requester first asks
  for one more no-op call (``tick``) and submits on the head change that carries it.
- The instance ends when its tally or reject call is included, or is refused for good
  (logged with the reject code); its store keys go with it.
- A restart rebuilds every kept report from the store and re-schedules its deadline (a past
  one fires at once); calls already asked for are asked again with the same ids, which the
  call service answers without sending twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.committee import Decision, decide, freeze
from crowdmesh.chain.contracts.spatial.contract import (
    KIND_REJECT,
    KIND_TALLY,
    LATE_SLACK,
    PREFIX,
    check_duplicate,
    reject_payload,
    tally_payload,
)
from crowdmesh.chain.contracts.spatial.protocol import Commit, Report, Reveal
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.errors import ValidationError
from crowdmesh.roles._spatial import (
    COMMITS,
    MAX_MESSAGES,
    QUERIES,
    REPORTS,
    REVEALS,
    beacon_of,
    combination_used,
    commit_deadline,
    commit_key,
    decode_commit,
    decode_report,
    decode_reveal,
    forget,
    heard_commit_key,
    log,
    params,
    resume_all,
    reveal_deadline,
    rid_of,
    stored_messages,
    with_commit,
    with_message,
)
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import Effect, ScheduleAt, StorePut, SubmitCall
from crowdmesh.roles.events import CallIncluded, CallRejected, Event
from crowdmesh.roles.spatial_events import (
    PublishSpatial,
    ReportRequested,
    SpatialDeadline,
    SpatialHeard,
    SpatialResumed,
)

if TYPE_CHECKING:
    from crowdmesh.roles.dispatch import Role

__all__ = [
    "DECISION_CALLS",
    "MAX_REQUEST_ID",
    "ROLE_NAME",
    "RequesterReport",
    "build_report",
    "handle_call_included",
    "handle_call_rejected",
    "handle_head_changed",
    "handle_report_requested",
    "handle_roles_started",
    "handle_spatial_deadline",
    "handle_spatial_heard",
    "handle_spatial_resumed",
    "heard_keys",
    "requested_keys",
]

ROLE_NAME = "spatial-requester"  # Role.SPATIAL_REQUESTER.value (dispatch imports this module)
MAX_REQUEST_ID = 128  # characters; the store key must stay small
DECISION_CALLS = frozenset({"tally", "reject"})  # the calls whose outcome ends the report
_SINGLETON = ""  # where refused requests are routed: they have no report id

Result = tuple[Any, list[Effect]]


@dataclass(frozen=True, slots=True)
class RequesterReport:
    """One report of ours.

    Attributes:
        commits: valid-signature commits heard before the freeze, sorted by worker and
            encoding; a worker may have one per beacon (a reorg of block anchor + 1 inside the
            commit window makes it commit again), the freeze counts those for the beacon on
            the best chain when the requester decides (``roles/_spatial.py``).
        reveals: reveals heard, one per worker, sorted.
        phase: ``open`` (collecting), ``closing`` (confirmed, waiting for a head whose time
            allows the tally), ``closed`` (the tally or reject call is sent).
    """

    report: Report
    commits: tuple[Commit, ...] = ()
    reveals: tuple[Reveal, ...] = ()
    phase: Literal["open", "closing", "closed"] = "open"


# -- reporting ----------------------------------------------------------------------------------


def _query_key(request_id: str) -> bytes | None:
    if not 0 < len(request_id) <= MAX_REQUEST_ID:
        return None
    return QUERIES + request_id.encode()


def build_report(event: ReportRequested, ctx: RoleContext) -> Report | str:
    """The signed report for ``event`` at ``ctx.now`` on the head, or why there is none."""
    genesis = ctx.chain.genesis()
    if ctx.signer is None:
        return "no-account"
    if _query_key(event.request_id) is None:
        return "bad-request-id"
    if event.type not in genesis.spatial.report_types:
        return "spatial-unknown-type"
    try:
        return Report.create(ctx.signer, genesis.chain_id, event.type, event.lat_e6,
                             event.lon_e6, ts=ctx.now, anchor=ctx.chain.head().height)
    except ValidationError as exc:
        return exc.code


def _own_account(ctx: RoleContext) -> bytes:
    assert ctx.signer is not None
    return ctx.identity.account or ctx.signer.public


def _beacon_call(report: Report, ctx: RoleContext) -> list[Effect]:
    """Ask for a no-op call while block anchor + 1 is missing (on-demand mining)."""
    if beacon_of(report, ctx) is not None or ctx.now >= commit_deadline(report, params(ctx)):
        return []
    return [SubmitCall("beacon", TRANSFER, transfer_payload(_own_account(ctx), 1))]


def _publish(report: Report, query_key: bytes, request_id: str, ctx: RoleContext) -> Result:
    p = params(ctx)
    rid = report.report_id
    cell = geo.cell_of(report.lat_e6, report.lon_e6, p.h3_resolution)
    return RequesterReport(report), [
        StorePut(query_key, rid),
        StorePut(REPORTS + rid, report.encode()),
        ScheduleAt(reveal_deadline(report, p) + 1, SpatialDeadline(rid, "reveal")),
        PublishSpatial("report", report.encode(), cell=cell),
        *_beacon_call(report, ctx),
        log("spatial-report-published", request=request_id, report=rid.hex()),
    ]


def handle_report_requested(state: RequesterReport | None, event: Event,
                            ctx: RoleContext) -> Result:
    """Sign and publish a report (once per request id), ask for its beacon."""
    assert isinstance(event, ReportRequested)
    query_key = _query_key(event.request_id)
    known = None if query_key is None else ctx.store.get(query_key)
    if known is not None:
        return state, [log("spatial-report-known", request=event.request_id, report=known.hex())]
    built = build_report(event, ctx)
    if isinstance(built, str) or query_key is None:
        return state, [log("spatial-report-refused", request=event.request_id, code=built)]
    if state is not None:  # the same report, asked for twice in one second: one report serves
        return state, [StorePut(query_key, built.report_id)]
    return _publish(built, query_key, event.request_id, ctx)


# -- hearing the committee ----------------------------------------------------------------------


def _heard_commit(state: RequesterReport, event: SpatialHeard, ctx: RoleContext) -> Result:
    commit = decode_commit(event.raw)
    if commit is None or state.phase != "open" \
            or ctx.now >= commit_deadline(state.report, params(ctx)):
        return state, []
    commits = with_commit(state.commits, commit)  # every beacon's: a reorg may bring another
    if commits is None:
        return state, []
    key = commit_key(state.commits, commit)
    return replace(state, commits=commits), [StorePut(key, commit.encode())]


def _heard_reveal(state: RequesterReport, event: SpatialHeard, ctx: RoleContext) -> Result:
    reveal = decode_reveal(event.raw)
    if reveal is None or state.phase == "closed":
        return state, []
    reveals = with_message(state.reveals, reveal, prefer_smaller=False)
    if reveals is None:
        return state, []
    key = REVEALS + reveal.report_id + reveal.worker
    return replace(state, reveals=reveals), [StorePut(key, reveal.encode())]


_HEARD: dict[str, Callable[[RequesterReport, SpatialHeard, RoleContext], Result]] = {
    "commit": _heard_commit,
    "reveal": _heard_reveal,
}


def handle_spatial_heard(state: RequesterReport, event: Event, ctx: RoleContext) -> Result:
    """A commit or reveal for one of our open reports (the key function found it live)."""
    assert isinstance(event, SpatialHeard)
    return _HEARD[event.kind](state, event, ctx)


# -- deciding -----------------------------------------------------------------------------------


def _drop(rid: bytes, ctx: RoleContext, code: str) -> Result:
    return None, [log("spatial-report-dropped", report=rid.hex(), code=code), *forget(rid, ctx)]


def _valid(commit: Commit, beacon: bytes) -> bool:
    try:
        commit.verify(beacon)
    except ValidationError:
        return False
    return True


def _bundle(state: RequesterReport, committee: tuple[Commit, ...], decision: Decision,
            beacon: bytes) -> bytes:
    """The tally payload: S, then every other valid commit heard; the reveals of S."""
    members = {c.worker for c in committee}
    others: dict[bytes, Commit] = {}  # one per worker: the smaller encoding (commits are sorted)
    for c in state.commits:
        if c.worker not in members and c.worker not in others \
                and c.worker != state.report.requester and _valid(c, beacon):
            others[c.worker] = c
    commits = [*committee, *others.values()][:MAX_MESSAGES]
    reveals = [r for r in state.reveals
               if r.worker in members and r.committee == decision.committee_hash]
    return tally_payload(state.report, commits, reveals)


def _blocker(report: Report, ctx: RoleContext) -> str | None:
    """Why no decision can be sent for ``report`` any more (None: it can)."""
    p = params(ctx)
    if ctx.chain.contract_state(PREFIX + b"r" + report.report_id) is not None:
        return "spatial-decided"
    if ctx.now > report.ts + LATE_SLACK * (p.commit_window_s + p.reveal_window_s):
        return "spatial-too-late"
    return None if beacon_of(report, ctx) is not None else "spatial-no-beacon"


def _conclude(state: RequesterReport, ctx: RoleContext) -> Result:
    """Freeze S, decide over K, and send the decision (or wait for a late enough head)."""
    report = state.report
    rid = report.report_id
    blocker = _blocker(report, ctx)
    beacon = beacon_of(report, ctx)
    if blocker is not None or beacon is None:
        return _drop(rid, ctx, blocker or "spatial-no-beacon")
    try:
        check_duplicate(ctx.chain.contract_state, report, params(ctx))
        committee = freeze(report, state.commits, beacon, params(ctx).committee_k,
                           used=combination_used(ctx))
    except ValidationError as exc:
        return _drop(rid, ctx, exc.code)
    decision = decide(committee, state.reveals)
    decided = log("spatial-report-decided", report=rid.hex(), confirmed=decision.confirmed,
                  confirmers=len(decision.confirmers), revealed=decision.revealed)
    if not decision.confirmed and decision.revealed < params(ctx).majority:
        # too few reveals to call it rejected: most likely the workers froze another S (a
        # beacon reorg, a late commit); recording "rejected" would misstate a true report
        return _drop(rid, ctx, "spatial-too-few-reveals")
    if not decision.confirmed:
        call = SubmitCall("reject", KIND_REJECT, reject_payload(rid, decision.committee_hash))
        return replace(state, phase="closed"), [decided, call]
    if ctx.chain.head().timestamp < commit_deadline(report, params(ctx)):
        tick = SubmitCall("tick", TRANSFER, transfer_payload(_own_account(ctx), 1))
        return replace(state, phase="closing"), [tick]
    call = SubmitCall("tally", KIND_TALLY, _bundle(state, committee, decision, beacon))
    return replace(state, phase="closed"), [decided, call]


def handle_spatial_deadline(state: RequesterReport | None, event: Event,
                            ctx: RoleContext) -> Result:
    """The reveal window is over: decide."""
    assert isinstance(event, SpatialDeadline)
    if state is None or event.phase != "reveal" or state.phase != "open":
        return state, []
    return _conclude(state, ctx)


def handle_head_changed(state: RequesterReport, event: Event, ctx: RoleContext) -> Result:
    """A confirmed report waiting for block time sends its tally once the head allows it."""
    if state.phase != "closing":
        return state, []
    return _conclude(state, ctx)


# -- outcomes and restart -----------------------------------------------------------------------


def handle_call_included(state: RequesterReport | None, event: Event,
                         ctx: RoleContext) -> Result:
    """Our tally or reject is on chain: the report is done."""
    assert isinstance(event, CallIncluded)
    rid = rid_of(event.instance)
    if event.call_id not in DECISION_CALLS or rid is None:
        return state, []
    return None, [log("spatial-report-recorded", report=event.instance, call=event.call_id,
                      height=event.height), *forget(rid, ctx)]


def handle_call_rejected(state: RequesterReport | None, event: Event,
                         ctx: RoleContext) -> Result:
    """A call refused for good: logged; a refused decision ends the report."""
    assert isinstance(event, CallRejected)
    rid = rid_of(event.instance)
    refused = log("spatial-call-rejected", report=event.instance, call=event.call_id,
                  code=event.code)
    if event.call_id not in DECISION_CALLS or rid is None:
        return state, [refused]
    return None, [refused, *forget(rid, ctx)]


def handle_roles_started(state: None, event: Event, ctx: RoleContext) -> Result:
    """Resume every kept report (no singleton state)."""
    return None, resume_all(ROLE_NAME, ctx)


def handle_spatial_resumed(state: RequesterReport | None, event: Event,
                           ctx: RoleContext) -> Result:
    """After a restart: rebuild a kept report from the store, re-schedule its deadline."""
    assert isinstance(event, SpatialResumed)
    rid = rid_of(event.instance)
    if state is not None or rid is None:
        return state, []
    raw = ctx.store.get(REPORTS + rid)
    report = None if raw is None else decode_report(raw)
    if report is None or ctx.signer is None:
        return None, forget(rid, ctx)
    state = RequesterReport(report, stored_messages(ctx, COMMITS, rid, decode_commit),
                            stored_messages(ctx, REVEALS, rid, decode_reveal))
    deadline = ScheduleAt(reveal_deadline(report, params(ctx)) + 1,
                          SpatialDeadline(rid, "reveal"))
    return state, [deadline, *_beacon_call(report, ctx)]


# -- instance keys ------------------------------------------------------------------------------


def requested_keys(event: Event, role: Role, live: frozenset[str],
                   ctx: RoleContext) -> Iterable[str]:
    """The report a request names: the one kept for its id, else the one it would sign now
    (the handler signs the same); a request that cannot be reported goes to ``""``."""
    assert isinstance(event, ReportRequested)
    query_key = _query_key(event.request_id)
    known = None if query_key is None else ctx.store.get(query_key)
    if known is not None:
        return (known.hex(),)
    built = build_report(event, ctx)
    return (_SINGLETON,) if isinstance(built, str) else (built.report_id.hex(),)


def _heard_reveal_key(event: SpatialHeard, live: frozenset[str]) -> tuple[str, ...]:
    reveal = decode_reveal(event.raw)
    if reveal is None or reveal.report_id.hex() not in live:
        return ()
    return (reveal.report_id.hex(),)


_HEARD_KEYS: dict[str, Callable[[SpatialHeard, frozenset[str]], tuple[str, ...]]] = {
    "report": lambda event, live: (),
    "commit": heard_commit_key,
    "reveal": _heard_reveal_key,
}


def heard_keys(event: Event, role: Role, live: frozenset[str],
               ctx: RoleContext) -> Iterable[str]:
    """A commit or reveal names the open report of ours it is for."""
    assert isinstance(event, SpatialHeard)
    return _HEARD_KEYS[event.kind](event, live)
