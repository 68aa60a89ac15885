"""The one dispatch table: event type tag → one handler per role, per protocol instance.

Invariants:
- :data:`DISPATCH` is static (built at import, never mutated) and has an entry for every event
  type (an empty one for events no role takes yet), so a forgotten entry fails a test, not
  production. Switching roles per message is a table lookup plus the node's role set, never a
  flag checked inside a handler.
- One event may reach several roles (a worker and a CSP react to the same block with their own
  code); each role's :class:`Route` names its handler and which of its instances the event
  concerns (:data:`InstanceKeys`). Roles are visited in a fixed order (by name), instances in
  key order, so a run is deterministic.
- Role state is kept per protocol instance (a task id, a report id): ``states[role][key]``.
  A handler called for an instance that does not exist yet gets ``None`` and creates it by
  returning a state; returning ``None`` ends (drops) the instance. Singleton roles such as the
  miner use the instance key ``""``.
- An event that none of the node's roles takes is a no-op. An event type the table does not
  list is a bug in the caller (``ProtocolViolation("no-handler")``).
- Every effect comes back tagged with the role and instance that returned it (:class:`Routed`),
  so outcomes (call included, job finished) find their way back.
- Handlers never raise on well-formed input; states are immutable, so a failed dispatch leaves
  the caller's states untouched.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from crowdmesh.errors import ProtocolViolation
from crowdmesh.roles import (
    miner,
    sfl_csp,
    sfl_requester,
    sfl_worker,
    spatial_requester,
    spatial_worker,
)
from crowdmesh.roles._sfl import block_keys
from crowdmesh.roles._spatial import deadline_keys, report_instances
from crowdmesh.roles.context import RoleContext, StoreView
from crowdmesh.roles.effects import Effect
from crowdmesh.roles.events import (
    AddressedEvent,
    BlockConnected,
    BlockDisconnected,
    BlockMined,
    CallIncluded,
    CallRejected,
    CallReverted,
    CompetingTipSeen,
    Event,
    GenerateCancelled,
    GenerateRequested,
    HeadChanged,
    JobFailed,
    JobFinished,
    MempoolChanged,
    MiningModeSet,
    MiningRetryDue,
    MiningStopped,
    RolesStarted,
)
from crowdmesh.roles.sfl_events import (
    SflConfigured,
    SflJoinRequested,
    SflTaskRequested,
    SflTaskSeen,
)
from crowdmesh.roles.spatial_events import (
    LocationSet,
    ReportRequested,
    SpatialConfigured,
    SpatialDeadline,
    SpatialHeard,
    SpatialResumed,
    VoteGiven,
)

__all__ = [
    "DISPATCH",
    "IMPLEMENTED_ROLES",
    "SINGLETON",
    "Handler",
    "InstanceKeys",
    "Role",
    "RoleStates",
    "Route",
    "Routed",
    "Table",
    "addressed",
    "dispatch",
    "live_instances",
    "singleton",
]


class Role(enum.Enum):
    """Roles a node can take (DESIGN: requester, worker, miner, CSP)."""

    MINER = "miner"
    REQUESTER = "requester"
    WORKER = "worker"
    CSP = "csp"
    SPATIAL_REQUESTER = "spatial-requester"
    SPATIAL_WORKER = "spatial-worker"


SINGLETON = ""  # the instance key of a role that has one state per node (the miner)
Handler = Callable[[Any, Event, RoleContext], tuple[Any, list[Effect]]]
InstanceKeys = Callable[[Event, Role, frozenset[str], RoleContext], Iterable[str]]
"""``(event, role, live instance keys, ctx) -> instance keys``. The context carries the role's
own store and the chain view, so a role can name instances it kept across a restart (at
``RolesStarted`` nothing is live yet) or the tasks a block's contract events mention."""
RoleStates = Mapping[str, Any]


def singleton(event: Event, role: Role, live: frozenset[str],
              ctx: RoleContext) -> Iterable[str]:
    """The role's one instance."""
    return (SINGLETON,)


def live_instances(event: Event, role: Role, live: frozenset[str],
                   ctx: RoleContext) -> Iterable[str]:
    """Every live instance of the role (a head change: each reconciles with the chain)."""
    return sorted(live)


def addressed(event: Event, role: Role, live: frozenset[str],
              ctx: RoleContext) -> Iterable[str]:
    """The one instance an outcome event is addressed to, if it is this role's."""
    assert isinstance(event, AddressedEvent)
    return (event.instance,) if event.role == role.value else ()


@dataclass(frozen=True, slots=True)
class Route:
    """How one role takes one event type: its handler, and which instances it concerns."""

    handler: Handler
    instances: InstanceKeys = singleton


class Routed(NamedTuple):
    """An effect with the role instance that returned it."""

    role: Role
    instance: str
    effect: Effect


Table = Mapping[str, Mapping[Role, Route]]


def _miner(handler: Handler) -> Mapping[Role, Route]:
    return {Role.MINER: Route(handler)}


def _sfl(requester: Handler, worker: Handler, csp: Handler,
         keys: InstanceKeys = singleton) -> dict[Role, Route]:
    """One event's routes for the three CrowdSFL roles (roles/sfl_*.py)."""
    return {Role.REQUESTER: Route(requester, keys), Role.WORKER: Route(worker, keys),
            Role.CSP: Route(csp, keys)}


DISPATCH: Table = {
    HeadChanged.TYPE: {
        **_miner(miner.handle_head_changed),
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_head_changed, report_instances),
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_head_changed, report_instances),
    },
    MempoolChanged.TYPE: _miner(miner.handle_mempool_changed),
    MiningModeSet.TYPE: _miner(miner.handle_mining_mode_set),
    GenerateRequested.TYPE: _miner(miner.handle_generate_requested),
    GenerateCancelled.TYPE: _miner(miner.handle_generate_cancelled),
    BlockMined.TYPE: _miner(miner.handle_block_mined),
    CompetingTipSeen.TYPE: _miner(miner.handle_competing_tip_seen),
    MiningStopped.TYPE: _miner(miner.handle_mining_stopped),
    MiningRetryDue.TYPE: _miner(miner.handle_mining_retry_due),
    RolesStarted.TYPE: {
        **_miner(miner.handle_roles_started),
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_roles_started),
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_roles_started),
        **_sfl(sfl_requester.handle_roles_started,
               sfl_worker.handle_roles_started,
               sfl_csp.handle_roles_started),
    },
    # Taken by the protocol roles (crowdsfl, spatial) as they land; none of the miner's business.
    BlockConnected.TYPE: _sfl(sfl_requester.handle_block_connected,
                              sfl_worker.handle_block_connected,
                              sfl_csp.handle_block_connected, block_keys),
    BlockDisconnected.TYPE: {},
    CallIncluded.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_call_included, addressed)},
    CallReverted.TYPE: {},  # the call service resends; nothing for a role to do
    CallRejected.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_call_rejected, addressed),
        **_sfl(sfl_requester.handle_call_rejected,
               sfl_worker.handle_call_rejected,
               sfl_csp.handle_call_rejected, addressed)},
    JobFinished.TYPE: _sfl(sfl_requester.handle_job_finished,
                           sfl_worker.handle_job_finished,
                           sfl_csp.handle_job_finished, addressed),
    JobFailed.TYPE: _sfl(sfl_requester.handle_job_failed,
                         sfl_worker.handle_job_failed,
                         sfl_csp.handle_job_failed, addressed),
    # Spatial crowdsourcing (roles/spatial_worker.py, roles/spatial_requester.py).
    SpatialHeard.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_spatial_heard,
                                      spatial_requester.heard_keys),
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_spatial_heard,
                                   spatial_worker.heard_keys),
    },
    SpatialDeadline.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_spatial_deadline, deadline_keys),
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_spatial_deadline, deadline_keys),
    },
    SpatialResumed.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_spatial_resumed, addressed),
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_spatial_resumed, addressed),
    },
    ReportRequested.TYPE: {
        Role.SPATIAL_REQUESTER: Route(spatial_requester.handle_report_requested,
                                      spatial_requester.requested_keys)},
    VoteGiven.TYPE: {
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_vote_given, spatial_worker.vote_keys)},
    LocationSet.TYPE: {Role.SPATIAL_WORKER: Route(spatial_worker.handle_location_set)},
    SpatialConfigured.TYPE: {
        Role.SPATIAL_WORKER: Route(spatial_worker.handle_spatial_configured)},
    # CrowdSFL (roles/sfl_requester.py, sfl_worker.py, sfl_csp.py; docs/crowdsfl.md).
    SflConfigured.TYPE: _sfl(sfl_requester.handle_sfl_configured,
                             sfl_worker.handle_sfl_configured,
                             sfl_csp.handle_sfl_configured, addressed),
    SflTaskSeen.TYPE: _sfl(sfl_requester.handle_sfl_task_seen,
                           sfl_worker.handle_sfl_task_seen,
                           sfl_csp.handle_sfl_task_seen, addressed),
    SflTaskRequested.TYPE: {Role.REQUESTER: Route(sfl_requester.handle_sfl_task_requested)},
    SflJoinRequested.TYPE: {
        Role.WORKER: Route(sfl_worker.handle_sfl_join_requested, sfl_worker.join_keys)},
}

# Roles a node may be configured with today; the others fail at start (exit 78).
IMPLEMENTED_ROLES: frozenset[Role] = frozenset(
    {Role.MINER, Role.SPATIAL_REQUESTER, Role.SPATIAL_WORKER, Role.REQUESTER, Role.WORKER,
     Role.CSP})


def _run_role(route: Route, role: Role, states: RoleStates, event: Event,
              ctx: RoleContext) -> tuple[dict[str, Any], list[Routed]]:
    new_states = dict(states)
    effects: list[Routed] = []
    for key in route.instances(event, role, frozenset(states), ctx):
        state, produced = route.handler(new_states.get(key), event, ctx)
        if state is None:
            new_states.pop(key, None)  # the instance ended (or never began)
        else:
            new_states[key] = state
        effects.extend(Routed(role, key, e) for e in produced)
    return new_states, effects


def dispatch(
    roles: frozenset[Role], states: Mapping[Role, RoleStates], event: Event, ctx: RoleContext,
    *, table: Table = DISPATCH, stores: Mapping[Role, StoreView] | None = None,
) -> tuple[dict[Role, RoleStates], list[Routed]]:
    """Route ``event`` to each of the node's roles that takes it, per instance.

    Args:
        roles: the node's roles. states: per role, per instance key, the current states.
        ctx: the context; ``stores`` (when given) replaces its store view per role, so a role
            reads only its own namespace.
    Returns:
        The new states (every role of ``states`` kept, possibly with fewer or more instances)
        and the effects in order, each tagged with its role instance.
    Raises:
        ProtocolViolation: ``no-handler`` for an event type the table does not list.
    """
    routes = table.get(event.TYPE)
    if routes is None:
        raise ProtocolViolation("no-handler", event.TYPE)
    new_states: dict[Role, RoleStates] = dict(states)
    effects: list[Routed] = []
    for role in sorted(roles & routes.keys(), key=lambda r: r.value):
        role_ctx = ctx if stores is None else replace(ctx, store=stores[role])
        new_states[role], produced = _run_role(
            routes[role], role, states.get(role, {}), event, role_ctx)
        effects.extend(produced)
    return new_states, effects
