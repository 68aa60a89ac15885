"""Model maths and the byte layout: gradients vs finite differences, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.fl import (
    ModelSpec,
    TrainSpec,
    forward,
    init_model,
    loss_and_grads,
    model_from_bytes,
    model_to_bytes,
    model_to_vector,
)


def numeric_grads(spec, params, x, y, l2, eps=1e-6):
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = loss_and_grads(spec, params, x, y, l2)[0]
            p[idx] = old - eps
            down = loss_and_grads(spec, params, x, y, l2)[0]
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


@given(
    seed=st.integers(0, 2**32 - 1),
    hidden=st.lists(st.integers(1, 5), min_size=0, max_size=2),
    activation=st.sampled_from(["tanh", "sigmoid", "relu"]),
    n_classes=st.integers(2, 3),
    l2=st.sampled_from([0.0, 0.1]),
)
def test_gradients_match_finite_differences(seed, hidden, activation, n_classes, l2):
    gen = np.random.default_rng(seed)
    spec = ModelSpec(3, tuple(hidden), n_classes, activation)
    params = [p.astype(np.float64) for p in init_model(spec, gen).params]
    params = [p + 0.1 * gen.standard_normal(p.shape) for p in params]  # non-zero biases too
    x = gen.standard_normal((6, 3))
    y = gen.integers(0, n_classes, 6)
    _, analytic = loss_and_grads(spec, params, x, y, l2)
    numeric = numeric_grads(spec, params, x, y, l2)
    for a, n in zip(analytic, numeric, strict=True):
        # ReLU has kinks: a finite difference straddling one is off, so the tolerance is looser.
        tol = 1e-4 if activation == "relu" else 1e-6
        assert np.allclose(a, n, atol=tol, rtol=1e-4)


def test_a_wrong_gradient_would_be_caught():
    spec = ModelSpec(3, (4,), 2, "tanh")
    gen = np.random.default_rng(1)
    params = [p.astype(np.float64) for p in init_model(spec, gen).params]
    x, y = gen.standard_normal((5, 3)), gen.integers(0, 2, 5)
    _, analytic = loss_and_grads(spec, params, x, y)
    numeric = numeric_grads(spec, params, x, y, 0.0)
    assert not np.allclose(analytic[0] * 1.01, numeric[0], atol=1e-7, rtol=1e-6)


def test_forward_gives_probabilities():
    spec = ModelSpec(4, (5,), 3)
    model = init_model(spec, np.random.default_rng(0))
    probs = forward(spec, model.params, np.random.default_rng(1).standard_normal((7, 4)))
    assert probs.shape == (7, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.all(probs > 0)


@given(seed=st.integers(0, 2**32 - 1), hidden=st.lists(st.integers(1, 6), max_size=2))
def test_bytes_round_trip_exactly(seed, hidden):
    spec = ModelSpec(4, tuple(hidden), 2)
    gen = np.random.default_rng(seed)
    raw = gen.standard_normal(spec.n_params).astype("<f4").tobytes()
    model = model_from_bytes(spec, raw)
    assert model_to_bytes(model) == raw
    again = model_from_bytes(spec, model_to_bytes(model))
    for a, b in zip(model.params, again.params, strict=True):
        assert a.dtype == np.float32
        assert np.array_equal(a, b)


def test_byte_layout_is_little_endian_w1_b1_w2_b2():
    spec = ModelSpec(2, (3,), 2)
    values = np.arange(spec.n_params, dtype="<f4")
    model = model_from_bytes(spec, values.tobytes())
    w1, b1, w2, b2 = model.params
    assert w1.shape == (2, 3) and w1[0, 1] == 1.0 and w1[1, 0] == 3.0  # row-major
    assert b1.tolist() == [6.0, 7.0, 8.0]
    assert w2[2, 1] == 14.0 and b2.tolist() == [15.0, 16.0]
    assert model_to_bytes(model)[:8] == bytes.fromhex("00000000 0000803f")


def test_from_bytes_rejects_wrong_length_and_non_finite():
    spec = ModelSpec(2, (2,), 2)
    good = np.zeros(spec.n_params, dtype="<f4")
    with pytest.raises(DecodeError) as exc:
        model_from_bytes(spec, good.tobytes()[:-1])
    assert exc.value.code == "bad-fl-shape"
    bad = good.copy()
    bad[3] = np.nan
    with pytest.raises(DecodeError) as exc:
        model_from_bytes(spec, bad.tobytes())
    assert exc.value.code == "bad-fl-value"


def test_init_is_deterministic_per_seed():
    spec = ModelSpec(9, (8,), 2)
    a = model_to_vector(init_model(spec, np.random.default_rng(5)))
    b = model_to_vector(init_model(spec, np.random.default_rng(5)))
    c = model_to_vector(init_model(spec, np.random.default_rng(6)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ModelSpec(0, (4,)),
        lambda: ModelSpec(3, (4,), 1),
        lambda: ModelSpec(3, (4,), activation="gelu"),
        lambda: ModelSpec(3, (4,), init="zeros"),
        lambda: TrainSpec(epochs=0),
        lambda: TrainSpec(learning_rate=0.0),
        lambda: TrainSpec(optimizer="rmsprop"),
    ],
)
def test_bad_specs_are_rejected(make):
    with pytest.raises(ValidationError) as exc:
        make()
    assert exc.value.code == "bad-fl-spec"
