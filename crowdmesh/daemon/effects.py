"""The one effect executor: carries out what the pure roles return.

Invariants:
- One table maps each effect type (``roles.effects.effect_types()``) to one executor method; a
  test checks the table is complete, so adding an effect without an executor fails loudly.
- :meth:`EffectExecutor.run` never blocks the caller: effects that need I/O (publishing) are
  started as tasks in the node's nursery, in order; mining control, store writes, calls, jobs
  and timers are applied immediately (they write, start or cancel something and return).
- Effects run in the order the roles returned them, so a ``StorePut`` before a ``SubmitCall``
  is on disk before the call can leave the node. Consecutive store effects of one role in one
  dispatch (``StorePut``/``StoreDelete``) are written in ONE role-store transaction, so facts
  that belong together are never half written.
- Instance effects act for the role instance that returned them (``Routed``): store writes go
  to that role's namespace, call and job outcomes come back addressed to that instance.
- Errors from outside input inside a spawned effect (``DecodeError``, ``ValidationError``: a
  transaction a role built from peer data, a block too large to gossip, a spatial message the
  gossip checks refuse) are logged as
  ``event=effect-failed effect=<name> code=<code>`` and the effect is dropped; anything else
  propagates out of the nursery (a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from crowdmesh.daemon.jobs import JobOutcome
from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import DecodeError, UsageError, ValidationError
from crowdmesh.roles.dispatch import Routed
from crowdmesh.roles.effects import (
    CancelJob,
    Effect,
    LogEvent,
    MineOn,
    PublishBlock,
    PublishTx,
    RunJob,
    ScheduleAt,
    StopMining,
    StoreDelete,
    StorePut,
    SubmitCall,
    SubmitTx,
)
from crowdmesh.roles.events import Event, JobFailed, JobFinished
from crowdmesh.roles.spatial_events import PublishSpatial

__all__ = ["NODE", "EffectExecutor", "EffectPorts", "Origin", "job_key"]

log = logging.getLogger("crowdmesh.node")
BytesPort = Callable[[bytes], Awaitable[object]]
StoreWrite = tuple[str, bytes, bytes | None]
Origin = tuple[str, str]  # (role name, instance key)
NODE: Origin = ("", "")  # effects the node itself asks for (no role instance)
_SEP = "\x1f"


def _unwired(*args: object) -> Any:
    raise RuntimeError("effect port not wired for this executor")


# The value each store effect writes (None deletes); other effects are not store writes.
_STORE_VALUE: dict[type[Effect], Callable[[Any], bytes | None]] = {
    StorePut: lambda e: e.value,
    StoreDelete: lambda e: None,
}


def _store_write(item: Routed) -> StoreWrite | None:
    """The role-store write an effect stands for (in its role's namespace), if it is one."""
    value_of = _STORE_VALUE.get(type(item.effect))
    if value_of is None:
        return None
    return (item.role.value, item.effect.key, value_of(item.effect))  # type: ignore[attr-defined]


def job_key(origin: Origin, job_id: str) -> str:
    """The job pool's id of ``job_id`` of role instance ``origin``."""
    return _SEP.join((*origin, job_id))


@dataclass(frozen=True, slots=True)
class EffectPorts:
    """The node operations effects map onto (wired by ``daemon/node.py``)."""

    mine_on: Callable[[bytes, float, float, float], None]
    stop_mining: Callable[[], None]
    publish_block: Callable[[bytes], Awaitable[None]]
    publish_tx: Callable[[bytes], Awaitable[None]]
    submit_tx: Callable[[bytes], Awaitable[object]]
    deliver: Callable[[Event], None]
    submit_call: Callable[[str, str, str, str, bytes], None] = _unwired
    start_job: Callable[[str, Callable[..., object], tuple[object, ...]], bool] = _unwired
    cancel_job: Callable[[str], bool] = _unwired
    store_apply: Callable[[Sequence[StoreWrite]], None] = _unwired
    schedule: Callable[[float, Event], None] = _unwired
    publish_spatial: Callable[[str, bytes, int], Awaitable[None]] = _unwired
    """``(kind, raw, cell)``: gossip a spatial message (``daemon/spatialnet.py``)."""


class EffectExecutor:
    """Executes effects through :class:`EffectPorts` inside ``nursery``."""

    def __init__(self, ports: EffectPorts, nursery: trio.Nursery) -> None:
        self._ports = ports
        self._nursery = nursery
        self.executed: dict[str, int] = {}
        self._table: dict[type[Effect], Callable[[Any, Origin], None]] = {
            MineOn: self._mine_on,
            StopMining: lambda e, o: ports.stop_mining(),
            PublishBlock: lambda e, o: self._spawn(e, ports.publish_block, e.block),
            PublishTx: lambda e, o: self._spawn(e, ports.publish_tx, e.tx),
            SubmitTx: lambda e, o: self._spawn(e, ports.submit_tx, e.tx),
            ScheduleAt: lambda e, o: ports.schedule(e.when, e.event),
            LogEvent: self._log,
            SubmitCall: lambda e, o: ports.submit_call(*o, e.call_id, e.kind, e.payload),
            RunJob: self._start_job,
            CancelJob: self._cancel_job,
            StorePut: lambda e, o: ports.store_apply([(o[0], e.key, e.value)]),
            StoreDelete: lambda e, o: ports.store_apply([(o[0], e.key, None)]),
            PublishSpatial: self._publish_spatial,
        }

    def handles(self) -> frozenset[type[Effect]]:
        """The effect types this executor knows."""
        return frozenset(self._table)

    def run(self, effects: Sequence[Effect], origin: Origin = NODE) -> None:
        """Carry out ``effects`` (all asked for by ``origin``) in order."""
        for effect in effects:
            self._table[type(effect)](effect, origin)
            self.executed[effect.NAME] = self.executed.get(effect.NAME, 0) + 1

    def run_routed(self, routed: Sequence[Routed]) -> None:
        """Carry out effects returned by dispatch, each for its own role instance."""
        writes: list[StoreWrite] = []
        for item in routed:
            write = _store_write(item)
            if write is not None and (not writes or writes[0][0] == write[0]):
                writes.append(write)
                continue
            self._flush(writes)
            if write is not None:
                writes.append(write)
                continue
            self.run([item.effect], (item.role.value, item.instance))
        self._flush(writes)

    def _flush(self, writes: list[StoreWrite]) -> None:
        if writes:
            self._ports.store_apply(list(writes))
            for _, _, value in writes:
                name = StoreDelete.NAME if value is None else StorePut.NAME
                self.executed[name] = self.executed.get(name, 0) + 1
            writes.clear()

    def job_done(self, outcome: JobOutcome) -> None:
        """Deliver a finished job's outcome to the instance that started it."""
        role, instance, own_id = outcome.job_id.split(_SEP, 2)
        if outcome.error is None:
            self._ports.deliver(JobFinished(role, instance, own_id, outcome.result))
        else:
            self._ports.deliver(JobFailed(role, instance, own_id, outcome.error, outcome.detail))

    def _start_job(self, effect: RunJob, origin: Origin) -> None:
        try:
            self._ports.start_job(job_key(origin, effect.job_id), effect.fn, effect.args)
        except UsageError as exc:  # jobs-full: the instance hears it and may retry later
            self.job_done(JobOutcome(job_key(origin, effect.job_id), error=exc.code,
                                     detail=exc.detail))

    def _cancel_job(self, effect: CancelJob, origin: Origin) -> None:
        self._ports.cancel_job(job_key(origin, effect.job_id))

    def _mine_on(self, effect: MineOn, origin: Origin) -> None:
        self._ports.mine_on(effect.parent, effect.gather_ms / 1000, effect.quiet_ms / 1000,
                            effect.quiet_many_ms / 1000)

    def _publish_spatial(self, effect: PublishSpatial, origin: Origin) -> None:
        publish = self._ports.publish_spatial
        self._spawn(effect, lambda raw: publish(effect.kind, raw, effect.cell), effect.raw)

    def _spawn(self, effect: Effect, port: BytesPort, raw: bytes) -> None:
        self._nursery.start_soon(self._guarded, effect.NAME, port, raw)

    @staticmethod
    async def _guarded(name: str, port: BytesPort, raw: bytes) -> None:
        try:
            await port(raw)
        except (DecodeError, ValidationError) as exc:
            log_event(log, "effect-failed", logging.WARNING, effect=name, code=exc.code,
                      detail=exc.detail)

    def _log(self, effect: LogEvent, origin: Origin) -> None:
        fields: dict[str, Any] = dict(effect.fields)
        log_event(log, effect.event, logging.INFO, **fields)
