"""Free-rider check: flag an update that is (nearly) the global model it was trained from.

A free rider skips training and re-uploads the global model w_t, possibly plus a little noise.
The requester's accuracy check cannot see it (w_t is as accurate as anything this round), so
the protocol needs a separate test before paying.

The test (documented in docs/fl.md):

    move_k  = ‖w_k − w_t‖₂                      (how far the upload moved, float64)
    ref     = ‖w_ref − w_t‖₂, w_ref = ONE local epoch from w_t on the checker's own data,
              with the task's optimiser, learning rate and batch size, over at most the
              worker's declared number of rows
    flagged ⇔ move_k < threshold · ref            (threshold = 1/2 by default)

Why this threshold: an honest worker runs E ≥ 1 epochs over its n_k rows, so it moves at least
about what one epoch over n_k similar rows moves; the reference is exactly that, computed from
the same w_t, so it shrinks as training converges and tracks the optimiser and learning rate
without a tuned constant. Measured with the baseline spec on BCWD and HDD (IID, half and fully
label-sorted splits, 5 rounds, 10 splits, 450 updates each): honest ratios move_k/ref were
≥ 0.72 with the baseline E = 3 (1st percentile 0.76, median ≈ 2) and ≥ 0.60 even with E = 1;
the factor 1/2 sits below all of them and far above what a re-upload moves (0).
Anything that moves less than half an honest epoch — the global model, or it plus noise
smaller than that — is flagged.

Limitation (stated, not hidden): noise as large as an honest update is not distinguishable from
one by looking at the update alone with a few hundred rows (we measured direction- and
loss-based tests and they flagged 4–37 % of honest workers); such a free rider is paid like an
honest worker whose update is useless. The attack matrix in ``bench/fl_baselines.py`` reports it.

Invariants: pure; the only randomness is the reference epoch's batch order from the caller's
Generator; all distances in float64 on the float32 parameters that were posted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import UsageError
from crowdmesh.fl.model import Model, model_to_vector
from crowdmesh.fl.spec import TrainSpec
from crowdmesh.fl.training import local_train

__all__ = ["DEFAULT_THRESHOLD", "FreeRiderVerdict", "check_free_rider", "move", "reference_move"]

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class FreeRiderVerdict:
    """Outcome of the check: the measured ratio move/ref and whether it is below threshold."""

    flagged: bool
    ratio: float
    move: float
    reference: float


def move(global_model: Model, update: Model) -> float:
    """Euclidean distance between two models' parameters."""
    if update.spec != global_model.spec:
        raise UsageError("bad-fl-shape", "update and global model have different specs")
    delta = model_to_vector(update).astype(np.float64) - model_to_vector(global_model)
    return float(np.sqrt(np.dot(delta, delta)))


def reference_move(
    global_model: Model,
    x_ref: NDArray[np.floating],
    y_ref: NDArray[np.integer],
    train: TrainSpec,
    gen: np.random.Generator,
    n_rows: int | None = None,
) -> float:
    """How far ONE honest local epoch moves ``global_model`` on the checker's data.

    Args:
        n_rows: the worker's declared dataset size; the epoch uses at most that many rows, so
            the reference is an epoch of the same length as the worker's shortest honest one.
    """
    n = len(y_ref) if n_rows is None else max(1, min(n_rows, len(y_ref)))
    rows = gen.permutation(len(y_ref))[:n]
    one_epoch = replace(train, epochs=1)
    return move(global_model, local_train(global_model, x_ref[rows], y_ref[rows], one_epoch, gen))


def check_free_rider(
    global_model: Model, update: Model, reference: float, threshold: float = DEFAULT_THRESHOLD
) -> FreeRiderVerdict:
    """Flag ``update`` if it moved less than ``threshold`` × the reference epoch's move."""
    if not reference > 0.0:
        raise UsageError("bad-reference", "the reference move must be positive")
    dist = move(global_model, update)
    ratio = dist / reference
    return FreeRiderVerdict(ratio < threshold, ratio, dist, reference)
