"""Task-spec values for federated learning: the model architecture and the local training plan.

Invariants:
- A spec is a frozen value that every participant (requester, workers, CSP) reads from the task;
  two nodes holding equal specs build identical models, train identically for the same seed and
  serialise parameters to identical bytes.
- Constructors validate their fields and raise ``ValidationError("bad-fl-spec")``: a spec comes
  from a task posted by someone else, so a bad one is outside input, not a local bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from crowdmesh.errors import ValidationError

__all__ = ["ACTIVATIONS", "INITS", "OPTIMIZERS", "ModelSpec", "TrainSpec"]

ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("he", "xavier")
OPTIMIZERS = ("sgd", "adam")
_MAX_UNITS = 4096  # keeps a posted model far below the chain's payload cap after encryption


def _require(ok: bool, detail: str) -> None:
    if not ok:
        raise ValidationError("bad-fl-spec", detail)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A back-propagation network: inputs → hidden layers (``activation``) → softmax classes.

    ``hidden=()`` is multinomial logistic regression; the paper's "three-layer BP-NN" is one
    hidden layer.
    """

    n_inputs: int
    hidden: tuple[int, ...]
    n_classes: int = 2
    activation: str = "relu"
    init: str = "he"

    def __post_init__(self) -> None:
        sizes = (self.n_inputs, *self.hidden, self.n_classes)
        _require(all(0 < s <= _MAX_UNITS for s in sizes), f"layer sizes out of range: {sizes}")
        _require(self.n_classes >= 2, "n_classes must be >= 2")
        _require(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}")
        _require(self.init in INITS, f"unknown init {self.init!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units per layer, inputs first, classes last."""
        return (self.n_inputs, *self.hidden, self.n_classes)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Parameter shapes in the fixed serialisation order: W1, b1, W2, b2, ..."""
        sizes = self.layer_sizes
        out: list[tuple[int, ...]] = []
        for fan_in, fan_out in pairwise(sizes):
            out += [(fan_in, fan_out), (fan_out,)]
        return tuple(out)

    @property
    def n_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(_prod(s) for s in self.shapes)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """Local training plan per round (Algorithm 1's E, B, η) plus L2 weight decay.

    ``optimizer="adam"`` restarts its moment estimates every round, so a worker's update depends
    only on the global model it received, its data and its seed.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    l2: float = 0.0

    def __post_init__(self) -> None:
        _require(1 <= self.epochs <= 10_000, f"epochs out of range: {self.epochs}")
        _require(1 <= self.batch_size <= 1 << 20, f"batch_size out of range: {self.batch_size}")
        lr = self.learning_rate
        _require(0.0 < lr <= 10.0, f"learning_rate out of range: {lr}")
        _require(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}")
        _require(0.0 <= self.l2 <= 1.0, f"l2 out of range: {self.l2}")
