"""The CPU work of the CrowdSFL roles, as plain functions the daemon runs in its job pool.

Invariants:
- Every job takes plain values (bytes, ints, text, lists of bytes) and returns bytes: one
  canonical msgpack array where there is more than one output. No I/O, no clock, no global
  randomness: every random choice comes from the ``seed`` argument (32+ bytes the role derives
  from its secret seed, the task and the round), so a job run again after a restart returns the
  same bytes.
- A job refuses bad outside input with a ``CrowdmeshError`` (``JobFailed`` with its code):
  ``bad-dleq`` from the requester's proof check, ``bad-fl-shape`` for a model that does not fit
  the task, ``bad-dataset`` for a dataset blob that does not parse.
- Secrets (ElGamal secret keys, the CSP's permutation before it is stored) stay inside the
  node: they are job arguments and results, never logged.
- Models travel in the float32 byte layout of ``crowdmesh.fl.model`` (docs/fl.md).
- A task's keys (with their fixed-base tables: 0.04–0.07 s to build, more than the rest of a
  small task's step) are built once per process and kept in a small LRU cache; they depend
  only on public values, so a cached key equals a rebuilt one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.crowdsfl import TaskSpec
from crowdmesh.crypto.csp import (
    ProvenBundle,
    TaskKeys,
    csp_process,
    requester_verify,
    task_keys,
)
from crowdmesh.crypto.elgamal import Bundle, PublicKey, decrypt, public_key
from crowdmesh.crypto.groups import PROFILES, Profile
from crowdmesh.crypto.randproof import encrypt_proven
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, UsageError, ValidationError
from crowdmesh.fl.aggregate import fedavg, median
from crowdmesh.fl.freerider import check_free_rider, reference_move
from crowdmesh.fl.model import (
    Model,
    accuracy,
    init_model,
    model_from_bytes,
    model_from_vector,
    model_to_bytes,
)
from crowdmesh.fl.spec import ModelSpec, TrainSpec
from crowdmesh.fl.training import local_train

__all__ = [
    "aggregate_job",
    "blind_job",
    "dataset_bytes",
    "dataset_from_bytes",
    "evaluate_job",
    "generator",
    "init_job",
    "model_spec",
    "train_job",
    "train_spec",
    "warm_joint_key_job",
    "warm_task_keys_job",
]

_CAP = 1 << 26  # 64 MiB: far above any job input the contract lets through
Rows = tuple[NDArray[np.float64], NDArray[np.int64]]


def dataset_bytes(x: NDArray[np.floating], y: NDArray[np.integer]) -> bytes:
    """Encode model-ready rows (``Dataset.encoded()``) and labels for a config event."""
    xs = np.ascontiguousarray(x, dtype="<f8")
    if xs.ndim != 2 or len(xs) != len(y):
        raise UsageError("bad-dataset", "x must be rows × features, one label per row")
    return pack([int(xs.shape[0]), int(xs.shape[1]), xs.tobytes(),
                 np.ascontiguousarray(y, dtype="<i8").tobytes()])


def dataset_from_bytes(data: bytes) -> Rows:
    """Inverse of :func:`dataset_bytes`; raises ``DecodeError('bad-dataset')``."""
    try:
        rows, cols, xb, yb = unpack(data, _CAP)
        x = np.frombuffer(xb, dtype="<f8").reshape(rows, cols).astype(np.float64)
        y = np.frombuffer(yb, dtype="<i8").astype(np.int64)
    except (DecodeError, ValueError, TypeError) as exc:
        raise DecodeError("bad-dataset", str(exc)) from None
    if len(y) != rows:
        raise DecodeError("bad-dataset", "one label per row")
    return x, y


def _spec(spec: bytes) -> TaskSpec:
    return TaskSpec.from_obj(unpack(spec, _CAP))


def model_spec(spec: TaskSpec) -> ModelSpec:
    """The network a task fixes (layers = inputs, hidden…, classes)."""
    layers = spec.layers
    return ModelSpec(layers[0], tuple(layers[1:-1]), layers[-1], spec.activation, spec.init)


def train_spec(spec: TaskSpec) -> TrainSpec:
    """The local training plan a task fixes (rates in millionths on chain)."""
    return TrainSpec(spec.epochs, spec.batch_size, spec.lr_micro / 1e6, spec.optimizer,
                     spec.l2_micro / 1e6)


def generator(seed: bytes, label: bytes) -> np.random.Generator:
    """The numpy Generator a job draws from for ``label`` (256 bits of SHA-256(seed ‖ label))."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(seed + label).digest(), "big"))


def _profile(spec: TaskSpec) -> Profile:
    return PROFILES[spec.profile]


_KEYS_CACHED = 4  # tasks a node works on at once; each entry holds up to ~7 MB of tables


@functools.lru_cache(maxsize=_KEYS_CACHED)
def _task_keys(profile: str, h_csp: bytes, h_req: bytes) -> TaskKeys:
    return task_keys(PROFILES[profile], int.from_bytes(h_csp, "big"),
                     int.from_bytes(h_req, "big"))


@functools.lru_cache(maxsize=_KEYS_CACHED)
def _public_key(profile: str, h: bytes) -> PublicKey:
    return public_key(PROFILES[profile], int.from_bytes(h, "big"))


def warm_joint_key_job(spec: bytes, joint: bytes) -> bytes:
    """Worker, while the task is still joining: build the joint key's table (0.04–0.16 s) into
    the cache now, so the first round's training job does not wait for it."""
    _public_key(_spec(spec).profile, joint)
    return b""


def warm_task_keys_job(spec: bytes, h_csp: bytes, h_req: bytes) -> bytes:
    """CSP and requester, while the task is still joining: the task keys' tables, as above."""
    _task_keys(_spec(spec).profile, h_csp, h_req)
    return b""


def init_job(spec: bytes, seed: bytes) -> bytes:
    """Requester: the round-0 model."""
    return model_to_bytes(init_model(model_spec(_spec(spec)), generator(seed, b"init")))


def _local_model(task: TaskSpec, global_model: Model, rows: Rows, seed: bytes,
                 behaviour: str) -> Model:
    x, y = rows
    gen = generator(seed, b"train")
    if behaviour == "free-rider":
        return global_model
    if behaviour == "random-weights":
        vec = gen.standard_normal(global_model.spec.n_params)
        return model_from_vector(global_model.spec, vec)
    if behaviour == "label-flip":
        y = (task.layers[-1] - 1 - y).astype(np.int64)
    return local_train(global_model, x, y, train_spec(task), gen)


def train_job(spec: bytes, global_model: bytes, dataset: bytes, seed: bytes, behaviour: str,
              joint: bytes, sender: bytes, task_id: bytes, round_: int) -> bytes:
    """Worker: local training from the global model, then encryption under the joint key with
    the proof of encryption randomness. Returns ``pack([bundle bytes, proof bytes])``."""
    task = _spec(spec)
    base = model_from_bytes(model_spec(task), global_model)
    local = _local_model(task, base, dataset_from_bytes(dataset), seed, behaviour)
    pk = _public_key(task.profile, joint)
    bundle, proof = encrypt_proven(pk, model_to_bytes(local), DeterministicRng(seed + b"enc"),
                                   sender, task_id, round_, task.bundle_chunks)
    return pack([bundle.to_bytes(pk.profile.group), proof.to_bytes()])


def blind_job(spec: bytes, h_csp: bytes, h_req: bytes, secret_key: bytes,
              bundles: Sequence[bytes], seed: bytes) -> bytes:
    """CSP: blind, shuffle, fresh ids, re-encrypt with a batched DLEQ per bundle
    (``crypto.csp.csp_process``). Returns ``pack([[output bytes…], permutation])``; the
    permutation stays with the CSP."""
    task = _spec(spec)
    profile = _profile(task)
    keys = _task_keys(task.profile, h_csp, h_req)
    parsed = [Bundle.from_bytes(profile.group, b, task.bundle_chunks) for b in bundles]
    result = csp_process(keys, int.from_bytes(secret_key, "big"), parsed,
                         DeterministicRng(seed + b"csp"))
    return pack([[o.to_bytes(profile.group) for o in result.outputs], list(result.permutation)])


def _open_all(task: TaskSpec, h_csp: bytes, h_req: bytes, secret_key: bytes,
              blinded: Sequence[bytes]) -> list[bytes]:
    """Verify EVERY proof first, then decrypt (a bad proof decrypts nothing)."""
    profile = _profile(task)
    keys = _task_keys(task.profile, h_csp, h_req)
    outputs = [ProvenBundle.from_bytes(profile.group, b, task.bundle_chunks) for b in blinded]
    requester_verify(keys, outputs)
    sk = int.from_bytes(secret_key, "big")
    return [decrypt(profile, sk, o.final) for o in outputs]


def _score(task: TaskSpec, base: Model, plain: bytes, rows: Rows, reference: float
           ) -> tuple[int, int]:
    """(accuracy bps, free-rider flag) of one opened model; an unreadable model is flagged."""
    try:
        model = model_from_bytes(base.spec, plain)
    except (DecodeError, ValidationError, UsageError):
        return 0, 1
    bps = min(10_000, int(accuracy(model, *rows) * 10_000))
    flagged = reference > 0.0 and check_free_rider(base, model, reference).flagged
    return bps, int(flagged)


def evaluate_job(spec: bytes, h_csp: bytes, h_req: bytes, secret_key: bytes,
                 blinded: Sequence[bytes], global_model: bytes, dataset: bytes, min_nk: int,
                 seed: bytes) -> bytes:
    """Requester: verify every DLEQ, decrypt, evaluate on the held-out rows, free-rider check.

    Returns ``pack([[[bps, flag], …], [model bytes, …]])`` in blinded order. The reference
    epoch runs over at most ``min_nk`` rows (the smallest declared n_k: the requester cannot
    tell which model is whose, so it takes the most lenient honest epoch).
    """
    task = _spec(spec)
    plains = _open_all(task, h_csp, h_req, secret_key, blinded)
    base = model_from_bytes(model_spec(task), global_model)
    rows = dataset_from_bytes(dataset)
    reference = reference_move(base, *rows, train_spec(task), generator(seed, b"reference"),
                               n_rows=min_nk)
    scores: list[Any] = [list(_score(task, base, p, rows, reference)) for p in plains]
    return pack([scores, plains])


def aggregate_job(spec: bytes, models: Sequence[bytes], weights: Sequence[int] = ()) -> bytes:
    """Requester: the next global model from the selected models by the task's aggregation:
    ``equal`` FedAvg, ``median``, or ``nk``: FedAvg weighted by the n_k the CSP's ``sfl-select``
    gives per selected model (``weights``, in selection order)."""
    task = _spec(spec)
    parsed = [model_from_bytes(model_spec(task), m) for m in models]
    if task.aggregation == "median":
        return model_to_bytes(median(parsed))
    by_nk = task.aggregation == "nk" and len(weights) == len(parsed)
    return model_to_bytes(fedavg(parsed, list(weights) if by_nk else None))

