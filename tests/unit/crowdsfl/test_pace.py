"""``pool_pace``: when pooled CrowdSFL calls leave no step waiting for another call (a sole
miner may mine at once), when a step certainly has more calls due (it waits for them), and
when nothing is known (the quiet wait)."""

from __future__ import annotations

import hashlib

from crowdmesh.chain.contracts.blob import KIND as BLOB_PART
from crowdmesh.chain.contracts.blob import split_blob
from crowdmesh.chain.contracts.crowdsfl import (
    CONTRACTS,
    KIND_ACCURACY,
    KIND_JOIN,
    KIND_MODEL,
    KIND_SUBMIT,
    PoolPace,
    join_payload,
    model_payload,
    pool_pace,
    submit_payload,
)
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.crypto.groups import DEFAULT
from tests.unit.crowdsfl.world import CSP, OTHER, REQ, WORKERS, started

W3 = WORKERS[:3]


def _pace(world, txs) -> PoolPace:
    return pool_pace(world.chain.state_get, txs)


def _complete(world, txs) -> bool:
    return _pace(world, txs) is PoolPace.COMPLETE


def _awaiting(world, txs) -> bool:
    return _pace(world, txs) is PoolPace.AWAITING


def _submits(world, task, workers):
    out = []
    for w in workers:
        bundle, proof = world.encrypt(task, 0, w)
        out.append(world.submit_tx(task, 0, w, bundle, proof.to_bytes()))
    return out


def _join(world, task, worker):
    return world.tx(worker, KIND_JOIN, join_payload(task, 1000, hashlib.sha256(worker.public)
                                                    .digest()))


def test_an_empty_pool_says_nothing(world):
    assert _pace(world, []) is PoolPace.UNKNOWN


def test_a_one_party_call_completes_its_step(world):
    task = started(world, W3)
    assert _complete(world, [world.tx(REQ, KIND_MODEL, model_payload(task, 1, b"m" * 32))])
    assert _complete(world, [world.tx(REQ, KIND_ACCURACY, b"\x90")])  # not even decoded
    for kind in set(CONTRACTS) - {KIND_SUBMIT, KIND_JOIN}:  # every kind but the two groups
        assert _complete(world, [world.tx(REQ, kind, b"\x90")]), kind


def test_submissions_complete_the_round_only_from_every_active_worker(world):
    task = started(world, W3)
    subs = _submits(world, task, W3)
    assert _awaiting(world, subs[:2])
    assert _awaiting(world, [subs[0], subs[0], subs[1]])  # a sender counts once
    assert _complete(world, subs)


def test_submissions_already_on_chain_count(world):
    task = started(world, W3)
    subs = _submits(world, task, W3)
    world.block(subs[0])
    assert _awaiting(world, subs[1:2])
    assert _complete(world, subs[1:])


def test_blob_parts_count_only_beside_their_senders_call(world):
    task = started(world, W3)
    w = W3[0]
    bundle, proof = world.encrypt(task, 0, w)
    parts = [world.tx(w, BLOB_PART, p) for p in split_blob(bundle.to_bytes(DEFAULT.group))]
    call = world.tx(w, KIND_SUBMIT, submit_payload(task, 0, b"n" * 32, proof.to_bytes()))
    others = _submits(world, task, W3[1:])
    assert _complete(world, [*parts, call, *others])
    assert _awaiting(world, [*parts, *others])  # the parts' call has not arrived yet


def test_joins_complete_only_a_full_task(world):
    task = world.create()  # max_workers = 3
    joins = [_join(world, task, w) for w in W3]
    assert _awaiting(world, joins[:2])
    assert _complete(world, joins)
    world.block(joins[0])
    assert _complete(world, joins[1:])


def test_anything_else_in_the_pool_keeps_the_quiet_wait(world):
    task = started(world, W3)
    subs = _submits(world, task, W3)
    transfer = world.tx(OTHER, TRANSFER, transfer_payload(CSP.public, 5))
    assert _pace(world, [*subs, transfer]) is PoolPace.UNKNOWN
    assert _pace(world, [transfer]) is PoolPace.UNKNOWN


def test_an_undecodable_call_or_unknown_task_completes_nothing(world):
    w = W3[0]
    assert _pace(world, [world.tx(w, KIND_SUBMIT, b"\x90")]) is PoolPace.UNKNOWN
    unknown = submit_payload(b"u" * 32, 0, b"n" * 32, b"p" * 32)
    assert _pace(world, [world.tx(w, KIND_SUBMIT, unknown)]) is PoolPace.UNKNOWN
    assert _pace(world, [_join(world, b"u" * 32, w)]) is PoolPace.UNKNOWN
