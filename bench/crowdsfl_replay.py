"""In-process work for bench/crowdsfl.py: the FL / crypto split of a task and Table 1.

Split. The daemons report no job durations: ``JobFinished`` carries only the result, the job
pool logs nothing, and the roles log a step's end (``sfl-submitting``, ``sfl-blinded``,
``sfl-scored``, ``sfl-model-posting``) but not its start; and the worker's and requester's jobs
each mix FL and crypto. So the split is measured by replaying the same work the jobs do
(``crowdmesh/roles/sfl_jobs.py``: local training, ``encrypt_proven``, ``csp_process``,
``requester_verify`` + ``decrypt``, evaluation with the free-rider reference epoch,
aggregation) in this process, one after another, on the task's spec, the same data shards and
fresh ElGamal keys, timing the FL and the crypto calls apart. A round's critical path takes the
slowest worker (workers run in parallel on their daemons); waiting = wall − FL − crypto.

Table 1. Accuracy over splits runs the FL engine in process: FedAvg with k workers and t
rounds under the task's selection rule (the requester keeps models whose held-out accuracy is
at least ``min_accuracy_bps`` and not flagged as free riders, at most ``select_m``, equal
weights). Encryption is lossless, so this equals the daemons' final model bit for bit:
tests/unit/crowdsfl_roles/test_task.py::test_the_final_model_is_bit_identical_to_in_process_fedavg.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.crowdsfl import TaskSpec
from crowdmesh.crypto.csp import csp_process, requester_verify, task_keys
from crowdmesh.crypto.elgamal import decrypt, keygen
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.crypto.randproof import encrypt_proven
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.fl import (
    accuracy,
    check_free_rider,
    fedavg,
    init_model,
    local_train,
    model_from_bytes,
    model_to_bytes,
    reference_move,
)
from crowdmesh.roles.sfl_jobs import model_spec, train_spec

Rows = tuple[np.ndarray, np.ndarray]


class _Clock:
    def __init__(self) -> None:
        self.fl = 0.0
        self.crypto = 0.0

    def time(self, kind: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t0
        setattr(self, kind, getattr(self, kind) + dt)
        return out


def replay_split(spec_bytes: bytes, shards: list[Rows], holdout: Rows) -> dict[str, Any]:
    """FL and crypto seconds along a task's critical path (see the module docstring)."""
    task = TaskSpec.from_obj(unpack(spec_bytes, 1 << 26))
    profile = PROFILES[task.profile]
    rng = DeterministicRng(b"bench-replay")
    req, csp = keygen(profile, rng), keygen(profile, rng)
    t0 = time.perf_counter()
    keys = task_keys(profile, csp.pk, req.pk)
    key_s = time.perf_counter() - t0
    gen = np.random.default_rng(0)
    mspec, tspec = model_spec(task), train_spec(task)
    total = _Clock()
    total.crypto += key_s  # each party builds the task's tables once
    current = total.time("fl", init_model, mspec, gen)
    min_nk = min(len(y) for _, y in shards)
    for r in range(task.rounds):
        bundles, worst_fl, worst_crypto = [], 0.0, 0.0
        for i, (x, y) in enumerate(shards):
            worker = _Clock()
            local = worker.time("fl", local_train, current, x, y, tspec, gen)
            bundle, _ = worker.time("crypto", encrypt_proven, keys.joint, model_to_bytes(local),
                                    DeterministicRng(bytes([i, r])), bytes(32), bytes(32), r,
                                    task.bundle_chunks)
            bundles.append(bundle)
            worst_fl, worst_crypto = max(worst_fl, worker.fl), max(worst_crypto, worker.crypto)
        total.fl += worst_fl
        total.crypto += worst_crypto
        result = total.time("crypto", csp_process, keys, csp.sk, bundles,
                            DeterministicRng(bytes([r])))
        total.time("crypto", requester_verify, keys, result.outputs)
        plains = [total.time("crypto", decrypt, profile, req.sk, o.final)
                  for o in result.outputs]
        kept = total.time("fl", _evaluate, task, current, plains, holdout, tspec, gen, min_nk)
        current = total.time("fl", fedavg, kept or [current])
    return {"fl_s": total.fl, "crypto_s": total.crypto}


def _evaluate(task: TaskSpec, base: Any, plains: list[bytes], rows: Rows, tspec: Any,
              gen: np.random.Generator, min_nk: int) -> list[Any]:
    reference = reference_move(base, *rows, tspec, gen, n_rows=min_nk)
    return select(task.min_accuracy_bps, task.select_m, base, reference, rows,
                  [model_from_bytes(base.spec, p) for p in plains])


def select(min_bps: int, select_m: int, base: Any, reference: float, rows: Rows,
           models: list[Any]) -> list[Any]:
    """The task's selection rule on held-out accuracy (ties keep upload order)."""
    scored = []
    for i, model in enumerate(models):
        bps = min(10_000, int(accuracy(model, *rows) * 10_000))
        flagged = reference > 0.0 and check_free_rider(base, model, reference).flagged
        if bps >= min_bps and not flagged:
            scored.append((-bps, i, model))
    return [m for _, _, m in sorted(scored, key=lambda s: s[:2])[:select_m]]


def crowdsfl_accuracy(x: np.ndarray, y: np.ndarray, seed: int, k: int, rounds: int,
                      task: TaskSpec) -> dict[str, float]:
    """One 80/20 split: the in-process CrowdSFL final accuracy and the central BP-NN (same
    network and start, t·E epochs on all training rows), both on the 20 % test rows."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    xtr, ytr, xte, yte = x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
    gen = np.random.default_rng(10_000 + seed)
    mspec, tspec = model_spec(task), train_spec(task)
    start = init_model(mspec, gen)
    parts = np.array_split(np.arange(len(ytr)), k)
    current = start
    min_nk = min(len(p) for p in parts)
    for _ in range(rounds):
        uploads = [local_train(current, xtr[p], ytr[p], tspec, gen) for p in parts]
        reference = reference_move(current, xte, yte, tspec, gen, n_rows=min_nk)
        kept = select(task.min_accuracy_bps, task.select_m, current, reference, (xte, yte),
                      uploads)
        current = fedavg(kept) if kept else current
    central_plan = type(tspec)(tspec.epochs * rounds, tspec.batch_size, tspec.learning_rate,
                               tspec.optimizer, tspec.l2)
    central = local_train(start, xtr, ytr, central_plan, gen)
    return {"crowdsfl": accuracy(current, xte, yte), "bpnn": accuracy(central, xte, yte)}


def plaintext_bytes(task: TaskSpec) -> int:
    """Bytes of one plaintext upload: the model in float32 (``crowdmesh.fl.model``)."""
    return len(model_to_bytes(init_model(model_spec(task), np.random.default_rng(0))))


def model_check(task: TaskSpec, data: bytes) -> Any:
    """Parse a model the chain returned (raises on a wrong size)."""
    return model_from_bytes(model_spec(task), data)
