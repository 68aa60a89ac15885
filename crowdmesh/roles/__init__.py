"""crowdmesh.roles: pure role state machines returning effects, and the one dispatch table.

Invariant: nothing here does I/O or reads a clock; the daemon feeds events and executes effects.
"""

from crowdmesh.roles.dispatch import DISPATCH, Role, dispatch
from crowdmesh.roles.effects import (
    EFFECT_TYPES,
    Effect,
    LogEvent,
    MineOn,
    PublishBlock,
    PublishTx,
    ScheduleAt,
    StopMining,
    SubmitTx,
)
from crowdmesh.roles.events import (
    EVENT_TYPES,
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
from crowdmesh.roles.miner import MinerState, RoleContext, wants_to_mine

__all__ = [
    "DISPATCH",
    "EFFECT_TYPES",
    "EVENT_TYPES",
    "BlockMined",
    "CompetingTipSeen",
    "Effect",
    "Event",
    "GenerateRequested",
    "HeadChanged",
    "LogEvent",
    "MempoolChanged",
    "MineOn",
    "MinerState",
    "MiningModeSet",
    "MiningRetryDue",
    "MiningStopped",
    "PublishBlock",
    "PublishTx",
    "Role",
    "RoleContext",
    "ScheduleAt",
    "StopMining",
    "SubmitTx",
    "dispatch",
    "wants_to_mine",
]
