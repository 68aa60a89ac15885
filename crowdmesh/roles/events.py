"""Local events the node feeds to its roles (past-tense nouns, as STYLE asks).

Invariant: every event is a frozen slotted dataclass with a unique ``TYPE`` tag; the tags share
one namespace with the wire messages' tags, because ``roles/dispatch.py`` routes both through one
table. Events carry plain values only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "EVENT_TYPES",
    "BlockMined",
    "CompetingTipSeen",
    "Event",
    "GenerateRequested",
    "HeadChanged",
    "MempoolChanged",
    "MiningMode",
    "MiningModeSet",
    "MiningRetryDue",
    "MiningStopped",
]

MiningMode = Literal["off", "continuous", "on-demand"]


class Event:
    """Base of every local event."""

    __slots__ = ()
    TYPE: ClassVar[str]


@dataclass(frozen=True, slots=True)
class HeadChanged(Event):
    """The main chain's tip is now ``head`` at ``height`` (after an import or a reorg)."""

    TYPE: ClassVar[str] = "head-changed"
    head: bytes
    height: int


@dataclass(frozen=True, slots=True)
class MempoolChanged(Event):
    """The mempool now holds ``size`` transactions."""

    TYPE: ClassVar[str] = "mempool-changed"
    size: int


@dataclass(frozen=True, slots=True)
class MiningModeSet(Event):
    """The operator set the mining mode (config, SIGHUP or the control socket)."""

    TYPE: ClassVar[str] = "mining-mode-set"
    mode: MiningMode


@dataclass(frozen=True, slots=True)
class GenerateRequested(Event):
    """The operator asked for ``count`` more blocks (regtest-style ``generate``)."""

    TYPE: ClassVar[str] = "generate-requested"
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")


@dataclass(frozen=True, slots=True)
class BlockMined(Event):
    """Our proof-of-work search found block ``block_hash`` and the chain accepted it."""

    TYPE: ClassVar[str] = "block-mined"
    block_hash: bytes
    height: int


@dataclass(frozen=True, slots=True)
class CompetingTipSeen(Event):
    """A peer's block ``tip`` at ``height`` ties our head's work (a fork nobody extends)."""

    TYPE: ClassVar[str] = "competing-tip-seen"
    height: int
    tip: bytes


@dataclass(frozen=True, slots=True)
class MiningStopped(Event):
    """The search on ``parent`` ended without a block joining the chain (no template could be
    built, or the block it found was rejected); nothing will restart it by itself."""

    TYPE: ClassVar[str] = "mining-stopped"
    parent: bytes


@dataclass(frozen=True, slots=True)
class MiningRetryDue(Event):
    """The pause after a :class:`MiningStopped` is over: mine again if still wanted."""

    TYPE: ClassVar[str] = "mining-retry-due"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (HeadChanged, MempoolChanged, MiningModeSet, GenerateRequested, BlockMined,
                CompetingTipSeen, MiningStopped, MiningRetryDue)
}
