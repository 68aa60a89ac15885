"""Stalls the roles time out (``_sfl.stall_timeout``), besides the CSP stall of test_task.py
and the requester stall after round 0's list of test_attacks_roles.py: the requester stalling
before round 0 or before the next model (the CSP times it out), too few workers with the
requester gone (the CSP), both parties gone mid-round and the CSP not settling with the
requester gone (the workers, a ``t_step`` later), and a redundant timeout refused quietly.
Every abort refunds every coin; the ``net`` fixture checks the supply identity."""

from __future__ import annotations

import pytest

from crowdmesh.chain.contracts.crowdsfl import Phase
from crowdmesh.roles.events import CallRejected
from tests.unit.chain.helpers import T0
from tests.unit.crowdsfl_roles.net import (
    CSP,
    WORKERS,
    assert_aborted_and_refunded,
    node,
    setup,
)

DONE = {Phase.SETTLED, Phase.ABORTED}


def assert_refunded(net, task: bytes, reason: str, sender, workers: int = 3) -> None:
    """Aborted for ``reason`` by one ``sfl-timeout`` from ``sender``; nobody gained or lost."""
    assert_aborted_and_refunded(net, task, reason, workers)
    timeouts = [tx.sender for h in range(1, net.chain.height + 1)
                for tx in net.chain.get_block_by_height(h).txs if tx.kind == "sfl-timeout"]
    assert timeouts == [sender.public]
    for n in net.nodes:
        if n.alive:
            assert not n.logged("sfl-call-rejected"), (n.name, n.logs)
            assert all(n.host.instances(r) == [] for r in n.roles), n.name


def test_a_requester_that_never_starts_round_0_is_timed_out_by_the_csp(net):
    req, _, _, task, _ = setup(net, join_deadline=T0 + 400)
    req.alive = False  # created the task, never posts the initial model
    net.run_until(task, DONE, advance=30)
    assert_refunded(net, task, "requester-stall", CSP)


def test_a_requester_that_never_posts_the_next_model_is_timed_out_by_the_csp(net):
    req, _, _, task, _ = setup(net)
    net.run_until(task, {Phase.SELECTED})
    req.alive = False  # scored round 0, never aggregates
    net.run_until(task, DONE, max_blocks=20, advance=30)
    assert_refunded(net, task, "requester-stall", CSP)


def test_too_few_workers_with_the_requester_gone_is_timed_out_by_the_csp(net):
    req, _, _, task, _ = setup(net, ("honest", "honest"), min_workers=3, max_workers=3,
                               join_deadline=T0 + 400)
    req.alive = False
    net.run_until(task, DONE, advance=30)
    assert_refunded(net, task, "too-few-workers", CSP, workers=2)


@pytest.mark.parametrize("advance", [30, 1000])
def test_both_parties_gone_mid_round_are_timed_out_by_a_worker(net, advance):
    """Workers back up every stall, staggered by join position. With 1000 s blocks every
    worker's deadline passes in one block: all three send, one lands, the other two are refused
    (``sfl-wrong-phase``, by the pool's dry run or left out of the block) and dropped
    quietly."""
    req, csp, _, task, _ = setup(net)
    net.run_until(task, {Phase.TRAINING})
    req.alive = csp.alive = False
    net.mine()  # the workers' submissions land
    assert net.phase(task).submitted == 3
    net.run_until(task, DONE, max_blocks=30, advance=advance)
    net.mine()
    assert_aborted_and_refunded(net, task, "csp-stall")
    senders = [tx.sender for h in range(1, net.chain.height + 1)
               for tx in net.chain.get_block_by_height(h).txs if tx.kind == "sfl-timeout"]
    assert len(senders) == 1 and senders[0] in {w.public for w in WORKERS[:3]}
    tried = sum(bool(node(net, f"w{i}").logged("sfl-timing-out")) for i in range(3))
    assert tried == (3 if advance == 1000 else 1)
    for w in (node(net, f"w{i}") for i in range(3)):
        assert not w.logged("sfl-call-rejected") and w.host.instances(next(iter(w.roles))) == []
    assert not net.ledger.mempool.select()


def test_a_csp_that_never_settles_is_timed_out_by_a_worker_when_the_requester_is_gone(net):
    req, csp, _, task, _ = setup(net)
    for _ in range(60):
        if net.phase(task).phase == Phase.SCORED and net.phase(task).round == 1:
            break
        net.mine()
    req.alive = csp.alive = False  # the last selection is in the pool; nobody settles
    net.mine()
    assert net.phase(task).phase == Phase.FINAL
    net.run_until(task, DONE, max_blocks=30, advance=30)
    assert_aborted_and_refunded(net, task, "csp-stall")


def test_a_redundant_timeout_refused_as_wrong_phase_is_dropped_quietly(net):
    """Another node's ``sfl-timeout`` landed first: ours is refused (``sfl-wrong-phase``).
    The refusal is neither logged as an error nor asked again, live instance or ended one."""
    req, _, _, task, _ = setup(net)
    net.run_until(task, {Phase.BLINDED})
    req.alive = False
    net.run_until(task, DONE, max_blocks=20, advance=30)
    csp = node(net, "csp")
    worker = node(net, "w0")
    for n, role in ((csp, "csp"), (worker, "worker")):
        before = len(net.ledger.mempool.select())
        n.deliver(CallRejected(role, task.hex(), "timeout123/abort", "sfl-wrong-phase", ""))
        net.mine()
        assert not n.logged("sfl-call-rejected"), n.logs
        assert len(net.ledger.mempool.select()) == before == 0
    assert_refunded(net, task, "requester-stall", CSP)
