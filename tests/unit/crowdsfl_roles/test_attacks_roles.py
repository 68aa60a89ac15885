"""Attacks that need the roles (real role hosts over one in-memory chain, net.py): dishonest
workers judged by the requester's accuracy and free-rider checks, and a stalling requester.
Each docstring names the defence; docs/crowdsfl.md "Attacks and their tests" records how each
test fails when that defence is disabled. The ``net`` fixture checks the supply identity.

Covered in ``test_task.py`` (referenced, not repeated):
- free rider and label flipper:
  ``test_a_free_rider_and_a_label_flipper_are_excluded_and_accuracy_is_kept``;
- CSP stall: ``test_a_csp_stall_times_out_and_refunds_every_coin``;
- the other stalls (requester before round 0 or before the next model, both parties, the CSP
  not settling) and redundant timeouts: ``test_stalls.py``.
"""

from __future__ import annotations

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.blob import blob_bytes
from crowdmesh.chain.contracts.crowdsfl import Phase, score_commitment
from crowdmesh.chain.contracts.crowdsfl.records import read_list, round_key
from crowdmesh.fl import accuracy, model_from_bytes
from crowdmesh.roles import Role
from crowdmesh.roles._sfl import PERMS, SCORES, round_bytes
from crowdmesh.roles.sfl_jobs import model_spec
from tests.unit.crowdsfl_roles.net import (
    WORKERS,
    assert_aborted_and_refunded,
    events_named,
    node,
    setup,
    split_default,
    task_spec,
)

DONE = {Phase.SETTLED, Phase.ABORTED}


def owners(net, task: bytes, round_: int) -> dict[bytes, bytes]:
    """The CSP's private blinded id → worker map (read from its role store)."""
    raw = node(net, "csp").store.get(Role.CSP.value, PERMS + task + round_bytes(round_))
    return {bytes(i): bytes(w) for i, w in unpack(raw, 1 << 20)[0]}


def test_random_weight_worker_is_excluded_and_accuracy_is_kept(net):
    """A worker that uploads random weights instead of training. Defence: the requester
    evaluates every opened model on its own held-out rows (``sfl_jobs.evaluate_job``) and the
    contract refuses to select a model below ``min_accuracy_bps``
    (``sfl-select-below-threshold``); the CSP selects only the honest models, the worker earns
    nothing and the final model keeps its accuracy."""
    _, _, _, task, _ = setup(net, ("honest", "honest", "random-weights"))
    net.run_until(task, DONE)
    assert net.phase(task).phase == Phase.SETTLED
    spec = task_spec(3)
    noisy = WORKERS[2].public
    for r in range(spec.rounds):
        owner = owners(net, task, r)
        scored = {owner[bytes(i)]: bps
                  for i, bps, _ in read_list(net.chain.state_get, round_key(b"a", task, r))}
        assert scored[noisy] < spec.min_accuracy_bps, scored
        chosen = read_list(net.chain.state_get, round_key(b"c", task, r))[0]
        assert noisy not in {owner[bytes(i)] for i in chosen}
    paid = {p[1]: p[2:] for p in events_named(net, "sfl-paid")}
    assert paid[noisy][0] == 0
    assert all(paid[w.public][0] > 0 for w in WORKERS[:2])
    net.mine()
    final = blob_bytes(net.chain.state_get,
                       net.chain.state_get(round_key(b"m", task, spec.rounds)))
    (x_held, y_held), _ = split_default(3)
    assert accuracy(model_from_bytes(model_spec(spec), final), x_held, y_held) > 0.85


def test_requester_stall_times_out_and_refunds_every_coin(net):
    """A requester that dies after posting the first model never posts accuracies. Defence:
    the CSP role sends ``sfl-timeout`` once the block time passes the requester's step
    deadline (``sfl_csp._watch``, beaconing for that block); the task aborts with
    ``requester-stall`` and every coin comes back. More stalls: ``test_stalls.py``."""
    req, _, _, task, _ = setup(net)
    net.run_until(task, {Phase.TRAINING})
    req.alive = False  # the requester never answers again
    net.run_until(task, DONE, max_blocks=20, advance=30)
    assert_aborted_and_refunded(net, task, "requester-stall")


def test_per_round_scores_stay_off_chain(net):
    """Link by published scores: with public n_k (the X rank) and reputation R, a per-worker
    score gives the accuracy rank Y = X + W·R + n − Score, and the public accuracies per
    blinded id turn it into the worker ↔ model link. Defence: the CSP role posts per round only
    the selected blinded ids and a salted commitment to its score table (``sfl_csp._select``;
    the ``sfl-select`` schema takes 32 bytes there). No requester-visible call of a round names
    a worker, and the commitment opens to the table the CSP keeps (accountable on demand)."""
    _, _, _, task, _ = setup(net)
    net.run_until(task, DONE)
    assert net.phase(task).phase == Phase.SETTLED
    keys = [w.public for w in WORKERS[:3]]
    per_round = {"sfl-blinded", "sfl-accuracy", "sfl-select"}
    seen = 0
    for h in range(1, net.chain.height + 1):
        for tx in net.chain.get_block_by_height(h).txs:
            if tx.kind not in per_round:
                continue
            seen += 1
            assert not any(k in tx.payload for k in keys), tx.kind
            events = net.chain.tx_receipt(tx.txid).events
            assert not any(k in f for e in events for f in e.fields if isinstance(f, bytes)
                           for k in keys), tx.kind
    assert seen == 3 * task_spec().rounds
    csp = node(net, "csp")
    for r in range(task_spec().rounds):
        salt, table, _, _ = unpack(csp.store.get(Role.CSP.value, SCORES + task + round_bytes(r)),
                                   1 << 20)
        stored = read_list(net.chain.state_get, round_key(b"c", task, r))
        assert bytes(stored[1]) == score_commitment(
            bytes(salt), [(bytes(w), int(s)) for w, s in table])
