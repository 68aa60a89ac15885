"""What the three CrowdSFL roles share: settings, store layout, chain reads, steps, restart.

Invariants:
- Level-triggered: a task instance decides what to do from the chain view (the task's phase,
  round, deadlines in block time, submissions, blinded lists) and its own store, never from
  the event that woke it. Events are hints. So a restart needs no special path: the fresh
  instance looks at the chain and asks again for what is still missing.
- A task instance's memory is only ``asked``: the steps (``r<round>-<name>``) it has started
  in this process. A step's job id and call ids start with its key (``r0-train``,
  ``r0-train/submit``), so any outcome names its step. Asking again after a restart is safe:
  jobs are deterministic in the role's seed (the same bytes), and the call service answers a
  known call id without sending twice.
- Store layout (each role in its own namespace): ``cfg`` the settings; ``t/‖task`` the task is
  ours (the instance exists); ``q/‖request id`` a create request asked (requester);
  ``p/‖task‖round`` the CSP's blinded id → worker map and permutation (never published);
  ``s/‖task‖round`` the CSP's score table and salt; ``m/‖task‖round‖id`` a model the requester
  opened. :func:`forget` removes a finished task's keys but the CSP's audit records.
- Deadlines compare with the head's block time (``ctx.chain.head().timestamp``), which is what
  the mempool's dry run and the contract compare with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.blob import KIND as BLOB_PART
from crowdmesh.chain.contracts.blob import blob_bytes, blob_hash, blob_info, split_blob
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_TIMEOUT,
    Phase,
    Status,
    Task,
    Worker,
    WorkerState,
    load_worker,
    task_status,
    task_workers,
    timeout_payload,
)
from crowdmesh.chain.contracts.crowdsfl.records import read_list, round_key
from crowdmesh.chain.contracts.crowdsfl.settle import WAITING_ON
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.errors import ValidationError
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import (
    Effect,
    LogEvent,
    RunJob,
    ScheduleAt,
    StoreDelete,
    StorePut,
    SubmitCall,
)
from crowdmesh.roles.events import BlockConnected, CallRejected, Event, JobFailed, JobFinished
from crowdmesh.roles.sfl_events import SflConfigured, SflTaskSeen
from crowdmesh.roles.sfl_jobs import warm_task_keys_job

if TYPE_CHECKING:
    from crowdmesh.roles.dispatch import Role

__all__ = [
    "CONFIG",
    "MODELS",
    "PERMS",
    "REQUESTS",
    "SCORES",
    "TASKS",
    "Chain",
    "PhaseTable",
    "Result",
    "Settings",
    "TaskState",
    "ask",
    "beacon",
    "block_keys",
    "call_rejected",
    "chain_of",
    "configure",
    "created_tasks",
    "derive_seed",
    "finished",
    "forget",
    "head_time",
    "job_failed",
    "log",
    "open_task",
    "reconcile",
    "resume_all",
    "round_bytes",
    "settings",
    "stall_timeout",
    "step_of",
    "task_of",
    "task_seen",
    "upload",
    "warming",
    "warming_task_keys",
]

CONFIG = b"cfg"
TASKS = b"t/"
REQUESTS = b"q/"
PERMS = b"p/"
SCORES = b"s/"
MODELS = b"m/"
_CAP = 1 << 26

Result = tuple[Any, list[Effect]]


@dataclass(frozen=True, slots=True)
class Settings:
    """A role's configuration as kept in its store (see :class:`SflConfigured`)."""

    seed: bytes
    profile: str
    secret_key: bytes
    dataset: bytes
    auto_join: bool
    behaviour: str

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.seed, self.profile, self.secret_key, self.dataset,
                     int(self.auto_join), self.behaviour])

    @classmethod
    def decode(cls, raw: bytes) -> Settings:
        """Inverse of :meth:`encode`."""
        seed, profile, sk, dataset, auto, behaviour = unpack(raw, _CAP)
        return cls(seed, profile, sk, dataset, bool(auto), behaviour)


@dataclass(frozen=True, slots=True)
class TaskState:
    """One task of ours: its id and the steps started in this process."""

    task_id: bytes
    asked: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Chain:
    """What the chain says about one task at the head."""

    task: Task
    status: Status
    head_time: int
    get: Any  # Callable[[bytes], bytes | None]: the contract state

    def workers(self) -> list[tuple[bytes, Worker]]:
        """Joined workers in join order, with their records."""
        out = []
        for w in task_workers(self.get, self.task.task_id):
            rec = load_worker(self.get, self.task.task_id, w)
            assert rec is not None, "every listed worker has a record"
            out.append((w, rec))
        return out

    def active(self) -> list[bytes]:
        """Workers still in the task (no missed deadline), in join order."""
        return [w for w, rec in self.workers() if rec.state == WorkerState.ACTIVE]

    def record(self, tag: bytes, round_: int, *parts: bytes) -> bytes | None:
        """A per-round contract record (``u`` submission, ``m`` model, ``b``/``a``/``c``)."""
        value: bytes | None = self.get(round_key(tag, self.task.task_id, round_, *parts))
        return value

    def records(self, tag: bytes, round_: int) -> list[Any]:
        """A per-round list record (``b`` blinded, ``a`` accuracies, ``c`` selection)."""
        return read_list(self.get, round_key(tag, self.task.task_id, round_))

    def blob(self, name: bytes) -> bytes | None:
        """A complete blob's bytes."""
        return blob_bytes(self.get, name)

    @property
    def spec_bytes(self) -> bytes:
        """The spec as the jobs take it."""
        return pack(self.task.spec.to_obj())


def chain_of(task_id: bytes, ctx: RoleContext) -> Chain | None:
    """The task as the chain view has it, or None if the chain does not know it."""
    get = ctx.chain.contract_state
    try:
        task, status = task_status(get, task_id)
    except ValidationError:
        return None
    return Chain(task, status, ctx.chain.head().timestamp, get)


def head_time(ctx: RoleContext) -> int:
    """The head's block time: what deadlines are compared with."""
    return ctx.chain.head().timestamp


def settings(ctx: RoleContext) -> Settings | None:
    """The role's settings, if the daemon configured it."""
    raw = ctx.store.get(CONFIG)
    return None if raw is None else Settings.decode(raw)


def configure(event: Event, ctx: RoleContext) -> Result:
    """Keep a role's settings; the first seed is kept across restarts (deterministic jobs)."""
    assert isinstance(event, SflConfigured)
    old = settings(ctx)
    seed = event.seed if old is None else old.seed
    new = Settings(seed, event.profile, event.secret_key, event.dataset, event.auto_join,
                   event.behaviour)
    return None, [StorePut(CONFIG, new.encode()), log("sfl-configured", role=event.role)]


def derive_seed(s: Settings, label: str, task_id: bytes, round_: int) -> bytes:
    """The seed of one job: SHA-256 over the role's secret seed, the step, task and round."""
    return hashlib.sha256(b"crowdmesh/sfl-job/1\x00" + s.seed + label.encode() + b"\x00"
                          + task_id + round_.to_bytes(8, "big")).digest()


def round_bytes(round_: int) -> bytes:
    """A round in store keys (u16, as the contract's keys)."""
    return round_.to_bytes(2, "big")


def ask(state: TaskState, step: str, effects: list[Effect]) -> Result:
    """Start ``step`` once per process: its effects, or nothing if it was started already."""
    if step in state.asked:
        return state, []
    return replace(state, asked=state.asked | {step}), effects


def beacon(state: TaskState, role_name: str, deadline: int, ctx: RoleContext) -> Result:
    """Make sure a block past ``deadline`` (block time) will come while we wait on it.

    Why: with on-demand mining a block comes only with a transaction, and a step that waits
    for a deadline (a worker who never submits, too few joiners, a stalled party) waits for a
    block past it. So: a wake-up once the deadline passed on our clock, and then, if the head
    is still not past it, one no-op call (a self-transfer of 1) that brings that block. Asked
    once per deadline (stable call id); nothing once the head is past the deadline.
    """
    if head_time(ctx) > deadline:
        return state, []
    if ctx.now <= deadline:
        wake = ScheduleAt(deadline + 1, SflTaskSeen(role_name, state.task_id.hex()))
        return ask(state, f"wake{deadline}", [wake])
    me = ctx.identity.account
    if not me:
        return state, []
    call = SubmitCall(f"beacon{deadline}/tick", TRANSFER, transfer_payload(me, 1))
    return ask(state, f"beacon{deadline}", [call, log("sfl-deadline-beacon",
                                                      task=state.task_id.hex(),
                                                      deadline=deadline)])


TIMEOUT = "timeout"  # step keys ``timeout<deadline>``: one call per node per deadline
_STALE_TIMEOUT = frozenset({"sfl-wrong-phase", "sfl-unknown-task"})  # someone else was first


def stall_timeout(state: TaskState, chain: Chain, ctx: RoleContext, role_name: str,
                  blamed: frozenset[str], grace: int = 0) -> Result:
    """Abort the task once the party its phase waits for (one of ``blamed``) is late.

    Late means a block past ``stall_at + grace`` is on chain (block time, as the contract
    checks). Until then :func:`beacon` makes sure such a block comes. The call id names the
    deadline, so a node sends at most one ``sfl-timeout`` per deadline; if another node's
    timeout lands first, the refusal (``sfl-wrong-phase``) is dropped quietly
    (:func:`call_rejected`). ``grace`` lets backups (workers) wait for the first in line.
    """
    status = chain.status
    if WAITING_ON.get(status.phase) not in blamed:
        return state, []
    deadline = status.stall_at + grace
    if head_time(ctx) <= deadline:
        return beacon(state, role_name, deadline, ctx)
    step = f"{TIMEOUT}{deadline}"
    call = SubmitCall(f"{step}/abort", KIND_TIMEOUT, timeout_payload(state.task_id))
    return ask(state, step, [call, log("sfl-timing-out", task=state.task_id.hex(),
                                       phase=status.phase.name.lower(),
                                       stalled=WAITING_ON[status.phase])])


def step_of(ident: str) -> str:
    """The step a job id or call id belongs to (``r0-train/submit`` → ``r0-train``)."""
    return ident.split("/", 1)[0]


def upload(step: str, data: bytes, ctx: RoleContext) -> tuple[bytes, list[Effect]]:
    """(blob hash, the ``blob-part`` calls that put ``data`` on chain); none if it is there."""
    name = blob_hash(data)
    if blob_info(ctx.chain.contract_state, name) is not None:
        return name, []
    calls: list[Effect] = [SubmitCall(f"{step}/blob-{name[:8].hex()}-{i}", BLOB_PART, part)
                           for i, part in enumerate(split_blob(data))]
    return name, calls


def log(event: str, **fields: object) -> LogEvent:
    """A structured log line, fields sorted (never a secret)."""
    return LogEvent(event, tuple(sorted((k, str(v)) for k, v in fields.items())))


def task_of(instance: str) -> bytes | None:
    """The task id an instance key names (None for ``""`` or garbage)."""
    try:
        task_id = bytes.fromhex(instance)
    except ValueError:
        return None
    return task_id if len(task_id) == 32 else None


def open_task(role_name: str, task_id: bytes, ctx: RoleContext) -> list[Effect]:
    """Mark ``task_id`` as ours and wake its instance."""
    return [StorePut(TASKS + task_id, b""), ScheduleAt(ctx.now, SflTaskSeen(role_name,
                                                                              task_id.hex()))]


def resume_all(role_name: str, ctx: RoleContext) -> list[Effect]:
    """One :class:`SflTaskSeen` per kept task (the restart path)."""
    return [ScheduleAt(ctx.now, SflTaskSeen(role_name, key[len(TASKS):].hex()))
            for key, _ in ctx.store.items(TASKS)]


def forget(task_id: bytes, ctx: RoleContext) -> list[Effect]:
    """Delete a finished task's store keys (the CSP's ``p/`` and ``s/`` audit records stay)."""
    keys = [k for prefix in (TASKS, MODELS) for k, _ in ctx.store.items(prefix + task_id)]
    return [StoreDelete(k) for k in keys]


def created_tasks(event: Event) -> list[tuple[bytes, bytes, bytes]]:
    """``(task, requester, csp)`` of every ``sfl-created`` contract event in a block."""
    assert isinstance(event, BlockConnected)
    found = []
    for e in (e for tx in event.txs for e in tx.events if e.name == "sfl-created"):
        task, requester, csp = e.fields[:3]
        if isinstance(task, bytes) and isinstance(requester, bytes) and isinstance(csp, bytes):
            found.append((task, requester, csp))
    return found


def block_keys(event: Event, role: Role, live: frozenset[str],
               ctx: RoleContext) -> Iterable[str]:
    """A block concerns the singleton ``""`` (new tasks) and every live task instance."""
    return sorted({key for key in live if task_of(key) is not None} | {""})


# -- handlers every CrowdSFL role shares ----------------------------------------------------------

Step = Callable[[TaskState, Chain, RoleContext], Result]
PhaseTable = Mapping[Phase, Step]


def warming(step: Step, job: Callable[..., bytes],
            args: Callable[[Chain], tuple[object, ...]]) -> Step:
    """``step``, plus once per process the job ``job(*args(chain))`` that fills a key-table
    cache while the task is joining (its result is dropped: no finisher knows ``warm``)."""
    def both(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
        state, effects = step(state, chain, ctx)
        state, warm = ask(state, "warm", [RunJob("warm", job, args(chain))])
        return state, [*effects, *warm]
    return both


def warming_task_keys(step: Step) -> Step:
    """``step`` with the task keys' tables warmed (the CSP and the requester need them)."""
    return warming(step, warm_task_keys_job,
                   lambda c: (c.spec_bytes, c.task.h_csp, c.task.h_req))


def reconcile(state: TaskState, ctx: RoleContext, table: PhaseTable) -> Result:
    """Do what the task's phase asks of this role (nothing for a task the chain lacks)."""
    chain = chain_of(state.task_id, ctx)
    if chain is None:
        return state, []
    step = table.get(chain.status.phase)
    return (state, []) if step is None else step(state, chain, ctx)


def task_seen(state: TaskState | None, event: Event, ctx: RoleContext,
              table: PhaseTable) -> Result:
    """Create (or wake) a task instance and reconcile it with the chain."""
    assert isinstance(event, SflTaskSeen)
    task_id = task_of(event.instance)
    if task_id is None:
        return state, []
    if state is None and ctx.store.get(TASKS + task_id) is None:
        return None, []  # a late wake-up (``beacon``) for a task that has ended here
    return reconcile(state or TaskState(task_id), ctx, table)


Finishers = Mapping[str, Callable[[TaskState, JobFinished, RoleContext], Result]]


def job_finished(state: TaskState | None, event: Event, ctx: RoleContext,
                 finishers: Finishers) -> Result:
    """Hand a finished job to its role's finisher by the job's kind (unknown kind: no-op)."""
    assert isinstance(event, JobFinished)
    kind = step_of(event.job_id).split("-", 1)[-1]
    if state is None or kind not in finishers:
        return state, []
    return finishers[kind](state, event, ctx)


def job_failed(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A job refused its input: logged; a full pool frees the step for the next block."""
    assert isinstance(event, JobFailed)
    failed = log("sfl-job-failed", task=event.instance, job=event.job_id, code=event.code)
    if state is None:
        return None, [failed]
    if event.code == "jobs-full":
        state = replace(state, asked=state.asked - {step_of(event.job_id)})
    return state, [failed]


def call_rejected(state: TaskState | None, event: Event, ctx: RoleContext) -> Result:
    """A call refused for good: logged; its step may start again on a later block if the chain
    still asks for it."""
    assert isinstance(event, CallRejected)
    if step_of(event.call_id).startswith(TIMEOUT) and event.code in _STALE_TIMEOUT:
        return state, []  # another node's timeout (or the party) was first: nothing to redo
    refused = log("sfl-call-rejected", task=event.instance, call=event.call_id, code=event.code)
    if state is None:
        return None, [refused]
    return replace(state, asked=state.asked - {step_of(event.call_id)}), [refused]


def finished(state: TaskState, chain: Chain, ctx: RoleContext) -> Result:
    """A settled or aborted task: the instance ends."""
    return None, [log("sfl-task-done", task=state.task_id.hex(),
                      phase=chain.status.phase.name.lower()), *forget(state.task_id, ctx)]
