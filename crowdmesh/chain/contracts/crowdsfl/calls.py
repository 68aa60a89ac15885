"""One CrowdSFL call as the phase handlers see it, and the checks most handlers share.

Invariants:
- A :class:`Call` is built only after the payload matched its schema and the task exists; a
  handler reads the task and status from it and writes through ``call.state`` only.
- Role checks compare the sender with the task's requester or named CSP
  (``sfl-not-requester``, ``sfl-not-csp``); round checks compare the payload's round with the
  one the phase expects (``sfl-wrong-round``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from crowdmesh.chain.contracts.base import Event, TxContext
from crowdmesh.chain.contracts.crowdsfl.records import Phase, Status, Task, store_status
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = ["Call", "Handler", "expect_round", "move", "require_csp", "require_requester"]


@dataclass(frozen=True, slots=True)
class Call:
    """A decoded call on an existing task."""

    state: State
    tx: Transaction
    ctx: TxContext
    task: Task
    status: Status
    args: list[Any]

    @property
    def now(self) -> int:
        """Block time: every deadline is compared with it (DESIGN.md, deadlines in block time)."""
        return self.ctx.timestamp

    @property
    def sender(self) -> bytes:
        """The calling account."""
        return bytes(self.tx.sender)


Handler = Callable[[Call], tuple[Event, ...]]


def require_requester(c: Call) -> None:
    """Only the task's requester may make this call."""
    if c.sender != c.task.requester:
        raise ValidationError("sfl-not-requester")


def require_csp(c: Call) -> None:
    """Only the task's named CSP may make this call."""
    if c.sender != c.task.spec.csp:
        raise ValidationError("sfl-not-csp")


def expect_round(c: Call, round_: int) -> None:
    """The payload's round (first argument) must be ``round_``."""
    if c.args[0] != round_:
        raise ValidationError("sfl-wrong-round", f"want round {round_}, got {c.args[0]}")


def move(c: Call, phase: Phase, stall_after: int, **changes: Any) -> Status:
    """Enter ``phase``; the party it waits for is late ``stall_after`` seconds from now."""
    status = replace(c.status, phase=phase, stall_at=c.now + stall_after, **changes)
    store_status(c.state, c.task.task_id, status)
    return status
