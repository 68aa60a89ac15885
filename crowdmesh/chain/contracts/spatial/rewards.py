"""The spatial reward formulas of SPATIAL.md §3, in exact integer arithmetic.

Invariants:
- Every input and result is an ``int`` (base units, metres, counts, per mille): no floats in
  consensus. Each formula is one exact rational, floored ONCE at the end, so every validator
  recomputes the same amount and rounding errors never accumulate.
- Φ(D, N) = 1 + D/(D + N·D0) lies in [1, 2), hence
  ⌊B·α_r⌋ <= requester reward < 2·α_r·B, and the workers of one report share a pot
  B·α_w·Φ·m (each of the N_w confirmers gets Φ_i·m/N_w of B·α_w), so together they get
  < 2·m·α_w·B whatever N_w is: extra sybil confirmers gain nothing.
- Rewards never decrease as D grows (spreading reports out pays) and never increase as N grows.
- Arguments that cannot come from a valid chain (N < 1, D < 0, N_w outside [m, K]) raise
  ``ValueError``: the contract computes them, so they are caller bugs, not remote input.
"""

from __future__ import annotations

from crowdmesh.chain.spatial_params import SpatialParams

__all__ = ["max_mint_per_tally", "phi", "requester_reward", "worker_reward"]

_PERMILLE = 1000  # α_r and α_w are stored in per mille


def phi(d_m: int, n: int, d0_m: int) -> tuple[int, int]:
    """The diversity factor Φ(D, N) = 1 + D/(D + N·D0) as an exact fraction.

    Args:
        d_m: D, the summed distance to the user's previous confirmed reports (m, >= 0).
        n: N, the user's confirmed reports including this one (>= 1).
        d0_m: D0, the scale distance (m, > 0).

    Returns:
        ``(2·D + N·D0, D + N·D0)``, numerator and denominator (not reduced).

    Raises:
        ValueError: D < 0, N < 1 or D0 <= 0.
    """
    if d_m < 0 or n < 1 or d0_m <= 0:
        raise ValueError(f"phi needs D >= 0, N >= 1, D0 > 0; got D={d_m}, N={n}, D0={d0_m}")
    scale = n * d0_m
    return 2 * d_m + scale, d_m + scale


def requester_reward(p: SpatialParams, d_r: int, n_r: int) -> int:
    """PEY_r = ⌊B·α_r·Φ(D_r, N_r)⌋, the requester's reward for a confirmed report (eq. 4').

    Args:
        p: the network's spatial parameters (B, α_r, D0).
        d_r: D_r, summed distance from this report to the requester's previous confirmed ones.
        n_r: N_r, the requester's confirmed reports including this one.

    Returns:
        The reward in base units.

    Raises:
        ValueError: see :func:`phi`.
    """
    num, den = phi(d_r, n_r, p.d0_m)
    return p.base_reward * p.alpha_r_permille * num // (_PERMILLE * den)


def worker_reward(p: SpatialParams, d_w: int, n_c: int, n_w: int) -> int:
    """PEY_w = ⌊B·α_w·Φ(D_w, N_c)·m/N_w⌋, one confirming worker's reward (eq. 5').

    Args:
        p: the network's spatial parameters (B, α_w, D0, K and so m).
        d_w: D_w, summed distance from this report to the worker's previous confirmed ones.
        n_c: N_c, the reports this worker confirmed, including this one.
        n_w: N_w, this report's confirmers; a confirmed report has m <= N_w <= K.

    Returns:
        The reward in base units.

    Raises:
        ValueError: N_w outside [m, K], or see :func:`phi`.
    """
    m = p.majority
    if not m <= n_w <= p.committee_k:
        raise ValueError(f"n_w must be in [{m}, {p.committee_k}], got {n_w}")
    num, den = phi(d_w, n_c, p.d0_m)
    return p.base_reward * p.alpha_w_permille * num * m // (_PERMILLE * den * n_w)


def max_mint_per_tally(p: SpatialParams) -> int:
    """An upper bound of what one confirmed tally mints: the requester plus all its confirmers.

    The requester gets < 2·α_r·B and the confirmers together < 2·m·α_w·B (module invariants),
    whatever the histories and N_w. An int strictly below a/1000 is at most (a - 1) // 1000.

    Returns:
        ``(2·B·α_r − 1) // 1000 + (2·m·B·α_w − 1) // 1000`` base units.
    """
    requester = (2 * p.base_reward * p.alpha_r_permille - 1) // _PERMILLE
    workers = (2 * p.majority * p.base_reward * p.alpha_w_permille - 1) // _PERMILLE
    return requester + workers
