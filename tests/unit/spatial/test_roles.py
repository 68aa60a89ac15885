"""The spatial roles (requester and worker) on the role host, over a real in-memory chain.

Part one runs whole reports between one requester node and several worker nodes, each a
``RoleHost`` with its own account, role store and call service, joined by an in-memory ``Net``
that carries their effects (gossip to every other node, virtual timers, calls, store writes) and
a virtual clock advanced by hand; blocks are mined by hand and fed to every node as the daemon
does. Part two unit-tests each handler's edge cases on a bare ``RoleContext``.

Residual risk (SPATIAL.md §5 A3): a worker that lies about its location is not caught; the
honest client only refuses to work outside R, which is what these tests show.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from crowdmesh.chain import Chain, MemoryStore
from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.contract import KIND_REJECT, KIND_TALLY
from crowdmesh.chain.contracts.spatial.protocol import (
    VOTE_CONFIRM,
    VOTE_REJECT,
    Commit,
    Report,
    Reveal,
    commit_salt,
)
from crowdmesh.chain.mempool import Mempool
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.calls import CallService
from crowdmesh.daemon.chainview import LedgerChainView
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.daemon.spatialapi import SpatialApi
from crowdmesh.errors import ValidationError
from crowdmesh.roles import (
    DISPATCH,
    CallIncluded,
    CallRejected,
    LocationSet,
    LogEvent,
    NodeIdentity,
    PublishSpatial,
    ReportRequested,
    RequesterReport,
    Role,
    RoleContext,
    RolesStarted,
    ScheduleAt,
    SpatialConfigured,
    SpatialDeadline,
    SpatialHeard,
    SpatialResumed,
    StoreDelete,
    StorePut,
    SubmitCall,
    VoteGiven,
    VotePolicy,
    WorkerReport,
    WorkerSettings,
    dispatch,
)
from crowdmesh.roles import spatial_requester as requester
from crowdmesh.roles import spatial_worker as worker
from crowdmesh.roles._spatial import MAX_MESSAGES, with_message
from tests.unit.chain.helpers import MINERS, T0, make_genesis, next_block

RNG = DeterministicRng(b"spatial-roles")
REQ, REQ2 = AccountKey.generate(RNG), AccountKey.generate(RNG)
WORKERS = [AccountKey.generate(RNG) for _ in range(8)]
PARAMS = SpatialParams(committee_k=3, commit_window_s=60, reveal_window_s=30)
T_C, T_R = PARAMS.commit_window_s, PARAMS.reveal_window_s
CLT = (35_227_100, -80_843_100)  # Charlotte, NC
REQUESTER = frozenset({Role.SPATIAL_REQUESTER})
WORKER = frozenset({Role.SPATIAL_WORKER})


def offset(point, north_m: int, east_m: int) -> tuple[int, int]:
    """A point about ``north_m`` north and ``east_m`` east of ``point`` (35° N)."""
    return point[0] + north_m * 9, point[1] + east_m * 11


NEAR = [offset(CLT, 80 * i, 60 * (i % 3)) for i in range(6)]  # all within 500 m
FAR = offset(CLT, 1200, 0)


def genesis():
    alloc = tuple(sorted((k.public, 10**9) for k in (REQ, REQ2)))
    return make_genesis(spatial=PARAMS, alloc=alloc)


# -- the in-memory network ------------------------------------------------------------------


class Node:
    """One daemon's role side: a role host, its role store and its call service."""

    def __init__(self, net: Net, name: str, key: AccountKey, roles: frozenset[Role]) -> None:
        self.net, self.name, self.key, self.roles = net, name, key, roles
        self.path = net.tmp / f"{name}.sqlite"
        self.store = RoleStore.open(self.path)
        self.host = RoleHost(roles, LedgerChainView(net.chain),
                             {r: self.store.view(r.value) for r in roles},
                             NodeIdentity(key.public, MINERS[0]), clock=lambda: net.clock,
                             signer=key)
        self.calls = CallService(net.ledger, self.store, key, self._submit, self.host.deliver)
        self.logs: list[LogEvent] = []
        self.published: list[PublishSpatial] = []
        self.alive = True
        self.host.attach(self)
        self.host.deliver(RolesStarted())
        self.calls.reconcile()

    def _submit(self, tx) -> None:
        try:
            self.net.ledger.add_tx(tx)
        except ValidationError as exc:
            if exc.code != "mempool-nonce-gap":
                raise

    # the host's executor: one entry per effect the spatial roles return
    def run_routed(self, routed) -> None:
        for item in routed:
            _EXECUTE[type(item.effect)](self, item.role, item.instance, item.effect)

    def deliver(self, event) -> None:
        self.host.deliver(event)

    def state(self, role: Role, instance: str = ""):
        return self.host.state(role, instance)

    def kept(self, role: Role, prefix: bytes = b"") -> list[bytes]:
        return [k for k, _ in self.store.items(role.value, prefix)]

    def logged(self, event: str) -> list[dict[str, str]]:
        return [dict(e.fields) for e in self.logs if e.event == event]

    def commits_sent(self) -> list[Commit]:
        return [Commit.decode(p.raw) for p in self.published if p.kind == "commit"]

    def reveals_sent(self) -> list[Reveal]:
        return [Reveal.decode(p.raw) for p in self.published if p.kind == "reveal"]


_EXECUTE = {
    PublishSpatial: lambda node, role, inst, e: node.net.publish(node, e),
    ScheduleAt: lambda node, role, inst, e: node.net.schedule(node, e.when, e.event),
    SubmitCall: lambda node, role, inst, e: node.calls.request(role.value, inst, e.call_id,
                                                               e.kind, e.payload),
    StorePut: lambda node, role, inst, e: node.store.apply([(role.value, e.key, e.value)]),
    StoreDelete: lambda node, role, inst, e: node.store.apply([(role.value, e.key, None)]),
    LogEvent: lambda node, role, inst, e: node.logs.append(e),
}


class Net:
    """Nodes on one shared chain and mempool, a gossip queue and virtual timers."""

    def __init__(self, tmp) -> None:
        self.tmp = tmp
        self.chain = Chain.open(MemoryStore(), genesis())
        self.ledger = Ledger(self.chain, Mempool(self.chain))
        self.clock = T0 + 1000
        self.nodes: list[Node] = []
        self.messages: deque = deque()
        self.timers: list[tuple[int, int, Node, object]] = []
        self._seq = 0

    def add(self, name: str, key: AccountKey, roles=WORKER, location=None,
            policy: str = "honest", **config) -> Node:
        node = Node(self, name, key, roles)
        self.nodes.append(node)
        if location is not None:
            node.deliver(LocationSet(*location))
            node.deliver(SpatialConfigured(policy, **config))
        self.settle()
        return node

    def workers(self, points, policy: str = "honest", first: int = 0, **config) -> list[Node]:
        return [self.add(f"w{i}", WORKERS[i], location=p, policy=policy, **config)
                for i, p in enumerate(points, start=first)]

    def publish(self, sender: Node, effect: PublishSpatial) -> None:
        sender.published.append(effect)
        for node in self.nodes:
            if node is not sender:  # the worker role itself filters by distance
                self.messages.append((node, SpatialHeard(effect.kind, effect.raw)))

    def schedule(self, node: Node, when: int, event) -> None:
        self._seq += 1
        self.timers.append((when, self._seq, node, event))

    def settle(self) -> None:
        """Deliver gossip, then due timers, until nothing is left (bounded)."""
        for _ in range(10_000):
            if self.messages:
                node, event = self.messages.popleft()
                if node.alive:
                    node.deliver(event)
                continue
            due = [t for t in self.timers if t[0] <= self.clock]
            if not due:
                return
            timer = min(due, key=lambda t: t[:2])
            self.timers.remove(timer)
            if timer[2].alive:
                timer[2].deliver(timer[3])
        raise AssertionError("the network did not settle")

    def advance_to(self, when: int) -> None:
        """Move the clock to ``when``, firing each timer at its own time."""
        while True:
            self.settle()
            pending = [t[0] for t in self.timers if t[2].alive and t[0] <= when]
            if not pending:
                break
            self.clock = max(self.clock, min(pending))
        self.clock = max(self.clock, when)
        self.settle()

    def mine(self) -> None:
        """One block with the whole mempool, imported and fed to every node as the daemon does."""
        self.advance_to(self.clock + 1)
        block = next_block(self.chain, tuple(self.ledger.mempool.select()), now=self.clock)
        result = self.ledger.import_block(block, self.clock)
        for node in self.nodes:
            if node.alive:
                node.host.feed_import(result, self.chain.block_receipts)
                node.calls.reconcile()
        self.settle()

    def restart(self, node: Node) -> Node:
        """The process dies (timers and gossip in flight are lost) and starts on its store."""
        node.alive = False
        node.store.close()
        self.timers = [t for t in self.timers if t[2] is not node]
        fresh = Node(self, node.name, node.key, node.roles)
        self.nodes[self.nodes.index(node)] = fresh
        self.settle()
        return fresh


def request(net: Net, node: Node, request_id: str = "r1", point=CLT,
            kind: str = "flood") -> Report:
    node.deliver(ReportRequested(request_id, kind, *point))
    net.settle()
    rid = node.store.get(Role.SPATIAL_REQUESTER.value, b"q/" + request_id.encode())
    assert rid is not None, node.logs
    return Report.decode(node.store.get(Role.SPATIAL_REQUESTER.value, b"r/" + rid))


def run_to_decision(net: Net, report: Report) -> None:
    """Beacon block, commits, freeze and reveals, the decision, and the block(s) that carry it."""
    net.mine()  # block anchor + 1, brought by the requester's no-op "beacon" call
    net.advance_to(report.ts + T_C + T_R + 1)  # freeze, reveals, the requester decides
    for _ in range(3):  # a "tick" block first if the head is older than ts + T_c
        net.mine()


def decision(net: Net, report: Report):
    raw = net.chain.state_get(b"xr" + report.report_id)
    return None if raw is None else unpack(raw, 1 << 16)


def rewards(net: Net) -> dict[bytes, int]:
    paid: dict[bytes, int] = {}
    for height in range(net.chain.height + 1):
        for tx in net.chain.get_block_by_height(height).txs:
            for e in net.chain.tx_receipt(tx.txid).events:
                if e.name == "spatial-reward":
                    paid[e.fields[0]] = paid.get(e.fields[0], 0) + e.fields[1]
    return paid


# -- end to end -----------------------------------------------------------------------------


def test_a_true_report_is_confirmed_end_to_end(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR)
    report = request(net, req)
    rid = report.report_id.hex()
    assert [w.host.instances(Role.SPATIAL_WORKER) for w in workers] == [["", rid]] * 6
    assert not any(w.commits_sent() for w in workers)  # no beacon yet
    net.mine()
    assert all(len(w.commits_sent()) == 1 for w in workers)
    assert len(req.state(Role.SPATIAL_REQUESTER, rid).commits) == 6
    net.advance_to(report.ts + T_C)
    revealed = [w for w in workers if w.reveals_sent()]
    assert len(revealed) == 3  # exactly S reveals; the others dropped the report at the freeze
    net.advance_to(report.ts + T_C + T_R + 1)
    assert req.state(Role.SPATIAL_REQUESTER, rid).phase == "closing"  # head older than ts+T_c
    net.mine()  # the tick
    assert req.state(Role.SPATIAL_REQUESTER, rid).phase == "closed"
    assert [tx.kind for tx in net.ledger.mempool.transactions()] == [KIND_TALLY]
    net.mine()
    confirmed = decision(net, report)
    assert confirmed[0] == 1
    assert sorted(confirmed[8]) == sorted(w.key.public for w in revealed)
    paid = rewards(net)  # first report, first confirmations: Φ = 1; K = 3, m = 2, N_w = 3
    assert paid == {REQ.public: 60_000, **{w.key.public: 20_000 for w in revealed}}
    assert all(net.chain.balance(w.key.public) == 20_000 for w in revealed)
    assert req.host.instances(Role.SPATIAL_REQUESTER) == []
    assert req.kept(Role.SPATIAL_REQUESTER) == [b"q/r1"]  # only the operator's request record
    assert req.logged("spatial-report-recorded")[0]["call"] == "tally"
    assert all(w.kept(Role.SPATIAL_WORKER) == [b"location", b"policy"] for w in workers)
    assert all(w.host.instances(Role.SPATIAL_WORKER) == [""] for w in workers)


def test_a_false_report_is_rejected_on_chain(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    truth = ("fire", *CLT)  # what really happened there: a fire, not a flood
    workers = net.workers(NEAR[:4], policy="oracle", truths=(truth,))
    report = request(net, req, kind="flood")
    run_to_decision(net, report)
    rejected = decision(net, report)
    assert rejected[0] == 0 and len(rejected) == 3
    assert req.logged("spatial-report-recorded")[0]["call"] == "reject"
    assert all(r.vote == VOTE_REJECT for w in workers for r in w.reveals_sent())
    assert rewards(net) == {}


def test_an_oracle_worker_confirms_a_true_report(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    net.workers(NEAR[:3], policy="oracle", truths=(("flood", *offset(CLT, 20, 0)),))
    report = request(net, req)
    run_to_decision(net, report)
    assert decision(net, report)[0] == 1


def test_a_worker_outside_r_never_commits(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    net.workers(NEAR[:3])
    far = net.add("far", WORKERS[7], location=FAR)
    assert geo.distance_m(*FAR, *CLT) > PARAMS.radius_m
    report = request(net, req)
    assert far.host.instances(Role.SPATIAL_WORKER) == [""]
    run_to_decision(net, report)
    assert decision(net, report)[0] == 1
    assert far.published == [] and far.kept(Role.SPATIAL_WORKER, b"r/") == []


def test_the_requesters_own_node_never_commits_to_its_report(tmp_path):
    net = Net(tmp_path)
    both = net.add("req", REQ, REQUESTER | WORKER, location=CLT)
    net.workers(NEAR[:3])
    report = request(net, both)
    # a peer may relay the report back to its own node: the worker role must refuse it
    # itself (spatial-own-report), not rely on never hearing it (A4)
    net.messages.append((both, SpatialHeard("report", both.published[0].raw)))
    net.settle()
    run_to_decision(net, report)
    assert both.host.instances(Role.SPATIAL_WORKER) == [""]
    assert [p.kind for p in both.published] == ["report"]
    assert decision(net, report)[0] == 1
    assert REQ.public not in decision(net, report)[8]


async def _no_move(lat_e6, lon_e6):
    raise AssertionError("not used here")


def test_an_operator_worker_commits_only_after_its_vote(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    operated = net.add("op", WORKERS[0], location=NEAR[0], policy="operator")
    net.workers(NEAR[1:3], first=1)  # two honest ones
    report = request(net, req)
    net.mine()
    assert operated.commits_sent() == []
    assert operated.state(Role.SPATIAL_WORKER, report.report_id.hex()).vote is None
    api = SpatialApi(net.ledger, operated.host, operated.store, _no_move)
    assert [p["report_id"] for p in api.report_pending()] == [report.report_id.hex()]
    operated.deliver(VoteGiven(report.report_id, VOTE_CONFIRM))
    net.settle()
    assert len(operated.commits_sent()) == 1
    assert api.report_pending() == []  # voted: nothing waits for the operator any more
    operated.deliver(VoteGiven(report.report_id, VOTE_REJECT))  # the commitment fixed it
    assert operated.logged("spatial-vote-ignored")[-1]["reason"] == "committed"
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(2):
        net.mine()
    assert decision(net, report)[0] == 1


def test_a_worker_restarted_mid_report_still_reveals(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:3])  # K = 3 workers: all of them are S
    report = request(net, req)
    net.mine()
    assert all(w.commits_sent() for w in workers)
    restarted = net.restart(workers[0])  # commits heard are in its store, its vote too
    rid = report.report_id.hex()
    state = restarted.state(Role.SPATIAL_WORKER, rid)
    assert isinstance(state, WorkerReport) and len(state.commits) == 3
    assert restarted.state(Role.SPATIAL_WORKER) == WorkerSettings(NEAR[0], VotePolicy("honest"))
    assert restarted.commits_sent() == workers[0].commits_sent()  # the same bytes again
    net.advance_to(report.ts + T_C + T_R + 1)
    assert len(restarted.reveals_sent()) == 1
    for _ in range(2):
        net.mine()
    assert sorted(decision(net, report)[8]) == sorted(w.key.public for w in workers)


def test_a_requester_restarted_mid_report_still_tallies(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    net.workers(NEAR[:3])
    report = request(net, req)
    net.mine()
    net.advance_to(report.ts + T_C + 5)  # reveals heard, decision not made yet
    req = net.restart(req)
    state = req.state(Role.SPATIAL_REQUESTER, report.report_id.hex())
    assert len(state.commits) == 3 and len(state.reveals) == 3
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(2):
        net.mine()
    assert decision(net, report)[0] == 1
    assert req.host.instances(Role.SPATIAL_REQUESTER) == []


def test_a_duplicate_report_confirmed_later_fails_with_spatial_duplicate(tmp_path):
    net = Net(tmp_path)
    first_req = net.add("req", REQ, REQUESTER)
    second_req = net.add("req2", REQ2, REQUESTER)
    net.workers(NEAR)
    first = request(net, first_req)
    run_to_decision(net, first)
    assert decision(net, first)[0] == 1
    net.advance_to(net.clock + 600)
    second = request(net, second_req, "again", offset(CLT, 20, 0))  # 20 m away, 10 min later
    run_to_decision(net, second)
    assert decision(net, second) is None
    # the requester checks the chain's duplicate rule before it sends anything
    dropped = second_req.logged("spatial-report-dropped")
    assert [r["code"] for r in dropped] == ["spatial-duplicate"]
    assert second_req.host.instances(Role.SPATIAL_REQUESTER) == []
    assert second_req.kept(Role.SPATIAL_REQUESTER, b"r/") == []


def test_a_report_with_too_few_commits_is_dropped(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:2])  # K = 3: never enough
    report = request(net, req)
    run_to_decision(net, report)
    assert decision(net, report) is None
    assert req.logged("spatial-report-dropped")[0]["code"] == "spatial-too-few-commits"
    assert all(w.logged("spatial-freeze-failed")[0]["code"] == "spatial-too-few-commits"
               for w in workers)
    assert req.kept(Role.SPATIAL_REQUESTER, b"k/") == []


def test_a_request_is_reported_once_per_request_id(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    first = request(net, req)
    net.advance_to(net.clock + 5)
    again = request(net, req)
    assert again == first
    assert [p.kind for p in req.published] == ["report"]
    assert req.logged("spatial-report-known")[0]["report"] == first.report_id.hex()
    assert [tx.kind for tx in net.ledger.mempool.transactions()] == ["transfer"]  # one beacon


# -- handler edge cases on a bare context ---------------------------------------------------


class DictStore:
    def __init__(self, data=None) -> None:
        self.data: dict[bytes, bytes] = dict(data or {})

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))

    def apply(self, effects) -> None:
        for e in effects:
            if isinstance(e, StorePut):
                self.data[e.key] = e.value
            elif isinstance(e, StoreDelete):
                self.data.pop(e.key, None)


@pytest.fixture(scope="module")
def chain():
    """A chain with one block after genesis (block 1 is the beacon of reports anchored at 0)."""
    c = Chain.open(MemoryStore(), genesis())
    c.import_block(next_block(c, now=T0 + 10), T0 + 10)
    return c


def ctx(chain, store=None, now=T0 + 20, signer=WORKERS[0]):
    return RoleContext(now=now, chain=LedgerChainView(chain), store=store or DictStore(),
                       signer=signer)


HONEST = VotePolicy("honest")


def placed(location=CLT, policy=HONEST) -> DictStore:
    return DictStore({worker.LOCATION: pack(list(location)), worker.POLICY: policy.encode()})


def a_report(key=REQ, point=CLT, kind="flood", ts=T0 + 15, anchor=0, chain_id="cm-test"):
    return Report.create(key, chain_id, kind, *point, ts=ts, anchor=anchor)


def heard(report: Report, c) -> tuple:
    return worker.handle_spatial_heard(None, SpatialHeard("report", report.encode()), c)


def test_role_names_match_the_dispatch_roles_and_every_spatial_event_is_routed():
    assert Role.SPATIAL_WORKER.value == worker.ROLE_NAME
    assert Role.SPATIAL_REQUESTER.value == requester.ROLE_NAME
    for event in ("spatial-heard", "spatial-deadline", "spatial-resumed", "report-requested",
                  "vote-given", "location-set", "spatial-configured"):
        assert DISPATCH[event], event


def test_a_heard_report_opens_an_instance_stores_it_and_commits_on_the_beacon(chain):
    c = ctx(chain, placed())
    state, effects = heard(a_report(), c)
    rid = a_report().report_id
    assert isinstance(state, WorkerReport) and state.vote == VOTE_CONFIRM
    assert StorePut(b"r/" + rid, a_report().encode()) in effects
    assert StorePut(b"o/" + rid, bytes([VOTE_CONFIRM])) in effects
    assert ScheduleAt(a_report().ts + T_C, SpatialDeadline(rid, "commit")) in effects
    commit = next(Commit.decode(e.raw) for e in effects if isinstance(e, PublishSpatial))
    assert commit.worker == WORKERS[0].public and state.committed_on == chain.get_hash_at(1)
    assert commit.verify(chain.get_hash_at(1)) >= 0
    again, more = worker.handle_head_changed(state, object(), c)
    assert again is state and more == []  # once per beacon


@pytest.mark.parametrize(("case", "report", "store", "kw"), [
    ("no location", a_report(), DictStore(), {}),
    ("outside R", a_report(point=offset(CLT, 1200, 0)), None, {}),
    ("own report", a_report(key=WORKERS[0]), None, {}),
    ("unknown type", a_report(kind="meteor"), None, {}),
    ("another chain", a_report(chain_id="other"), None, {}),
    ("window over", a_report(ts=T0 + 20 - T_C), None, {}),
    ("from the future", a_report(ts=T0 + 20 + worker.MAX_SKEW_S + 1), None, {}),
    ("no account", a_report(), None, {"signer": None}),
])
def test_a_worker_opens_no_instance_for_a_report_it_must_not_vote_on(chain, case, report,
                                                                      store, kw):
    state, effects = heard(report, ctx(chain, store or placed(), **kw))
    assert (state, effects) == (None, []), case


def test_a_report_with_a_bad_signature_or_garbage_opens_nothing(chain):
    forged = replace(a_report(), sig=bytes(64))
    assert heard(forged, ctx(chain, placed())) == (None, [])
    live = frozenset({""})
    garbage = SpatialHeard("report", b"\x01junk")
    assert list(worker.heard_keys(garbage, Role.SPATIAL_WORKER, live, ctx(chain))) == []
    reveal = SpatialHeard("reveal", b"")
    assert list(worker.heard_keys(reveal, Role.SPATIAL_WORKER, live, ctx(chain))) == []


def test_a_worker_opens_at_most_max_open_reports():
    ev = SpatialHeard("report", a_report().encode())
    full = frozenset({""} | {f"{i:064x}" for i in range(worker.MAX_OPEN)})
    assert list(worker.heard_keys(ev, Role.SPATIAL_WORKER, full, RoleContext(now=0))) == []
    room = frozenset(list(full)[1:])
    assert list(worker.heard_keys(ev, Role.SPATIAL_WORKER, room, RoleContext(now=0))) == [
        a_report().report_id.hex()]


@pytest.mark.parametrize(("policy", "truths", "error", "want"), [
    ("operator", (), 0, None),
    ("always-confirm", (), 1000, VOTE_CONFIRM),  # fixed policies make no mistakes
    ("always-reject", (), 0, VOTE_REJECT),
    ("honest", (), 0, VOTE_CONFIRM),
    ("honest", (), 1000, VOTE_REJECT),
    ("oracle", (("flood", *offset(CLT, 40, 0)),), 0, VOTE_CONFIRM),  # within d_dup = 50 m
    ("oracle", (("flood", *offset(CLT, 60, 0)),), 0, VOTE_REJECT),
    ("oracle", (("fire", *CLT),), 0, VOTE_REJECT),
    ("oracle", (("fire", *CLT),), 1000, VOTE_CONFIRM),
])
def test_policy_votes(policy, truths, error, want):
    pol = VotePolicy(policy, error, truths)
    assert worker.policy_vote(a_report(), pol, PARAMS, WORKERS[0]) == want


def test_the_error_draw_is_deterministic_and_about_its_rate():
    pol = VotePolicy("honest", 300)
    reports = [a_report(ts=T0 + i) for i in range(400)]
    votes = [worker.policy_vote(r, pol, PARAMS, WORKERS[0]) for r in reports]
    assert votes == [worker.policy_vote(r, pol, PARAMS, WORKERS[0]) for r in reports]
    assert 80 <= votes.count(VOTE_REJECT) <= 160  # 120 expected


def test_settings_are_stored_and_a_bad_location_is_refused():
    c = RoleContext(now=0)
    state, effects = worker.handle_location_set(None, LocationSet(*CLT), c)
    assert state == WorkerSettings(CLT) and effects == [StorePut(b"location", pack(list(CLT)))]
    same, effects = worker.handle_location_set(state, LocationSet(91_000_000, 0), c)
    assert same is state and effects[0].event == "spatial-location-refused"
    event = SpatialConfigured("oracle", 50, (("fire", *CLT),))
    state, effects = worker.handle_spatial_configured(state, event, c)
    assert state.policy == VotePolicy("oracle", 50, (("fire", *CLT),))
    assert VotePolicy.decode(effects[0].value) == state.policy


@pytest.mark.parametrize("bad", [
    {"policy": "random"}, {"policy": "honest", "error_permille": 1001},
    {"policy": "oracle", "truths": (("fire", 91_000_000, 0),)},
    {"policy": "oracle", "truths": (("fire", 1),)},
])
def test_a_bad_configuration_is_refused_at_construction(bad):
    with pytest.raises(ValueError):
        SpatialConfigured(**bad)


def test_roles_started_rebuilds_settings_and_resumes_every_kept_report():
    store = placed(policy=VotePolicy("always-reject"))
    store.data[b"r/" + bytes(32)] = b"x"
    state, effects = worker.handle_roles_started(None, RolesStarted(), ctx_store(store))
    assert state == WorkerSettings(CLT, VotePolicy("always-reject"))
    assert effects == [ScheduleAt(7, SpatialResumed("spatial-worker", bytes(32).hex()))]
    none, effects = requester.handle_roles_started(None, RolesStarted(), ctx_store(store))
    assert none is None
    assert effects == [ScheduleAt(7, SpatialResumed("spatial-requester", bytes(32).hex()))]


def ctx_store(store):
    return RoleContext(now=7, store=store)


def test_votes_the_operator_gives(chain):
    c = ctx(chain, placed(policy=VotePolicy("operator")))
    state, effects = heard(a_report(), c)
    rid = a_report().report_id
    assert state.vote is None and not any(isinstance(e, PublishSpatial) for e in effects)
    none, effects = worker.handle_vote_given(None, VoteGiven(bytes(32), 1), c)
    assert none is None and effects[0].fields == (("reason", "unknown-report"),
                                                  ("report", bytes(32).hex()))
    same, effects = worker.handle_vote_given(state, VoteGiven(rid, 2), c)
    assert same is state and dict(effects[0].fields)["reason"] == "bad-vote"
    voted, effects = worker.handle_vote_given(state, VoteGiven(rid, VOTE_REJECT), c)
    assert effects[0] == StorePut(b"o/" + rid, bytes([VOTE_REJECT]))
    assert isinstance(effects[-1], PublishSpatial) and voted.vote == VOTE_REJECT


def test_a_worker_keeps_one_valid_commit_per_worker_heard_in_time(chain):
    c = ctx(chain, placed())
    state, _ = heard(a_report(), c)
    rid, beacon = a_report().report_id, chain.get_hash_at(1)
    other = Commit.create(WORKERS[1], rid, beacon, 1, commit_salt(WORKERS[1], rid))
    state2, effects = worker.handle_spatial_heard(state, SpatialHeard("commit", other.encode()),
                                                  c)
    assert len(state2.commits) == 2
    assert effects == [StorePut(b"k/" + rid + WORKERS[1].public, other.encode())]
    forged = replace(Commit.create(WORKERS[2], rid, beacon, 1, bytes(32)), sig=bytes(64))
    for msg, when in ((other, c.now), (forged, c.now),
                      (Commit.create(WORKERS[3], rid, beacon, 1, bytes(32)), a_report().ts + T_C)):
        same, effects = worker.handle_spatial_heard(
            state2, SpatialHeard("commit", msg.encode()), replace(c, now=when))
        assert same is state2 and effects == []


def test_with_message_prefers_the_smaller_encoding_and_caps_the_count(chain):
    rid, beacon = a_report().report_id, chain.get_hash_at(1)
    a = Commit.create(WORKERS[1], rid, beacon, 1, bytes(32))
    b = Commit.create(WORKERS[1], rid, beacon, 0, bytes(32))
    small, big = sorted((a, b), key=lambda m: m.encoded)
    assert with_message((big,), small, prefer_smaller=True) == (small,)
    assert with_message((small,), big, prefer_smaller=True) is None
    assert with_message((big,), small, prefer_smaller=False) is None
    full = tuple(replace(a, worker=bytes([i]) * 32) for i in range(MAX_MESSAGES))
    assert with_message(full, Commit.create(WORKERS[2], rid, beacon, 1, bytes(32)),
                        prefer_smaller=True) is None


def test_the_freeze_drops_a_report_without_beacon_or_outside_s(chain):
    report = a_report(anchor=5)  # block 6 never comes
    rid = report.report_id
    state = WorkerReport(report, VOTE_CONFIRM)
    store = DictStore({b"r/" + rid: report.encode(), b"o/" + rid: b"\x01"})
    none, effects = worker.handle_spatial_deadline(state, SpatialDeadline(rid, "commit"),
                                                   ctx(chain, store))
    assert none is None and effects[0].fields[0] == ("code", "spatial-no-beacon")
    store.apply(effects)
    assert store.data == {}
    # in time, with commits from three others only: S has no room for a worker that never voted
    report = a_report()
    rid, beacon = report.report_id, chain.get_hash_at(1)
    others = tuple(sorted((Commit.create(k, rid, beacon, 1, bytes(32)) for k in WORKERS[1:4]),
                          key=lambda x: x.worker))
    none, effects = worker.handle_spatial_deadline(WorkerReport(report, None, others),
                                                   SpatialDeadline(rid, "commit"),
                                                   ctx(chain, placed()))
    assert none is None and not any(isinstance(e, PublishSpatial) for e in effects)
    assert worker.handle_spatial_deadline(None, SpatialDeadline(rid, "reveal"), ctx(chain)) == (
        None, [])


def test_a_resumed_report_past_its_reveal_window_is_forgotten(chain):
    report = a_report()
    rid = report.report_id
    store = placed()
    store.data.update({b"r/" + rid: report.encode(), b"k/" + rid + bytes(32): b"junk"})
    event = SpatialResumed("spatial-worker", rid.hex())
    late = ctx(chain, store, now=report.ts + T_C + T_R)
    none, effects = worker.handle_spatial_resumed(None, event, late)
    assert none is None and {e.key for e in effects} == {b"r/" + rid, b"k/" + rid + bytes(32)}
    state, effects = worker.handle_spatial_resumed(None, event, ctx(chain, store))
    assert state.commits == () and state.vote is None  # junk is skipped; no vote was stored
    assert effects == [ScheduleAt(report.ts + T_C, SpatialDeadline(rid, "commit"))]


# -- the requester ---------------------------------------------------------------------------


def req_ctx(chain, store=None, now=T0 + 20, signer=REQ):
    return ctx(chain, store, now=now, signer=signer)


@pytest.mark.parametrize(("event", "kw", "code"), [
    (ReportRequested("r", "meteor", *CLT), {}, "spatial-unknown-type"),
    (ReportRequested("r", "flood", 91_000_000, 0), {}, "bad-spatial-point"),
    (ReportRequested("", "flood", *CLT), {}, "bad-request-id"),
    (ReportRequested("x" * 129, "flood", *CLT), {}, "bad-request-id"),
    (ReportRequested("r", "flood", *CLT), {"signer": None}, "no-account"),
])
def test_a_request_that_cannot_be_reported_is_refused_and_logged(chain, event, kw, code):
    c = req_ctx(chain, **kw)
    assert list(requester.requested_keys(event, Role.SPATIAL_REQUESTER, frozenset(), c)) == [""]
    state, effects = requester.handle_report_requested(None, event, c)
    assert state is None and dict(effects[0].fields)["code"] == code


def test_a_request_signs_publishes_stores_and_asks_for_the_beacon(chain):
    c = req_ctx(chain)
    event = ReportRequested("r1", "flood", *CLT)
    [key] = requester.requested_keys(event, Role.SPATIAL_REQUESTER, frozenset(), c)
    state, effects = requester.handle_report_requested(None, event, c)
    report = state.report
    assert key == report.report_id.hex() and report.ts == c.now and report.anchor == 1
    kinds = [type(e).__name__ for e in effects]
    assert kinds == ["StorePut", "StorePut", "ScheduleAt", "PublishSpatial", "SubmitCall",
                     "LogEvent"]
    assert effects[3].cell == geo.cell_of(*CLT, PARAMS.h3_resolution)
    assert effects[2].when == report.ts + T_C + T_R + 1
    assert effects[4].call_id == "beacon"
    # the same request twice in the same second: one report serves both request ids
    twin = ReportRequested("r2", "flood", *CLT)
    same, effects = requester.handle_report_requested(state, twin, c)
    assert same is state and effects == [StorePut(b"q/r2", report.report_id)]


def test_the_requester_hears_only_its_open_reports_and_only_commits_in_time(chain):
    report = a_report()
    rid, beacon = report.report_id, chain.get_hash_at(1)
    commit = Commit.create(WORKERS[1], rid, beacon, 1, bytes(32))
    reveal = Reveal.create(WORKERS[1], rid, 1, bytes(32), bytes(32))
    live = frozenset({rid.hex()})
    for msg, kind in ((commit, "commit"), (reveal, "reveal")):
        event = SpatialHeard(kind, msg.encode())
        assert list(requester.heard_keys(event, Role.SPATIAL_REQUESTER, live, req_ctx(chain))) \
            == [rid.hex()]
        assert list(requester.heard_keys(event, Role.SPATIAL_REQUESTER, frozenset(),
                                         req_ctx(chain))) == []
    state = RequesterReport(report)
    late = req_ctx(chain, now=report.ts + T_C)
    assert requester.handle_spatial_heard(state, SpatialHeard("commit", commit.encode()),
                                          late) == (state, [])
    got, effects = requester.handle_spatial_heard(state, SpatialHeard("reveal", reveal.encode()),
                                                  late)
    assert got.reveals == (reveal,) and effects[0].key == b"v/" + rid + WORKERS[1].public


def test_the_requester_decides_and_drops_on_outcomes(chain):
    report = a_report()
    rid, beacon = report.report_id, chain.get_hash_at(1)
    votes = {1: 1, 2: 0, 3: 0}
    commits = tuple(sorted((Commit.create(WORKERS[i], rid, beacon, v, bytes(32))
                            for i, v in votes.items()), key=lambda x: x.worker))
    from crowdmesh.chain.contracts.spatial.protocol import committee_hash
    h_s = committee_hash([c.worker for c in commits])
    reveals = tuple(Reveal.create(WORKERS[i], rid, v, bytes(32), h_s) for i, v in votes.items())
    state = RequesterReport(report, commits, reveals)
    c = req_ctx(chain, now=report.ts + T_C + T_R + 1)
    closed, effects = requester.handle_spatial_deadline(state, SpatialDeadline(rid, "reveal"), c)
    assert closed.phase == "closed"
    assert effects[-1] == SubmitCall("reject", KIND_REJECT, pack([rid, h_s]))
    # outcomes: a beacon's outcome changes nothing, the decision's ends the report
    inst = rid.hex()
    keep, _ = requester.handle_call_included(
        closed, CallIncluded("spatial-requester", inst, "beacon", b"", b"", 2), c)
    assert keep is closed
    keep, effects = requester.handle_call_rejected(
        closed, CallRejected("spatial-requester", inst, "beacon", "bad-tx-overspend"), c)
    assert keep is closed and dict(effects[0].fields)["code"] == "bad-tx-overspend"
    store = DictStore({b"r/" + rid: b"", b"v/" + rid + bytes(32): b""})
    gone, effects = requester.handle_call_rejected(
        closed, CallRejected("spatial-requester", inst, "reject", "spatial-decided"),
        req_ctx(chain, store))
    assert gone is None and sum(isinstance(e, StoreDelete) for e in effects) == 2
    # a report too old for the contract is dropped instead of sent
    too_late = req_ctx(chain, now=report.ts + 2 * (T_C + T_R) + 1)
    gone, effects = requester.handle_spatial_deadline(state, SpatialDeadline(rid, "reveal"),
                                                      too_late)
    assert gone is None and dict(effects[0].fields)["code"] == "spatial-too-late"


def test_the_dispatch_table_reaches_only_the_roles_a_node_has(chain):
    event = SpatialHeard("report", a_report().encode())
    c = ctx(chain, placed())
    states, routed = dispatch(REQUESTER, {}, event, c)
    assert routed == [] and states == {Role.SPATIAL_REQUESTER: {}}
    states, routed = dispatch(WORKER, {Role.SPATIAL_WORKER: {"": WorkerSettings()}}, event, c,
                              stores={Role.SPATIAL_WORKER: placed()})
    assert a_report().report_id.hex() in states[Role.SPATIAL_WORKER]
    assert any(isinstance(r.effect, PublishSpatial) for r in routed)



@pytest.mark.parametrize(("report", "kw", "code"), [
    (a_report(), {"signer": None}, "no-account"),
    (a_report(key=WORKERS[0]), {}, "spatial-own-report"),
    (a_report(kind="meteor"), {}, "spatial-unknown-type"),
    (a_report(ts=T0 + 20 - T_C), {}, "spatial-outside-window"),
    (a_report(point=offset(CLT, 1200, 0)), {}, "spatial-out-of-range"),
    (replace(a_report(), sig=bytes(64)), {}, "bad-spatial-report-sig"),
    (a_report(), {}, None),
])
def test_refusal_codes(chain, report, kw, code):
    assert worker.refusal(report, ctx(chain, placed(), **kw)) == code
