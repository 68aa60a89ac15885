"""CrowdSFL settlement and timeouts: where every escrowed coin of a task ends up.

``sfl-settle`` (FINAL, CSP only), rules in order:
1. The split names every joined worker exactly once, in join order (``sfl-settle-workers``),
   with a 0/1 flag (``bad-sfl-payload``).
2. A worker that missed a deadline (the contract knows) or that the CSP flags (free rider,
   random weights: the requester flags blinded ids, the CSP maps them to workers) gets 0
   (``sfl-settle-ineligible``).
3. The rewards sum to at most the pool (``sfl-settle-over-pool``).
Then: rewards are paid; deposits go back to workers who met every deadline and are not flagged
(reputation +:data:`REP_GAIN`); the others' deposits are **burned** (reputation
−:data:`REP_LOSS`); the rest of the pool is refunded to the requester.

**Why burn confiscated deposits.** Whoever received them would gain from a worker missing a
deadline: the requester (who picks when a round starts and could pay miners to censor
submissions), the CSP (who writes the split), or the other workers (who could delay a rival's
transaction by flooding). Burning gives nobody that motive. Supply stays exact: burned coins
are counted in ``f X`` (``records.burned_total``).

``sfl-timeout`` (anyone, any open phase): once the party the phase waits for is late in block
time (``stall_at`` passed), or joining closed with fewer than ``min_workers``, the task aborts:
the pool goes back to the requester and every deposit to its worker, late workers included
(``sfl-not-expired`` before that). The abort reason names who stalled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from crowdmesh.chain.contracts.base import Event
from crowdmesh.chain.contracts.crowdsfl.calls import Call, require_csp
from crowdmesh.chain.contracts.crowdsfl.records import (
    Phase,
    Status,
    Worker,
    WorkerState,
    add_burned,
    add_escrow,
    add_reputation,
    load_worker,
    store_status,
    task_workers,
)
from crowdmesh.chain.contracts.crowdsfl.spec import TaskSpec
from crowdmesh.errors import ValidationError

__all__ = ["REP_GAIN", "REP_LOSS", "WAITING_ON", "on_settle", "on_timeout", "timeout_due"]

REP_GAIN = 1  # a completed task
REP_LOSS = 2  # a missed deadline or a flagged model costs more than a success earns
WAITING_ON = {  # who a phase waits for: the party blamed when it times out
    Phase.JOINING: "requester", Phase.TRAINING: "csp", Phase.BLINDED: "requester",
    Phase.SCORED: "csp", Phase.SELECTED: "requester", Phase.FINAL: "csp",
}


def _records(c: Call, workers: Sequence[bytes]) -> list[Worker]:
    out = []
    for w in workers:
        rec = load_worker(c.state.get, c.task.task_id, w)
        assert rec is not None, "every listed worker has a record"
        out.append(rec)
    return out


def _check_split(c: Call, split: list[Any], records: list[Worker]) -> int:
    """Rules 1–3; returns the sum of the rewards."""
    if [bytes(s[0]) for s in split] != task_workers(c.state.get, c.task.task_id):
        raise ValidationError("sfl-settle-workers", "every joined worker once, in join order")
    if any(flag not in (0, 1) for _, _, flag in split):
        raise ValidationError("bad-sfl-payload", "flag is 0 or 1")
    for (worker, reward, flag), rec in zip(split, records, strict=True):
        if reward and (flag or rec.state != WorkerState.ACTIVE):
            raise ValidationError("sfl-settle-ineligible", bytes(worker).hex())
    total = sum(int(r) for _, r, _ in split)
    if total > c.status.pool:
        raise ValidationError("sfl-settle-over-pool", f"{total} > {c.status.pool}")
    return total


def _pay_worker(c: Call, worker: bytes, reward: int, keep: bool, rec: Worker) -> Event:
    if reward:
        c.state.credit(worker, reward)
    if keep:
        c.state.credit(worker, rec.deposit)
    else:
        add_burned(c.state, rec.deposit)
    rep = add_reputation(c.state, worker, REP_GAIN if keep else -REP_LOSS)
    return Event("sfl-paid", (c.task.task_id, worker, reward, rec.deposit if keep else 0,
                              0 if keep else rec.deposit, rep))


def on_settle(c: Call) -> tuple[Event, ...]:
    """``sfl-settle`` (FINAL): pay the CSP's split, return or burn deposits, refund the rest."""
    require_csp(c)
    split = c.args[0]
    workers = task_workers(c.state.get, c.task.task_id)
    records = _records(c, workers)
    total = _check_split(c, split, records)
    events = []
    burned = 0
    for (_, reward, flag), w, rec in zip(split, workers, records, strict=True):
        keep = not flag and rec.state == WorkerState.ACTIVE
        burned += 0 if keep else rec.deposit
        events.append(_pay_worker(c, w, int(reward), keep, rec))
    refund = c.status.pool - total
    if refund:
        c.state.credit(c.task.requester, refund)
    add_escrow(c.state, -(c.status.pool + sum(r.deposit for r in records)))
    store_status(c.state, c.task.task_id, replace(c.status, phase=Phase.SETTLED, pool=0))
    return (*events, Event("sfl-settled", (c.task.task_id, total, refund, burned)))


def timeout_due(status: Status, joined: int, spec: TaskSpec) -> int:
    """The block time after which ``sfl-timeout`` aborts the task: the join deadline while too
    few workers joined (or the stall deadline, if earlier), else the stall deadline."""
    if status.phase == Phase.JOINING and joined < spec.min_workers:
        return min(status.window_end, status.stall_at)
    return status.stall_at


def _timeout_reason(c: Call) -> str:
    s = c.status
    joined = len(task_workers(c.state.get, c.task.task_id))
    due = timeout_due(s, joined, c.task.spec)
    if c.now <= due:
        raise ValidationError("sfl-not-expired", f"until {due}")
    if s.phase == Phase.JOINING and joined < c.task.spec.min_workers and c.now > s.window_end:
        return "too-few-workers"
    return f"{WAITING_ON[s.phase]}-stall"


def on_timeout(c: Call) -> tuple[Event, ...]:
    """``sfl-timeout`` (any open phase, anyone): abort and refund every escrowed coin."""
    reason = _timeout_reason(c)
    workers = task_workers(c.state.get, c.task.task_id)
    records = _records(c, workers)
    events = []
    for w, rec in zip(workers, records, strict=True):
        if rec.deposit:
            c.state.credit(w, rec.deposit)
        events.append(Event("sfl-refunded", (c.task.task_id, w, rec.deposit)))
    if c.status.pool:
        c.state.credit(c.task.requester, c.status.pool)
    add_escrow(c.state, -(c.status.pool + sum(r.deposit for r in records)))
    store_status(c.state, c.task.task_id, replace(c.status, phase=Phase.ABORTED, pool=0))
    return (*events, Event("sfl-aborted", (c.task.task_id, reason, c.status.pool)))
