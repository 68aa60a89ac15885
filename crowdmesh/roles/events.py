"""Local events the node feeds to its roles (past-tense nouns, as STYLE asks).

Invariants:
- Every event is a frozen slotted dataclass with a unique ``TYPE`` tag; the tags share one
  namespace with the wire messages' tags, because ``roles/dispatch.py`` routes both through one
  table. Events carry plain values only.
- The registry is built from the classes themselves (:func:`event_types` walks the subclasses
  of :class:`Event`), so an event a protocol module defines can never be missing from it; a
  test checks the tags are unique.
- Chain events: after every import, reorg or sync batch the node delivers, in chain order, one
  :class:`BlockDisconnected` per block leaving the main chain (newest first), then one
  :class:`BlockConnected` per block joining it (oldest first), each with that block's contract
  events, then :class:`HeadChanged`. They are hints: a role decides from the chain view.
- Outcome events (:class:`CallIncluded`, :class:`CallReverted`, :class:`CallRejected`,
  :class:`JobFinished`, :class:`JobFailed`) are addressed to the role instance that asked
  (``role``, ``instance``), and only it receives them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

from crowdmesh.chain.contracts.base import Event as ContractEvent

__all__ = [
    "EVENT_TYPES",
    "AddressedEvent",
    "BlockConnected",
    "BlockDisconnected",
    "BlockMined",
    "CallIncluded",
    "CallRejected",
    "CallReverted",
    "CompetingTipSeen",
    "Event",
    "GenerateRequested",
    "HeadChanged",
    "JobFailed",
    "JobFinished",
    "MempoolChanged",
    "MiningMode",
    "MiningModeSet",
    "MiningRetryDue",
    "MiningStopped",
    "RolesStarted",
    "TxOutcome",
    "event_types",
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
    miner: bytes = b""  # the tip's reward address (the miner role tells sole mining apart)


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
class GenerateCancelled(Event):
    """``count`` blocks asked by ``generate`` are no longer wanted (its caller left)."""

    TYPE: ClassVar[str] = "generate-cancelled"
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


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """One transaction of a connected block and the contract events it produced."""

    txid: bytes
    sender: bytes
    kind: str
    events: tuple[ContractEvent, ...]


@dataclass(frozen=True, slots=True)
class BlockConnected(Event):
    """Block ``block_hash`` joined the main chain at ``height``."""

    TYPE: ClassVar[str] = "block-connected"
    block_hash: bytes
    height: int
    timestamp: int
    txs: tuple[TxOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockDisconnected(Event):
    """Block ``block_hash`` left the main chain (a reorg); its effects on state are undone."""

    TYPE: ClassVar[str] = "block-disconnected"
    block_hash: bytes
    height: int
    txs: tuple[TxOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class RolesStarted(Event):
    """The node started serving: every role rebuilds its instances from its store and the chain
    view (this is the restart path, and the only one). Nothing is live yet, so a role's route
    names the instances from ``ctx.store`` / ``ctx.chain`` (instance-key functions get the
    context)."""

    TYPE: ClassVar[str] = "roles-started"


@dataclass(frozen=True, slots=True)
class AddressedEvent(Event):
    """Base of the events only the role instance ``(role, instance)`` receives."""

    role: str
    instance: str


@dataclass(frozen=True, slots=True)
class CallIncluded(AddressedEvent):
    """Our contract call ``call_id`` is in main-chain block ``block_hash`` (delivered once per
    connected block that carries it: again after a reorg that re-includes it)."""

    TYPE: ClassVar[str] = "call-included"
    call_id: str
    txid: bytes
    block_hash: bytes
    height: int


@dataclass(frozen=True, slots=True)
class CallReverted(AddressedEvent):
    """The block that carried call ``call_id`` left the main chain (a ``CallIncluded`` for
    another block follows at once if the same import re-included it); the daemon resubmits it
    otherwise."""

    TYPE: ClassVar[str] = "call-reverted"
    call_id: str
    txid: bytes


@dataclass(frozen=True, slots=True)
class CallRejected(AddressedEvent):
    """Call ``call_id`` can never be included: refused with reject ``code``."""

    TYPE: ClassVar[str] = "call-rejected"
    call_id: str
    code: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class JobFinished(AddressedEvent):
    """Job ``job_id`` (CPU work run off the event loop) returned ``result``."""

    TYPE: ClassVar[str] = "job-finished"
    job_id: str
    result: object = None


@dataclass(frozen=True, slots=True)
class JobFailed(AddressedEvent):
    """Job ``job_id`` failed on bad input with reject ``code``."""

    TYPE: ClassVar[str] = "job-failed"
    job_id: str
    code: str
    detail: str = ""


def is_defined(cls: type) -> bool:
    """True iff ``cls`` is what its module names it: ``dataclass(slots=True)`` replaces the
    class it decorates, and the replaced one lingers in ``__subclasses__`` until collected."""
    module = sys.modules.get(cls.__module__)
    return module is not None and getattr(module, cls.__qualname__, None) is cls


def _concrete_subclasses(cls: type[Event]) -> list[type[Event]]:
    out: list[type[Event]] = []
    for sub in cls.__subclasses__():
        if "TYPE" in sub.__dict__ and is_defined(sub):
            out.append(sub)
        out.extend(_concrete_subclasses(sub))
    return out


def event_types() -> dict[str, type[Event]]:
    """Every event class defined so far, by tag (protocol modules add theirs on import).

    Raises:
        ValueError: two classes share a tag.
    """
    table: dict[str, type[Event]] = {}
    for cls in _concrete_subclasses(Event):
        if table.setdefault(cls.TYPE, cls) is not cls:
            raise ValueError(f"event tag {cls.TYPE!r} used twice")
    return table


# The built-in events only (a snapshot at import); :func:`event_types` is the live registry
# that also holds the events protocol modules define.
EVENT_TYPES: dict[str, type[Event]] = event_types()
