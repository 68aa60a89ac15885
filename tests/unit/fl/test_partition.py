"""Partitioning among k workers: IID covers everything evenly; label skew has the skew it claims."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.errors import UsageError
from crowdmesh.fl import expected_skew, iid_partition, label_skew, label_skew_partition


def assert_is_partition(parts, n):
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def tv_by_hand(y, parts):
    """Independent re-implementation of the claimed measure (mean total variation)."""
    classes = sorted(set(y.tolist()))
    overall = {c: float(np.mean(y == c)) for c in classes}
    per = [0.5 * sum(abs(float(np.mean(y[p] == c)) - overall[c]) for c in classes) for p in parts]
    return sum(per) / len(per)


@given(n=st.integers(5, 300), k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_iid_partition_is_an_even_partition(n, k, seed):
    assert_is_partition(iid_partition(n, k, np.random.default_rng(seed)), n)


@given(
    n=st.integers(30, 400),
    k=st.integers(2, 5),
    skew=st.floats(0.0, 1.0),
    p1=st.floats(0.2, 0.8),
    seed=st.integers(0, 2**32 - 1),
)
def test_label_skewed_split_has_the_skew_it_claims(n, k, skew, p1, seed):
    gen = np.random.default_rng(seed)
    y = (gen.random(n) < p1).astype(np.int64)
    if y.min() == y.max():
        return
    parts = label_skew_partition(y, k, skew, gen)
    assert_is_partition(parts, n)
    measured = tv_by_hand(y, parts)
    assert measured == pytest.approx(label_skew(y, parts))
    # Claim: skew × (skew of fully sorted shards), up to rounding of a few rows per worker.
    assert abs(measured - expected_skew(y, k, skew)) <= 2.0 * k / n


def test_skewed_split_is_far_more_skewed_than_iid(bcwd):
    gen = np.random.default_rng(0)
    iid = [label_skew(bcwd.y, iid_partition(len(bcwd.y), 3, gen)) for _ in range(20)]
    half = label_skew(bcwd.y, label_skew_partition(bcwd.y, 3, 0.5, gen))
    full = label_skew(bcwd.y, label_skew_partition(bcwd.y, 3, 1.0, gen))
    assert max(iid) < 0.05 < 0.2 < half < 0.24 < 0.4 < full
    # A fully sorted split gives at least one worker a single class.
    parts = label_skew_partition(bcwd.y, 3, 1.0, gen)
    assert min(len(set(bcwd.y[p].tolist())) for p in parts) == 1


def test_bad_partition_arguments_are_refused():
    gen = np.random.default_rng(0)
    with pytest.raises(UsageError):
        iid_partition(2, 3, gen)
    with pytest.raises(UsageError):
        label_skew_partition(np.array([0, 1, 0]), 2, 1.5, gen)
