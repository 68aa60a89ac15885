"""RFC 7919 constants, subgroup membership, profiles, fixed-base tables and batch inversion."""

from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.crypto import groups
from crowdmesh.crypto._fixedbase import FixedBase, PlainBase
from crowdmesh.crypto._multiexp import multiexp
from crowdmesh.crypto.groups import DEFAULT, FFDHE2048, FFDHE3072, PAPER, get_profile
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import UsageError, ValidationError

# RFC 7919 Appendix A: the X of each group's formula.
RFC_X = {2048: 560316, 3072: 2625351}


def floor_e_times_2pow(n: int) -> int:
    """⌊2^n · e⌋ from the series ∑ 1/k!, with 64 guard bits (far more than the term count)."""
    guard, total, fact, k = 64, 0, 1, 0
    one = 1 << (n + guard)
    while one // fact:
        total += one // fact
        k += 1
        fact *= k
    return total >> guard


@pytest.mark.parametrize("group", [FFDHE2048, FFDHE3072], ids=lambda g: g.name)
def test_prime_matches_rfc7919_formula_and_is_safe(group: groups.Group) -> None:
    b = group.p.bit_length()
    expected = 2**b - 2 ** (b - 64) + (floor_e_times_2pow(b - 130) + RFC_X[b]) * 2**64 - 1
    assert group.p == expected
    assert gmpy2.is_prime(group.q) and gmpy2.is_prime(group.p)
    # p ≡ 7 mod 8 makes 2 a quadratic residue, so g = 2 generates the order-q subgroup.
    assert group.p % 8 == 7 and group.g == 2
    assert gmpy2.powmod(group.g, group.q, group.p) == 1


def test_formula_check_can_fail() -> None:
    b = 2048
    wrong = 2**b - 2 ** (b - 64) + (floor_e_times_2pow(b - 130) + RFC_X[b] + 1) * 2**64 - 1
    assert wrong != FFDHE2048.p


def test_sizes() -> None:
    assert (FFDHE2048.chunk_bytes, FFDHE3072.chunk_bytes) == (255, 383)
    assert (FFDHE2048.element_bytes, FFDHE3072.element_bytes) == (256, 384)


def test_profiles() -> None:
    assert DEFAULT.group is FFDHE3072 and DEFAULT.exponent_bits == 280 and DEFAULT.tables
    assert PAPER.group is FFDHE2048 and PAPER.exponent_bits is None and not PAPER.tables
    assert get_profile("paper") is PAPER
    with pytest.raises(UsageError) as exc:
        get_profile("nope")
    assert exc.value.code == "unknown-profile"


def test_random_exponents_in_range() -> None:
    rng = DeterministicRng(1)
    short = [DEFAULT.random_exponent(rng) for _ in range(50)]
    assert all(0 < r < 2**280 for r in short) and max(short).bit_length() > 270
    full = [PAPER.random_exponent(rng) for _ in range(20)]
    assert all(0 < r < PAPER.group.q for r in full) and max(full).bit_length() > 2030


def test_element_validation() -> None:
    g = FFDHE2048
    assert groups.is_element(g, 4) and groups.is_element(g, g.g)
    for bad in (0, g.p, g.p - 1, -4, g.p + 4):  # p−1 = −1 is a non-residue since p ≡ 3 mod 4
        assert not groups.is_element(g, bad)
        with pytest.raises(ValidationError) as exc:
            groups.validate_element(g, bad)
        assert exc.value.code == "bad-group-element"


@given(st.lists(st.integers(min_value=1, max_value=FFDHE2048.p - 1), max_size=20))
def test_batch_invert(values: list[int]) -> None:
    p = FFDHE2048.p
    assert groups.batch_invert(values, p) == [gmpy2.invert(v, p) for v in values]


@given(st.integers(min_value=0, max_value=2**300))
def test_fixed_base_matches_powmod(e: int) -> None:
    p = FFDHE3072.p
    table = _table()
    assert table.pow(e) == gmpy2.powmod(5, e, p)  # includes the fallback above 2^280
    assert PlainBase(5, p).pow_many([e, 1]) == [gmpy2.powmod(5, e, p), 5]


_TABLES: dict[str, FixedBase] = {}


def _table() -> FixedBase:
    if "t" not in _TABLES:
        _TABLES["t"] = FixedBase(5, FFDHE3072.p, 280)
    return _TABLES["t"]


def test_fixed_base_other_window() -> None:
    p = FFDHE2048.p
    t = FixedBase(3, p, 64, window=5)
    for e in (0, 1, 2**64 - 1, 123456789123456789):
        assert t.pow(e) == gmpy2.powmod(3, e, p)


@pytest.mark.parametrize("n", [0, 1, 5, 40, 450])
def test_multiexp_matches_naive(n: int) -> None:
    p = FFDHE2048.p
    rng = DeterministicRng(n)
    bases = [gmpy2.mpz(rng.randbelow(p - 2) + 2) for _ in range(n)]
    weights = [rng.token_bytes(16) for _ in range(n)]
    naive = gmpy2.mpz(1)
    for b, w in zip(bases, weights, strict=True):
        naive = naive * gmpy2.powmod(b, int.from_bytes(w, "big"), p) % p
    assert multiexp(bases, weights, p) == naive
