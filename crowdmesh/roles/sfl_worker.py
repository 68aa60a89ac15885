"""The CrowdSFL worker: joins a task, and each round trains, encrypts and submits its model
(DESIGN.md "CrowdSFL protocol", step 2).

States: one :class:`~crowdmesh.roles._sfl.TaskState` per task joined or asked to join, keyed by
the task id in hex; the singleton ``""`` is stateless (it sees new tasks and keeps settings).

Invariants:
- It joins a task the operator named (:class:`SflJoinRequested`), or any new task whose input
  width matches its dataset when ``auto_join`` is set; never a task it requests or serves as
  CSP. n_k is its dataset's row count; the dataset hash is SHA-256 of the configured rows.
- Each round (TRAINING r, still active, nothing submitted, the deadline not passed at the
  head's block time) it runs one job (``sfl_jobs.train_job``): local training from the
  round's global model, then encryption under the joint key with the proof of randomness
  bound to its account, task and round. The bundle goes up as blob parts, then ``sfl-submit``
  (one account signs both in nonce order, so the blob is complete when the call runs).
- Once joined it backs up every stall timeout: if the requester or the CSP is ``t_step`` past
  its step's deadline (``stall_at``; the first in line, the other party, had ``t_step`` to
  act), it sends ``sfl-timeout`` (``_sfl.stall_timeout``) so its deposit comes back.
- A restart resumes every kept task: the same job bytes (the seed is kept) and the same call
  ids, so nothing is sent twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_JOIN,
    KIND_SUBMIT,
    Phase,
    TaskSpec,
    WorkerState,
    join_payload,
    load_worker,
    submit_payload,
)
from crowdmesh.roles import _sfl
from crowdmesh.roles._sfl import Chain, Result, TaskState, ask, derive_seed, head_time, log
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import RunJob, SubmitCall
from crowdmesh.roles.events import Event, JobFinished
from crowdmesh.roles.sfl_events import SflJoinRequested
from crowdmesh.roles.sfl_jobs import train_job, warm_joint_key_job

if TYPE_CHECKING:
    from crowdmesh.roles.dispatch import Role

__all__ = [
    "ROLE_NAME",
    "handle_block_connected",
    "handle_call_rejected",
    "handle_job_failed",
    "handle_job_finished",
    "handle_roles_started",
    "handle_sfl_configured",
    "handle_sfl_join_requested",
    "handle_sfl_task_seen",
    "join_keys",
]

ROLE_NAME = "worker"  # Role.WORKER.value
_BLAMED = frozenset({"requester", "csp"})  # a worker backs up every stall timeout


def _account(ctx: RoleContext) -> bytes:
    return ctx.identity.account or b""


# -- steps per phase ----------------------------------------------------------------------------


def _join(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    me = _account(ctx)
    s = _sfl.settings(ctx)
    if load_worker(chain.get, state.task_id, me) is not None or head_time(ctx) > \
            chain.status.window_end:
        return state, []
    if s is None or not s.dataset:
        return state, [log("sfl-not-configured", task=state.task_id.hex(), role=ROLE_NAME)]
    n_k = int(unpack(s.dataset, 1 << 26)[0])
    payload = join_payload(state.task_id, n_k, hashlib.sha256(s.dataset).digest())
    return ask(state, "join", [SubmitCall("join", KIND_JOIN, payload),
                               log("sfl-joining", task=state.task_id.hex(), n_k=n_k)])


def _train(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    me, r = _account(ctx), chain.status.round
    rec = load_worker(chain.get, state.task_id, me)
    s = _sfl.settings(ctx)
    model_name = chain.record(b"m", r)
    if (rec is None or rec.state != WorkerState.ACTIVE or s is None or model_name is None
            or chain.record(b"u", r, me) is not None or head_time(ctx) > chain.status.window_end):
        return state, []
    model = chain.blob(model_name)
    assert model is not None, "the contract accepts a model only once its blob is complete"
    args = (chain.spec_bytes, model, s.dataset, derive_seed(s, "train", state.task_id, r),
            s.behaviour, chain.task.joint, me, state.task_id, r)
    step = f"r{r}-train"
    return ask(state, step, [RunJob(step, train_job, args)])


def _watch(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    """The backup for every stall: once joined (its deposit is in escrow), abort a task whose
    requester or CSP is ``t_step`` past its own deadline, i.e. the party first in line to time
    it out (the CSP for the requester, the requester for the CSP) did not. Workers are
    staggered by join position (``t_step // max_workers`` apart) so that usually only one
    sends; a later one's refusal is dropped quietly."""
    me = _account(ctx)
    joined = [w for w, _ in chain.workers()]
    if me not in joined:
        return state, []
    spec = chain.task.spec
    grace = spec.t_step + joined.index(me) * max(1, spec.t_step // spec.max_workers)
    return _sfl.stall_timeout(state, chain, ctx, ROLE_NAME, _BLAMED, grace)


def _then_watch(step: _sfl.Step) -> _sfl.Step:
    def both(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
        state, effects = step(state, chain, ctx)
        state, more = _watch(state, chain, ctx)
        return state, [*effects, *more]
    return both


_PHASES: _sfl.PhaseTable = {
    Phase.JOINING: _sfl.warming(_then_watch(_join), warm_joint_key_job,
                                lambda c: (c.spec_bytes, c.task.joint)),
    Phase.TRAINING: _then_watch(_train),
    Phase.BLINDED: _watch,
    Phase.SCORED: _watch,
    Phase.SELECTED: _watch,
    Phase.FINAL: _watch,
    Phase.SETTLED: _sfl.finished,
    Phase.ABORTED: _sfl.finished,
}


# -- job outcomes -------------------------------------------------------------------------------


def _trained(state: TaskState, event: JobFinished, ctx: RoleContext) -> Result:
    chain = _sfl.chain_of(state.task_id, ctx)
    r = int(event.job_id[1:].split("-")[0])
    if chain is None or chain.status.phase != Phase.TRAINING or chain.status.round != r:
        return state, []
    assert isinstance(event.result, bytes)
    bundle, proof = unpack(event.result, 1 << 26)
    name, parts = _sfl.upload(event.job_id, bundle, ctx)
    submit = SubmitCall(f"{event.job_id}/submit", KIND_SUBMIT,
                        submit_payload(state.task_id, r, name, proof))
    return state, [*parts, submit, log("sfl-submitting", task=state.task_id.hex(), round=r)]


# -- handlers -----------------------------------------------------------------------------------


def handle_sfl_configured(state: None, event: Event, ctx: RoleContext) -> Result:
    """Keep the worker's settings (dataset, seed, auto-join, behaviour)."""
    return _sfl.configure(event, ctx)


def handle_roles_started(state: None, event: Event, ctx: RoleContext) -> Result:
    """Resume every kept task."""
    return None, _sfl.resume_all(ROLE_NAME, ctx)


def handle_sfl_join_requested(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """The operator names a task to join: keep it and reconcile."""
    assert isinstance(event, SflJoinRequested)
    if state is not None:
        return _sfl.reconcile(state, ctx, _PHASES)
    return None, _sfl.open_task(ROLE_NAME, event.task_id, ctx)


def _auto_joins(spec_width: int, requester: bytes, csp: bytes, ctx: RoleContext) -> bool:
    s = _sfl.settings(ctx)
    me = _account(ctx)
    if s is None or not s.auto_join or not s.dataset or me in (requester, csp):
        return False
    return int(unpack(s.dataset, 1 << 26)[1]) == spec_width


def _new_tasks(event: Event, ctx: RoleContext) -> Result:
    effects = []
    for task_id, requester, csp in _sfl.created_tasks(event):
        chain = _sfl.chain_of(task_id, ctx)
        spec: TaskSpec | None = None if chain is None else chain.task.spec
        if spec is not None and _auto_joins(spec.layers[0], requester, csp, ctx):
            effects.extend(_sfl.open_task(ROLE_NAME, task_id, ctx))
    return None, effects


def handle_block_connected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """The singleton looks for tasks to auto-join; each task reconciles with the chain."""
    if state is None:
        return _new_tasks(event, ctx)
    return _sfl.reconcile(state, ctx, _PHASES)


def handle_sfl_task_seen(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """Create or rebuild a task instance (join request, auto-join, restart)."""
    return _sfl.task_seen(state, event, ctx, _PHASES)


_FINISHED: dict[str, Callable[[TaskState, JobFinished, RoleContext], Result]] = {
    "train": _trained,
}


def handle_job_finished(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A training job returned its encrypted model: upload it and submit."""
    return _sfl.job_finished(state, event, ctx, _FINISHED)


def handle_job_failed(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A job refused its input (logged)."""
    return _sfl.job_failed(state, event, ctx)


def handle_call_rejected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A call refused for good (logged; the step may start again)."""
    return _sfl.call_rejected(state, event, ctx)


def join_keys(event: Event, role: Role, live: frozenset[str],
              ctx: RoleContext) -> Iterable[str]:
    """A join request concerns the task it names."""
    assert isinstance(event, SflJoinRequested)
    return (event.task_id.hex(),)
