"""rewards: the §3 worked example, exactness against fractions, bounds and monotonicity."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from crowdmesh.chain.contracts.spatial.rewards import (
    max_mint_per_tally,
    phi,
    requester_reward,
    worker_reward,
)
from crowdmesh.chain.spatial_params import SpatialParams

# SPATIAL.md §3, "Worked example (checked)"
EXAMPLE = SpatialParams(base_reward=100_000, alpha_r_permille=600, alpha_w_permille=300,
                        d0_m=1000, committee_k=5)


# ---- golden: the worked example -----------------------------------------------------------


def test_worked_example_requester():
    assert phi(5451, 3, 1000) == (13_902, 8_451)  # Φ = 1.645
    assert requester_reward(EXAMPLE, 5451, 3) == 98_700


@pytest.mark.parametrize("who, d_w, n_c, reward", [
    ("worker A", 35_949, 10, 40_103),  # Φ = 1.782
    ("worker B", 0, 1, 22_500),  # Φ = 1
])
def test_worked_example_workers(who, d_w, n_c, reward):
    assert EXAMPLE.majority == 3
    assert worker_reward(EXAMPLE, d_w, n_c, 4) == reward, who


def test_worked_example_bounds():
    # "requester < 120 000; all workers together < 180 000"
    assert max_mint_per_tally(EXAMPLE) == 119_999 + 179_999


# ---- tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("d, n, d0, fraction", [
    (0, 1, 1000, (1000, 1000)),
    (1000, 1, 1000, (3000, 2000)),
    (0, 7, 50, (350, 350)),
    (10**12, 1, 1, (2 * 10**12 + 1, 10**12 + 1)),
])
def test_phi_table(d, n, d0, fraction):
    assert phi(d, n, d0) == fraction


@pytest.mark.parametrize("d, n, d0", [(-1, 1, 1000), (0, 0, 1000), (0, -3, 1000), (0, 1, 0)])
def test_phi_rejects_impossible_histories(d, n, d0):
    with pytest.raises(ValueError):
        phi(d, n, d0)


@pytest.mark.parametrize("d, n", [(-1, 1), (0, 0)])
def test_rewards_reject_impossible_histories(d, n):
    with pytest.raises(ValueError):
        requester_reward(EXAMPLE, d, n)
    with pytest.raises(ValueError):
        worker_reward(EXAMPLE, d, n, EXAMPLE.majority)


@pytest.mark.parametrize("n_w", [0, 1, 2, 6, 7])
def test_worker_count_outside_majority_and_committee_is_a_caller_bug(n_w):
    with pytest.raises(ValueError):
        worker_reward(EXAMPLE, 0, 1, n_w)


@pytest.mark.parametrize("n_w, reward", [(3, 30_000), (4, 22_500), (5, 18_000)])
def test_fewer_confirmers_earn_more_each(n_w, reward):
    assert worker_reward(EXAMPLE, 0, 1, n_w) == reward


# ---- properties ---------------------------------------------------------------------------


@st.composite
def params(draw):
    alpha_r = draw(st.integers(2, 999))
    return SpatialParams(
        base_reward=draw(st.integers(1, 10**12)),
        alpha_r_permille=alpha_r,
        alpha_w_permille=draw(st.integers(1, alpha_r - 1)),
        d0_m=draw(st.integers(1, 10**6)),
        committee_k=draw(st.integers(1, 15)) * 2 + 1,
    )


distances = st.integers(0, 10**13)  # up to 10^6 reports each 20 000 km away
counts = st.integers(1, 10**6)


def exact(p: SpatialParams, alpha: int, d: int, n: int, share: Fraction = Fraction(1)) -> int:
    """The formula as one exact rational, floored once (the reference)."""
    phi_value = 1 + Fraction(d, d + n * p.d0_m)
    return math.floor(p.base_reward * Fraction(alpha, 1000) * phi_value * share)


@given(params(), distances, counts)
def test_requester_reward_is_the_exact_floor(p, d, n):
    assert requester_reward(p, d, n) == exact(p, p.alpha_r_permille, d, n)


@given(params(), distances, counts, st.data())
def test_worker_reward_is_the_exact_floor(p, d, n, data):
    n_w = data.draw(st.integers(p.majority, p.committee_k))
    share = Fraction(p.majority, n_w)
    assert worker_reward(p, d, n, n_w) == exact(p, p.alpha_w_permille, d, n, share)


@given(params(), distances, counts)
def test_requester_reward_bounds(p, d, n):
    reward = requester_reward(p, d, n)
    assert p.base_reward * p.alpha_r_permille // 1000 <= reward  # ⌊α_r·B⌋ <= PEY_r
    assert 1000 * reward < 2 * p.alpha_r_permille * p.base_reward  # PEY_r < 2·α_r·B


@given(params(), st.data())
def test_workers_of_one_report_share_a_bounded_pot(p, data):
    n_w = data.draw(st.integers(p.majority, p.committee_k))
    histories = data.draw(st.lists(st.tuples(distances, counts), min_size=n_w, max_size=n_w))
    total = sum(worker_reward(p, d, n, n_w) for d, n in histories)
    assert 1000 * total < 2 * p.majority * p.alpha_w_permille * p.base_reward
    d_r, n_r = data.draw(st.tuples(distances, counts))
    assert requester_reward(p, d_r, n_r) + total <= max_mint_per_tally(p)


@given(params(), distances, distances, counts, st.data())
def test_rewards_never_fall_as_distance_grows(p, d1, d2, n, data):
    lo, hi = sorted((d1, d2))
    n_w = data.draw(st.integers(p.majority, p.committee_k))
    assert requester_reward(p, lo, n) <= requester_reward(p, hi, n)
    assert worker_reward(p, lo, n, n_w) <= worker_reward(p, hi, n, n_w)


@given(params(), distances, counts, counts)
def test_rewards_never_rise_with_more_history(p, d, n1, n2):
    lo, hi = sorted((n1, n2))
    assert requester_reward(p, d, lo) >= requester_reward(p, d, hi)
    assert worker_reward(p, d, lo, p.majority) >= worker_reward(p, d, hi, p.majority)


@given(params(), distances, counts, st.data())
def test_each_worker_earns_less_with_more_confirmers(p, d, n, data):
    n_w = data.draw(st.integers(p.majority, p.committee_k))
    assume(n_w < p.committee_k)
    assert worker_reward(p, d, n, n_w) >= worker_reward(p, d, n, n_w + 1)


def test_max_mint_is_reached_in_the_limit():
    # a far-travelled requester and K confirmers at N_w = m approach the bound from below
    p = EXAMPLE
    far = 10**15
    total = requester_reward(p, far, 1) + p.majority * worker_reward(p, far, 1, p.majority)
    assert max_mint_per_tally(p) - 2 <= total <= max_mint_per_tally(p)


@given(params(), distances, counts, st.data())
def test_worker_reward_bounds(p, d, n, data):
    """SPATIAL.md §3: ⌊B·α_w·m/N_w⌋ <= PEY_w < 2·α_w·B·m/N_w, since 1 <= Φ < 2."""
    n_w = data.draw(st.integers(p.majority, p.committee_k))
    reward = worker_reward(p, d, n, n_w)
    assert p.base_reward * p.alpha_w_permille * p.majority // (1000 * n_w) <= reward
    assert 1000 * n_w * reward < 2 * p.alpha_w_permille * p.base_reward * p.majority
    assert reward <= requester_reward(p, d, n)  # α_w < α_r and m/N_w <= 1
