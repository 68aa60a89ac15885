"""Partitioning a training set among k workers: IID and label-skewed, with a measured skew.

Invariants:
- A partition is a tuple of k disjoint index arrays whose union is ``range(n)``; sizes differ by
  at most one. All randomness comes from the caller's numpy Generator.
- Skew is measured by :func:`label_skew`: the mean over workers of the total-variation distance
  between the worker's label distribution and the whole set's (0 = every worker mirrors the
  global mix; the maximum depends on the class balance).
- ``label_skew_partition(y, k, s, gen)``: a share ``s`` of every class's rows (chosen at
  random) is sorted by label and dealt out in k contiguous shards (McMahan et al.'s
  pathological non-IID split); the rest is dealt stratified (each worker gets the global label
  mix), and worker j gets shard j plus one stratified slice. So the realised skew is
  ``s × label_skew(sorted shards)`` up to rounding of a few rows; :func:`expected_skew`
  computes that claim and the tests check the realised split against it.
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


def _split_per_class(
    y: NDArray[np.integer], share: float, gen: np.random.Generator
) -> tuple[Indices, Indices]:
    """Per class, a random ``share`` of its rows (label-sorted) and the rest (shuffled)."""
    taken: list[Indices] = []
    rest: list[Indices] = []
    for c in np.unique(y):
        rows = gen.permutation(np.flatnonzero(y == c)).astype(np.int64)
        cut = round(share * len(rows))
        taken.append(rows[:cut])
        rest.append(rows[cut:])
    return np.concatenate(taken), np.concatenate(rest)


def _stratified_deal(y: NDArray[np.integer], rows: Indices, k: int) -> tuple[Indices, ...]:
    """Round-robin over label-sorted rows: every part gets each class's share ±1 row."""
    ordered = rows[np.argsort(y[rows], kind="stable")]
    parts = [ordered[j::k] for j in range(k)]
    return tuple(np.asarray(p, dtype=np.int64) for p in parts)


def label_skew_partition(
    y: NDArray[np.integer], k: int, skew: float, gen: np.random.Generator
) -> tuple[Indices, ...]:
    """Deal rows so that a share ``skew`` ∈ [0, 1] of each worker's rows is label-sorted shards."""
    labels = np.asarray(y)
    _check(len(labels), k)
    if not 0.0 <= skew <= 1.0:
        raise UsageError("bad-partition", f"skew must be in [0, 1], got {skew}")
    sorted_rows, mixed_rows = _split_per_class(labels, skew, gen)
    shards = _deal(sorted_rows, k)  # already grouped by class: contiguous shards
    mixed = _stratified_deal(labels, mixed_rows, k)
    # Both lists put their larger parts first; pairing them in reverse keeps sizes within one.
    if len(shards[0]) > len(shards[-1]):
        mixed = mixed[::-1]
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
