"""One test per attack of DESIGN.md "CrowdSFL protocol" / issue 9 item 6, on the real contract,
the real CSP pipeline and the requester's real checks. Each docstring names the defence that
stops the attack; docs/crowdsfl.md "Attacks and their tests" records how each test fails when
that defence is disabled. The ``world`` fixture checks the supply identity after every test.

Covered elsewhere (referenced, not repeated):
- Legendre-symbol leak of raw encodings:
  ``tests/unit/crypto/test_elgamal.py::test_legendre_distinguisher_wins_on_raw_encoding_and_is_at_chance_on_ours``
  (and the chain refuses a non-residue component: ``test_rejects.py::test_sfl_bundle_element``).
- Paper order (ReEnc before Blind) linking:
  ``tests/unit/crypto/test_elgamal.py::test_paper_order_intermediate_is_linkable_and_decryptable_by_requester``.
- Free rider, label flipper, random-weight worker: ``tests/unit/crowdsfl_roles/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import numpy as np
import pytest

from crowdmesh.chain import make_transaction, register_key_payload
from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts import REGISTER_KEY
from crowdmesh.chain.contracts.blob import blob_info
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_BLINDED,
    KIND_SELECT,
    REP_GAIN,
    REP_LOSS,
    Phase,
    WorkerState,
    blinded_payload,
    burned_total,
    create_payload,
    deposit_for,
    escrow_total,
    load_worker,
    score_commitment,
    select_payload,
)
from crowdmesh.chain.contracts.crowdsfl.records import read_list, round_key
from crowdmesh.chain.contracts.registry import registered_key
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto import _gmp
from crowdmesh.crypto.csp import csp_process, requester_open, requester_verify, task_keys
from crowdmesh.crypto.elgamal import blind, decrypt, encrypt
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.randproof import encrypt_proven
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.sflapi import SPEC_DEFAULTS
from crowdmesh.errors import ValidationError
from crowdmesh.fl import fedavg, init_model, model_to_bytes
from crowdmesh.roles.sfl_jobs import aggregate_job, model_spec
from tests.unit.chain.helpers import MINERS
from tests.unit.crowdsfl.world import (
    CHUNKS,
    CSP,
    MODEL,
    OTHER,
    REQ,
    WORKERS,
    base_spec,
    started,
)

W3 = WORKERS[:3]


def _spent_fees(world, key) -> int:
    return sum(tx.fee for h in range(1, world.chain.height + 1)
               for tx in world.chain.get_block_by_height(h).txs if tx.sender == key.public)


def _net(world, key) -> int:
    """Balance change of ``key`` apart from the fees it paid."""
    return world.chain.balance(key.public) + _spent_fees(world, key) - 10**9


def _skipped(world, tx, advance: int = 10) -> str:
    """The reject code of ``tx`` in a block template (nonce bookkeeping untouched)."""
    tpl = world.chain.build_block_template(MINERS[0], (tx,), world.clock + advance)
    assert [t for t, _ in tpl.skipped] == [tx.txid], "the transaction was accepted"
    return tpl.skipped[0][1]


# -- keys ---------------------------------------------------------------------------------------


def test_rogue_requester_key(world):
    """Rogue-key attack: a requester publishing h_req = g^x / h_csp makes PK = g^x and decrypts
    every upload alone. Defence: ``register-key`` verifies a Schnorr PoK of log_g(h) bound to the
    sender (``verify_key_pok`` in ``chain/contracts/registry.py``), which the requester cannot
    make for g^x / h_csp: the registration is refused with ``bad-key-pok``."""
    g, p = DEFAULT.group.g, DEFAULT.group.p
    x = DEFAULT.random_exponent(world.rng)
    rogue = _gmp.powmod(g, x, p) * _gmp.invert(world.csp_keys.pk, p) % p
    # What the key would give: PK = h_csp·h_req = g^x, so x alone opens a worker's upload.
    keys = task_keys(DEFAULT, world.csp_keys.pk, rogue)
    upload = encrypt(keys.joint, MODEL, world.rng, chunks=CHUNKS)
    assert decrypt(DEFAULT, x, upload) == MODEL
    # The only proof OTHER can make is for x, not for log_g(rogue): the chain refuses the key.
    proof = prove_key(DEFAULT, OTHER.public, x, world.rng)
    tx = world.tx(OTHER, REGISTER_KEY, register_key_payload("default", rogue, proof))
    assert world.code(tx) == "bad-key-pok"
    assert registered_key(world.chain.state_get, OTHER.public, "default") is None
    # Without a registered key OTHER cannot name itself requester of a task either.
    create = world.tx(OTHER, "sfl-create", create_payload(base_spec()))
    assert world.code(create) == "sfl-key-missing"


# -- a requester linking a model to a worker ---------------------------------------------------


def _round_with(world, datas):
    """A started task whose three workers submitted ``datas`` (in W3 order)."""
    task = started(world, W3)
    for w, data in zip(W3, datas, strict=True):
        world.submit(task, 0, w, data)
    return task


def test_linking_by_order(world):
    """Link by position: the requester knows the order submissions reached the chain and sees
    the blinded list's order. Defence: ``csp_process`` applies a uniformly random permutation
    (``random_permutation``) after blinding, so where a worker's model lands in the list is
    independent of its submission position. Over 24 CSP runs on the same three on-chain
    submissions, the first worker's model (opened with the requester's key, as the requester
    does) lands first about a third of the time, not always."""
    datas = [bytes([i + 1]) * 800 for i in range(3)]
    task = _round_with(world, datas)
    bundles = world.submitted(task, 0, W3)
    positions = []
    for seed in range(24):
        result = csp_process(world.keys, world.csp_keys.sk, bundles, DeterministicRng(seed))
        if seed < 4:  # what the requester sees agrees with the CSP's secret permutation
            opened = [requester_open(world.keys, world.req_keys.sk, o) for o in result.outputs]
            assert opened == [datas[i] for i in result.permutation]
        positions.append(result.permutation.index(0))
    counts = [positions.count(j) for j in range(3)]
    assert all(2 <= c <= 16 for c in counts), counts  # binomial(24, 1/3) per position


def test_linking_by_ids(world):
    """Link by identifier: ids that carried the worker's bundle id, key or any function of its
    upload would name the worker. Defence: the CSP gives every output a fresh random 16-byte id
    (``csp._prove_one``: ``rng.token_bytes``), and the contract refuses ids reused in the task
    (``sfl-blinded-id``). The ids on chain match no worker key, no submitted blob, no input
    bundle id, and a second CSP run on the same inputs gives disjoint ids: they are not derived
    from the uploads."""
    task = _round_with(world, [MODEL] * 3)
    outs = world.blind(task, 0, W3)
    on_chain = [bytes(i) for i, _ in read_list(world.chain.state_get,
                                                round_key(b"b", task, 0))]
    assert on_chain == [o.bundle_id for o in outs]
    bundles = world.submitted(task, 0, W3)
    uploads = [world.chain.state_get(round_key(b"u", task, 0, w.public)) for w in W3]
    derived = {b.bundle_id[:16] for b in bundles} | {w.public[:16] for w in W3} \
        | {hashlib.sha256(w.public).digest()[:16] for w in W3} | {u[:16] for u in uploads}
    assert not set(on_chain) & derived
    again = csp_process(world.keys, world.csp_keys.sk, bundles, DeterministicRng(b"again"))
    assert not {o.bundle_id for o in again.outputs} & set(on_chain)


def test_linking_by_sizes(world):
    """Link by size: models of different lengths would give ciphertexts of different chunk
    counts. Defence: every bundle is padded to the task's ``bundle_chunks`` (``encode(…,
    chunks=N)``), and the contract refuses any other chunk count (``sfl-bundle-shape``). Three
    models of 10, 800 and 1,100 bytes give equal-size uploads and blinded bundles with equal
    ciphertext columns; an unpadded upload is refused."""
    datas = [b"\x07" * 10, MODEL, bytes(range(100)) * 11]
    task = _round_with(world, datas)
    get = world.chain.state_get
    uploads = [get(round_key(b"u", task, 0, w.public)) for w in W3]
    assert len({blob_info(get, u)[2] for u in uploads}) == 1
    outs = world.blind(task, 0, W3)
    # The ciphertext columns are equal in size; only the DLEQ proof's minimal-length response
    # may differ by a byte, and its length depends on the CSP's fresh nonce, not on the worker.
    assert len({len(o.to_bytes(DEFAULT.group)) - len(o.proof.to_bytes()) for o in outs}) == 1
    blinded = [bytes(n) for _, n in read_list(get, round_key(b"b", task, 0))]
    sizes = {blob_info(get, n)[2] for n in blinded}
    assert max(sizes) - min(sizes) <= 1, sizes
    # The attack: a worker (or a buggy client) uploads its model unpadded: one chunk, not three.
    task2 = started(world, WORKERS[:2], max_workers=2)
    short, proof = encrypt_proven(world.keys.joint, b"\x07" * 10, world.rng,
                                  WORKERS[0].public, task2, 0, None)
    assert len(short) == 1
    assert world.code(world.submit_tx(task2, 0, WORKERS[0], short, proof.to_bytes())) \
        == "sfl-bundle-shape"


def test_linking_by_timing(world):
    """Link by timing: a CSP that passed bundles on as they arrived would let the requester
    match each blinded bundle to the submission just before it. Defence: one ``sfl-blinded``
    list per round, with one entry per submission (``sfl-blinded-count``), accepted only once
    the deadline passed or every active worker submitted (``sfl-too-early``); the phase then
    moves on, so a second list is refused (``sfl-wrong-phase``)."""
    task = started(world, W3)
    for w in W3[:2]:
        world.submit(task, 0, w)
    _, early = world.prepare_blinded(task, 0, W3[:2])
    tx = world.tx(CSP, KIND_BLINDED, blinded_payload(task, 0, early))
    assert world.code(tx, advance=0) == "sfl-too-early"
    world.submit(task, 0, W3[2])
    _, entries = world.prepare_blinded(task, 0, W3)
    world.send(CSP, KIND_BLINDED, blinded_payload(task, 0, entries), advance=0)
    assert world.phase(task).phase == Phase.BLINDED
    assert len(read_list(world.chain.state_get, round_key(b"b", task, 0))) == 3
    _, more = world.prepare_blinded(task, 0, W3)
    tx = world.tx(CSP, KIND_BLINDED, blinded_payload(task, 0, more))
    assert world.code(tx, advance=0) == "sfl-wrong-phase"


def _models(spec, seeds):
    return [init_model(model_spec(spec), np.random.default_rng(s)) for s in seeds]


def _vector(model_bytes: bytes) -> np.ndarray:
    return np.frombuffer(model_bytes, dtype="<f4")


def test_linking_by_nk_weights(world):
    """Link by n_k: every worker's n_k is public (``sfl-join``). If the next global model were
    the n_k-weighted mean of the opened models, the requester could try every assignment of the
    public n_k to the blinded models and keep the one that reproduces w_{t+1}. Defence: a task
    aggregates with equal weights unless its creator asks for ``nk`` (``sfl_jobs.aggregate_job``
    with no weights; the default spec of ``task create`` says ``equal``). No assignment of the
    public n_k reproduces the posted aggregate. (An ``nk`` task gives up this unlinkability by
    choice: its ``sfl-select`` names each selected model's n_k, see docs/crowdsfl.md.)"""
    assert SPEC_DEFAULTS["aggregation"] == "equal"
    spec = base_spec(aggregation="equal")
    nk = [100, 400, 1600]
    task = world.create(aggregation="equal")
    for w, n in zip(W3, nk, strict=True):
        world.join(task, w, n_k=n)
    assert [load_worker(world.chain.state_get, task, w.public).n_k for w in W3] == nk
    models = _models(spec, [1, 2, 3])  # the opened models, in blinded order
    posted = _vector(aggregate_job(pack(spec.to_obj()), [model_to_bytes(m) for m in models]))
    links = [perm for perm in itertools.permutations(range(3))
             if np.allclose(posted, _vector(model_to_bytes(
                 fedavg(models, weights=[nk[i] for i in perm]))), rtol=0, atol=1e-6)]
    assert links == []
    assert np.allclose(posted, _vector(model_to_bytes(fedavg(models))))


def test_linking_by_scores(world):
    """Link by published scores: n_k (so the X rank) and reputation R are public, so a
    per-worker score would give Y = X + W·R − Score, the accuracy rank, which the public
    accuracies per blinded id turn back into the worker ↔ model link. Defence: per round the
    CSP posts only the selected ids and a 32-byte salted commitment to its score table
    (``sfl-select`` schema ``[task, round, [id16…], b32]``); a payload carrying the table is
    refused (``bad-sfl-payload``), and the state keeps only ids and the commitment."""
    task = _round_with(world, [MODEL] * 3)
    outs = world.blind(task, 0, W3)
    world.accuracy(task, 0, outs, [9000, 8000, 7000])
    table = [(w.public, s) for w, s in zip(W3, [5, 3, 1], strict=True)]
    ids = [o.bundle_id for o in outs]
    leaky = pack([task, 0, ids, pack([[w, s] for w, s in table])])
    assert world.code(world.tx(CSP, KIND_SELECT, leaky)) == "bad-sfl-payload"
    commitment = score_commitment(b"salt-1", table)
    world.send(CSP, KIND_SELECT, select_payload(task, 0, ids, commitment))
    stored = read_list(world.chain.state_get, round_key(b"c", task, 0))
    assert [[bytes(i) for i in stored[0]], bytes(stored[1])] == [ids, commitment]
    # The salt hides the table even among the few a requester could enumerate.
    assert score_commitment(b"salt-2", table) != commitment
    receipt = world.chain.tx_receipt(world.chain.get_block_by_height(world.chain.height)
                                     .txs[0].txid)
    assert not any(w.public in f for e in receipt.events for f in e.fields
                   if isinstance(f, bytes) for w in W3)


# -- workers ------------------------------------------------------------------------------------


def test_worker_resubmitting_anothers_rerandomised_ciphertext(world):
    """Copying: anyone can re-randomise an ElGamal ciphertext, so a worker could resubmit
    another's model as its own. Defence: each submission carries a batched proof of knowledge
    of its encryption randomness bound to sender, task and round (``crypto/randproof.py``,
    checked on chain by ``bundles.check_submission``): the copy cannot carry one
    (``bad-randproof``); a byte-identical copy is refused before that (``sfl-duplicate-bundle``)."""
    task = started(world, W3)
    original = world.submit(task, 0, W3[0])
    copy = blind(world.keys.joint, original, world.rng)
    assert decrypt(DEFAULT, world.req_keys.sk + world.csp_keys.sk, copy) == MODEL
    _, own_proof = world.encrypt(task, 0, W3[1])
    assert world.code(world.submit_tx(task, 0, W3[1], copy, own_proof.to_bytes())) \
        == "bad-randproof"
    assert world.chain.state_get(round_key(b"u", task, 0, W3[1].public)) is None


def test_late_or_missing_submission(world):
    """Sabotage by not submitting: a worker joins, then misses a deadline, and would otherwise
    lose nothing. Defence: the CSP's list after the deadline marks every active worker without a
    submission MISSED (``phases._mark_missed``); a missed worker is out of the task
    (``sfl-worker-inactive``), its settlement reward must be 0 (``sfl-settle-ineligible``), its
    deposit is burned and its reputation falls by REP_LOSS; the round goes on without it."""
    task = started(world, W3)
    for w in W3[:2]:
        world.submit(task, 0, w)
    world.clock += base_spec().t_wait  # W3[2] misses the deadline
    late, proof = world.encrypt(task, 0, W3[2])
    assert world.code(world.submit_tx(task, 0, W3[2], late, proof.to_bytes())) == "sfl-late"
    outs = world.blind(task, 0, W3)
    assert load_worker(world.chain.state_get, task, W3[2].public).state == WorkerState.MISSED
    world.accuracy(task, 0, outs)
    world.select(task, 0, [o.bundle_id for o in outs])
    world.model(task, 1)
    world.run_round(task, 1, W3[:2])
    world.settle(task, [(W3[0].public, 4000, 0), (W3[1].public, 4000, 0), (W3[2].public, 0, 0)])
    deposit = deposit_for(base_spec(), 1000, 0)
    assert _net(world, W3[2]) == -deposit
    assert burned_total(world.chain.state_get) == deposit
    assert world.chain.account(W3[2].public).reputation == -REP_LOSS
    assert world.chain.account(W3[0].public).reputation == REP_GAIN


def test_replayed_or_forged_call(world):
    """Replay and forgery: re-sending someone's signed call, or a call in their name that they
    never signed. Defences: the account nonce (``rules.apply_tx``: ``bad-tx-nonce``) and the
    Ed25519 signature over the whole call (``rules.check_tx``: ``bad-tx-sig``)."""
    pay = world.tx(REQ, TRANSFER, transfer_payload(OTHER.public, 1000))
    world.block(pay)
    assert _skipped(world, pay) == "bad-tx-nonce"  # the same signed transfer a second time
    nonce = world.nonces[REQ.public]
    payload = transfer_payload(OTHER.public, 10**6)
    signed_by_other = make_transaction(OTHER, world.chain.genesis.chain_id, nonce, TRANSFER,
                                       payload, minimum_fee(payload, 1))
    forged = dataclasses.replace(signed_by_other, sender=REQ.public)
    assert _skipped(world, forged) == "bad-tx-sig"
    assert _net(world, OTHER) == 1000


def test_second_submission_in_a_round(world):
    """A worker submitting twice in a round (two models scored, or a second try after seeing
    the first judged). Defence: one upload per worker and round (``sfl-double-submit``)."""
    task = started(world, W3)
    world.submit(task, 0, W3[0])
    bundle, proof = world.encrypt(task, 0, W3[0], MODEL[::-1])
    assert world.code(world.submit_tx(task, 0, W3[0], bundle, proof.to_bytes())) \
        == "sfl-double-submit"
    assert world.phase(task).submitted == 1


# -- a dishonest CSP ----------------------------------------------------------------------------


def test_csp_dropping_a_bundle(world):
    """A CSP drops a worker's bundle from its list (the worker is never scored). Detected: the
    contract wants one entry per submission (``sfl-blinded-count``)."""
    task = _round_with(world, [MODEL] * 3)
    _, entries = world.prepare_blinded(task, 0, W3)
    tx = world.tx(CSP, KIND_BLINDED, blinded_payload(task, 0, entries[:2]))
    assert world.code(tx, advance=0) == "sfl-blinded-count"
    world.send(CSP, KIND_BLINDED, blinded_payload(task, 0, entries), advance=0)


def test_csp_swapping_a_ciphertext(world):
    """A CSP swaps ciphertext columns between two bundles of its list (so a model is opened
    under another id, or garbled). The contract checks shape only and accepts it; the requester
    checks every batched DLEQ before it decrypts (``requester_verify`` in
    ``sfl_jobs.evaluate_job``; ``requester_open``) and refuses with ``bad-dleq``: it then posts
    no accuracies and the task times out with refunds."""
    task = _round_with(world, [bytes([i + 1]) * 800 for i in range(3)])
    bundles = world.submitted(task, 0, W3)
    result = csp_process(world.keys, world.csp_keys.sk, bundles, world.rng)
    a, b, c = result.outputs
    swapped = [dataclasses.replace(a, c2_out=b.c2_out), dataclasses.replace(b, c2_out=a.c2_out), c]
    names = [world.upload(CSP, o.to_bytes(DEFAULT.group)) for o in swapped]
    world.send(CSP, KIND_BLINDED, blinded_payload(
        task, 0, [(o.bundle_id, n) for o, n in zip(swapped, names, strict=True)]), advance=0)
    assert world.phase(task).phase == Phase.BLINDED  # shape-only on chain: accepted
    with pytest.raises(ValidationError) as exc:
        requester_verify(world.keys, swapped)
    assert exc.value.code == "bad-dleq"
    with pytest.raises(ValidationError) as exc:
        requester_open(world.keys, world.req_keys.sk, swapped[0])
    assert exc.value.code == "bad-dleq"
    world.timeout(task, advance=base_spec().t_step + 1)  # the requester does not answer
    assert world.phase(task).phase == Phase.ABORTED
    assert escrow_total(world.chain.state_get) == 0


def test_csp_replacing_a_whole_bundle_is_not_detected(world):
    """NOT COVERED, stated plainly: there is no shuffle proof. The DLEQ proves only the ReEnc of
    the list the CSP itself published, so a CSP that replaces a worker's bundle with its own
    valid encryption under PK passes every check: the contract (shape and count), the
    requester's DLEQ verification, and decryption. This test asserts the current behaviour
    (docs/crypto.md "Limits"; a verifiable shuffle would close it)."""
    task = _round_with(world, [bytes([i + 1]) * 800 for i in range(3)])
    bundles = world.submitted(task, 0, W3)
    own = encrypt(world.keys.joint, b"chosen by the CSP", world.rng, chunks=CHUNKS)
    result = csp_process(world.keys, world.csp_keys.sk, [bundles[0], bundles[1], own], world.rng)
    names = [world.upload(CSP, o.to_bytes(DEFAULT.group)) for o in result.outputs]
    world.send(CSP, KIND_BLINDED, blinded_payload(
        task, 0, [(o.bundle_id, n) for o, n in zip(result.outputs, names, strict=True)]),
        advance=0)
    assert world.phase(task).phase == Phase.BLINDED
    requester_verify(world.keys, result.outputs)  # passes
    opened = {requester_open(world.keys, world.req_keys.sk, o) for o in result.outputs}
    assert b"chosen by the CSP" in opened and bytes([3]) * 800 not in opened


def test_csp_stalling(world):
    """A CSP that never posts its list would freeze the pool and every deposit. Defence:
    ``sfl-timeout``, which anyone may send once the block time passes the CSP's step deadline:
    the task aborts (``csp-stall``) and every escrowed coin goes back to its payer."""
    task = _round_with(world, [MODEL] * 3)
    world.timeout(task, advance=base_spec().t_wait + base_spec().t_step)
    assert world.phase(task).phase == Phase.ABORTED
    receipt = world.chain.tx_receipt(world.chain.get_block_by_height(world.chain.height)
                                     .txs[0].txid)
    assert receipt.events[-1].fields[1] == "csp-stall"
    assert [_net(world, k) for k in (REQ, CSP, *W3)] == [0] * 5
    assert escrow_total(world.chain.state_get) == 0


@pytest.mark.parametrize("stage", ["accuracy", "next-model"])
def test_requester_stalling(world, stage):
    """A requester that stops after seeing the blinded list (owes accuracies) or after the
    selection (owes the next model) would freeze the workers' deposits. Defence: ``sfl-timeout``
    by anyone after the requester's step deadline: abort (``requester-stall``), the pool back to
    the requester and every deposit back to its worker."""
    task = _round_with(world, [MODEL] * 3)
    outs = world.blind(task, 0, W3)
    if stage == "next-model":
        world.accuracy(task, 0, outs)
        world.select(task, 0, [o.bundle_id for o in outs])
    world.timeout(task, advance=base_spec().t_step + 1)
    assert world.phase(task).phase == Phase.ABORTED
    receipt = world.chain.tx_receipt(world.chain.get_block_by_height(world.chain.height)
                                     .txs[0].txid)
    assert receipt.events[-1].fields[1] == "requester-stall"
    assert [_net(world, k) for k in (REQ, CSP, *W3)] == [0] * 5
    assert escrow_total(world.chain.state_get) == 0

