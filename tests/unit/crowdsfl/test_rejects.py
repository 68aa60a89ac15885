"""One test per CrowdSFL reject code: each sets a task up just short of the rule and asserts
the stable code of the transaction that breaks it. The fixture checks supply after each."""

from __future__ import annotations

import dataclasses
import hashlib

from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_ACCURACY,
    KIND_BLINDED,
    KIND_CREATE,
    KIND_JOIN,
    KIND_MODEL,
    KIND_SELECT,
    KIND_SETTLE,
    KIND_SUBMIT,
    KIND_TIMEOUT,
    Phase,
    accuracy_payload,
    blinded_payload,
    create_payload,
    join_payload,
    model_payload,
    select_payload,
    settle_payload,
    submit_payload,
    timeout_payload,
)
from crowdmesh.crypto.groups import DEFAULT
from tests.unit.chain.helpers import T0
from tests.unit.crowdsfl.world import (
    CSP,
    FUNDS,
    MODEL,
    OTHER,
    REQ,
    WORKERS,
    World,
    base_spec,
    started,
)

W3 = WORKERS[:3]
DS = hashlib.sha256(b"dataset").digest()
NOWHERE = hashlib.sha256(b"no such blob").digest()


def _create(world: World, **overrides: object) -> str:
    return world.code(world.tx(REQ, KIND_CREATE, create_payload(base_spec(**overrides))))


def _join(world: World, task: bytes, key=OTHER, n_k: int = 1000) -> str:
    return world.code(world.tx(key, KIND_JOIN, join_payload(task, n_k, DS)))


def _blinded_task(world: World, **overrides: object):
    task = started(world, W3, **overrides)
    for w in W3:
        world.submit(task, 0, w)
    return task, world.blind(task, 0, W3)


def _scored_task(world: World, accs=None, **overrides: object):
    task, outs = _blinded_task(world, **overrides)
    world.accuracy(task, 0, outs, accs)
    return task, outs


def _final_task(world: World):
    task, outs = _scored_task(world, rounds=1)
    world.select(task, 0, [o.bundle_id for o in outs])
    return task


def _select(world: World, task: bytes, ids) -> str:
    return world.code(world.tx(CSP, KIND_SELECT, select_payload(task, 0, ids, bytes(32))))


def _settle(world: World, task: bytes, split) -> str:
    return world.code(world.tx(CSP, KIND_SETTLE, settle_payload(task, split)))


# -- payload and creation ---------------------------------------------------------------------


def test_bad_sfl_payload(world):
    task = world.create()
    assert world.code(world.tx(OTHER, KIND_JOIN, pack([task, "1000", DS]))) == "bad-sfl-payload"
    assert world.code(world.tx(OTHER, KIND_CREATE, pack(["spec"]))) == "sfl-bad-spec"


def test_sfl_bad_spec(world):
    assert _create(world, layers=(30, 1)) == "sfl-bad-spec"  # one class
    assert _create(world, min_workers=4, max_workers=3) == "sfl-bad-spec"
    assert _create(world, aggregation="krum") == "sfl-bad-spec"
    assert _create(world, bundle_chunks=10**6) == "sfl-bad-spec"


def test_sfl_csp_is_requester(world):
    assert _create(world, csp=REQ.public) == "sfl-csp-is-requester"


def test_sfl_join_deadline_past(world):
    assert _create(world, join_deadline=T0) == "sfl-join-deadline-past"


def test_sfl_key_missing(world):
    """The named CSP registered no ElGamal key (with a PoK): no task can use it."""
    assert _create(world, csp=OTHER.public) == "sfl-key-missing"


def test_sfl_pool_overspend(world):
    assert _create(world, pool=FUNDS) == "sfl-pool-overspend"  # the fee comes first


def test_sfl_unknown_task(world):
    assert _join(world, b"\x07" * 32) == "sfl-unknown-task"


# -- joining ----------------------------------------------------------------------------------


def test_sfl_join_closed(world):
    task = world.create()
    world.clock = base_spec().join_deadline
    assert _join(world, task) == "sfl-join-closed"


def test_sfl_join_role(world):
    task = world.create()
    assert _join(world, task, CSP) == "sfl-join-role"
    assert _join(world, task, REQ) == "sfl-join-role"


def test_sfl_already_joined(world):
    task = world.create()
    world.join(task, OTHER)
    assert _join(world, task) == "sfl-already-joined"


def test_sfl_task_full(world):
    task = world.create()
    for w in W3:
        world.join(task, w)
    assert _join(world, task) == "sfl-task-full"


def test_sfl_bad_nk(world):
    assert _join(world, world.create(), n_k=0) == "sfl-bad-nk"


def test_sfl_deposit_overspend(world):
    task = world.create(deposit_per_ksample=FUNDS)
    assert _join(world, task) == "sfl-deposit-overspend"


# -- phases, roles, rounds --------------------------------------------------------------------


def test_sfl_wrong_phase(world):
    task = world.create()
    payload = submit_payload(task, 0, NOWHERE, b"\x01" * 17)
    assert world.code(world.tx(WORKERS[0], KIND_SUBMIT, payload)) == "sfl-wrong-phase"


def test_sfl_wrong_round(world):
    task = world.create()
    for w in W3:
        world.join(task, w)
    name = world.upload(REQ, MODEL)
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 1, name))) \
        == "sfl-wrong-round"


def test_sfl_not_requester(world):
    task = world.create()
    for w in W3:
        world.join(task, w)
    name = world.upload(OTHER, MODEL)
    assert world.code(world.tx(OTHER, KIND_MODEL, model_payload(task, 0, name))) \
        == "sfl-not-requester"


def test_sfl_not_csp(world):
    task = started(world, W3)
    assert world.code(world.tx(OTHER, KIND_BLINDED, blinded_payload(task, 0, []))) \
        == "sfl-not-csp"


# -- global models ----------------------------------------------------------------------------


def test_sfl_too_few_workers(world):
    task = world.create()
    world.join(task, W3[0])
    world.clock = base_spec().join_deadline
    name = world.upload(REQ, MODEL)
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 0, name))) \
        == "sfl-too-few-workers"


def test_sfl_too_early(world):
    task = world.create()
    for w in W3[:2]:  # enough workers, but joining is open and the task is not full
        world.join(task, w)
    name = world.upload(REQ, MODEL)
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 0, name))) == "sfl-too-early"


def test_sfl_too_early_for_the_blinded_list(world):
    task = started(world, W3)
    world.submit(task, 0, W3[0])
    assert world.code(world.tx(CSP, KIND_BLINDED, blinded_payload(task, 0, []))) \
        == "sfl-too-early"


def test_sfl_blob_missing(world):
    task = world.create()
    for w in W3:
        world.join(task, w)
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 0, NOWHERE))) \
        == "sfl-blob-missing"


def test_sfl_model_too_large(world):
    task = world.create()
    for w in W3:
        world.join(task, w)
    name = world.upload(REQ, bytes(2000))  # 3 chunks hold 3 × 383 − 8 bytes
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 0, name))) \
        == "sfl-model-too-large"


def test_sfl_model_exists(world):
    task = _final_task(world)
    world.model(task, 1)
    name = world.upload(REQ, MODEL[::-1])
    assert world.code(world.tx(REQ, KIND_MODEL, model_payload(task, 1, name))) \
        == "sfl-model-exists"
    world.settle(task, [(w.public, 0, 0) for w in W3])


# -- submissions ------------------------------------------------------------------------------


def _submit_code(world: World, task: bytes, worker, bundle, proof, round_: int = 0) -> str:
    return world.code(world.submit_tx(task, round_, worker, bundle, proof.to_bytes()))


def test_sfl_not_worker(world):
    task = started(world, W3)
    bundle, proof = world.encrypt(task, 0, OTHER)
    assert _submit_code(world, task, OTHER, bundle, proof) == "sfl-not-worker"


def test_sfl_worker_inactive(world):
    task = started(world, W3)
    for w in W3[:2]:
        world.submit(task, 0, w)
    world.clock += 100
    outs = world.blind(task, 0, W3)
    world.accuracy(task, 0, outs)
    world.select(task, 0, [])
    world.model(task, 1)
    bundle, proof = world.encrypt(task, 1, W3[2])
    assert _submit_code(world, task, W3[2], bundle, proof, round_=1) == "sfl-worker-inactive"


def test_sfl_late(world):
    task = started(world, W3)
    bundle, proof = world.encrypt(task, 0, W3[0])
    world.clock += 100
    assert _submit_code(world, task, W3[0], bundle, proof) == "sfl-late"


def test_sfl_double_submit(world):
    task = started(world, W3)
    world.submit(task, 0, W3[0])
    bundle, proof = world.encrypt(task, 0, W3[0], b"another model")
    assert _submit_code(world, task, W3[0], bundle, proof) == "sfl-double-submit"


def test_sfl_duplicate_bundle(world):
    task = started(world, W3)
    bundle = world.submit(task, 0, W3[0])
    _, proof = world.encrypt(task, 0, W3[1])
    assert _submit_code(world, task, W3[1], bundle, proof) == "sfl-duplicate-bundle"


def test_sfl_bundle_shape(world):
    task = started(world, W3)
    from crowdmesh.crypto.randproof import encrypt_proven
    bundle, proof = encrypt_proven(world.keys.joint, MODEL, world.rng, W3[0].public, task, 0, 4)
    assert _submit_code(world, task, W3[0], bundle, proof) == "sfl-bundle-shape"


def test_sfl_bundle_element(world):
    """A non-residue component would tag the bundle through blinding: refused on chain."""
    task = started(world, W3)
    bundle, proof = world.encrypt(task, 0, W3[0])
    c2 = (DEFAULT.group.p - bundle.c2[0], *bundle.c2[1:])
    bad = dataclasses.replace(bundle, c2=c2)
    assert _submit_code(world, task, W3[0], bad, proof) == "sfl-bundle-element"


def test_bad_randproof(world):
    task = started(world, W3)
    bundle, proof = world.encrypt(task, 1, W3[0])  # proved for round 1, submitted for round 0
    assert _submit_code(world, task, W3[0], bundle, proof) == "bad-randproof"


# -- the blinded list -------------------------------------------------------------------------


def _blinded_code(world: World, task: bytes, entries) -> str:
    return world.code(world.tx(CSP, KIND_BLINDED, blinded_payload(task, 0, entries)))


def _submitted_task(world: World):
    task = started(world, W3)
    for w in W3:
        world.submit(task, 0, w)
    return task, world.prepare_blinded(task, 0, W3)[1]


def test_sfl_blinded_count(world):
    task, entries = _submitted_task(world)
    assert _blinded_code(world, task, entries[:2]) == "sfl-blinded-count"


def test_sfl_blinded_id(world):
    task, entries = _submitted_task(world)
    assert _blinded_code(world, task, [entries[0], entries[0], entries[1]]) == "sfl-blinded-id"


def test_sfl_blinded_shape(world):
    task, entries = _submitted_task(world)
    (id0, blob0), (id1, blob1) = entries[:2]
    swapped = [(id0, blob1), (id1, blob0), entries[2]]  # each blob's header names the other id
    assert _blinded_code(world, task, swapped) == "sfl-blinded-shape"
    assert _blinded_code(world, task, [(b"\x00" * 16, NOWHERE), *entries[1:]]) \
        == "sfl-blob-missing"


# -- accuracies and selection -----------------------------------------------------------------


def _accuracy_code(world: World, task: bytes, entries) -> str:
    return world.code(world.tx(REQ, KIND_ACCURACY, accuracy_payload(task, 0, entries)))


def test_sfl_accuracy_ids(world):
    task, outs = _blinded_task(world)
    entries = [(o.bundle_id, 9000, 0) for o in outs]
    assert _accuracy_code(world, task, entries[::-1]) == "sfl-accuracy-ids"
    assert _accuracy_code(world, task, entries[:2]) == "sfl-accuracy-ids"


def test_sfl_accuracy_range(world):
    task, outs = _blinded_task(world)
    assert _accuracy_code(world, task, [(o.bundle_id, 10_001, 0) for o in outs]) \
        == "sfl-accuracy-range"
    assert _accuracy_code(world, task, [(o.bundle_id, 9000, 2) for o in outs]) \
        == "sfl-accuracy-range"


def test_sfl_select_unknown_id(world):
    task, _ = _scored_task(world)
    assert _select(world, task, [b"\x09" * 16]) == "sfl-select-unknown-id"


def test_sfl_select_duplicate(world):
    task, outs = _scored_task(world)
    assert _select(world, task, [outs[0].bundle_id] * 2) == "sfl-select-duplicate"


def test_sfl_select_too_many(world):
    task, outs = _scored_task(world, select_m=2)
    assert _select(world, task, [o.bundle_id for o in outs]) == "sfl-select-too-many"


def test_sfl_select_below_threshold(world):
    task, outs = _scored_task(world, accs=[9000, 4000, 9000])  # min_accuracy_bps = 5000
    assert _select(world, task, [outs[1].bundle_id]) == "sfl-select-below-threshold"


def test_sfl_select_weights(world):
    """An nk task's selection carries each selected model's n_k, from this round's
    submitters' n_k (all 1000 here); a task of another aggregation carries none."""
    ids = None

    def select(task: bytes, weights) -> str:
        payload = select_payload(task, 0, ids, bytes(32), weights)
        return world.code(world.tx(CSP, KIND_SELECT, payload))

    task, outs = _scored_task(world, aggregation="nk")
    ids = [o.bundle_id for o in outs]
    assert select(task, [1000, 1000]) == "sfl-select-weights"  # one per selected id
    assert select(task, [1000, 1000, 999]) == "sfl-select-weights"  # nobody declared 999
    assert select(task, []) == "sfl-select-weights"
    world.send(CSP, KIND_SELECT, select_payload(task, 0, ids, bytes(32), [1000] * 3))
    assert world.phase(task).phase == Phase.SELECTED
    task, outs = _scored_task(world)
    ids = [o.bundle_id for o in outs]
    assert select(task, [1000] * 3) == "sfl-select-weights"  # an equal-weight task


# -- settlement and timeouts ------------------------------------------------------------------


def test_sfl_settle_workers(world):
    task = _final_task(world)
    assert _settle(world, task, [(w.public, 0, 0) for w in W3[:2]]) == "sfl-settle-workers"
    assert _settle(world, task, [(w.public, 0, 0) for w in W3[::-1]]) == "sfl-settle-workers"
    world.settle(task, [(w.public, 0, 0) for w in W3])


def test_sfl_settle_ineligible(world):
    task = _final_task(world)
    split = [(W3[0].public, 100, 1), (W3[1].public, 0, 0), (W3[2].public, 0, 0)]
    assert _settle(world, task, split) == "sfl-settle-ineligible"
    world.settle(task, [(w.public, 0, 0) for w in W3])


def test_sfl_settle_over_pool(world):
    task = _final_task(world)
    assert _settle(world, task, [(w.public, 3001, 0) for w in W3]) == "sfl-settle-over-pool"
    world.settle(task, [(w.public, 3000, 0) for w in W3])


def test_sfl_not_expired(world):
    task = started(world, W3)
    tx = world.tx(OTHER, KIND_TIMEOUT, timeout_payload(task))
    assert world.code(tx, advance=150) == "sfl-not-expired"  # T_wait + t_step = 200
