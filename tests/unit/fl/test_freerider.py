"""Free-rider check on BCWD and HDD: the global model (+ noise) is flagged, honest work passes."""

from __future__ import annotations

import numpy as np
import pytest

from crowdmesh.errors import UsageError
from crowdmesh.fl import (
    BASELINE_TRAIN,
    baseline_model_spec,
    check_free_rider,
    fedavg,
    init_model,
    label_skew_partition,
    local_train,
    model_from_vector,
    model_to_vector,
    reference_move,
)


def plus_noise(model, norm, gen):
    vec = model_to_vector(model).astype(np.float64)
    noise = gen.standard_normal(vec.size)
    return model_from_vector(model.spec, vec + noise * (norm / np.linalg.norm(noise)))


def rounds_of_verdicts(ds, skew, seed, rounds=5):
    """Yield (global model, honest uploads, reference per upload) for each round."""
    gen = np.random.default_rng(seed)
    x, y = ds.encoded(), ds.y
    rows = gen.permutation(len(y))
    n_val = len(y) // 6  # the requester's own validation rows
    val, work = rows[:n_val], rows[n_val:]
    parts = label_skew_partition(y[work], 3, skew, gen)
    shards = [(x[work][p], y[work][p]) for p in parts]
    model = init_model(baseline_model_spec(x.shape[1]), gen)
    for _ in range(rounds):
        uploads = [local_train(model, sx, sy, BASELINE_TRAIN, gen) for sx, sy in shards]
        refs = [
            reference_move(model, x[val], y[val], BASELINE_TRAIN, gen, len(sy)) for _, sy in shards
        ]
        yield model, uploads, refs, gen
        model = fedavg(uploads)


@pytest.mark.parametrize("name", ["bcwd", "hdd"])
@pytest.mark.parametrize("skew", [0.0, 0.5])
def test_free_rider_flagged_and_honest_updates_pass(name, skew, request):
    ds = request.getfixturevalue(name)
    checked = 0
    for model, uploads, refs, gen in rounds_of_verdicts(ds, skew, seed=11):
        for upload, ref in zip(uploads, refs, strict=True):
            verdict = check_free_rider(model, upload, ref)
            assert not verdict.flagged, verdict
            assert verdict.ratio > 0.8  # well clear of the threshold 0.5
            checked += 1
        ref = refs[0]
        assert check_free_rider(model, model, ref).flagged  # re-uploaded global model
        for share in (0.01, 0.1, 0.3):  # global model plus noise below half an epoch's move
            assert check_free_rider(model, plus_noise(model, share * ref, gen), ref).flagged
        # Relative noise on every weight (0.1 % of the parameters' RMS) is flagged too.
        rms = float(np.sqrt(np.mean(model_to_vector(model).astype(np.float64) ** 2)))
        tiny = plus_noise(model, 1e-3 * rms * np.sqrt(model.spec.n_params), gen)
        assert check_free_rider(model, tiny, ref).flagged
        # The documented limit: noise as large as two honest epochs is not caught by distance.
        assert not check_free_rider(model, plus_noise(model, 2.0 * ref, gen), ref).flagged
    assert checked == 15


def test_reference_must_be_positive(bcwd):
    model = init_model(baseline_model_spec(9), np.random.default_rng(0))
    with pytest.raises(UsageError):
        check_free_rider(model, model, 0.0)
