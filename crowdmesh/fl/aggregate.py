"""Aggregation of worker models: FedAvg (equal weights or weights n_k) and coordinate-wise median.

Invariants:
- Reproducible everywhere: inputs are float32, the arithmetic is float64, and per coordinate the
  weighted terms are **sorted before a sequential sum**, so the result does not depend on the
  order the models arrive in (the CSP shuffles them) nor on numpy's pairwise-summation blocking.
  The result is rounded to float32 once.
- Equal weights are the default (DESIGN.md: weights n_k would link models to workers whose n_k
  are public); weights by n_k are an explicit option.
- Every input model must have the same spec; an empty list is a usage error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import UsageError
from crowdmesh.fl.model import Model, model_from_vector, model_to_vector

__all__ = ["fedavg", "median"]


def _stack(models: Sequence[Model]) -> NDArray[np.float64]:
    if not models:
        raise UsageError("no-models", "aggregation needs at least one model")
    spec = models[0].spec
    if any(m.spec != spec for m in models):
        raise UsageError("bad-fl-shape", "models with different specs cannot be aggregated")
    return np.stack([model_to_vector(m).astype(np.float64) for m in models])


def _sorted_sum(terms: NDArray[np.float64]) -> NDArray[np.float64]:
    """Column sums with a fixed summation order: ascending values, left to right."""
    ordered = np.sort(terms, axis=0)
    acc = np.zeros(terms.shape[1])
    for row in ordered:  # explicit loop: a fixed order, unlike np.sum's pairwise blocks
        acc += row
    return acc


def fedavg(models: Sequence[Model], weights: Sequence[float] | None = None) -> Model:
    """Weighted mean of the models' parameters (equal weights unless ``weights`` is given).

    Args:
        models: worker models with the same spec.
        weights: optional non-negative weights (e.g. dataset sizes n_k), not all zero.
    """
    stack = _stack(models)
    w = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(models),) or np.any(w < 0) or not np.any(w > 0):
        raise UsageError("bad-weights", "need one non-negative weight per model, not all zero")
    mean = _sorted_sum(stack * (w / _sorted_sum(w[:, None])[0])[:, None])
    return model_from_vector(models[0].spec, mean)


def median(models: Sequence[Model]) -> Model:
    """Coordinate-wise median (mean of the two middle values for an even count)."""
    stack = _stack(models)
    return model_from_vector(models[0].spec, np.median(stack, axis=0))
