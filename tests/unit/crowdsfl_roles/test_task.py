"""Whole CrowdSFL tasks run by the requester, CSP and worker roles on role hosts, over one
in-memory chain (net.py): settlement, the final model against the in-process FL engine,
restarts mid-task, a stalled CSP, and attacking workers. The fixture checks the supply
identity (Σ balances + escrow + burned = genesis + block rewards − burned fees) after each."""

from __future__ import annotations

import pytest

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.blob import blob_bytes
from crowdmesh.chain.contracts.crowdsfl import REP_GAIN, REP_LOSS, Phase, escrow_total
from crowdmesh.chain.contracts.crowdsfl.records import read_list, round_key
from crowdmesh.fl import accuracy, fedavg, local_train, model_from_bytes, model_to_bytes
from crowdmesh.roles import Role, sfl_jobs
from crowdmesh.roles._sfl import PERMS, Settings, derive_seed, round_bytes
from crowdmesh.roles.sfl_jobs import generator, model_spec, train_spec
from tests.unit.crowdsfl_roles.net import (
    CSP,
    REQ,
    WORKERS,
    assert_aborted_and_refunded,
    events_named,
    net_gain,
    node,
    seed_of,
    setup,
    split_default,
    task_spec,
)

DONE = {Phase.SETTLED, Phase.ABORTED}


def chain_model(net, task: bytes, round_: int) -> bytes | None:
    name = net.chain.state_get(round_key(b"m", task, round_))
    return None if name is None else blob_bytes(net.chain.state_get, name)


def owners(net, task: bytes, round_: int) -> dict[bytes, bytes]:
    """The CSP's private blinded id → worker map (read from its role store)."""
    raw = node(net, "csp").store.get(Role.CSP.value, PERMS + task + round_bytes(round_))
    return {bytes(i): bytes(w) for i, w in unpack(raw, 1 << 20)[0]}


def selected(net, task: bytes, round_: int) -> list[bytes]:
    return [bytes(i) for i in read_list(net.chain.state_get, round_key(b"c", task, round_))[0]]


def accuracies(net, task: bytes, round_: int):
    return read_list(net.chain.state_get, round_key(b"a", task, round_))


def paid(net) -> dict[bytes, tuple]:
    return {p[1]: p[2:] for p in events_named(net, "sfl-paid")}


def test_a_whole_task_runs_to_settlement_and_pays(net):
    _, _, _, task, _ = setup(net)
    net.run_until(task, DONE)
    assert net.phase(task).phase == Phase.SETTLED
    payouts = paid(net)
    assert set(payouts) == {w.public for w in WORKERS[:3]}
    rewards = [payouts[w.public][0] for w in WORKERS[:3]]
    assert sum(rewards) > 0 and all(r >= 0 for r in rewards)
    assert all(payouts[w.public][2] == 0 for w in WORKERS[:3])  # nothing burned
    assert [net_gain(net, w) for w in WORKERS[:3]] == rewards
    assert net_gain(net, REQ) == -sum(rewards)  # the rest of the pool came back
    assert net_gain(net, CSP) == 0
    assert escrow_total(net.chain.state_get) == 0
    assert all(net.chain.account(w.public).reputation == REP_GAIN for w in WORKERS[:3])
    net.mine()
    assert chain_model(net, task, task_spec().rounds) is not None  # the final model
    assert all(n.host.instances(next(iter(n.roles))) == [] for n in net.nodes)


def test_every_party_builds_its_key_tables_while_the_task_is_joining(net):
    sfl_jobs._public_key.cache_clear()
    sfl_jobs._task_keys.cache_clear()
    _, _, _, task, _ = setup(net, min_workers=3, max_workers=4)  # stays JOINING
    assert net.phase(task).phase == Phase.JOINING
    assert sorted(r for r in net.job_runs if r.endswith(":warm")) == \
        ["csp:warm", "req:warm", "w0:warm", "w1:warm", "w2:warm"]
    assert sfl_jobs._public_key.cache_info().currsize == 1  # the joint key, before round 0
    assert sfl_jobs._task_keys.cache_info().currsize == 1
    net.mine()
    net.mine()  # every block reconciles every instance again
    assert len([r for r in net.job_runs if r.endswith(":warm")]) == 5  # once per process


@pytest.mark.parametrize("aggregation", ["equal", "nk"])
def test_the_final_model_is_bit_identical_to_in_process_fedavg(net, aggregation):
    """``nk`` weighs each selected model by its owner's n_k (the shards differ in size, so
    equal weights would give other bytes)."""
    _, _, _, task, shards = setup(net, aggregation=aggregation)
    sizes = {WORKERS[i].public: len(y) for i, (_, y) in enumerate(shards)}
    assert len(set(sizes.values())) > 1
    net.run_until(task, DONE)
    net.mine()
    spec = task_spec(aggregation=aggregation)
    current = model_from_bytes(model_spec(spec), chain_model(net, task, 0))
    for r in range(spec.rounds):
        uploads = {}
        for i, (x, y) in enumerate(shards):
            seed = derive_seed(Settings(seed_of(f"w{i}"), "", b"", b"", False, ""), "train",
                               task, r)
            uploads[WORKERS[i].public] = local_train(current, x, y, train_spec(spec),
                                                     generator(seed, b"train"))
        owner = owners(net, task, r)
        picked = [owner[i] for i in selected(net, task, r)]
        weights = [sizes[w] for w in picked] if aggregation == "nk" else None
        current = fedavg([uploads[w] for w in picked], weights)
        assert model_to_bytes(current) == chain_model(net, task, r + 1), f"round {r}"
    (x_held, y_held), _ = split_default(3)
    assert accuracy(current, x_held, y_held) > 0.85


@pytest.mark.parametrize("crash", ["req:r0-eval", "req:r1-model", "csp:r0-blind",
                                   "csp:r1-blind", "w1:r0-train", "w2:r1-train"])
def test_a_role_restarted_mid_task_still_completes(net, crash):
    _, _, _, task, _ = setup(net)
    net.crash_before.add(crash)
    net.run_until(task, DONE)
    assert not net.crash_before, "the crash happened"
    assert net.phase(task).phase == Phase.SETTLED
    assert len(paid(net)) == 3 and all(p[2] == 0 for p in paid(net).values())
    net.mine()
    assert chain_model(net, task, task_spec().rounds) is not None


def test_a_csp_stall_times_out_and_refunds_every_coin(net):
    _, csp, _, task, _ = setup(net)
    csp.alive = False  # the CSP never answers again
    net.run_until(task, DONE, advance=30)
    assert_aborted_and_refunded(net, task, "csp-stall")


def test_a_free_rider_and_a_label_flipper_are_excluded_and_accuracy_is_kept(net):
    behaviours = ("honest", "honest", "free-rider", "label-flip")
    _, _, _, task, _ = setup(net, behaviours)
    net.run_until(task, DONE)
    assert net.phase(task).phase == Phase.SETTLED
    rider, flipper = WORKERS[2].public, WORKERS[3].public
    for r in range(task_spec().rounds):
        owner = owners(net, task, r)
        scored = {owner[bytes(i)]: (bps, flag) for i, bps, flag in accuracies(net, task, r)}
        assert scored[rider][1] == 1  # flagged by the free-rider check
        assert scored[flipper][0] < task_spec().min_accuracy_bps
        assert {owner[i] for i in selected(net, task, r)} <= {WORKERS[0].public,
                                                             WORKERS[1].public}
    payouts = paid(net)
    assert payouts[rider][0] == 0 and payouts[rider][2] > 0  # no reward, deposit burned
    assert payouts[flipper][0] == 0
    assert net.chain.account(rider).reputation == -REP_LOSS
    net.mine()
    spec = task_spec(4)
    final = model_from_bytes(model_spec(spec), chain_model(net, task, spec.rounds))
    (x_held, y_held), _ = split_default(4)
    assert accuracy(final, x_held, y_held) > 0.85


def test_a_missing_submission_brings_its_own_block_past_the_deadline(net):
    """On-demand mining mines only with a transaction: when a worker never submits, the CSP
    itself asks for the block past T_wait (a no-op call), so the round closes without it."""
    _, _, workers, task, _ = setup(net)
    workers[2].alive = False  # joined, never trains
    net.run_until(task, {Phase.TRAINING})
    for _ in range(5):
        net.mine()
    status = net.phase(task)
    assert status.phase == Phase.TRAINING and status.submitted == 2
    assert not net.ledger.mempool.select()  # nothing left that would bring a block
    net.clock = status.window_end + 1
    net.settle()  # the CSP's wake-up at the deadline: only the clock moved
    pooled = net.ledger.mempool.select()
    assert [(tx.sender, tx.kind) for tx in pooled] == [(CSP.public, "transfer")]
    net.run_until(task, DONE)
    assert net.phase(task).phase == Phase.SETTLED
    assert paid(net)[WORKERS[2].public][0] == 0 and len(events_named(net, "sfl-worker-missed")) == 1
