"""CrowdSFL state layout (prefix ``f``), its records, and read helpers for roles.

Keys (``task`` = the txid of its ``sfl-create``; ``r`` = round as u16; ids are 16 bytes):

==========================  ===============================================================
``f t‖task``                immutable: ``[spec, requester, h_req, h_csp, joint key]``
``f s‖task``                :class:`Status` (phase, round, deadlines, pool, submissions)
``f l‖task``                workers in join order
``f w‖task‖worker``         :class:`Worker` ``[n_k, dataset hash, deposit, state]``
``f u‖task‖r‖worker``       the worker's bundle blob hash for round r
``f h‖task‖blob hash``      a bundle hash already submitted in this task (any round)
``f m‖task‖r``              the global model's blob hash for round r (0 = initial)
``f b‖task‖r``              the CSP's blinded list ``[[id, blob hash], …]``
``f i‖task‖id``             a blinded id already used in this task
``f a‖task‖r``              accuracies ``[[id, bps, free rider], …]`` in blinded order
``f c‖task‖r``              selection ``[[id, …], score-table commitment]``
``f E`` / ``f X``           coins held in escrow by every task / burned by confiscation
==========================  ===============================================================

Invariants:
- Escrow is not an account: a task's pool and deposits leave the payers' balances and are
  counted in ``f E`` until paid, refunded or burned, so for every state
  Σ balances + ``f E`` + ``f X`` + burned fees = genesis alloc + block rewards.
- A task's phase only moves forward along the table in :mod:`.phases`; SETTLED and ABORTED are
  terminal and have released every escrowed coin of the task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from enum import IntEnum
from typing import Any

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.crowdsfl.spec import TaskSpec
from crowdmesh.chain.state import Account, State
from crowdmesh.errors import ValidationError

__all__ = [
    "PREFIX",
    "Phase",
    "Status",
    "Task",
    "Worker",
    "WorkerState",
    "add_burned",
    "add_escrow",
    "add_reputation",
    "burned_total",
    "escrow_total",
    "key",
    "load_status",
    "load_task",
    "load_worker",
    "read_list",
    "round_key",
    "store_status",
    "store_task",
    "store_worker",
    "task_status",
    "task_workers",
]

PREFIX = b"f"
_CAP = 1 << 24  # state values this contract writes stay far below
_I64 = 1 << 63

Get = Callable[[bytes], bytes | None]


class Phase(IntEnum):
    """Where a task is (DESIGN.md "CrowdSFL protocol", steps 1–6, settlement, timeouts)."""

    JOINING = 0  # workers join; the requester then posts the round-0 model
    TRAINING = 1  # workers submit until the round's T_wait deadline
    BLINDED = 2  # the CSP posted the blinded list; the requester owes accuracies
    SCORED = 3  # accuracies posted; the CSP owes its selection
    SELECTED = 4  # selection posted; the requester owes the next global model
    FINAL = 5  # every round done; the CSP owes the settlement
    SETTLED = 6
    ABORTED = 7


class WorkerState(IntEnum):
    """A joined worker: still in the task, or out for missing a submission deadline."""

    ACTIVE = 0
    MISSED = 1


@dataclass(frozen=True, slots=True)
class Task:
    """The immutable part of a task."""

    task_id: bytes
    spec: TaskSpec
    requester: bytes
    h_req: bytes
    h_csp: bytes
    joint: bytes


@dataclass(frozen=True, slots=True)
class Status:
    """The mutable part: ``window_end`` closes joining/submitting, ``stall_at`` is when the party
    the phase waits for is late (anyone may then send ``sfl-timeout``)."""

    phase: Phase
    round: int
    window_end: int
    stall_at: int
    pool: int
    submitted: int

    def encode(self) -> bytes:
        """Stored form."""
        return pack([int(self.phase), *astuple(self)[1:]])

    @classmethod
    def decode(cls, raw: bytes) -> Status:
        """Inverse of :meth:`encode` (state this contract wrote)."""
        phase, *rest = unpack(raw, 256)
        return cls(Phase(phase), *rest)


@dataclass(frozen=True, slots=True)
class Worker:
    """A joined worker's metadata (seed §4: n_k and the dataset hash) and escrowed deposit."""

    n_k: int
    dataset_hash: bytes
    deposit: int
    state: WorkerState


def key(tag: bytes, task_id: bytes, *parts: bytes) -> bytes:
    """State key ``f‖tag‖task‖parts``."""
    return PREFIX + tag + task_id + b"".join(parts)


def round_key(tag: bytes, task_id: bytes, round_: int, *parts: bytes) -> bytes:
    """State key of a per-round record."""
    return key(tag, task_id, round_.to_bytes(2, "big"), *parts)


def read_list(get: Get, k: bytes) -> list[Any]:
    """A stored list (empty if absent)."""
    raw = get(k)
    return [] if raw is None else list(unpack(raw, _CAP))


def load_task(get: Get, task_id: bytes) -> Task:
    """The task's immutable record; raises ``ValidationError('sfl-unknown-task')``."""
    raw = get(key(b"t", task_id))
    if raw is None:
        raise ValidationError("sfl-unknown-task", task_id.hex())
    spec_obj, requester, h_req, h_csp, joint = unpack(raw, _CAP)
    return Task(task_id, TaskSpec.from_obj(spec_obj), requester, h_req, h_csp, joint)


def store_task(state: State, task: Task) -> None:
    """Write the immutable record (once, at creation)."""
    state.set(key(b"t", task.task_id), pack([task.spec.to_obj(), task.requester, task.h_req,
                                             task.h_csp, task.joint]))


def load_status(get: Get, task_id: bytes) -> Status:
    """The task's status (the task exists)."""
    raw = get(key(b"s", task_id))
    assert raw is not None, "every task has a status"
    return Status.decode(raw)


def store_status(state: State, task_id: bytes, status: Status) -> None:
    """Write the status."""
    state.set(key(b"s", task_id), status.encode())


def load_worker(get: Get, task_id: bytes, worker: bytes) -> Worker | None:
    """A joined worker's record, or None."""
    raw = get(key(b"w", task_id, worker))
    if raw is None:
        return None
    n_k, dataset_hash, deposit, state = unpack(raw, 256)
    return Worker(n_k, dataset_hash, deposit, WorkerState(state))


def store_worker(state: State, task_id: bytes, worker: bytes, rec: Worker) -> None:
    """Write a worker record."""
    state.set(key(b"w", task_id, worker),
              pack([rec.n_k, rec.dataset_hash, rec.deposit, int(rec.state)]))


def task_workers(get: Get, task_id: bytes) -> list[bytes]:
    """The task's workers in join order."""
    return [bytes(w) for w in read_list(get, key(b"l", task_id))]


def active_workers(get: Get, task_id: bytes) -> list[bytes]:
    """The task's workers still ACTIVE (not missed, not flagged out), in join order."""
    out = []
    for w in task_workers(get, task_id):
        rec = load_worker(get, task_id, w)
        if rec is not None and rec.state == WorkerState.ACTIVE:
            out.append(w)
    return out


def task_status(get: Get, task_id: bytes) -> tuple[Task, Status]:
    """(task, status) for roles and queries; raises ``sfl-unknown-task``."""
    return load_task(get, task_id), load_status(get, task_id)


def _counter(get: Get, tag: bytes) -> int:
    raw = get(PREFIX + tag)
    return 0 if raw is None else int(unpack(raw, 16))


def escrow_total(get: Get) -> int:
    """Coins every task holds in escrow."""
    return _counter(get, b"E")


def burned_total(get: Get) -> int:
    """Coins burned by confiscated deposits."""
    return _counter(get, b"X")


def add_escrow(state: State, delta: int) -> None:
    """Move ``delta`` coins into (positive) or out of (negative) escrow."""
    total = escrow_total(state.get) + delta
    assert total >= 0, "escrow never goes negative"
    state.set(PREFIX + b"E", pack(total) if total else None)


def add_burned(state: State, amount: int) -> None:
    """Count ``amount`` coins as burned."""
    if amount:
        state.set(PREFIX + b"X", pack(burned_total(state.get) + amount))


def add_reputation(state: State, addr: bytes, delta: int) -> int:
    """Change an account's reputation by ``delta`` (clamped to i64); return the new value."""
    a = state.account(addr)
    rep = max(-_I64, min(_I64 - 1, a.reputation + delta))
    state.put_account(addr, Account(a.balance, a.nonce, rep))
    return rep
