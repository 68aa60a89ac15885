"""The role host: feeds events to the node's pure roles and executes what they return.

Invariants:
- One place owns every role's per-instance state (``states[role][instance]``); only
  :meth:`RoleHost.deliver` changes it, through ``roles.dispatch.dispatch``.
- Delivery is never re-entrant: an event raised while effects run (a call rejected at once, a
  job finished) is queued and handled after the current one, in order. States are stored
  before the effects of an event run, so a nested event sees them.
- Chain events: :meth:`RoleHost.feed_import` turns one import (extension, reorg or an orphan
  chain adopted) into ``BlockDisconnected`` per block leaving the main chain (newest first),
  then ``BlockConnected`` per block joining it (oldest first), each carrying its contract
  events, then one ``HeadChanged``. Roles treat them as hints and read the chain view.
- Each role reads only its own namespace of the role store; the store, the chain view and the
  node's public identity reach handlers through ``RoleContext``, never a secret key.
- A node without roles delivers nothing (``deliver`` is a no-op).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from crowdmesh.chain.block import Block
from crowdmesh.chain.chain import ImportResult
from crowdmesh.chain.rules import Receipt
from crowdmesh.crypto.identity import Signer
from crowdmesh.daemon.effects import EffectExecutor
from crowdmesh.errors import NotFound
from crowdmesh.roles.context import ChainView, NodeIdentity, RoleContext, StoreView
from crowdmesh.roles.dispatch import DISPATCH, SINGLETON, Role, RoleStates, Table, dispatch
from crowdmesh.roles.events import (
    BlockConnected,
    BlockDisconnected,
    Event,
    HeadChanged,
    TxOutcome,
)

__all__ = ["RoleHost", "block_events"]

ReceiptsOf = Callable[[bytes], tuple[Receipt, ...]]


def _outcomes(block: Block, receipts: tuple[Receipt, ...]) -> tuple[TxOutcome, ...]:
    by_txid = {r.txid: r for r in receipts}
    return tuple(
        TxOutcome(tx.txid, tx.sender, tx.kind,
                  by_txid[tx.txid].events if tx.txid in by_txid else ())
        for tx in block.txs)


def block_events(result: ImportResult, receipts_of: ReceiptsOf) -> list[Event]:
    """The chain events one import produces, in chain order (see the module invariants)."""
    events: list[Event] = []
    for block in result.disconnected:  # newest first, as the chain undid them
        try:
            receipts = receipts_of(block.hash)
        except NotFound:  # a block stored before receipts were kept: events unknown
            receipts = ()
        events.append(BlockDisconnected(block.hash, block.height, _outcomes(block, receipts)))
    for block, receipts in zip(result.connected, result.receipts, strict=True):
        events.append(BlockConnected(block.hash, block.height, block.header.timestamp,
                                     _outcomes(block, receipts)))
    return events


class RoleHost:
    """Hosts the node's roles: state per role instance, dispatch, effect execution."""

    def __init__(self, roles: frozenset[Role], chain: ChainView,
                 stores: Mapping[Role, StoreView], identity: NodeIdentity,
                 table: Table = DISPATCH, clock: Callable[[], float] = time.time,
                 signer: Signer | None = None) -> None:
        self.roles = roles
        self._chain = chain
        self._stores = stores
        self.identity = identity
        self._signer = signer
        self._table = table
        self._clock = clock
        self._states: dict[Role, RoleStates] = {role: {} for role in roles}
        self._queue: deque[Event] = deque()
        self._busy = False
        self.executor: EffectExecutor | None = None
        self.delivered = 0

    def attach(self, executor: EffectExecutor) -> None:
        """Start executing effects; events held until now are delivered first, in order."""
        self.executor = executor
        self._drain()

    def state(self, role: Role, instance: str = SINGLETON) -> Any:
        """The state of one role instance (None if it does not exist)."""
        return self._states.get(role, {}).get(instance)

    def instances(self, role: Role) -> list[str]:
        """The live instance keys of ``role``, in order."""
        return sorted(self._states.get(role, {}))

    def deliver(self, event: Event) -> None:
        """Feed ``event`` to the roles that take it and execute their effects."""
        if not self.roles:
            return
        self._queue.append(event)
        self._drain()

    def _drain(self) -> None:
        if self._busy or self.executor is None:
            return
        self._busy = True
        try:
            while self._queue:
                self._deliver_one(self._queue.popleft())
        finally:
            self._busy = False

    def _deliver_one(self, event: Event) -> None:
        assert self.executor is not None
        ctx = RoleContext(int(self._clock()), self._chain, identity=self.identity,
                          signer=self._signer)
        self._states, routed = dispatch(self.roles, self._states, event, ctx,
                                        table=self._table, stores=self._stores)
        self.delivered += 1
        self.executor.run_routed(routed)

    def feed_import(self, result: ImportResult, receipts_of: ReceiptsOf) -> None:
        """Deliver one import's chain events, then the new head."""
        if not (result.connected or result.disconnected):
            return
        for event in block_events(result, receipts_of):
            self.deliver(event)
        head = self._chain.head()
        self.deliver(HeadChanged(head.hash, head.height, bytes(head.miner)))
