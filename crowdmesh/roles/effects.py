"""The closed set of effects a role may ask the daemon to perform.

Invariants:
- Effects are frozen slotted dataclasses holding plain values (bytes, ints, text): roles stay
  pure and never touch the network, the chain store or a clock; ``daemon/effects.py`` is the
  one executor, with one table entry per effect type (:data:`EFFECT_TYPES`).
- Chain objects travel as their canonical encodings, so an effect is cheap to log and compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from crowdmesh.roles.events import Event

__all__ = [
    "EFFECT_TYPES",
    "Effect",
    "LogEvent",
    "MineOn",
    "PublishBlock",
    "PublishTx",
    "ScheduleAt",
    "StopMining",
    "SubmitTx",
]


class Effect:
    """Base of every effect."""

    __slots__ = ()
    NAME: ClassVar[str]


@dataclass(frozen=True, slots=True)
class MineOn(Effect):
    """Start (or restart) proof-of-work search for a block on top of ``parent``."""

    NAME: ClassVar[str] = "mine-on"
    parent: bytes
    height: int
    gather_ms: int = 0  # wait this long first, so one block carries a burst of transactions


@dataclass(frozen=True, slots=True)
class StopMining(Effect):
    """Stop any proof-of-work search (finishes the current batch at most)."""

    NAME: ClassVar[str] = "stop-mining"


@dataclass(frozen=True, slots=True)
class PublishBlock(Effect):
    """Gossip a block (canonical encoding) to the network."""

    NAME: ClassVar[str] = "publish-block"
    block: bytes


@dataclass(frozen=True, slots=True)
class PublishTx(Effect):
    """Gossip a transaction (canonical encoding) to the network."""

    NAME: ClassVar[str] = "publish-tx"
    tx: bytes


@dataclass(frozen=True, slots=True)
class SubmitTx(Effect):
    """Admit a transaction of our own to the mempool and gossip it."""

    NAME: ClassVar[str] = "submit-tx"
    tx: bytes


@dataclass(frozen=True, slots=True)
class ScheduleAt(Effect):
    """Deliver ``event`` back to the roles at unix time ``when`` (timeouts, deadlines)."""

    NAME: ClassVar[str] = "schedule-at"
    when: int
    event: Event


@dataclass(frozen=True, slots=True)
class LogEvent(Effect):
    """Write one structured log line: ``event`` plus sorted key=value ``fields``."""

    NAME: ClassVar[str] = "log"
    event: str
    fields: tuple[tuple[str, str], ...] = ()


EFFECT_TYPES: tuple[type[Effect], ...] = (
    MineOn, StopMining, PublishBlock, PublishTx, SubmitTx, ScheduleAt, LogEvent,
)
