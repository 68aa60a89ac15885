"""The CrowdSFL roles on real role hosts over one in-memory chain, with a hand-driven clock.

Each :class:`Node` is a daemon's role side as ``daemon/node.py`` wires it: a ``RoleHost``, its
own ``RoleStore`` (sqlite under tmp) and ``CallService`` signing with its account key. The
:class:`Net` carries their effects: calls become real signed transactions in the shared mempool,
``RunJob`` effects run synchronously here (the job function itself, then ``JobFinished`` /
``JobFailed`` back to the instance), ``ScheduleAt`` waits on a virtual clock, and ``mine``
puts the whole mempool in a block and feeds the import to every live node as the daemon does.
``restart`` drops a node's memory (states, jobs and timers in flight) and starts it again on
its store and the chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from crowdmesh.chain import Chain, MemoryStore, make_transaction, register_key_payload
from crowdmesh.chain.contracts import REGISTER_KEY
from crowdmesh.chain.contracts.crowdsfl import (
    Phase,
    TaskSpec,
    burned_total,
    create_payload,
    escrow_total,
    task_status,
)
from crowdmesh.chain.mempool import Mempool
from crowdmesh.chain.rules import burned_fee
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto.elgamal import keygen
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.calls import CallService
from crowdmesh.daemon.chainview import LedgerChainView
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.errors import CrowdmeshError, ValidationError
from crowdmesh.fl.datasets import load_default
from crowdmesh.roles import (
    JobFailed,
    JobFinished,
    LogEvent,
    NodeIdentity,
    Role,
    RolesStarted,
    RunJob,
    ScheduleAt,
    StoreDelete,
    StorePut,
    SubmitCall,
)
from crowdmesh.roles.sfl_events import SflConfigured
from crowdmesh.roles.sfl_jobs import dataset_bytes
from tests.unit.chain.helpers import MINERS, T0, make_genesis, mine_block

RNG = DeterministicRng(b"sfl-roles")
REQ, CSP = AccountKey.generate(RNG), AccountKey.generate(RNG)
WORKERS = [AccountKey.generate(RNG) for _ in range(4)]
FUNDS = 10**9
REQ_ELGAMAL = keygen(DEFAULT, DeterministicRng(b"req-elgamal"))
CSP_ELGAMAL = keygen(DEFAULT, DeterministicRng(b"csp-elgamal"))
LAYERS = (30, 6, 2)  # 200 parameters, 800 bytes: three chunks of ffdhe3072


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"test-seed/" + name.encode()).digest()


def split_default(k: int):
    """The built-in dataset: a held-out quarter for the requester, the rest in k shards."""
    data = load_default()
    x, y = data.encoded(), data.y
    order = np.random.default_rng(7).permutation(len(y))
    held, rest = order[:142], order[142:]
    shards = [(x[p], y[p]) for p in np.array_split(rest, k)]
    return (x[held], y[held]), shards


def task_spec(workers: int = 3, **overrides) -> TaskSpec:
    spec = TaskSpec(
        profile="default", csp=CSP.public, layers=LAYERS, activation="relu", init="he",
        epochs=3, batch_size=16, lr_micro=20_000, l2_micro=0, optimizer="adam", rounds=2,
        min_workers=workers, max_workers=workers, join_deadline=T0 + 5000, t_wait=100,
        t_step=100, pool=90_000, deposit_base=500, deposit_per_ksample=1000,
        deposit_rep_discount=10, deposit_min=100, rep_weight=1, select_m=workers,
        min_accuracy_bps=7000, aggregation="equal", bundle_chunks=3,
        schema_hash=hashlib.sha256(b"wdbc").digest())
    return replace(spec, **overrides)


@dataclass
class Job:
    node: Node
    role: Role
    instance: str
    effect: RunJob


class Node:
    """One daemon's role side."""

    def __init__(self, net: Net, name: str, key: AccountKey, roles: frozenset[Role],
                 config: dict[Role, SflConfigured]) -> None:
        self.net, self.name, self.key, self.roles, self.config = net, name, key, roles, config
        self.store = RoleStore.open(net.tmp / f"{name}.sqlite")
        self.host = RoleHost(roles, LedgerChainView(net.chain),
                             {r: self.store.view(r.value) for r in roles},
                             NodeIdentity(key.public, MINERS[0]), clock=lambda: net.clock)
        self.calls = CallService(net.ledger, self.store, key, self._submit, self.host.deliver)
        self.logs: list[LogEvent] = []
        self.alive = True
        self.host.attach(self)
        self.host.deliver(RolesStarted())
        for event in config.values():
            self.host.deliver(event)
        self.calls.reconcile()

    def _submit(self, tx) -> None:
        try:
            self.net.ledger.add_tx(tx)
        except ValidationError as exc:
            if exc.code != "mempool-nonce-gap":
                raise

    def run_routed(self, routed) -> None:
        for item in routed:
            _EXECUTE[type(item.effect)](self, item.role, item.instance, item.effect)

    def deliver(self, event) -> None:
        self.host.deliver(event)

    def logged(self, event: str) -> list[dict[str, str]]:
        return [dict(e.fields) for e in self.logs if e.event == event]


_EXECUTE = {
    ScheduleAt: lambda node, role, inst, e: node.net.timers.append((e.when, node, e.event)),
    SubmitCall: lambda node, role, inst, e: node.calls.request(role.value, inst, e.call_id,
                                                               e.kind, e.payload),
    StorePut: lambda node, role, inst, e: node.store.apply([(role.value, e.key, e.value)]),
    StoreDelete: lambda node, role, inst, e: node.store.apply([(role.value, e.key, None)]),
    LogEvent: lambda node, role, inst, e: node.logs.append(e),
    RunJob: lambda node, role, inst, e: node.net.jobs.append(Job(node, role, inst, e)),
}


def config(role: Role, name: str, **fields) -> SflConfigured:
    return SflConfigured(role.value, "", seed=seed_of(name), **fields)


class Net:
    """Nodes on one chain and mempool, virtual timers and a synchronous job pool."""

    def __init__(self, tmp) -> None:
        self.tmp = tmp
        alloc = tuple(sorted((k.public, FUNDS) for k in (REQ, CSP, *WORKERS)))
        self.chain = Chain.open(MemoryStore(), make_genesis(alloc=alloc))
        self.ledger = Ledger(self.chain, Mempool(self.chain))
        self.clock = T0 + 100
        self.nodes: list[Node] = []
        self.timers: list = []
        self.jobs: list[Job] = []
        self.job_runs: list[str] = []
        self.crash_before: set[str] = set()  # "node:job id": the node dies instead
        self._register_keys()

    def _register_keys(self) -> None:
        rng = DeterministicRng(b"pok")
        for key, pair in ((REQ, REQ_ELGAMAL), (CSP, CSP_ELGAMAL)):
            payload = register_key_payload("default", pair.pk,
                                           prove_key(DEFAULT, key.public, pair.sk, rng))
            self.ledger.add_tx(make_transaction(key, self.chain.genesis.chain_id, 0,
                                                REGISTER_KEY, payload, minimum_fee(payload, 1)))
        self.mine()

    def add(self, name: str, key: AccountKey, role: Role, **fields) -> Node:
        node = Node(self, name, key, frozenset({role}), {role: config(role, name, **fields)})
        self.nodes.append(node)
        self.settle()
        return node

    def settle(self) -> None:
        """Run due timers and queued jobs until nothing is left."""
        for _ in range(10_000):
            due = [t for t in self.timers if t[0] <= self.clock and t[1].alive]
            if due:
                self.timers.remove(due[0])
                due[0][1].deliver(due[0][2])
                continue
            self.timers = [t for t in self.timers if t[1].alive]
            jobs = [j for j in self.jobs if j.node.alive]
            self.jobs = []
            if not jobs:
                return
            for job in jobs:
                if job.node.alive:
                    self._run(job)
        raise AssertionError("the net did not settle")

    def _run(self, job: Job) -> None:
        e = job.effect
        name = f"{job.node.name}:{e.job_id}"
        if name in self.crash_before:
            self.crash_before.discard(name)
            self.restart(job.node)
            return
        self.job_runs.append(name)
        try:
            result = e.fn(*e.args)
        except CrowdmeshError as exc:
            job.node.deliver(JobFailed(job.role.value, job.instance, e.job_id, exc.code))
            return
        job.node.deliver(JobFinished(job.role.value, job.instance, e.job_id, result))

    def mine(self, advance: int = 1) -> None:
        """One block with the whole mempool, fed to every live node."""
        self.clock += advance
        self.settle()
        tpl = self.chain.build_block_template(MINERS[0], tuple(self.ledger.mempool.select()),
                                              self.clock)
        # as the daemon's miner: a tx that no longer applies is left out. Only a redundant
        # sfl-timeout (another node's landed first in this block) may be.
        assert all(code == "sfl-wrong-phase" for _, code in tpl.skipped), tpl.skipped
        block = mine_block(tpl.block)
        result = self.ledger.import_block(block, self.clock)
        for node in self.nodes:
            if node.alive:
                node.host.feed_import(result, self.chain.block_receipts)
                node.calls.reconcile()
        self.settle()

    def restart(self, node: Node) -> Node:
        """The process dies (jobs and timers in flight are lost) and starts on its store."""
        node.alive = False
        node.store.close()
        fresh = Node(self, node.name, node.key, node.roles, node.config)
        self.nodes[self.nodes.index(node)] = fresh
        return fresh

    def phase(self, task: bytes):
        return task_status(self.chain.state_get, task)[1]

    def run_until(self, task: bytes, phases, max_blocks: int = 60, advance: int = 1) -> None:
        for _ in range(max_blocks):
            if self.phase(task).phase in phases:
                return
            self.mine(advance)
        raise AssertionError(f"stuck in {self.phase(task)}")

    def assert_supply(self) -> None:
        g, get = self.chain.genesis, self.chain.state_get
        balances = sum(a.balance for _, a in self.chain.iter_accounts())
        fees = sum(burned_fee(tx.fee, g) for h in range(1, self.chain.height + 1)
                   for tx in self.chain.get_block_by_height(h).txs)
        rewards = sum(g.reward(h) for h in range(1, self.chain.height + 1))
        assert balances + escrow_total(get) + burned_total(get) + fees \
            == g.alloc_total() + rewards


def events_named(net: Net, name: str) -> list[tuple]:
    out = []
    for h in range(1, net.chain.height + 1):
        for tx in net.chain.get_block_by_height(h).txs:
            out += [e.fields for e in net.chain.tx_receipt(tx.txid).events if e.name == name]
    return out


def setup(net: Net, behaviours=("honest",) * 3, **spec_overrides):
    """Requester, CSP and one worker per behaviour on the default dataset; the task created."""
    held, shards = split_default(len(behaviours))
    req = net.add("req", REQ, Role.REQUESTER, secret_key=_sk(REQ_ELGAMAL),
                  dataset=dataset_bytes(*held))
    csp = net.add("csp", CSP, Role.CSP, secret_key=_sk(CSP_ELGAMAL))
    workers = [net.add(f"w{i}", WORKERS[i], Role.WORKER, dataset=dataset_bytes(*shard),
                       auto_join=True, behaviour=b)
               for i, (shard, b) in enumerate(zip(shards, behaviours, strict=True))]
    from crowdmesh.roles.sfl_events import SflTaskRequested
    spec = task_spec(len(behaviours), **spec_overrides)
    req.deliver(SflTaskRequested("t1", create_payload(spec)))
    net.mine()
    created = events_named(net, "sfl-created")
    assert created, req.logs
    return req, csp, workers, created[-1][0], shards


def _sk(pair) -> bytes:
    return int(pair.sk).to_bytes(64, "big")


def node(net: Net, name: str) -> Node:
    """The live node called ``name`` (a restart replaces the object)."""
    return next(n for n in net.nodes if n.name == name and n.alive)


def spent_fees(net: Net, key: AccountKey) -> int:
    return sum(tx.fee for h in range(1, net.chain.height + 1)
               for tx in net.chain.get_block_by_height(h).txs if tx.sender == key.public)


def net_gain(net: Net, key: AccountKey) -> int:
    """Balance change of ``key`` apart from the fees it paid."""
    return net.chain.balance(key.public) + spent_fees(net, key) - FUNDS


def assert_aborted_and_refunded(net: Net, task: bytes, reason: str, workers: int = 3) -> None:
    """The task aborted for ``reason``; nobody (requester, CSP, the first ``workers``
    workers) gained or lost apart from fees, and nothing is left in escrow."""
    assert net.phase(task).phase == Phase.ABORTED
    assert events_named(net, "sfl-aborted")[0][1] == reason
    assert [net_gain(net, k) for k in (REQ, CSP, *WORKERS[:workers])] == [0] * (2 + workers)
    assert escrow_total(net.chain.state_get) == 0
