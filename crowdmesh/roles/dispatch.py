"""The one dispatch table: message or event type tag → (role handler, roles that run it).

Invariants:
- :data:`DISPATCH` is static (built at import, never mutated). Switching roles per message is a
  table lookup plus the node's role set, never a flag checked inside a handler.
- :func:`dispatch` runs the handler once per role the node has among the entry's roles, with
  that role's state, and returns the new states and the effects in order. An unknown tag or a
  node without any of the entry's roles is a ``ProtocolViolation`` (``no-handler`` /
  ``wrong-role``), so the caller can drop and count it.
- Handlers never raise on well-formed input; the states are immutable, so a failed dispatch
  leaves the caller's states untouched.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from crowdmesh.errors import ProtocolViolation
from crowdmesh.roles import miner
from crowdmesh.roles.effects import Effect
from crowdmesh.roles.events import (
    BlockMined,
    CompetingTipSeen,
    Event,
    GenerateRequested,
    HeadChanged,
    MempoolChanged,
    MiningModeSet,
    MiningRetryDue,
    MiningStopped,
)

__all__ = ["DISPATCH", "Handler", "Role", "dispatch"]


class Role(enum.Enum):
    """Roles a node can take (DESIGN: requester, worker, miner, CSP)."""

    MINER = "miner"
    REQUESTER = "requester"
    WORKER = "worker"
    CSP = "csp"


Handler = Callable[[Any, Event, miner.RoleContext], tuple[Any, list[Effect]]]

_MINER = frozenset({Role.MINER})

DISPATCH: Mapping[str, tuple[Handler, frozenset[Role]]] = {
    HeadChanged.TYPE: (miner.handle_head_changed, _MINER),
    MempoolChanged.TYPE: (miner.handle_mempool_changed, _MINER),
    MiningModeSet.TYPE: (miner.handle_mining_mode_set, _MINER),
    GenerateRequested.TYPE: (miner.handle_generate_requested, _MINER),
    BlockMined.TYPE: (miner.handle_block_mined, _MINER),
    CompetingTipSeen.TYPE: (miner.handle_competing_tip_seen, _MINER),
    MiningStopped.TYPE: (miner.handle_mining_stopped, _MINER),
    MiningRetryDue.TYPE: (miner.handle_mining_retry_due, _MINER),
}


def dispatch(
    roles: frozenset[Role], states: Mapping[Role, Any], event: Event, ctx: miner.RoleContext
) -> tuple[dict[Role, Any], list[Effect]]:
    """Route ``event`` to its handler for each of the node's roles that takes it.

    Raises:
        ProtocolViolation: ``no-handler`` for an unknown type, ``wrong-role`` when the node
            has none of the roles the entry names.
    """
    entry = DISPATCH.get(event.TYPE)
    if entry is None:
        raise ProtocolViolation("no-handler", event.TYPE)
    handler, allowed = entry
    mine = sorted(roles & allowed, key=lambda r: r.value)
    if not mine:
        raise ProtocolViolation("wrong-role", event.TYPE)
    new_states = dict(states)
    effects: list[Effect] = []
    for role in mine:
        new_states[role], produced = handler(new_states[role], event, ctx)
        effects.extend(produced)
    return new_states, effects
