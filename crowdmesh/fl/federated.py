"""Federated averaging rounds (Algorithm 1) in one process, plus the tuned baseline task spec.

Invariants:
- ``run_federated`` is the honest protocol without chain or crypto: every round each worker
  runs :func:`local_train` from the current global model on its own rows, then the aggregator
  combines all uploads. Workers draw their batch orders from child Generators spawned from the
  caller's one, in worker order, so the run is deterministic per seed.
- ``BASELINE_TRAIN`` / ``baseline_model_spec`` are the hyperparameters the benchmark uses for
  both datasets, chosen on tuning splits disjoint from the reported ones (docs/fl.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from crowdmesh.fl.aggregate import fedavg
from crowdmesh.fl.model import Model
from crowdmesh.fl.spec import ModelSpec, TrainSpec
from crowdmesh.fl.training import local_train

__all__ = ["BASELINE_TRAIN", "Aggregator", "Shard", "baseline_model_spec", "run_federated"]

Shard = tuple[NDArray[np.floating], NDArray[np.integer]]
Aggregator = Callable[[Sequence[Model]], Model]

# Ranked first by `bench/fl_baselines.py --tune` (81 configurations, tuning splits only).
BASELINE_TRAIN = TrainSpec(epochs=3, batch_size=16, learning_rate=0.02, optimizer="adam", l2=0.001)
BASELINE_HIDDEN = (16,)


def baseline_model_spec(n_inputs: int) -> ModelSpec:
    """The paper's three-layer BP-NN as used by the benchmark: n_inputs → 16 ReLU → 2 softmax."""
    return ModelSpec(n_inputs, BASELINE_HIDDEN, n_classes=2, activation="relu", init="he")


def run_round(
    global_model: Model,
    shards: Sequence[Shard],
    train: TrainSpec,
    gen: np.random.Generator,
    aggregate: Aggregator = fedavg,
) -> Model:
    """One round: every worker trains from ``global_model``; return the aggregate."""
    gens = gen.spawn(len(shards))
    uploads = [
        local_train(global_model, x, y, train, g) for (x, y), g in zip(shards, gens, strict=True)
    ]
    return aggregate(uploads)


def run_federated(
    initial: Model,
    shards: Sequence[Shard],
    train: TrainSpec,
    rounds: int,
    gen: np.random.Generator,
    aggregate: Aggregator = fedavg,
) -> Model:
    """``rounds`` rounds of federated training from ``initial``; returns the final global model."""
    model = initial
    for _ in range(rounds):
        model = run_round(model, shards, train, gen, aggregate)
    return model
