"""Local training (Algorithm 1's ClientUpdate): mini-batch SGD or Adam for E epochs.

Invariants:
- Deterministic: the only randomness is the batch order, drawn from the ``numpy`` Generator the
  caller passes in (never global state). Same model, data, spec and seed → bit-identical result.
- Training runs in float64 and the result is rounded to float32 once at the end, so the returned
  model is exactly what its bytes encode.
- Adam's moment estimates start at zero every call: an update depends only on the global model
  received, the local data and the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from crowdmesh.crypto.rng import Rng
from crowdmesh.fl.model import Array, Model, loss_and_grads
from crowdmesh.fl.spec import TrainSpec

__all__ = ["generator_from_rng", "local_train"]

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # Adam's published defaults (Kingma & Ba 2015)

Step = Callable[[list[Array], list[Array], int], None]


def generator_from_rng(rng: Rng) -> np.random.Generator:
    """A numpy Generator seeded with 256 bits from an injected :class:`Rng`."""
    return np.random.default_rng(int.from_bytes(rng.token_bytes(32), "big"))


def _sgd(lr: float) -> Step:
    def step(params: list[Array], grads: list[Array], t: int) -> None:
        for p, g in zip(params, grads, strict=True):
            p -= lr * g

    return step


def _adam(lr: float, shapes: list[tuple[int, ...]]) -> Step:
    m = [np.zeros(s) for s in shapes]
    v = [np.zeros(s) for s in shapes]

    def step(params: list[Array], grads: list[Array], t: int) -> None:
        scale = lr * np.sqrt(1.0 - _BETA2**t) / (1.0 - _BETA1**t)  # bias correction
        for p, g, mi, vi in zip(params, grads, m, v, strict=True):
            mi *= _BETA1
            mi += (1.0 - _BETA1) * g
            vi *= _BETA2
            vi += (1.0 - _BETA2) * g * g
            p -= scale * mi / (np.sqrt(vi) + _EPS)

    return step


def _optimizer(train: TrainSpec, shapes: list[tuple[int, ...]]) -> Step:
    table: dict[str, Callable[[], Step]] = {
        "sgd": lambda: _sgd(train.learning_rate),
        "adam": lambda: _adam(train.learning_rate, shapes),
    }
    return table[train.optimizer]()


def local_train(
    model: Model,
    x: NDArray[np.floating],
    y: NDArray[np.integer],
    train: TrainSpec,
    gen: np.random.Generator,
) -> Model:
    """Train ``model`` on ``(x, y)`` for ``train.epochs`` epochs and return the new model.

    Each epoch visits every row once in an order drawn from ``gen``, in batches of
    ``train.batch_size`` (the last batch may be smaller).
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.int64)
    params = [p.astype(np.float64) for p in model.params]
    step = _optimizer(train, [p.shape for p in params])
    n, bs, t = len(ys), train.batch_size, 0
    for _ in range(train.epochs):
        order = gen.permutation(n)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            _, grads = loss_and_grads(model.spec, params, xs[idx], ys[idx], train.l2)
            t += 1
            step(params, grads, t)
    return Model(model.spec, tuple(p.astype(np.float32) for p in params))
