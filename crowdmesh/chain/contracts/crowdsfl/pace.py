"""Whether pooled CrowdSFL calls complete the steps they belong to (the miner's pacing hint).

A sole on-demand miner waits for a quiet pool before it mines, so that calls which answer the
same block land in one block. That wait is wasted when the pool already holds everything a step
can take: each of CrowdSFL's five steps per round waits for the previous step's block, so the
wait is paid about 27 times per task. :func:`pool_pace` says when nothing more is due, and when
more certainly is (submissions from some active workers, joins to a task not yet full): then
waiting the whole gather time beats mining a block the step cannot use yet.

Invariants:
- Read-only and advisory: the answer only changes WHEN a block is mined, never what is valid.
  A wrong COMPLETE costs one more block for the late call; a wrong AWAITING at most the gather
  cap; UNKNOWN leaves the quiet wait as it was.
- COMPLETE iff the transactions are non-empty and each one is:
  - a one-party call (every CrowdSFL kind but the two below: ``sfl-create``, ``sfl-model``,
    ``sfl-blinded``, ``sfl-accuracy``, ``sfl-select``, ``sfl-settle``, ``sfl-timeout``): its
    step takes exactly this call;
  - an ``sfl-submit`` whose task's round then has a submission from every active worker
    (already on chain plus pooled, each sender counted once);
  - an ``sfl-join`` whose task is then full (``max_workers``): before that, more joins may come;
  - a ``blob-part`` whose sender also has one of the calls above pooled (a call's blobs travel
    just before it, from the same sender).
- AWAITING iff every transaction is of those kinds but some submission or join step lacks
  calls (an ``sfl-submit`` or ``sfl-join`` group short of complete, or a ``blob-part`` whose
  sender's call has not arrived).
- UNKNOWN for an empty pool and for anything else (transfers, key registrations, spatial
  tallies, a call that does not decode or names an unknown task).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from enum import Enum

from crowdmesh.chain.contracts.blob import KIND as BLOB_PART
from crowdmesh.chain.contracts.crowdsfl.dispatch import CONTRACTS
from crowdmesh.chain.contracts.crowdsfl.payloads import KIND_JOIN, KIND_SUBMIT, decode_call
from crowdmesh.chain.contracts.crowdsfl.records import (
    Get,
    active_workers,
    load_task,
    task_status,
    task_workers,
)
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = ["PoolPace", "pool_pace"]


class PoolPace(Enum):
    """What the pooled transactions tell a sole miner about waiting for more."""

    COMPLETE = "complete"  # every step they touch has all its calls: mine now
    AWAITING = "awaiting"  # a step they touch certainly has more calls due: wait the cap
    UNKNOWN = "unknown"  # no such knowledge: wait for a quiet pool


def _submissions_complete(get: Get, task_id: bytes, senders: set[bytes]) -> bool:
    _, status = task_status(get, task_id)
    return status.submitted + len(senders) >= len(active_workers(get, task_id))


def _joins_complete(get: Get, task_id: bytes, senders: set[bytes]) -> bool:
    task = load_task(get, task_id)
    return len(task_workers(get, task_id)) + len(senders) >= task.spec.max_workers


# Multi-party steps: kind → "is the step complete with these pooled senders?"; every other
# CrowdSFL kind is a one-party step (its step takes exactly that call).
_GROUP_RULES: dict[str, Callable[[Get, bytes, set[bytes]], bool]] = {
    KIND_SUBMIT: _submissions_complete,
    KIND_JOIN: _joins_complete,
}
_CALLS = frozenset(CONTRACTS)
_ONE_PARTY = _CALLS - _GROUP_RULES.keys()


Groups = dict[tuple[str, bytes], set[bytes]]


def _groups(txs: Sequence[Transaction]) -> tuple[Groups, bool] | None:
    """((kind, task) → pooled senders of the multi-party calls, "a blob part's call is still
    missing"), or None if a transaction is none of ours."""
    callers = {tx.sender for tx in txs if tx.kind in _CALLS}
    groups: Groups = defaultdict(set)
    orphan_parts = False
    for tx in txs:
        if tx.kind == BLOB_PART:
            orphan_parts |= tx.sender not in callers
        elif tx.kind in _GROUP_RULES:
            task_id, _ = decode_call(tx.kind, tx.payload)
            groups[(tx.kind, task_id)].add(tx.sender)
        elif tx.kind not in _ONE_PARTY:
            return None
    return groups, orphan_parts


def pool_pace(get: Get, txs: Sequence[Transaction]) -> PoolPace:
    """Whether the pooled ``txs`` complete every CrowdSFL step they touch, certainly leave one
    waiting for more calls, or neither is known (module invariants); ``get`` reads the head
    state."""
    if not txs:
        return PoolPace.UNKNOWN
    try:
        found = _groups(txs)
        if found is None:
            return PoolPace.UNKNOWN
        groups, orphan_parts = found
        complete = all(_GROUP_RULES[kind](get, task_id, senders)
                       for (kind, task_id), senders in groups.items())
    except ValidationError:
        return PoolPace.UNKNOWN  # why: an undecodable call or unknown task is the contract's
    return PoolPace.COMPLETE if complete and not orphan_parts else PoolPace.AWAITING
