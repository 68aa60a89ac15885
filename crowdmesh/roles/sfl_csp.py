"""The CrowdSFL CSP: blinds and shuffles each round's bundles, scores and selects, settles
(DESIGN.md "CrowdSFL protocol", steps 3 and 5, and settlement).

States: one :class:`~crowdmesh.roles._sfl.TaskState` per task naming this node's account as its
CSP, keyed by the task id in hex; the singleton ``""`` is stateless.

Invariants:
- It steps as soon as every active worker has submitted, or once a block past the round's
  deadline is on the chain (block time). The pipeline (``sfl_jobs.blind_job``: blind under PK,
  shuffle, fresh ids, ReEnc with a batched DLEQ) runs as a job; its blinded id → worker map and
  permutation are stored (``p/‖task‖round``, never published) before the blinded list leaves.
- Score = X − Y + W·R + n per worker and round (integers): X the rank of n_k (largest = n),
  Y the rank of accuracy (best = 1), R the worker's reputation at the head, W the task's
  reputation weight, n the number of scored models (so an honest score is ≥ 1). It selects
  the ``select_m`` best scores among the models at or above ``min_accuracy_bps`` and not
  flagged. Only the selected ids and a salted commitment to the table go on chain; the table
  and salt stay in the store (``s/‖task‖round``) to open on demand.
- While it waits for the round's deadline (someone has not submitted) it makes sure a block past
  it comes (``_sfl.beacon``: a wake-up at the deadline, then one no-op call if the head is still
  older): with on-demand mining nothing else would bring that block, and the round would hang.
- A stalled requester (JOINING past the join deadline plus t_step, BLINDED, SELECTED: a block
  past ``stall_at``) is timed out with ``sfl-timeout`` (``_sfl.stall_timeout``, one call per
  deadline, beaconing until then): the task aborts and every coin is refunded.
- Settlement: worker k gets ``pool · w_k // Σ w`` with w_k = n_k · Σ (scores of the rounds k
  was selected in); a worker that missed a deadline or was flagged in any round gets 0, and a
  flagged one is flagged in the split (its deposit is burned by the contract).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_BLINDED,
    KIND_SELECT,
    KIND_SETTLE,
    Phase,
    WorkerState,
    blinded_payload,
    score_commitment,
    select_payload,
    settle_payload,
)
from crowdmesh.roles import _sfl
from crowdmesh.roles._sfl import (
    PERMS,
    SCORES,
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
from crowdmesh.roles.effects import Effect, RunJob, StorePut, SubmitCall
from crowdmesh.roles.events import Event, JobFinished
from crowdmesh.roles.sfl_jobs import blind_job

__all__ = [
    "ROLE_NAME",
    "handle_block_connected",
    "handle_call_rejected",
    "handle_job_failed",
    "handle_job_finished",
    "handle_roles_started",
    "handle_sfl_configured",
    "handle_sfl_task_seen",
    "score_round",
    "split",
]

ROLE_NAME = "csp"  # Role.CSP.value
_CAP = 1 << 26
_BLAMED = frozenset({"requester"})  # whose stalls the CSP times out


def _submitters(chain: Chain) -> list[bytes]:
    r = chain.status.round
    return [w for w in chain.active() if chain.record(b"u", r, w) is not None]


# -- step 3: the blinded list -------------------------------------------------------------------


def _blind(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    r, status = chain.status.round, chain.status
    if status.submitted < len(chain.active()) and head_time(ctx) <= status.window_end:
        return _sfl.beacon(state, ROLE_NAME, status.window_end, ctx)  # a worker may never submit
    s = _sfl.settings(ctx)
    if s is None:
        return state, [log("sfl-not-configured", task=state.task_id.hex(), role=ROLE_NAME)]
    step = f"r{r}-blind"
    names = [chain.record(b"u", r, w) for w in _submitters(chain)]
    bundles = [chain.blob(n) for n in names if n is not None]
    if not bundles:  # nobody submitted: the empty list ends the task (FINAL)
        call = SubmitCall(f"{step}/blinded", KIND_BLINDED, blinded_payload(state.task_id, r, []))
        return ask(state, step, [call])
    task = chain.task
    args = (chain.spec_bytes, task.h_csp, task.h_req, s.secret_key, bundles,
            derive_seed(s, "blind", state.task_id, r))
    return ask(state, step, [RunJob(step, blind_job, args)])


def _blinded(state: TaskState, event: JobFinished, ctx: RoleContext) -> Result:
    chain = _sfl.chain_of(state.task_id, ctx)
    r = int(event.job_id[1:].split("-")[0])
    if chain is None or chain.status.phase != Phase.TRAINING or chain.status.round != r:
        return state, []
    assert isinstance(event.result, bytes)
    outputs, permutation = unpack(event.result, _CAP)
    workers = _submitters(chain)
    ids = [bytes(o[1:17]) for o in outputs]  # ProvenBundle wire form: u8 length ‖ 16-byte id
    mapping = [[i, workers[p]] for i, p in zip(ids, permutation, strict=True)]
    effects: list[Effect] = [StorePut(PERMS + state.task_id + round_bytes(r),
                                      pack([mapping, permutation]))]
    entries = []
    for i, out in zip(ids, outputs, strict=True):
        name, parts = _sfl.upload(event.job_id, out, ctx)
        effects.extend(parts)
        entries.append((i, name))
    effects.append(SubmitCall(f"{event.job_id}/blinded", KIND_BLINDED,
                              blinded_payload(state.task_id, r, entries)))
    return state, [*effects, log("sfl-blinded", task=state.task_id.hex(), round=r,
                                 bundles=len(entries))]


# -- step 5: scores and selection ---------------------------------------------------------------


def _ranks(keys: Sequence[Any]) -> list[int]:
    """1-based rank of each item by ``keys`` ascending (ties broken by position)."""
    order = sorted(range(len(keys)), key=lambda i: (keys[i], i))
    ranks = [0] * len(keys)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def score_round(entries: Sequence[tuple[bytes, int, int]], n_k: Sequence[int],
                reputation: Sequence[int], weight: int) -> list[int]:
    """Score = X − Y + W·R + n per entry ``(id, accuracy bps, flag)`` (see module docstring)."""
    n = len(entries)
    x = _ranks(list(n_k))
    y = _ranks([-bps for _, bps, _ in entries])
    return [x[i] - y[i] + weight * reputation[i] + n for i in range(n)]


def _selection(chain: Chain, entries: list[tuple[bytes, int, int]],
               scores: list[int]) -> list[bytes]:
    spec = chain.task.spec
    eligible = [i for i, (_, bps, flag) in enumerate(entries)
                if bps >= spec.min_accuracy_bps and not flag]
    best = sorted(eligible, key=lambda i: (-scores[i], entries[i][0]))[:spec.select_m]
    return [entries[i][0] for i in sorted(best)]


def _select(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    r, s = chain.status.round, _sfl.settings(ctx)
    raw = ctx.store.get(PERMS + state.task_id + round_bytes(r))
    if s is None or raw is None:
        return ask(state, f"r{r}-select", [log("sfl-permutation-missing",
                                               task=state.task_id.hex(), round=r)])
    owner = {bytes(i): bytes(w) for i, w in unpack(raw, _CAP)[0]}
    entries = [(bytes(i), int(bps), int(flag)) for i, bps, flag in chain.records(b"a", r)]
    workers = [owner[i] for i, _, _ in entries]
    records = dict(chain.workers())
    scores = score_round(entries, [records[w].n_k for w in workers],
                         [ctx.chain.account(w).reputation for w in workers],
                         chain.task.spec.rep_weight)
    selected = _selection(chain, entries, scores)
    table = sorted(zip(workers, scores, strict=True))
    salt = derive_seed(s, "salt", state.task_id, r)[:16]
    flagged = sorted(w for w, (_, _, flag) in zip(workers, entries, strict=True) if flag)
    picked = sorted(owner[i] for i in selected)
    record = pack([salt, [[w, sc] for w, sc in table], picked, flagged])
    # why only for nk: a weight is the owner's public n_k, so it narrows who owns the model
    weights = [records[owner[i]].n_k for i in selected] \
        if chain.task.spec.aggregation == "nk" else []
    call = SubmitCall(f"r{r}-select/select", KIND_SELECT, select_payload(
        state.task_id, r, selected, score_commitment(salt, table), weights))
    return ask(state, f"r{r}-select", [StorePut(SCORES + state.task_id + round_bytes(r), record),
                                       call])


# -- settlement ---------------------------------------------------------------------------------


def _tally(state: TaskState, chain: Chain, ctx: RoleContext) -> tuple[dict[bytes, int], set[bytes]]:
    """Per worker: summed scores of the rounds it was selected in; and every flagged worker."""
    summed: dict[bytes, int] = {}
    flagged: set[bytes] = set()
    for r in range(chain.task.spec.rounds):
        raw = ctx.store.get(SCORES + state.task_id + round_bytes(r))
        if raw is None:
            continue
        _, table, picked, bad = unpack(raw, _CAP)
        chosen = {bytes(w) for w in picked}
        for w, score in table:
            if bytes(w) in chosen:
                summed[bytes(w)] = summed.get(bytes(w), 0) + max(0, int(score))
        flagged |= {bytes(w) for w in bad}
    return summed, flagged


def split(chain: Chain, summed: dict[bytes, int],
          flagged: set[bytes]) -> list[tuple[bytes, int, int]]:
    """``(worker, reward, flagged)`` for every joined worker in join order."""
    workers = chain.workers()
    weight = {w: rec.n_k * summed.get(w, 0) for w, rec in workers
              if rec.state == WorkerState.ACTIVE and w not in flagged}
    total = sum(weight.values())
    pool = chain.status.pool
    return [(w, pool * weight.get(w, 0) // total if total else 0, int(w in flagged))
            for w, _ in workers]


def _settle(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    summed, flagged = _tally(state, chain, ctx)
    shares = split(chain, summed, flagged)
    call = SubmitCall("settle", KIND_SETTLE, settle_payload(state.task_id, shares))
    return ask(state, "settle", [call, log("sfl-settling", task=state.task_id.hex(),
                                           paid=sum(r for _, r, _ in shares))])


# -- a stalled requester ------------------------------------------------------------------------


def _watch(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    """JOINING, BLINDED, SELECTED wait for the requester: abort once it is late (a block past
    ``stall_at``), beaconing until then. Nobody else is first in line for these stalls."""
    return _sfl.stall_timeout(state, chain, ctx, ROLE_NAME, _BLAMED)


_PHASES: _sfl.PhaseTable = {
    Phase.JOINING: _sfl.warming_task_keys(_watch),
    Phase.TRAINING: _blind,
    Phase.BLINDED: _watch,
    Phase.SELECTED: _watch,
    Phase.SCORED: _select,
    Phase.FINAL: _settle,
    Phase.SETTLED: _sfl.finished,
    Phase.ABORTED: _sfl.finished,
}


# -- handlers -----------------------------------------------------------------------------------


def handle_sfl_configured(state: None, event: Event, ctx: RoleContext) -> Result:
    """Keep the CSP's settings (seed, ElGamal secret key)."""
    return _sfl.configure(event, ctx)


def handle_roles_started(state: None, event: Event, ctx: RoleContext) -> Result:
    """Resume every kept task."""
    return None, _sfl.resume_all(ROLE_NAME, ctx)


def _new_tasks(event: Event, ctx: RoleContext) -> Result:
    me = ctx.identity.account
    effects: list[Effect] = []
    for task_id, _, csp in _sfl.created_tasks(event):
        if csp == me:
            effects.extend(_sfl.open_task(ROLE_NAME, task_id, ctx))
    return None, effects


def handle_block_connected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """The singleton takes the tasks that name us; each task reconciles with the chain."""
    if state is None:
        return _new_tasks(event, ctx)
    return _sfl.reconcile(state, ctx, _PHASES)


def handle_sfl_task_seen(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """Create or rebuild a task instance."""
    return _sfl.task_seen(state, event, ctx, _PHASES)


_FINISHED: dict[str, Callable[[TaskState, JobFinished, RoleContext], Result]] = {
    "blind": _blinded,
}


def handle_job_finished(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """The pipeline returned: store the permutation, upload, post the blinded list."""
    return _sfl.job_finished(state, event, ctx, _FINISHED)


def handle_job_failed(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A job refused its input (logged)."""
    return _sfl.job_failed(state, event, ctx)


def handle_call_rejected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A call refused for good (logged; the step may start again)."""
    return _sfl.call_rejected(state, event, ctx)
