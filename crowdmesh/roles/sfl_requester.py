"""The CrowdSFL requester: creates a task, posts the global models, scores the blinded models
(DESIGN.md "CrowdSFL protocol", steps 1, 4 and 6), and aborts a task the CSP stalls.

States: one :class:`~crowdmesh.roles._sfl.TaskState` per task this node's account created,
keyed by the task id in hex; the singleton ``""`` is stateless (it sends create requests and
sees its tasks land).

Invariants:
- A create request is sent once per request id (``q/‖id`` is stored before the call).
- Round 0 starts once enough workers joined and the task is full or a block past the join
  deadline is on chain; the initial model comes from a job seeded by the role's seed.
- Step 4 runs as one job (``sfl_jobs.evaluate_job``): every DLEQ proof of the blinded list is
  verified BEFORE anything is decrypted; a bad proof fails the job (``bad-dleq``), nothing is
  answered and the task times out with refunds. Each opened model is scored on the requester's
  own held-out rows (basis points) and checked for free riding. The opened models are stored
  (``m/‖task‖round‖id``) before the accuracies leave, so aggregation survives a restart.
- Step 6: the selected models are aggregated (``sfl_jobs.aggregate_job``) into the next global
  model; after the last round the aggregate is posted as the final model (round t).
- When the party the phase waits for is the CSP, or joining failed, and a block past the
  deadline is on chain, it sends ``sfl-timeout`` (``_sfl.stall_timeout``, one call per
  deadline): the task aborts and every coin is refunded. Its own stalls are timed out by the
  CSP and, as a backup, by the workers.
  While it waits on such a deadline (joining not full, the CSP's step) it makes sure a block
  past it comes (``_sfl.beacon``), which on-demand mining would not mine by itself.
"""

from __future__ import annotations

from collections.abc import Callable

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_ACCURACY,
    KIND_CREATE,
    KIND_MODEL,
    KIND_TIMEOUT,
    Phase,
    accuracy_payload,
    model_payload,
    timeout_payload,
)
from crowdmesh.roles import _sfl
from crowdmesh.roles._sfl import (
    MODELS,
    REQUESTS,
    Chain,
    Result,
    TaskState,
    ask,
    derive_seed,
    head_time,
    log,
    round_bytes,
)
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import Effect, RunJob, StoreDelete, StorePut, SubmitCall
from crowdmesh.roles.events import CallRejected, Event, JobFinished
from crowdmesh.roles.sfl_events import SflTaskRequested
from crowdmesh.roles.sfl_jobs import aggregate_job, evaluate_job, init_job

__all__ = [
    "ROLE_NAME",
    "handle_block_connected",
    "handle_call_rejected",
    "handle_job_failed",
    "handle_job_finished",
    "handle_roles_started",
    "handle_sfl_configured",
    "handle_sfl_task_requested",
    "handle_sfl_task_seen",
]

ROLE_NAME = "requester"  # Role.REQUESTER.value
_CAP = 1 << 26
_CREATE = "create-"
_BLAMED = frozenset({"csp"})  # whose stalls the requester times out


def _timeout(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    """Abort once the CSP is late (a block past ``stall_at``); beacon until then."""
    return _sfl.stall_timeout(state, chain, ctx, ROLE_NAME, _BLAMED)


# -- steps per phase ----------------------------------------------------------------------------


def _start(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    spec, joined = chain.task.spec, len(chain.workers())
    closed = head_time(ctx) > chain.status.window_end
    if closed and joined < spec.min_workers:
        step = f"{_sfl.TIMEOUT}{chain.status.window_end}"
        call = SubmitCall(f"{step}/abort", KIND_TIMEOUT, timeout_payload(state.task_id))
        return ask(state, step, [call, log("sfl-timing-out", task=state.task_id.hex(),
                                           phase="joining", stalled="too-few-workers")])
    s = _sfl.settings(ctx)
    if not closed and joined < spec.max_workers:  # joining may close with too few, or not full
        return _sfl.beacon(state, ROLE_NAME, chain.status.window_end, ctx)
    if joined < spec.min_workers or s is None:
        return state, []
    seed = derive_seed(s, "init", state.task_id, 0)
    return ask(state, "r0-model", [RunJob("r0-model", init_job, (chain.spec_bytes, seed))])


def _evaluate(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    r, s = chain.status.round, _sfl.settings(ctx)
    model_name = chain.record(b"m", r)
    if s is None or model_name is None:
        return state, []
    blinded = [chain.blob(bytes(name)) for _, name in chain.records(b"b", r)]
    min_nk = min(rec.n_k for _, rec in chain.workers())
    task = chain.task
    args = (chain.spec_bytes, task.h_csp, task.h_req, s.secret_key, blinded,
            chain.blob(model_name), s.dataset, min_nk, derive_seed(s, "eval", state.task_id, r))
    step = f"r{r}-eval"
    return ask(state, step, [RunJob(step, evaluate_job, args)])


def _aggregate(state: TaskState, chain: Chain, ctx: RoleContext, r: int) -> Result:
    """Aggregate round ``r``'s selection into the model of round r + 1."""
    step = f"r{r + 1}-model"
    selection = chain.records(b"c", r)
    ids = [bytes(i) for i in selection[0]] if selection else []
    weights = [int(w) for w in selection[2]] if selection else []
    models = [ctx.store.get(MODELS + state.task_id + round_bytes(r) + i) for i in ids]
    present = [m for m in models if m is not None]
    if len(present) != len(models):
        return ask(state, step, [log("sfl-model-missing", task=state.task_id.hex(), round=r)])
    if not present:  # nothing selected: the global model carries over
        current = chain.record(b"m", r)
        model = None if current is None else chain.blob(current)
        if model is None:
            return state, []
        return ask(state, step, _post_model(state, step, r + 1, model, ctx)[1])
    return ask(state, step, [RunJob(step, aggregate_job, (chain.spec_bytes, present, weights))])


def _next_model(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    return _aggregate(state, chain, ctx, chain.status.round)


def _final(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    """FINAL: post the final model (optional on chain) and watch the CSP's settlement."""
    last = chain.task.spec.rounds
    state, effects = _timeout(state, chain, ctx)
    if chain.record(b"m", last) is None and chain.records(b"c", last - 1):
        state, more = _aggregate(state, chain, ctx, last - 1)
        effects = [*effects, *more]
    return state, effects


def _settled(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    last = chain.task.spec.rounds
    if chain.record(b"m", last) is None and chain.records(b"c", last - 1) \
            and f"r{last}-model" not in state.asked:
        return _aggregate(state, chain, ctx, last - 1)
    if chain.record(b"m", last) is None and f"r{last}-model" in state.asked:
        return state, []  # the final model is on its way
    return _sfl.finished(state, chain, ctx)


_PHASES: _sfl.PhaseTable = {
    Phase.JOINING: _sfl.warming_task_keys(_start),
    Phase.TRAINING: _timeout,
    Phase.BLINDED: _evaluate,
    Phase.SCORED: _timeout,
    Phase.SELECTED: _next_model,
    Phase.FINAL: _final,
    Phase.SETTLED: _settled,
    Phase.ABORTED: _sfl.finished,
}


# -- job outcomes -------------------------------------------------------------------------------


def _post_model(state: TaskState, step: str, round_: int, model: bytes,
                ctx: RoleContext) -> Result:
    name, parts = _sfl.upload(step, model, ctx)
    call = SubmitCall(f"{step}/model", KIND_MODEL, model_payload(state.task_id, round_, name))
    return state, [*parts, call, log("sfl-model-posting", task=state.task_id.hex(),
                                     round=round_)]


def _modelled(state: TaskState, event: JobFinished, ctx: RoleContext) -> Result:
    assert isinstance(event.result, bytes)
    round_ = int(event.job_id[1:].split("-")[0])
    return _post_model(state, event.job_id, round_, event.result, ctx)


def _evaluated(state: TaskState, event: JobFinished, ctx: RoleContext) -> Result:
    chain = _sfl.chain_of(state.task_id, ctx)
    r = int(event.job_id[1:].split("-")[0])
    if chain is None or chain.status.phase != Phase.BLINDED or chain.status.round != r:
        return state, []
    assert isinstance(event.result, bytes)
    scores, plains = unpack(event.result, _CAP)
    ids = [bytes(i) for i, _ in chain.records(b"b", r)]
    keep: list[Effect] = [StorePut(MODELS + state.task_id + round_bytes(r) + i, bytes(p))
                          for i, p in zip(ids, plains, strict=True)]
    entries = [(i, int(bps), int(flag)) for i, (bps, flag) in zip(ids, scores, strict=True)]
    call = SubmitCall(f"{event.job_id}/accuracy", KIND_ACCURACY,
                      accuracy_payload(state.task_id, r, entries))
    return state, [*keep, call, log("sfl-scored", task=state.task_id.hex(), round=r,
                                    accuracies=",".join(str(e[1]) for e in entries),
                                    flagged=sum(e[2] for e in entries))]


_FINISHED: dict[str, Callable[[TaskState, JobFinished, RoleContext], Result]] = {
    "model": _modelled,
    "eval": _evaluated,
}


# -- handlers -----------------------------------------------------------------------------------


def handle_sfl_configured(state: None, event: Event, ctx: RoleContext) -> Result:
    """Keep the requester's settings (seed, ElGamal secret key, held-out data)."""
    return _sfl.configure(event, ctx)


def handle_roles_started(state: None, event: Event, ctx: RoleContext) -> Result:
    """Resume every kept task."""
    return None, _sfl.resume_all(ROLE_NAME, ctx)


def handle_sfl_task_requested(state: None, event: Event, ctx: RoleContext) -> Result:
    """Send ``sfl-create`` once per request id."""
    assert isinstance(event, SflTaskRequested)
    key = REQUESTS + event.request_id.encode()
    if ctx.store.get(key) is not None:
        return None, [log("sfl-task-known", request=event.request_id)]
    return None, [StorePut(key, b""),
                  SubmitCall(_CREATE + event.request_id, KIND_CREATE, event.spec),
                  log("sfl-task-creating", request=event.request_id)]


def _new_tasks(event: Event, ctx: RoleContext) -> Result:
    me = ctx.identity.account
    effects: list[Effect] = []
    for task_id, requester, _ in _sfl.created_tasks(event):
        if requester == me:
            effects.extend(_sfl.open_task(ROLE_NAME, task_id, ctx))
    return None, effects


def handle_block_connected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """The singleton takes our new tasks; each task reconciles with the chain."""
    if state is None:
        return _new_tasks(event, ctx)
    return _sfl.reconcile(state, ctx, _PHASES)


def handle_sfl_task_seen(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """Create or rebuild a task instance."""
    return _sfl.task_seen(state, event, ctx, _PHASES)


def handle_job_finished(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A job returned: post the model, or store the opened models and post the accuracies."""
    return _sfl.job_finished(state, event, ctx, _FINISHED)


def handle_job_failed(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A job refused its input (a bad DLEQ proof: nothing is answered, the task times out)."""
    return _sfl.job_failed(state, event, ctx)


def handle_call_rejected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A call refused for good: logged; a refused create frees its request id."""
    assert isinstance(event, CallRejected)
    if event.instance == "" and event.call_id.startswith(_CREATE):
        request = event.call_id[len(_CREATE):]
        return None, [StoreDelete(REQUESTS + request.encode()),
                      log("sfl-task-refused", request=request, code=event.code)]
    return _sfl.call_rejected(state, event, ctx)
