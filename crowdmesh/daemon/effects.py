"""The one effect executor: carries out what the pure roles return.

Invariants:
- One table maps each effect type in ``roles.effects.EFFECT_TYPES`` to one executor method; a
  test checks the table is complete, so adding an effect without an executor fails loudly.
- :meth:`EffectExecutor.run` never blocks the caller: effects that need I/O (publishing,
  scheduled deliveries) are started as tasks in the node's nursery, in order; mining control is
  applied immediately (it only starts or cancels a task).
- Errors from outside input inside a spawned effect (``DecodeError``, ``ValidationError``: a
  transaction a role built from peer data, a block too large to gossip) are logged as
  ``event=effect-failed effect=<name> code=<code>`` and the effect is dropped; anything else
  propagates out of the nursery (a bug).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.roles.effects import (
    Effect,
    LogEvent,
    MineOn,
    PublishBlock,
    PublishTx,
    ScheduleAt,
    StopMining,
    SubmitTx,
)
from crowdmesh.roles.events import Event

__all__ = ["EffectExecutor", "EffectPorts"]

log = logging.getLogger("crowdmesh.node")
BytesPort = Callable[[bytes], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class EffectPorts:
    """The node operations effects map onto (wired by ``daemon/node.py``)."""

    mine_on: Callable[[bytes, float], None]
    stop_mining: Callable[[], None]
    publish_block: Callable[[bytes], Awaitable[None]]
    publish_tx: Callable[[bytes], Awaitable[None]]
    submit_tx: Callable[[bytes], Awaitable[object]]
    deliver: Callable[[Event], None]


class EffectExecutor:
    """Executes effects through :class:`EffectPorts` inside ``nursery``."""

    def __init__(self, ports: EffectPorts, nursery: trio.Nursery) -> None:
        self._ports = ports
        self._nursery = nursery
        self.executed: dict[str, int] = {}
        self._table: dict[type[Effect], Callable[[Effect], None]] = {
            MineOn: self._mine_on,
            StopMining: lambda e: ports.stop_mining(),
            PublishBlock: self._publish_block,
            PublishTx: self._publish_tx,
            SubmitTx: self._submit_tx,
            ScheduleAt: self._schedule_at,
            LogEvent: self._log,
        }

    def handles(self) -> frozenset[type[Effect]]:
        """The effect types this executor knows."""
        return frozenset(self._table)

    def run(self, effects: list[Effect]) -> None:
        """Carry out ``effects`` in order."""
        for effect in effects:
            self._table[type(effect)](effect)
            self.executed[effect.NAME] = self.executed.get(effect.NAME, 0) + 1

    def _mine_on(self, effect: Effect) -> None:
        assert isinstance(effect, MineOn)
        self._ports.mine_on(effect.parent, effect.gather_ms / 1000)

    def _publish_block(self, effect: Effect) -> None:
        assert isinstance(effect, PublishBlock)
        self._spawn(effect, self._ports.publish_block, effect.block)

    def _publish_tx(self, effect: Effect) -> None:
        assert isinstance(effect, PublishTx)
        self._spawn(effect, self._ports.publish_tx, effect.tx)

    def _submit_tx(self, effect: Effect) -> None:
        assert isinstance(effect, SubmitTx)
        self._spawn(effect, self._ports.submit_tx, effect.tx)

    def _spawn(self, effect: Effect, port: BytesPort, raw: bytes) -> None:
        self._nursery.start_soon(self._guarded, effect.NAME, port, raw)

    @staticmethod
    async def _guarded(name: str, port: BytesPort, raw: bytes) -> None:
        try:
            await port(raw)
        except (DecodeError, ValidationError) as exc:
            log_event(log, "effect-failed", logging.WARNING, effect=name, code=exc.code,
                      detail=exc.detail)

    def _schedule_at(self, effect: Effect) -> None:
        assert isinstance(effect, ScheduleAt)
        self._nursery.start_soon(self._deliver_at, effect.when, effect.event)

    async def _deliver_at(self, when: int, event: Event) -> None:
        await trio.sleep(max(0.0, when - time.time()))
        self._ports.deliver(event)

    def _log(self, effect: Effect) -> None:
        assert isinstance(effect, LogEvent)
        fields: dict[str, Any] = dict(effect.fields)
        log_event(log, effect.event, logging.INFO, **fields)
