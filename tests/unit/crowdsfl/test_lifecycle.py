"""Whole CrowdSFL tasks on a real chain: the happy path, abort paths, late workers, copying,
replays and double submissions. The fixture checks the supply identity after every test."""

from __future__ import annotations

from crowdmesh.chain.contracts.crowdsfl import (
    KIND_JOIN,
    KIND_SUBMIT,
    REP_GAIN,
    REP_LOSS,
    Phase,
    WorkerState,
    burned_total,
    deposit_for,
    escrow_total,
    join_payload,
    load_worker,
    submit_payload,
)
from crowdmesh.crypto.csp import requester_open
from crowdmesh.crypto.elgamal import blind
from crowdmesh.crypto.groups import DEFAULT
from tests.unit.crowdsfl.world import CSP, MODEL, OTHER, REQ, WORKERS, base_spec, started

W3 = WORKERS[:3]


def _spent_fees(world, key) -> int:
    return sum(tx.fee for h in range(1, world.chain.height + 1)
               for tx in world.chain.get_block_by_height(h).txs if tx.sender == key.public)


def _net(world, key) -> int:
    """Balance change of ``key`` apart from the fees it paid."""
    return world.chain.balance(key.public) + _spent_fees(world, key) - 10**9


def test_full_task_pays_rewards_returns_deposits_and_refunds_the_rest(world):
    task = started(world, W3)
    deposit = deposit_for(base_spec(), 1000, 0)
    outs = world.run_round(task, 0, W3)
    # The requester can open every blinded model (DLEQ verified off chain) and gets them all.
    opened = {requester_open(world.keys, world.req_keys.sk, o) for o in outs}
    assert opened == {MODEL}
    world.model(task, 1)
    world.run_round(task, 1, W3)
    assert world.phase(task).phase == Phase.FINAL
    world.settle(task, [(W3[0].public, 3000, 0), (W3[1].public, 2000, 0), (W3[2].public, 1000, 0)])
    assert world.phase(task).phase == Phase.SETTLED
    assert [_net(world, w) for w in W3] == [3000, 2000, 1000]
    assert _net(world, REQ) == -6000  # pool 9000 escrowed, 3000 refunded
    assert all(world.chain.account(w.public).reputation == REP_GAIN for w in W3)
    assert escrow_total(world.chain.state_get) == 0 and deposit > 0
    world.model(task, 2)  # the final model is optional and accepted after settlement


def test_requester_stall_aborts_and_refunds_every_coin(world):
    task = started(world, W3)
    for w in W3:
        world.submit(task, 0, w)
    world.blind(task, 0, W3)
    world.timeout(task, advance=101)  # the requester owed accuracies within t_step
    assert world.phase(task).phase == Phase.ABORTED
    assert [_net(world, k) for k in (REQ, *W3)] == [0, 0, 0, 0]
    assert escrow_total(world.chain.state_get) == 0


def test_csp_stall_aborts_and_refunds_every_coin(world):
    task = started(world, W3)
    for w in W3:
        world.submit(task, 0, w)
    world.timeout(task, advance=200)  # past T_wait + t_step: the CSP never posted its list
    receipt = world.chain.tx_receipt(world.chain.get_block_by_height(world.chain.height)
                                     .txs[0].txid)
    assert receipt.events[-1].fields[1] == "csp-stall"
    assert [_net(world, k) for k in (REQ, CSP, *W3)] == [0, 0, 0, 0, 0]


def test_too_few_workers_abort_after_the_join_deadline(world):
    task = world.create()
    world.join(task, WORKERS[0])
    world.clock = base_spec().join_deadline
    world.timeout(task, advance=1)
    assert world.phase(task).phase == Phase.ABORTED
    assert _net(world, WORKERS[0]) == 0 and _net(world, REQ) == 0


def test_late_worker_loses_deposit_and_reputation_and_the_round_goes_on(world):
    task = started(world, W3)
    for w in W3[:2]:
        world.submit(task, 0, w)
    world.clock += 100  # W3[2] misses the T_wait deadline
    outs = world.blind(task, 0, W3)
    assert len(outs) == 2
    assert load_worker(world.chain.state_get, task, W3[2].public).state == WorkerState.MISSED
    world.accuracy(task, 0, outs)
    world.select(task, 0, [o.bundle_id for o in outs])
    world.model(task, 1)
    bundle, proof = world.encrypt(task, 1, W3[2])
    assert world.code(world.submit_tx(task, 1, W3[2], bundle, proof.to_bytes())) \
        == "sfl-worker-inactive"
    world.run_round(task, 1, W3[:2])
    world.settle(task, [(W3[0].public, 4000, 0), (W3[1].public, 4000, 0), (W3[2].public, 0, 0)])
    deposit = deposit_for(base_spec(), 1000, 0)
    assert _net(world, W3[2]) == -deposit
    assert world.chain.account(W3[2].public).reputation == -REP_LOSS
    assert burned_total(world.chain.state_get) == deposit


def test_rerandomised_copy_and_byte_identical_copy_are_refused(world):
    task = started(world, W3)
    original = world.submit(task, 0, W3[0])
    _, own_proof = world.encrypt(task, 0, W3[1])
    copy = blind(world.keys.joint, original, world.rng)
    assert world.code(world.submit_tx(task, 0, W3[1], copy, own_proof.to_bytes())) \
        == "bad-randproof"
    # The byte-identical bundle is already on chain as a blob: name it directly.
    from crowdmesh.chain.contracts.blob import blob_hash
    name = blob_hash(original.to_bytes(DEFAULT.group))
    tx = world.tx(W3[1], KIND_SUBMIT, submit_payload(task, 0, name, own_proof.to_bytes()))
    assert world.code(tx) == "sfl-duplicate-bundle"


def test_second_submission_in_a_round_is_refused(world):
    task = started(world, W3)
    world.submit(task, 0, W3[0])
    bundle, proof = world.encrypt(task, 0, W3[0], MODEL[::-1])
    assert world.code(world.submit_tx(task, 0, W3[0], bundle, proof.to_bytes())) \
        == "sfl-double-submit"


def test_replayed_transaction_is_refused_by_its_nonce(world):
    task = world.create()
    join = world.tx(OTHER, KIND_JOIN, join_payload(task, 1000, b"\x01" * 32))
    world.block(join)
    world.nonces[OTHER.public] -= 1  # the replay carries the same nonce
    assert world.code(join) == "bad-tx-nonce"
    world.nonces[OTHER.public] += 1
