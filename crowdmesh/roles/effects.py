"""The closed set of effects a role may ask the daemon to perform.

Invariants:
- Effects are frozen slotted dataclasses holding plain values (bytes, ints, text): roles stay
  pure and never touch the network, the chain store or a clock; ``daemon/effects.py`` is the
  one executor, with one table entry per effect type (:data:`EFFECT_TYPES`).
- Chain objects travel as their canonical encodings, so an effect is cheap to log and compare.
- The registry is built from the classes themselves (:func:`effect_types`), and the executor's
  table is checked against it by a test, so a new effect without an executor fails loudly.
- Effects that act for a role instance (``SubmitCall``, ``RunJob``, ``CancelJob``,
  ``StorePut``, ``StoreDelete``) are tagged by the dispatcher with the role and instance that
  returned them; their outcomes come back to that instance only. Store keys live in the role's
  own namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from crowdmesh.roles.events import Event, is_defined

__all__ = [
    "EFFECT_TYPES",
    "CancelJob",
    "Effect",
    "LogEvent",
    "MineOn",
    "PublishBlock",
    "PublishTx",
    "RunJob",
    "ScheduleAt",
    "StopMining",
    "StoreDelete",
    "StorePut",
    "SubmitCall",
    "SubmitTx",
    "effect_types",
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
    # why: start early once no transaction arrived for this long (0: always wait gather_ms)
    quiet_ms: int = 0
    # the quiet time while two or more senders are pooled: answers to one block from several
    # nodes arrive spread out, one sender's transactions arrive together
    quiet_many_ms: int = 0


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


@dataclass(frozen=True, slots=True)
class SubmitCall(Effect):
    """Ask the daemon to send contract call ``kind(payload)`` from the node's account.

    The daemon signs it (pending nonce, minimum fee), keeps it in the role store until it is
    final, resubmits it after a reorg drops it, and answers with ``CallIncluded`` /
    ``CallReverted`` / ``CallRejected``. ``call_id`` is unique per role instance; asking again
    with a known id does nothing, so a role may re-ask after a restart without sending twice.
    """

    NAME: ClassVar[str] = "submit-call"
    call_id: str
    kind: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RunJob(Effect):
    """Run ``fn(*args)`` (pure CPU work) off the event loop; answer ``JobFinished`` with its
    result or ``JobFailed`` with a reject code. A second request for a running ``job_id`` of
    the same instance does nothing."""

    NAME: ClassVar[str] = "run-job"
    job_id: str
    fn: Callable[..., object]
    args: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class CancelJob(Effect):
    """Cancel job ``job_id`` of this instance; no outcome event follows."""

    NAME: ClassVar[str] = "cancel-job"
    job_id: str


@dataclass(frozen=True, slots=True)
class StorePut(Effect):
    """Keep ``value`` at ``key`` in the role's private store (crash-safe, mode 0600, never on
    chain or in logs) before any later effect of the same batch runs."""

    NAME: ClassVar[str] = "store-put"
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class StoreDelete(Effect):
    """Forget ``key`` in the role's private store."""

    NAME: ClassVar[str] = "store-delete"
    key: bytes


def effect_types() -> tuple[type[Effect], ...]:
    """Every effect class defined so far (protocol modules may add theirs)."""
    found: list[type[Effect]] = []
    todo = list(Effect.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if "NAME" in cls.__dict__ and is_defined(cls):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return tuple(found)


# The built-in effects only (a snapshot at import); :func:`effect_types` is the live registry.
EFFECT_TYPES: tuple[type[Effect], ...] = effect_types()
