"""The spatial roles across a reorg of the beacon block (anchor + 1), over the in-memory pair net
of ``test_roles.py``.

With several miners the beacon block is raced: a worker commits against the block it saw first,
and if a heavier branch then replaces that block while the commit window is open, it must commit
again against the new beacon (its old commit is simply invalid there), and every node must keep
both of its commits, so that the requester freezes S from the commits for the beacon that is on
its best chain when it decides. A reorg after the commit window changes no commit.
"""

from __future__ import annotations

from crowdmesh.chain import Chain, MemoryStore
from crowdmesh.chain.contracts.spatial.contract import KIND_TALLY
from crowdmesh.chain.contracts.spatial.protocol import Commit
from crowdmesh.errors import ValidationError
from crowdmesh.roles import Role
from crowdmesh.roles._spatial import MAX_PER_WORKER, with_commit
from tests.unit.chain.helpers import MINERS, next_block
from tests.unit.spatial.test_roles import (
    NEAR,
    REQ,
    REQUESTER,
    T_C,
    T_R,
    WORKERS,
    Net,
    decision,
    request,
)


def fork(net: Net, base: int, blocks: int) -> None:
    """Import a heavier branch of ``blocks`` empty blocks on main-chain block ``base``, mined by
    another miner, and feed each import to every node as the daemon does."""
    side = Chain.open(MemoryStore(), net.chain.genesis)
    for height in range(1, base + 1):
        side.import_block(net.chain.get_block_by_height(height), net.clock)
    for _ in range(blocks):
        net.advance_to(net.clock + 1)
        block = next_block(side, (), MINERS[1], now=net.clock)
        side.import_block(block, net.clock)
        result = net.ledger.import_block(block, net.clock)
        for node in net.nodes:
            if node.alive:
                node.host.feed_import(result, net.chain.block_receipts)
                node.calls.reconcile()
        net.settle()
    assert net.chain.head_hash == side.head_hash


def valid(commit: Commit, beacon: bytes) -> bool:
    try:
        commit.verify(beacon)
    except ValidationError:
        return False
    return True


def beacon(net: Net, report) -> bytes:
    return net.chain.get_hash_at(report.anchor + 1)


def test_a_worker_commits_again_when_the_beacon_is_replaced_and_the_report_is_confirmed(
        tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:4])
    report = request(net, req)
    rid = report.report_id.hex()
    net.mine()  # beacon A: block anchor + 1 with the requester's "beacon" call
    beacon_a = beacon(net, report)
    assert all(len(w.commits_sent()) == 1 and valid(w.commits_sent()[0], beacon_a)
               for w in workers)
    fork(net, report.anchor, 2)  # a heavier branch replaces A inside the commit window
    beacon_b = beacon(net, report)
    assert beacon_b != beacon_a and net.clock < report.ts + T_C
    for w in workers:  # a fresh commit, bound to B; the one on A no longer counts
        sent = w.commits_sent()
        assert len(sent) == 2 and valid(sent[1], beacon_b) and not valid(sent[1], beacon_a)
        assert w.state(Role.SPATIAL_WORKER, rid).committed_on == beacon_b
    held = req.state(Role.SPATIAL_REQUESTER, rid).commits
    assert len(held) == 8  # both commits of every worker: A's and B's
    assert sum(valid(c, beacon_b) for c in held) == 4
    assert len(req.kept(Role.SPATIAL_REQUESTER, b"k/")) == 8
    req = net.restart(req)  # both commits of every worker come back from the store
    assert req.state(Role.SPATIAL_REQUESTER, rid).commits == held
    net.advance_to(report.ts + T_C)  # the freeze, on B
    revealed = [w for w in workers if w.reveals_sent()]
    assert len(revealed) == 3
    for w in revealed:  # each reveal opens the member's commit on B
        w.reveals_sent()[0].verify(w.commits_sent()[1])
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(3):
        net.mine()
    confirmed = decision(net, report)
    assert confirmed is not None and confirmed[0] == 1, req.logs
    assert sorted(confirmed[8]) == sorted(w.key.public for w in revealed)
    assert req.logged("spatial-report-recorded")[0]["call"] == "tally"
    assert not req.logged("spatial-report-dropped")


def test_each_beacon_a_reorg_brings_inside_the_window_gets_a_commit(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:3])
    report = request(net, req)
    net.mine()
    fork(net, report.anchor, 2)  # B replaces A ...
    fork(net, report.anchor, 3)  # ... and a third branch C replaces B
    beacon_c = beacon(net, report)
    for w in workers:
        sent = w.commits_sent()
        assert len(sent) == 3 and valid(sent[2], beacon_c)
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(3):
        net.mine()
    confirmed = decision(net, report)
    assert confirmed is not None and confirmed[0] == 1, req.logs


def test_a_reorg_after_the_commit_window_changes_no_commit(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:4])
    report = request(net, req)
    rid = report.report_id.hex()
    net.mine()
    net.advance_to(report.ts + T_C)  # frozen on A; S revealed
    held = req.state(Role.SPATIAL_REQUESTER, rid).commits
    reveals = [r for w in workers for r in w.reveals_sent()]
    assert len(reveals) == 3
    fork(net, report.anchor, 2)  # B replaces A after the window: too late to commit again
    assert all(len(w.commits_sent()) == 1 and len(w.reveals_sent()) <= 1 for w in workers)
    assert req.state(Role.SPATIAL_REQUESTER, rid).commits == held
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(3):
        net.mine()
    # no commit is valid on B: the report is dropped, never recorded as rejected
    assert decision(net, report) is None
    assert req.logged("spatial-report-dropped")[0]["code"] == "spatial-too-few-commits"
    assert not any(tx.kind == KIND_TALLY for tx in net.ledger.mempool.transactions())


def test_a_reorg_above_the_beacon_after_the_window_changes_nothing(tmp_path):
    net = Net(tmp_path)
    req = net.add("req", REQ, REQUESTER)
    workers = net.workers(NEAR[:4])
    report = request(net, req)
    net.mine()
    beacon_a = beacon(net, report)
    net.mine()  # anchor + 2, which the fork replaces
    net.advance_to(report.ts + T_C)
    fork(net, report.anchor + 1, 2)
    assert beacon(net, report) == beacon_a
    assert all(len(w.commits_sent()) == 1 for w in workers)
    net.advance_to(report.ts + T_C + T_R + 1)
    for _ in range(3):
        net.mine()
    confirmed = decision(net, report)
    assert confirmed is not None and confirmed[0] == 1, req.logs


def test_with_commit_keeps_a_worker_s_commits_for_several_beacons_up_to_a_cap():
    rid = bytes(32)
    beacons = [bytes([i + 1]) * 32 for i in range(MAX_PER_WORKER + 1)]
    mine = [Commit.create(WORKERS[1], rid, b, 1, bytes(32)) for b in beacons]
    kept: tuple[Commit, ...] = ()
    for commit in mine[:MAX_PER_WORKER]:
        grown = with_commit(kept, commit)
        assert grown is not None and len(grown) == len(kept) + 1
        kept = grown
    assert with_commit(kept, mine[0]) is None  # the same bytes again
    assert with_commit(kept, mine[-1]) is None  # one worker cannot grow the state further
    other = Commit.create(WORKERS[2], rid, beacons[0], 1, bytes(32))
    assert with_commit(kept, other) is not None
