"""Partitioning a training set among k workers: IID and label-skewed, with a measured skew.

Invariants:
- A partition is a tuple of k disjoint index arrays whose union is ``range(n)``; sizes differ by
  at most one. All randomness comes from the caller's numpy Generator.
- Skew is measured by :func:`label_skew`: the mean over workers of the total-variation distance
  between the worker's label distribution and the whole set's (0 = every worker mirrors the
  global mix; the maximum depends on the class balance).
- ``label_skew_partition(y, k, s, gen)``: a share ``s`` of the rows is sorted by label and dealt
  out in k contiguous shards (McMahan et al.'s pathological non-IID split), the rest is dealt
  IID, and worker j gets shard j plus an equal IID slice. So the expected skew is
  ``s × label_skew(sorted shards)``; :func:`expected_skew` computes that claim and the tests
  check the realised split against it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import UsageError

__all__ = ["expected_skew", "iid_partition", "label_skew", "label_skew_partition"]

Indices = NDArray[np.int64]


def _check(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise UsageError("bad-partition", f"cannot split {n} rows among {k} workers")


def _deal(order: Indices, k: int) -> tuple[Indices, ...]:
    """Contiguous, near-equal slices of ``order``."""
    return tuple(np.asarray(s, dtype=np.int64) for s in np.array_split(order, k))


def iid_partition(n: int, k: int, gen: np.random.Generator) -> tuple[Indices, ...]:
    """Shuffle ``range(n)`` and deal it into k near-equal parts."""
    _check(n, k)
    return _deal(gen.permutation(n).astype(np.int64), k)


def _sorted_by_label(y: NDArray[np.integer], idx: Indices, gen: np.random.Generator) -> Indices:
    shuffled = gen.permutation(idx)
    return shuffled[np.argsort(y[shuffled], kind="stable")].astype(np.int64)


def label_skew_partition(
    y: NDArray[np.integer], k: int, skew: float, gen: np.random.Generator
) -> tuple[Indices, ...]:
    """Deal rows so that a share ``skew`` ∈ [0, 1] of each worker's rows is label-sorted shards."""
    n = len(y)
    _check(n, k)
    if not 0.0 <= skew <= 1.0:
        raise UsageError("bad-partition", f"skew must be in [0, 1], got {skew}")
    order = gen.permutation(n).astype(np.int64)
    n_sorted = round(skew * n)
    shards = _deal(_sorted_by_label(y, order[:n_sorted], gen), k)
    mixed = _deal(order[n_sorted:], k)
    # Pair the largest shard with the smallest IID slice so sizes stay within one row.
    mixed = mixed[::-1] if len(shards[0]) > len(shards[-1]) else mixed
    return tuple(np.sort(np.concatenate([s, m])) for s, m in zip(shards, mixed, strict=True))


def _distribution(y: NDArray[np.integer], n_classes: int) -> NDArray[np.float64]:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    dist: NDArray[np.float64] = counts / max(1, int(counts.sum()))
    return dist


def label_skew(y: NDArray[np.integer], parts: tuple[Indices, ...]) -> float:
    """Mean total-variation distance between each part's label mix and the global one."""
    n_classes = int(np.max(y)) + 1
    overall = _distribution(y, n_classes)
    tv = [0.5 * float(np.abs(_distribution(y[p], n_classes) - overall).sum()) for p in parts]
    return float(np.mean(tv))


def expected_skew(y: NDArray[np.integer], k: int, skew: float) -> float:
    """The skew ``label_skew_partition`` aims at: ``skew`` × the skew of fully sorted shards."""
    full = _deal(np.argsort(np.asarray(y), kind="stable").astype(np.int64), k)
    return skew * label_skew(y, full)
