"""The back-propagation network: initialisation, forward pass, loss, gradients and byte layout.

Invariants:
- A :class:`Model` holds float32 parameters in the order of ``ModelSpec.shapes``
  (W1, b1, W2, b2, ...; ``W`` is ``fan_in × fan_out``, row-major). That is exactly what is posted.
- Byte layout (``model_to_bytes``): the parameters in that order, each flattened row-major
  (C order), concatenated as little-endian IEEE-754 float32, no header. Its length is
  ``4 * spec.n_params``; the shape comes from the task's ``ModelSpec``. ``model_from_bytes``
  rejects a wrong length (``bad-fl-shape``) and NaN/inf (``bad-fl-value``), and
  ``model_to_bytes(model_from_bytes(b)) == b`` bit for bit.
- The maths (forward, loss, gradients) runs in float64 on whatever arrays it is given, so the
  finite-difference test and training stay accurate; only stored models are float32.
- Loss: mean softmax cross-entropy over the batch plus ``l2/2 · Σ‖W‖²`` (weights, not biases).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import DecodeError, UsageError
from crowdmesh.fl.spec import ModelSpec

__all__ = [
    "Array",
    "Model",
    "accuracy",
    "forward",
    "init_model",
    "loss_and_grads",
    "model_from_bytes",
    "model_from_vector",
    "model_to_bytes",
    "model_to_vector",
    "predict",
]

Array = NDArray[np.float64]
Params = Sequence[NDArray[np.floating]]
WIRE_DTYPE = np.dtype("<f4")


@dataclass(frozen=True, slots=True, eq=False)
class Model:
    """A network's spec and its float32 parameters (read-only arrays)."""

    spec: ModelSpec
    params: tuple[NDArray[np.float32], ...]

    def __post_init__(self) -> None:
        shapes = tuple(p.shape for p in self.params)
        if shapes != self.spec.shapes:
            raise UsageError("bad-fl-shape", f"parameter shapes {shapes} != {self.spec.shapes}")
        for p in self.params:
            if p.dtype != np.float32:
                raise UsageError("bad-fl-dtype", f"parameters must be float32, not {p.dtype}")
            p.flags.writeable = False


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


# name -> (activation(z), derivative(z, a)); the derivative gets both so each picks the cheap one.
_ACT: dict[str, tuple[Callable[[Array], Array], Callable[[Array, Array], Array]]] = {
    "relu": (_relu, lambda z, a: (z > 0.0).astype(np.float64)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "sigmoid": (_sigmoid, lambda z, a: a * (1.0 - a)),
}

# name -> standard deviation of the normal draw for a fan_in × fan_out weight matrix.
_INIT_SD: dict[str, Callable[[int, int], float]] = {
    "he": lambda fan_in, fan_out: float(np.sqrt(2.0 / fan_in)),
    "xavier": lambda fan_in, fan_out: float(np.sqrt(2.0 / (fan_in + fan_out))),
}


def init_model(spec: ModelSpec, gen: np.random.Generator) -> Model:
    """Draw initial weights (normal, scaled per ``spec.init``) and zero biases."""
    params: list[NDArray[np.float32]] = []
    for shape in spec.shapes:
        if len(shape) == 2:
            sd = _INIT_SD[spec.init](shape[0], shape[1])
            params.append((gen.standard_normal(shape) * sd).astype(np.float32))
        else:
            params.append(np.zeros(shape, dtype=np.float32))
    return Model(spec, tuple(params))


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))  # shift: no overflow, same result
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def _layers(spec: ModelSpec, params: Params, x: Array) -> tuple[list[Array], list[Array]]:
    """Return pre-activations and activations of every layer (activations[0] is the input)."""
    act = _ACT[spec.activation][0]
    zs: list[Array] = []
    acts: list[Array] = [x]
    last = len(params) // 2 - 1
    for i in range(last + 1):
        z = acts[-1] @ params[2 * i] + params[2 * i + 1]
        zs.append(z)
        acts.append(_softmax(z) if i == last else act(z))
    return zs, acts


def forward(spec: ModelSpec, params: Params, x: NDArray[np.floating]) -> Array:
    """Class probabilities, shape ``(n, n_classes)``."""
    return _layers(spec, params, np.asarray(x, dtype=np.float64))[1][-1]


def loss_and_grads(
    spec: ModelSpec,
    params: Params,
    x: NDArray[np.floating],
    y: NDArray[np.integer],
    l2: float = 0.0,
) -> tuple[float, list[Array]]:
    """Mean cross-entropy (+ L2) on ``(x, y)`` and its gradient for every parameter."""
    zs, acts = _layers(spec, params, np.asarray(x, dtype=np.float64))
    n = len(y)
    probs = acts[-1]
    picked = probs[np.arange(n), y]
    weights = params[0::2]
    loss = -float(np.mean(np.log(np.maximum(picked, 1e-300))))
    loss += 0.5 * l2 * sum(float(np.sum(np.square(w, dtype=np.float64))) for w in weights)
    delta = probs.copy()
    delta[np.arange(n), y] -= 1.0
    delta /= n
    deriv = _ACT[spec.activation][1]
    grads: list[Array] = []
    for i in range(len(weights) - 1, -1, -1):
        w = np.asarray(weights[i], dtype=np.float64)
        grads += [delta.sum(axis=0), acts[i].T @ delta + l2 * w]
        if i:
            delta = (delta @ w.T) * deriv(zs[i - 1], acts[i])
    return loss, grads[::-1]


def predict(model: Model, x: NDArray[np.floating]) -> NDArray[np.int64]:
    """Most probable class per row."""
    labels: NDArray[np.int64] = np.argmax(forward(model.spec, model.params, x), axis=1)
    return labels.astype(np.int64)


def accuracy(model: Model, x: NDArray[np.floating], y: NDArray[np.integer]) -> float:
    """Share of rows classified correctly, in [0, 1]."""
    return float(np.mean(predict(model, x) == y))


def model_to_vector(model: Model) -> NDArray[np.float32]:
    """All parameters flattened in the fixed layout order (float32)."""
    return np.concatenate([p.ravel() for p in model.params])


def model_from_vector(spec: ModelSpec, vec: NDArray[np.floating]) -> Model:
    """Inverse of :func:`model_to_vector`; values are rounded to float32."""
    flat = np.asarray(vec).astype(np.float32).ravel()
    if flat.size != spec.n_params:
        raise UsageError("bad-fl-shape", f"{flat.size} values, spec needs {spec.n_params}")
    params: list[NDArray[np.float32]] = []
    offset = 0
    for shape in spec.shapes:
        size = int(np.prod(shape))
        params.append(flat[offset : offset + size].reshape(shape).copy())
        offset += size
    return Model(spec, tuple(params))


def model_to_bytes(model: Model) -> bytes:
    """Serialise in the documented layout: little-endian float32, W1, b1, W2, b2, ..."""
    return model_to_vector(model).astype(WIRE_DTYPE).tobytes()


def model_from_bytes(spec: ModelSpec, data: bytes) -> Model:
    """Parse bytes made by :func:`model_to_bytes` for ``spec``.

    Raises:
        DecodeError: ``bad-fl-shape`` for a wrong length, ``bad-fl-value`` for NaN or infinity.
    """
    if len(data) != 4 * spec.n_params:
        raise DecodeError("bad-fl-shape", f"{len(data)} bytes, spec needs {4 * spec.n_params}")
    flat = np.frombuffer(data, dtype=WIRE_DTYPE).astype(np.float32)
    if not np.all(np.isfinite(flat)):
        raise DecodeError("bad-fl-value", "parameters contain NaN or infinity")
    return model_from_vector(spec, flat)
