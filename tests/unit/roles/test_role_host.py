"""The link from chain to roles, end to end in one process over a real chain and role store:
a role's contract call is signed by the daemon, included exactly once per connected block,
reverted by a reorg and included again; a crash with a call in flight loses nothing and sends
nothing twice; a refused call does not hold back later ones; a miner-only node ignores protocol
events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trio

from crowdmesh.chain import CONTRACTS, TRANSFER, Chain, MemoryStore, transfer_payload
from crowdmesh.chain.contracts import Event as ContractEvent
from crowdmesh.chain.mempool import Mempool
from crowdmesh.daemon.calls import FINAL_DEPTH, CallService
from crowdmesh.daemon.chainview import LedgerChainView
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.errors import ValidationError
from crowdmesh.roles import (
    DISPATCH,
    SINGLETON,
    BlockConnected,
    BlockDisconnected,
    CallIncluded,
    CallRejected,
    CallReverted,
    JobFailed,
    JobFinished,
    MinerState,
    NodeIdentity,
    Role,
    RolesStarted,
    Route,
    StorePut,
    SubmitCall,
    TxOutcome,
    addressed,
    effect_types,
)
from tests.unit.chain.helpers import ADDRS, KEYS, MINERS, NOW, make_genesis, next_block

PAYEE = ADDRS[5]
TASK = "task-1"


@dataclass(frozen=True)
class Probe:
    """A test role instance: what it asked for and what it heard back."""

    calls: tuple[tuple[str, str, bytes], ...]
    included: tuple[bytes, ...] = ()
    reverted: int = 0
    rejected: tuple[str, ...] = ()


def _start(state, event, ctx):
    state = state or Probe(calls=(("c1", TRANSFER, transfer_payload(PAYEE, 7)),))
    remember = StorePut(b"task/" + TASK.encode(), b"")  # so a restart finds the instance
    return state, [remember, *(SubmitCall(cid, kind, payload) for cid, kind, payload in
                               state.calls)]


def _kept_tasks(event, role, live, ctx):
    return [key[len(b"task/"):].decode() for key, _ in ctx.store.items(b"task/")]


def _included(state, event, ctx):
    return replace(state, included=(*state.included, event.block_hash)), []


def _reverted(state, event, ctx):
    return replace(state, reverted=state.reverted + 1), []


def _rejected(state, event, ctx):
    return replace(state, rejected=(*state.rejected, event.code)), []


def _table(start=_start, keys=lambda e, r, live, ctx: (TASK,)):
    return {
        **DISPATCH,
        RolesStarted.TYPE: {Role.WORKER: Route(start, keys)},
        CallIncluded.TYPE: {Role.WORKER: Route(_included, addressed)},
        CallReverted.TYPE: {Role.WORKER: Route(_reverted, addressed)},
        CallRejected.TYPE: {Role.WORKER: Route(_rejected, addressed)},
    }


class Rig:
    """Chain + ledger + role store + role host + call service, as ``daemon/node.py`` wires
    them, without the network."""

    def __init__(self, chain: Chain, store_path: Path, nursery: trio.Nursery, table) -> None:
        self.chain = chain
        self.ledger = Ledger(chain, Mempool(chain))
        self.store = RoleStore.open(store_path)
        self.host = RoleHost(frozenset({Role.WORKER}), LedgerChainView(chain),
                             {Role.WORKER: self.store.view("worker")},
                             NodeIdentity(KEYS[0].public, MINERS[0]), table=table)
        self.calls = CallService(self.ledger, self.store, KEYS[0], self._submit,
                                 self.host.deliver)
        self.executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=self.host.deliver, submit_call=self.calls.request,
            store_apply=self.store.apply), nursery)
        self.host.attach(self.executor)
        self.host.deliver(RolesStarted())
        self.calls.reconcile()

    def _submit(self, tx) -> None:
        try:
            self.ledger.add_tx(tx)
        except ValidationError as exc:
            if exc.code != "mempool-nonce-gap":
                raise

    def probe(self) -> Probe:
        return self.host.state(Role.WORKER, TASK)

    def import_(self, block) -> None:
        result = self.ledger.import_block(block, NOW)
        self.host.feed_import(result, self.chain.block_receipts)
        self.calls.reconcile()

    def mine(self) -> None:
        self.import_(next_block(self.chain, tuple(self.ledger.mempool.select())))


def _never(*args):
    raise AssertionError("not used here")


def _chain(contracts=CONTRACTS) -> Chain:
    return Chain.open(MemoryStore(), make_genesis(), contracts)


async def test_a_call_is_included_once_per_connected_block_and_reverted_by_a_reorg(tmp_path):
    async with trio.open_nursery() as nursery:
        rig = Rig(_chain(), tmp_path / "roles.sqlite", nursery, _table())
        assert len(rig.ledger.mempool) == 1  # signed by the daemon with the [account] key
        rig.mine()
        first = rig.chain.head_hash
        assert rig.probe().included == (first,)
        rig.mine()  # a block on top: no second report
        assert rig.probe().included == (first,) and rig.probe().reverted == 0
        # a heavier branch from genesis without the call: both blocks leave the main chain
        fork = _chain()
        for miner in (MINERS[1], MINERS[1], MINERS[1]):
            block = next_block(fork, (), miner)
            fork.import_block(block, NOW)
            rig.import_(block)
        assert rig.probe().reverted == 1 and rig.chain.head_hash == fork.head_hash
        assert len(rig.ledger.mempool) == 1  # the reorg gave it back; nothing re-signed
        rig.mine()
        assert rig.probe().included == (first, rig.chain.head_hash)
        assert rig.chain.balance(PAYEE) == 7
        assert rig.calls.sent == 1


async def test_a_crash_with_a_call_in_flight_neither_loses_nor_repeats_it(tmp_path):
    chain = _chain()
    async with trio.open_nursery() as nursery:
        rig = Rig(chain, tmp_path / "roles.sqlite", nursery, _table())
        txid = next(iter(rig.ledger.mempool.transactions())).txid
        rig.store.close()  # the process dies: the mempool is gone, the role store stays
        # the role finds its instance in its store alone, and re-asks for "c1"
        rig = Rig(chain, tmp_path / "roles.sqlite", nursery, _table(keys=_kept_tasks))
        assert rig.host.instances(Role.WORKER) == [TASK]
        assert [tx.txid for tx in rig.ledger.mempool.transactions()] == [txid]
        for _ in range(FINAL_DEPTH):
            rig.mine()
        assert rig.chain.balance(PAYEE) == 7 and rig.chain.nonce(KEYS[0].public) == 1
        assert rig.probe().included == (rig.chain.get_hash_at(1),)
        assert rig.calls.in_flight() == 0 and rig.calls.final_calls() == 1
        rig.calls.request("worker", TASK, "c1", TRANSFER, transfer_payload(PAYEE, 7))
        assert len(rig.ledger.mempool) == 0  # a final call's id is remembered: no second send


async def test_a_reorg_that_moves_a_call_to_another_block_reports_both(tmp_path):
    async with trio.open_nursery() as nursery:
        rig = Rig(_chain(), tmp_path / "roles.sqlite", nursery, _table())
        call_tx = tuple(rig.ledger.mempool.transactions())
        rig.mine()
        first = rig.chain.head_hash
        fork = _chain()  # a heavier branch that carries the same transaction
        for txs in (call_tx, (), ()):
            block = next_block(fork, txs, MINERS[1])
            fork.import_block(block, NOW)
            rig.import_(block)
        assert rig.probe().included == (first, fork.get_hash_at(1))
        assert rig.probe().reverted == 1


def _claim(state, tx, ctx):
    """A contract only one account can win: later claims fail with ``claimed``."""
    if state.get(b"zclaim") is not None:
        raise ValidationError("claimed")
    state.set(b"zclaim", tx.sender)
    return (ContractEvent("claimed", (tx.sender,)),)


async def test_a_call_refused_after_a_head_change_does_not_hold_back_later_calls(tmp_path):
    contracts = {**CONTRACTS, "claim": _claim}

    def start(state, event, ctx):
        return _start(state or Probe(calls=(("c1", "claim", b""),
                                            ("c2", TRANSFER, transfer_payload(PAYEE, 7)))),
                      event, ctx)

    async with trio.open_nursery() as nursery:
        rig = Rig(_chain(contracts), tmp_path / "roles.sqlite", nursery, _table(start))
        assert len(rig.ledger.mempool) == 2
        rival = _chain(contracts)
        from crowdmesh.chain import make_transaction
        win = make_transaction(KEYS[1], rival.genesis.chain_id, 0, "claim", b"", 30_000)
        rig.import_(next_block(rig.chain, (win,), MINERS[1]))  # someone else claims first
        assert rig.probe().rejected == ("claimed",)
        rig.mine()
        assert rig.chain.balance(PAYEE) == 7  # c2 went through behind the filler
        assert rig.chain.nonce(KEYS[0].public) == 2
        assert len(rig.probe().included) == 1


async def test_a_miner_only_node_ignores_protocol_events(tmp_path):
    chain = _chain()
    async with trio.open_nursery() as nursery:
        store = RoleStore.open(tmp_path / "roles.sqlite")
        host = RoleHost(frozenset({Role.MINER}), LedgerChainView(chain),
                        {Role.MINER: store.view("miner")}, NodeIdentity(None, MINERS[0]))
        executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=host.deliver), nursery)
        host.attach(executor)
        host.deliver(RolesStarted())
        before = host.state(Role.MINER)
        assert isinstance(before, MinerState)
        outcome = TxOutcome(b"\x01" * 32, KEYS[0].public, TRANSFER,
                            (ContractEvent("transferred", (1,)),))
        for event in (BlockConnected(b"\x02" * 32, 1, NOW, (outcome,)),
                      BlockDisconnected(b"\x02" * 32, 1, (outcome,)),
                      CallIncluded("worker", TASK, "c1", b"\x01" * 32, b"\x02" * 32, 1),
                      CallRejected("worker", TASK, "c1", "bad"),
                      JobFinished("worker", TASK, "j", 1), JobFailed("worker", TASK, "j", "x")):
            host.deliver(event)
        assert host.state(Role.MINER) is before and host.instances(Role.MINER) == [SINGLETON]
        assert executor.executed == {}


async def test_every_effect_has_an_executor_entry():
    async with trio.open_nursery() as nursery:
        executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=_never), nursery)
        assert executor.handles() == set(effect_types())


def test_every_role_event_is_in_the_dispatch_table():
    from crowdmesh.roles import event_types

    ours = {t for t, c in event_types().items() if c.__module__.startswith("crowdmesh.")}
    assert ours <= set(DISPATCH), sorted(ours - set(DISPATCH))


def test_the_registry_refuses_a_reused_tag():
    from crowdmesh.roles import Event, event_types

    @dataclass(frozen=True)
    class Twin(Event):
        TYPE = "head-changed"

    import sys
    module = sys.modules[__name__]
    module.Twin = Twin  # type: ignore[attr-defined]  # registered as its module names it
    Twin.__qualname__ = "Twin"
    try:
        with pytest.raises(ValueError, match="head-changed"):
            event_types()
    finally:
        del module.Twin  # type: ignore[attr-defined]


def _square(x: int) -> int:
    return x * x


def _bad_input(x: int) -> int:
    raise ValidationError("bad-model", f"cannot evaluate {x}")


async def test_a_role_job_runs_off_the_loop_and_its_outcome_comes_back_to_the_instance(
        tmp_path):
    from crowdmesh.daemon.jobs import JobPool
    from crowdmesh.roles import RunJob

    heard: list = []

    def start(state, event, ctx):
        return "running", [RunJob("sq", _square, (12,)), RunJob("bad", _bad_input, (3,))]

    def done(state, event, ctx):
        heard.append(event)
        return state, []

    table = {**DISPATCH,
             RolesStarted.TYPE: {Role.CSP: Route(start, lambda e, r, live, ctx: (TASK,))},
             JobFinished.TYPE: {Role.CSP: Route(done, addressed)},
             JobFailed.TYPE: {Role.CSP: Route(done, addressed)}}
    chain = _chain()
    async with trio.open_nursery() as nursery:
        store = RoleStore.open(tmp_path / "roles.sqlite")
        host = RoleHost(frozenset({Role.CSP}), LedgerChainView(chain),
                        {Role.CSP: store.view("csp")}, NodeIdentity(None, MINERS[0]), table)
        executor: EffectExecutor
        jobs = JobPool(nursery, lambda outcome: executor.job_done(outcome), threads=1)
        executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=host.deliver, start_job=jobs.start,
            cancel_job=jobs.cancel), nursery)
        host.attach(executor)
        host.deliver(RolesStarted())
        with trio.fail_after(10):
            while len(heard) < 2:
                await trio.sleep(0.01)
    assert JobFinished("csp", TASK, "sq", 144) in heard
    assert JobFailed("csp", TASK, "bad", "bad-model", "cannot evaluate 3") in heard


async def test_consecutive_store_effects_of_a_role_are_one_transaction():
    from crowdmesh.roles import LogEvent, Routed, StoreDelete

    applied: list = []
    logged = LogEvent("between")
    routed = [Routed(Role.CSP, TASK, StorePut(b"perm", b"1")),
              Routed(Role.CSP, TASK, StorePut(b"key", b"2")),
              Routed(Role.WORKER, TASK, StorePut(b"mine", b"3")),  # another namespace
              Routed(Role.WORKER, TASK, logged),
              Routed(Role.WORKER, TASK, StoreDelete(b"mine"))]
    async with trio.open_nursery() as nursery:
        executor = EffectExecutor(EffectPorts(
            mine_on=_never, stop_mining=_never, publish_block=_never, publish_tx=_never,
            submit_tx=_never, deliver=_never, store_apply=applied.append), nursery)
        executor.run_routed(routed)
    assert applied == [[("csp", b"perm", b"1"), ("csp", b"key", b"2")],
                       [("worker", b"mine", b"3")], [("worker", b"mine", None)]]
    assert executor.executed == {"store-put": 3, "log": 1, "store-delete": 1}


async def test_more_calls_than_the_pool_takes_from_one_sender_keep_distinct_nonces(tmp_path):
    """200 calls at once (a CSP's blob upload is ~150): the pool takes 64 per sender and the
    gap buffer 64 more; the rest stay in flight unpooled. Each must still get its own nonce
    (the pending nonce alone handed the unpooled ones' nonces out again: mempool-conflict),
    and all 200 go through as blocks free room."""
    calls = tuple((f"c{i}", TRANSFER, transfer_payload(PAYEE, 7)) for i in range(200))

    def start(state, event, ctx):
        return _start(state or Probe(calls=calls), event, ctx)

    async with trio.open_nursery() as nursery:
        rig = Rig(_chain(), tmp_path / "roles.sqlite", nursery, _table(start))
        nonces = [row["nonce"] for row in (c.view() for c in rig.calls.calls())]
        assert sorted(nonces) == list(range(200))
        for _ in range(20):
            if len(rig.probe().included) == 200:
                break
            rig.mine()
        assert rig.probe().rejected == ()
        assert len(rig.probe().included) == 200 and rig.chain.balance(PAYEE) == 200 * 7
