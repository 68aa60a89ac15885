"""Local training and aggregation: determinism, learning, FedAvg and median properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import UsageError
from crowdmesh.fl import (
    BASELINE_TRAIN,
    ModelSpec,
    TrainSpec,
    accuracy,
    baseline_model_spec,
    fedavg,
    generator_from_rng,
    init_model,
    local_train,
    loss_and_grads,
    median,
    model_from_vector,
    model_to_bytes,
    model_to_vector,
    run_federated,
)


def toy_data(seed, n=120):
    gen = np.random.default_rng(seed)
    x = gen.uniform(0, 1, (n, 4))
    y = (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)
    return x, y


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_is_deterministic_per_seed(optimizer):
    x, y = toy_data(0)
    spec = ModelSpec(4, (6,))
    train = TrainSpec(epochs=3, batch_size=16, learning_rate=0.05, optimizer=optimizer)
    start = init_model(spec, np.random.default_rng(1))
    a = local_train(start, x, y, train, np.random.default_rng(7))
    b = local_train(start, x, y, train, np.random.default_rng(7))
    c = local_train(start, x, y, train, np.random.default_rng(8))
    assert model_to_bytes(a) == model_to_bytes(b)
    assert model_to_bytes(a) != model_to_bytes(c)


def test_generator_from_injected_rng_is_reproducible():
    a = generator_from_rng(DeterministicRng(3)).integers(0, 2**62, 4)
    b = generator_from_rng(DeterministicRng(3)).integers(0, 2**62, 4)
    c = generator_from_rng(DeterministicRng(4)).integers(0, 2**62, 4)
    assert a.tolist() == b.tolist() != c.tolist()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_lowers_the_loss_and_learns(optimizer):
    x, y = toy_data(2)
    spec = ModelSpec(4, (8,))
    lr = {"sgd": 0.5, "adam": 0.02}[optimizer]
    train = TrainSpec(epochs=40, batch_size=16, learning_rate=lr, optimizer=optimizer)
    start = init_model(spec, np.random.default_rng(3))
    end = local_train(start, x, y, train, np.random.default_rng(4))
    before = loss_and_grads(spec, start.params, x, y)[0]
    assert loss_and_grads(spec, end.params, x, y)[0] < 0.5 * before
    assert accuracy(end, x, y) > 0.9


def test_federated_run_is_deterministic_and_learns():
    x, y = toy_data(5, 240)
    shards = [(x[i::3], y[i::3]) for i in range(3)]
    start = init_model(baseline_model_spec(4), np.random.default_rng(0))
    a = run_federated(start, shards, BASELINE_TRAIN, 5, np.random.default_rng(9))
    b = run_federated(start, shards, BASELINE_TRAIN, 5, np.random.default_rng(9))
    assert model_to_bytes(a) == model_to_bytes(b)
    assert accuracy(start, x, y) < 0.6 < 0.75 < accuracy(a, x, y)


def random_models(seed, count):
    spec = ModelSpec(3, (4,))
    gen = np.random.default_rng(seed)
    return [model_from_vector(spec, gen.standard_normal(spec.n_params)) for _ in range(count)]


@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 6))
def test_fedavg_of_identical_models_is_that_model(seed, count):
    (model,) = random_models(seed, 1)
    assert model_to_bytes(fedavg([model] * count)) == model_to_bytes(model)
    assert model_to_bytes(fedavg([model] * count, [float(i + 1) for i in range(count)])) == (
        model_to_bytes(model)
    )
    assert model_to_bytes(median([model] * count)) == model_to_bytes(model)


@given(seed=st.integers(0, 2**32 - 1))
def test_aggregates_do_not_depend_on_arrival_order(seed):
    models = random_models(seed, 4)
    weights = [3.0, 1.0, 7.0, 2.0]
    results = {
        model_to_bytes(fedavg([models[i] for i in p], [weights[i] for i in p]))
        for p in itertools.permutations(range(4))
    }
    assert len(results) == 1


def test_fedavg_weights_by_dataset_size():
    spec = ModelSpec(1, (), 2)
    a = model_from_vector(spec, np.zeros(spec.n_params))
    b = model_from_vector(spec, np.ones(spec.n_params))
    assert np.allclose(model_to_vector(fedavg([a, b])), 0.5)
    assert np.allclose(model_to_vector(fedavg([a, b], [30.0, 10.0])), 0.25)
    with pytest.raises(UsageError):
        fedavg([a, b], [0.0, 0.0])
    with pytest.raises(UsageError):
        fedavg([])


@given(seed=st.integers(0, 2**32 - 1), honest=st.sampled_from([2, 4]))
def test_median_ignores_one_outlier_worker(seed, honest):
    models = random_models(seed, honest)
    spec = models[0].spec
    outlier = model_from_vector(spec, np.full(spec.n_params, 1e6))
    stack = np.stack([model_to_vector(m) for m in models])
    robust = model_to_vector(median([*models, outlier]))
    assert np.all(robust >= stack.min(axis=0)) and np.all(robust <= stack.max(axis=0))
    assert np.max(np.abs(model_to_vector(fedavg([*models, outlier])))) > 1e5  # the mean is not
