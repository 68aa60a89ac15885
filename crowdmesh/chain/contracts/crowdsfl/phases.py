"""CrowdSFL phase handlers from task creation to the CSP's selection (DESIGN.md steps 1–6).

Each handler runs only for the (kind, phase) pairs :mod:`.dispatch` maps to it, and checks its
rules in the order listed, each with its own code:

- ``sfl-create`` (no task yet): spec (``sfl-bad-spec``), CSP ≠ requester
  (``sfl-csp-is-requester``), join deadline in the future (``sfl-join-deadline-past``), both
  ElGamal keys registered with a PoK under the task's profile (``sfl-key-missing``), pool
  escrowed from the requester (``sfl-pool-overspend``). The task id is the create txid; the
  joint key PK = h_req·h_csp is recorded.
- ``sfl-join``: before the join deadline (``sfl-join-closed``), not the requester or CSP
  (``sfl-join-role``), once (``sfl-already-joined``), room left (``sfl-task-full``),
  1 ≤ n_k ≤ MAX_NK (``sfl-bad-nk``), deposit escrowed (``sfl-deposit-overspend``).
- ``sfl-model``: requester; round 0 once enough workers joined (``sfl-too-few-workers``) and
  the join deadline passed or the task is full (``sfl-too-early``); round r + 1 after the
  selection of round r; round t (the final model, optional) once (``sfl-model-exists``). The
  blob is complete (``sfl-blob-missing``) and fits ``bundle_chunks`` (``sfl-model-too-large``).
- ``sfl-submit``: a joined (``sfl-not-worker``), still active (``sfl-worker-inactive``) worker,
  by the round's deadline (``sfl-late``), once per round (``sfl-double-submit``), a bundle never
  submitted in this task (``sfl-duplicate-bundle``), then :func:`.bundles.check_submission`.
- ``sfl-blinded``: CSP, after the deadline or once every active worker submitted
  (``sfl-too-early``); one entry per submission (``sfl-blinded-count``); ids distinct and new in
  this task (``sfl-blinded-id``); each blob of the right shape. Active workers without a
  submission are marked MISSED (out of the task; deposit confiscated at settlement).
- ``sfl-accuracy``: requester; the blinded ids in order (``sfl-accuracy-ids``), accuracy
  ≤ 10000 bps and a 0/1 free-rider flag (``sfl-accuracy-range``).
- ``sfl-select``: CSP; ids among the blinded (``sfl-select-unknown-id``), distinct
  (``sfl-select-duplicate``), at most ``select_m`` (``sfl-select-too-many``), each at least
  ``min_accuracy_bps`` and not flagged (``sfl-select-below-threshold``); plus the salted
  score-table commitment (per-round scores stay off chain).
"""

from __future__ import annotations

from collections import Counter

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.base import Event, TxContext, decode_payload
from crowdmesh.chain.contracts.blob import blob_info
from crowdmesh.chain.contracts.crowdsfl.bundles import check_blinded_blob, check_submission
from crowdmesh.chain.contracts.crowdsfl.calls import (
    Call,
    expect_round,
    move,
    require_csp,
    require_requester,
)
from crowdmesh.chain.contracts.crowdsfl.records import (
    Phase,
    Status,
    Task,
    Worker,
    WorkerState,
    active_workers,
    add_escrow,
    key,
    load_worker,
    read_list,
    round_key,
    store_status,
    store_task,
    store_worker,
    task_workers,
)
from crowdmesh.chain.contracts.crowdsfl.spec import MAX_NK, TaskSpec, deposit_for
from crowdmesh.chain.contracts.registry import registered_key
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.crypto.elgamal import joint_key
from crowdmesh.crypto.encoding import LENGTH_HEADER_BYTES
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.errors import ValidationError

__all__ = [
    "apply_create",
    "on_accuracy",
    "on_blinded",
    "on_join",
    "on_model_final",
    "on_model_next",
    "on_model_start",
    "on_select",
    "on_submit",
]

MAX_BPS = 10_000

# -- create / join ----------------------------------------------------------------------------


def _task_keys(state: State, spec: TaskSpec, requester: bytes) -> tuple[int, int]:
    h_req = registered_key(state.get, requester, spec.profile)
    h_csp = registered_key(state.get, spec.csp, spec.profile)
    if h_req is None or h_csp is None:
        raise ValidationError("sfl-key-missing", "requester" if h_req is None else "csp")
    return h_req, h_csp


def apply_create(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """``sfl-create``: record the spec and keys, escrow the pool, open joining."""
    spec = TaskSpec.from_obj(decode_payload(tx.payload, "bad-sfl-payload"))
    if spec.csp == tx.sender:
        raise ValidationError("sfl-csp-is-requester")
    if spec.join_deadline <= ctx.timestamp:
        raise ValidationError("sfl-join-deadline-past")
    h_req, h_csp = _task_keys(state, spec, tx.sender)
    state.debit(tx.sender, spec.pool, "sfl-pool-overspend")
    add_escrow(state, spec.pool)
    group = PROFILES[spec.profile].group
    size = group.element_bytes
    joint = int(joint_key(group, h_req, h_csp)).to_bytes(size, "big")
    task = Task(ctx.txid, spec, tx.sender, int(h_req).to_bytes(size, "big"),
                int(h_csp).to_bytes(size, "big"), joint)
    store_task(state, task)
    store_status(state, task.task_id, Status(Phase.JOINING, 0, spec.join_deadline,
                                             spec.join_deadline + spec.t_step, spec.pool, 0))
    return (Event("sfl-created", (task.task_id, tx.sender, spec.csp, spec.pool)),)


def _check_joiner(c: Call) -> list[bytes]:
    if c.now > c.status.window_end:
        raise ValidationError("sfl-join-closed")
    if c.sender in (c.task.requester, c.task.spec.csp):
        raise ValidationError("sfl-join-role")
    if load_worker(c.state.get, c.task.task_id, c.sender) is not None:
        raise ValidationError("sfl-already-joined")
    workers = task_workers(c.state.get, c.task.task_id)
    if len(workers) >= c.task.spec.max_workers:
        raise ValidationError("sfl-task-full")
    return workers


def on_join(c: Call) -> tuple[Event, ...]:
    """``sfl-join`` (JOINING): metadata and deposit."""
    workers = _check_joiner(c)
    n_k, dataset_hash = c.args
    if not 1 <= n_k <= MAX_NK:
        raise ValidationError("sfl-bad-nk", str(n_k))
    deposit = deposit_for(c.task.spec, n_k, c.state.account(c.sender).reputation)
    c.state.debit(c.sender, deposit, "sfl-deposit-overspend")
    add_escrow(c.state, deposit)
    store_worker(c.state, c.task.task_id, c.sender,
                 Worker(n_k, dataset_hash, deposit, WorkerState.ACTIVE))
    c.state.set(key(b"l", c.task.task_id), pack([*workers, c.sender]))
    return (Event("sfl-joined", (c.task.task_id, c.sender, n_k, deposit)),)


# -- global models ----------------------------------------------------------------------------


def _record_model(c: Call, round_: int) -> tuple[Event, ...]:
    name = c.args[1]
    info = blob_info(c.state.get, name)
    if info is None:
        raise ValidationError("sfl-blob-missing", name.hex())
    spec = c.task.spec
    if info[2] > spec.bundle_chunks * spec.chunk_bytes - LENGTH_HEADER_BYTES:
        raise ValidationError("sfl-model-too-large", f"{info[2]} bytes")
    c.state.set(round_key(b"m", c.task.task_id, round_), name)
    return (Event("sfl-model-posted", (c.task.task_id, round_, name)),)


def _start_round(c: Call, round_: int) -> tuple[Event, ...]:
    events = _record_model(c, round_)
    t_wait, t_step = c.task.spec.t_wait, c.task.spec.t_step
    move(c, Phase.TRAINING, t_wait + t_step, round=round_, window_end=c.now + t_wait, submitted=0)
    return events


def on_model_start(c: Call) -> tuple[Event, ...]:
    """``sfl-model`` round 0 (JOINING): the initial model starts round 0."""
    require_requester(c)
    expect_round(c, 0)
    joined = len(task_workers(c.state.get, c.task.task_id))
    if joined < c.task.spec.min_workers:
        raise ValidationError("sfl-too-few-workers", f"{joined} joined")
    if c.now <= c.status.window_end and joined < c.task.spec.max_workers:
        raise ValidationError("sfl-too-early", "joining is open and the task is not full")
    return _start_round(c, 0)


def on_model_next(c: Call) -> tuple[Event, ...]:
    """``sfl-model`` round r + 1 (SELECTED): the aggregate of round r starts the next round."""
    require_requester(c)
    expect_round(c, c.status.round + 1)
    return _start_round(c, c.status.round + 1)


def on_model_final(c: Call) -> tuple[Event, ...]:
    """``sfl-model`` round t (FINAL, SETTLED): the final model, for the record only.

    Settlement never waits for it: after the last selection the requester holds every selected
    model, so making payment depend on it would let the requester stall and take the pool back.
    """
    require_requester(c)
    expect_round(c, c.task.spec.rounds)
    if c.state.get(round_key(b"m", c.task.task_id, c.task.spec.rounds)) is not None:
        raise ValidationError("sfl-model-exists")
    return _record_model(c, c.task.spec.rounds)


# -- submissions ------------------------------------------------------------------------------


def _check_submitter(c: Call) -> None:
    worker = load_worker(c.state.get, c.task.task_id, c.sender)
    if worker is None:
        raise ValidationError("sfl-not-worker")
    if worker.state != WorkerState.ACTIVE:
        raise ValidationError("sfl-worker-inactive", "missed an earlier deadline")
    if c.now > c.status.window_end:
        raise ValidationError("sfl-late", f"deadline {c.status.window_end}")
    if c.state.get(round_key(b"u", c.task.task_id, c.status.round, c.sender)) is not None:
        raise ValidationError("sfl-double-submit")


def on_submit(c: Call) -> tuple[Event, ...]:
    """``sfl-submit`` (TRAINING): an encrypted bundle with its proof of randomness."""
    expect_round(c, c.status.round)
    _check_submitter(c)
    _, name, proof = c.args
    task_id = c.task.task_id
    if c.state.get(key(b"h", task_id, name)) is not None:
        raise ValidationError("sfl-duplicate-bundle", "byte-identical to an earlier submission")
    check_submission(c.state.get, c.task, c.sender, c.status.round, name, proof)
    c.state.set(round_key(b"u", task_id, c.status.round, c.sender), name)
    c.state.set(key(b"h", task_id, name), pack(c.status.round))
    store_status(c.state, task_id, _bump(c.status))
    return (Event("sfl-submitted", (task_id, c.status.round, c.sender, name)),)


def _bump(status: Status) -> Status:
    return Status(status.phase, status.round, status.window_end, status.stall_at, status.pool,
                  status.submitted + 1)


# -- the CSP's blinded list -------------------------------------------------------------------


def _check_blinded_ids(c: Call, entries: list[list[bytes]]) -> None:
    if len(entries) != c.status.submitted:
        raise ValidationError("sfl-blinded-count", f"{len(entries)} != {c.status.submitted}")
    ids = [bid for bid, _ in entries]
    used = any(c.state.get(key(b"i", c.task.task_id, bid)) is not None for bid in ids)
    if len(set(ids)) != len(ids) or used:
        raise ValidationError("sfl-blinded-id", "ids must be fresh and distinct")
    for bid, name in entries:
        check_blinded_blob(c.state.get, c.task.spec, bid, name)


def _mark_missed(c: Call, active: list[bytes]) -> list[Event]:
    """Active workers with no submission this round leave the task (DESIGN.md "sabotage")."""
    events = []
    task_id, round_ = c.task.task_id, c.status.round
    for w in active:
        if c.state.get(round_key(b"u", task_id, round_, w)) is None:
            rec = load_worker(c.state.get, task_id, w)
            assert rec is not None
            store_worker(c.state, task_id, w, Worker(rec.n_k, rec.dataset_hash, rec.deposit,
                                                     WorkerState.MISSED))
            events.append(Event("sfl-worker-missed", (task_id, round_, w)))
    return events


def on_blinded(c: Call) -> tuple[Event, ...]:
    """``sfl-blinded`` (TRAINING): the CSP's shuffled, re-encrypted list closes the round."""
    require_csp(c)
    expect_round(c, c.status.round)
    active = active_workers(c.state.get, c.task.task_id)
    if c.now <= c.status.window_end and c.status.submitted < len(active):
        raise ValidationError("sfl-too-early", "the deadline has not passed")
    entries = c.args[1]
    _check_blinded_ids(c, entries)
    task_id = c.task.task_id
    c.state.set(round_key(b"b", task_id, c.status.round), pack(entries))
    for bid, _ in entries:
        c.state.set(key(b"i", task_id, bid), pack(c.status.round))
    missed = _mark_missed(c, active)
    # Nobody submitted: nothing to score or aggregate, so the task goes straight to settlement.
    move(c, Phase.BLINDED if entries else Phase.FINAL, c.task.spec.t_step)
    return (*missed, Event("sfl-blinded-posted", (task_id, c.status.round, len(entries))))


# -- accuracies and selection -----------------------------------------------------------------


def _blinded_ids(c: Call) -> list[bytes]:
    return [bid for bid, _ in read_list(c.state.get, round_key(b"b", c.task.task_id,
                                                              c.status.round))]


def on_accuracy(c: Call) -> tuple[Event, ...]:
    """``sfl-accuracy`` (BLINDED): the requester's accuracy per blinded id."""
    require_requester(c)
    expect_round(c, c.status.round)
    entries = c.args[1]
    if [e[0] for e in entries] != _blinded_ids(c):
        raise ValidationError("sfl-accuracy-ids", "want every blinded id, in order")
    if any(acc > MAX_BPS or flag > 1 for _, acc, flag in entries):
        raise ValidationError("sfl-accuracy-range", "accuracy ≤ 10000 bps, flag 0 or 1")
    c.state.set(round_key(b"a", c.task.task_id, c.status.round), pack(entries))
    move(c, Phase.SCORED, c.task.spec.t_step)
    return (Event("sfl-accuracy-posted", (c.task.task_id, c.status.round, len(entries))),)


def _check_selection(c: Call, ids: list[bytes]) -> None:
    raw = c.state.get(round_key(b"a", c.task.task_id, c.status.round))
    scored = {bytes(i): (acc, flag) for i, acc, flag in ([] if raw is None
                                                          else unpack(raw, 1 << 24))}
    if any(i not in scored for i in ids):
        raise ValidationError("sfl-select-unknown-id")
    if len(set(ids)) != len(ids):
        raise ValidationError("sfl-select-duplicate")
    if len(ids) > c.task.spec.select_m:
        raise ValidationError("sfl-select-too-many", f"at most {c.task.spec.select_m}")
    floor = c.task.spec.min_accuracy_bps
    if any(scored[i][0] < floor or scored[i][1] for i in ids):
        raise ValidationError("sfl-select-below-threshold", f"accuracy < {floor} or flagged")


def _round_sizes(c: Call) -> Counter[int]:
    """The n_k of every worker who submitted this round (a multiset)."""
    task_id, round_ = c.task.task_id, c.status.round
    sizes: Counter[int] = Counter()
    for w in task_workers(c.state.get, task_id):
        rec = load_worker(c.state.get, task_id, w)
        if rec is not None and c.state.get(round_key(b"u", task_id, round_, w)) is not None:
            sizes[rec.n_k] += 1
    return sizes


def _check_weights(c: Call, ids: list[bytes], weights: list[int]) -> None:
    """An ``nk`` task: one n_k per selected id, drawn from this round's submitters' n_k (which
    id gets which the CSP alone knows, as it knows the ranking); other tasks: none."""
    if c.task.spec.aggregation != "nk":
        if weights:
            raise ValidationError("sfl-select-weights", "only an nk task carries weights")
        return
    if len(weights) != len(ids) or Counter(weights) - _round_sizes(c):
        raise ValidationError("sfl-select-weights", "want each selected model's n_k")


def on_select(c: Call) -> tuple[Event, ...]:
    """``sfl-select`` (SCORED): selected ids plus a commitment to the CSP's score table."""
    require_csp(c)
    expect_round(c, c.status.round)
    ids, commitment, weights = c.args[1], c.args[2], c.args[3]
    _check_selection(c, ids)
    _check_weights(c, ids, weights)
    c.state.set(round_key(b"c", c.task.task_id, c.status.round),
                pack([ids, commitment, weights]))
    last = c.status.round + 1 == c.task.spec.rounds
    move(c, Phase.FINAL if last else Phase.SELECTED, c.task.spec.t_step)
    return (Event("sfl-selected", (c.task.task_id, c.status.round, len(ids), commitment)),)
