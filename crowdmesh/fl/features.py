"""Feature declarations and the preprocessing a worker applies from the task spec alone.

Invariants:
- Preprocessing uses only constants declared in the spec (per-feature range, fill value, category
  list), never statistics of anyone's data, so the requester and every worker map the same raw
  row to the same vector without sharing data, and no test-set statistic leaks into training.
- Numeric feature: missing → ``fill`` (default: the midpoint of the declared range, the value
  that assumes nothing about the data), then ``(x − low) / (high − low)`` clipped to [0, 1]
  (a value outside the declared range is treated as the nearest bound).
- Categorical feature (``categories`` non-empty): one-hot over the declared categories; a missing
  or undeclared value encodes as all zeros unless ``fill`` names a category.
- The encoded width is fixed by the spec (:func:`encoded_width`), so it can size the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import ValidationError

__all__ = ["Feature", "encode", "encoded_width"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One input column: declared range ``[low, high]``, fill value, optional categories."""

    name: str
    low: float
    high: float
    fill: float | None = None
    categories: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValidationError("bad-fl-feature", f"{self.name}: need finite low < high")
        if len(set(self.categories)) != len(self.categories):
            raise ValidationError("bad-fl-feature", f"{self.name}: duplicate categories")

    @property
    def width(self) -> int:
        """Encoded columns: 1 for numeric, one per category for categorical."""
        return len(self.categories) or 1

    @property
    def fill_value(self) -> float:
        """The imputation constant (declared, else the range midpoint)."""
        return (self.low + self.high) / 2.0 if self.fill is None else self.fill


def encoded_width(features: Sequence[Feature]) -> int:
    """Number of model inputs the encoded features occupy."""
    return sum(f.width for f in features)


def _numeric(col: NDArray[np.float64], f: Feature) -> NDArray[np.float64]:
    filled = np.where(np.isnan(col), f.fill_value, col)
    scaled: NDArray[np.float64] = np.clip((filled - f.low) / (f.high - f.low), 0.0, 1.0)
    return scaled[:, None]


def _one_hot(col: NDArray[np.float64], f: Feature) -> NDArray[np.float64]:
    filled = col if f.fill is None else np.where(np.isnan(col), f.fill, col)
    hits: NDArray[np.bool_] = filled[:, None] == np.asarray(f.categories)[None, :]
    return hits.astype(np.float64)


def encode(raw: NDArray[np.floating], features: Sequence[Feature]) -> NDArray[np.float64]:
    """Impute and scale raw rows (``NaN`` = missing) into model inputs.

    Args:
        raw: shape ``(n, len(features))``, columns in ``features`` order.
        features: the task's feature declarations.
    Returns:
        shape ``(n, encoded_width(features))``, every value in [0, 1].
    """
    data = np.asarray(raw, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(features):
        detail = f"raw shape {data.shape} for {len(features)} features"
        raise ValidationError("bad-fl-shape", detail)
    cols = [
        (_one_hot if f.categories else _numeric)(data[:, i], f) for i, f in enumerate(features)
    ]
    return np.hstack(cols) if cols else np.zeros((len(data), 0))
