"""geo: point validation, the one shared distance, H3 cells and the ring bound."""

from __future__ import annotations

import math
import random

import h3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain.contracts.spatial.geo import (
    EARTH_RADIUS_M,
    cell_hex,
    cell_of,
    cells_around,
    check_point,
    distance_m,
    ring_bound,
    sum_distances_m,
)
from crowdmesh.errors import ValidationError

CHARLOTTE = (35_227_100, -80_843_100)

lats = st.integers(-90_000_000, 90_000_000)
lons = st.integers(-180_000_000, 180_000_000)
points = st.tuples(lats, lons)


# ---- independent references ---------------------------------------------------------------


def vincenty_sphere_m(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Vincenty's (atan2) great-circle formula, well conditioned at every distance."""
    la1, lo1, la2, lo2 = (math.radians(v / 1e6) for v in (*a, *b))
    dlon = lo2 - lo1
    y = math.hypot(math.cos(la2) * math.sin(dlon),
                   math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(dlon))
    x = math.sin(la1) * math.sin(la2) + math.cos(la1) * math.cos(la2) * math.cos(dlon)
    return EARTH_RADIUS_M * math.atan2(y, x)


def cosines_m(a: tuple[int, int], b: tuple[int, int]) -> float:
    """The spherical law of cosines (fine at 1 km in float64: error ~1e-5 m)."""
    la1, lo1, la2, lo2 = (math.radians(v / 1e6) for v in (*a, *b))
    c = math.sin(la1) * math.sin(la2) + math.cos(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return EARTH_RADIUS_M * math.acos(max(-1.0, min(1.0, c)))


def destination(p: tuple[int, int], bearing_deg: float, dist_m: float) -> tuple[int, int]:
    """The point ``dist_m`` from ``p`` along ``bearing_deg`` on the sphere, in micro-degrees."""
    la1, lo1 = math.radians(p[0] / 1e6), math.radians(p[1] / 1e6)
    th, de = math.radians(bearing_deg), dist_m / EARTH_RADIUS_M
    la2 = math.asin(math.sin(la1) * math.cos(de) + math.cos(la1) * math.sin(de) * math.cos(th))
    lo2 = lo1 + math.atan2(math.sin(th) * math.sin(de) * math.cos(la1),
                           math.cos(de) - math.sin(la1) * math.sin(la2))
    lon = (math.degrees(lo2) + 180.0) % 360.0 - 180.0
    lat_e6 = max(-90_000_000, min(90_000_000, round(math.degrees(la2) * 1e6)))
    return lat_e6, max(-180_000_000, min(179_999_999, round(lon * 1e6)))


# ---- points -------------------------------------------------------------------------------


@pytest.mark.parametrize("lat, lon", [
    (0, 0), (90_000_000, 180_000_000), (-90_000_000, -180_000_000), CHARLOTTE,
])
def test_good_points_pass(lat, lon):
    check_point(lat, lon)


BAD_POINTS = [
    (90_000_001, 0), (-90_000_001, 0), (0, 180_000_001), (0, -180_000_001), (10**30, 0),
    (35.2271, -80.8431), (True, 0), (0, False), ("1", 0), (None, 0), (0, 1.0),
]


@pytest.mark.parametrize("lat, lon", BAD_POINTS)
def test_bad_points_are_rejected_everywhere(lat, lon):
    calls = [
        lambda: check_point(lat, lon),
        lambda: distance_m(lat, lon, *CHARLOTTE),
        lambda: distance_m(*CHARLOTTE, lat, lon),
        lambda: cell_of(lat, lon, 7),
        lambda: cells_around(lat, lon, 7, 1),
    ]
    for call in calls:
        with pytest.raises(ValidationError) as err:
            call()
        assert err.value.code == "bad-spatial-point"


# ---- distance -----------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, metres", [
    ((0, 0), (0, 0), 0),
    (CHARLOTTE, CHARLOTTE, 0),
    ((0, 0), (0, 1_000_000), 111_195),  # πR/180 = 111 195.080 m
    ((0, 0), (1_000_000, 0), 111_195),
    ((0, 0), (90_000_000, 0), 10_007_557),  # πR/2 = 10 007 557.221 m
    ((90_000_000, 0), (-90_000_000, 0), 20_015_114),  # πR = 20 015 114.442 m
    ((0, 0), (0, 180_000_000), 20_015_114),
    ((0, -180_000_000), (0, 180_000_000), 0),  # the same meridian
    ((90_000_000, 0), (90_000_000, 123_000_000), 0),  # the pole at any longitude
    ((0, 179_999_999), (0, -179_999_999), 0),  # 0.22 m across the antimeridian rounds to 0
    ((0, 179_995_000), (0, -179_995_000), 1_112),  # 0.01° across it, not 359.99°
])
def test_known_distances(a, b, metres):
    assert distance_m(*a, *b) == metres
    assert distance_m(*b, *a) == metres


# Charlotte city centre to points about 1 km away (offsets in micro-degrees).
CHARLOTTE_OFFSETS = [
    (9_000, 0), (-9_000, 0), (0, 11_000), (0, -11_000), (6_400, 7_800), (-6_400, -7_800),
    (6_359, -7_777), (-3_000, 10_500), (8_990, 1), (1, -11_001),
]


@pytest.mark.parametrize("dlat, dlon", CHARLOTTE_OFFSETS)
def test_charlotte_one_km_matches_independent_formulas(dlat, dlon):
    other = (CHARLOTTE[0] + dlat, CHARLOTTE[1] + dlon)
    got = distance_m(*CHARLOTTE, *other)
    assert 900 <= got <= 1_100
    assert abs(got - vincenty_sphere_m(CHARLOTTE, other)) <= 1
    assert abs(got - cosines_m(CHARLOTTE, other)) <= 1


@given(st.integers(-30_000, 30_000), st.integers(-30_000, 30_000))
def test_near_charlotte_within_a_metre_of_vincenty(dlat, dlon):
    other = (CHARLOTTE[0] + dlat, CHARLOTTE[1] + dlon)
    assert abs(distance_m(*CHARLOTTE, *other) - vincenty_sphere_m(CHARLOTTE, other)) <= 1


@given(points, points)
def test_anywhere_within_a_metre_of_vincenty(a, b):
    assert abs(distance_m(*a, *b) - vincenty_sphere_m(a, b)) <= 1


@given(points, points)
def test_distance_is_symmetric_and_bounded(a, b):
    d = distance_m(*a, *b)
    assert type(d) is int
    assert d == distance_m(*b, *a)
    assert 0 <= d <= 20_015_114  # half the circumference


@given(points)
def test_distance_to_itself_is_zero(a):
    assert distance_m(*a, *a) == 0


@given(points, points, points)
def test_triangle_inequality_up_to_rounding(a, b, c):
    # each of the three roundings moves a side by at most 0.5 m, hence the slack of 1
    assert distance_m(*a, *c) <= distance_m(*a, *b) + distance_m(*b, *c) + 1


near_points = st.tuples(st.integers(35_200_000, 35_260_000),
                        st.integers(-80_880_000, -80_800_000))


@given(points, st.lists(st.one_of(points, near_points), max_size=12), st.data())
def test_sum_of_distances_is_exactly_the_sum_of_distance_m(a, others, data):
    """The reward sums' fast path must agree bit for bit (consensus): same pairs, same order."""
    if data.draw(st.booleans()):
        others = [*others, a, (a[0], -a[1]), (-a[0], a[1])]  # equal and mirrored points
    listed = [list(p) for p in others]  # as read back from chain state
    assert sum_distances_m(*a, listed) == sum(distance_m(*a, *b) for b in others)


def test_sum_of_distances_checks_every_point():
    with pytest.raises(ValidationError):
        sum_distances_m(0, 0, [[0, 0], [91_000_000, 0]])
    with pytest.raises(ValidationError):
        sum_distances_m(0, 181_000_000, [])


# ---- H3 cells -----------------------------------------------------------------------------


def test_golden_cell_of_charlotte():
    # Pins the topic of a real place: if h3 ever moved it, nodes on two versions would split.
    cell = cell_of(*CHARLOTTE, 7)
    assert cell == 0x8744D84DAFFFFFF
    assert cell_hex(cell) == "8744d84daffffff"


@pytest.mark.parametrize("res", range(16))
def test_cell_of_agrees_with_the_string_api(res):
    cell = cell_of(*CHARLOTTE, res)
    assert type(cell) is int
    assert h3.get_resolution(cell_hex(cell)) == res
    assert cell_hex(cell) == h3.latlng_to_cell(CHARLOTTE[0] / 1e6, CHARLOTTE[1] / 1e6, res)


@pytest.mark.parametrize("rings", [0, 1, 2, 3])
def test_cells_around_is_a_sorted_disk(rings):
    cells = cells_around(*CHARLOTTE, 7, rings)
    centre = cell_of(*CHARLOTTE, 7)
    assert list(cells) == sorted(set(cells))
    assert centre in cells
    assert len(cells) == 1 + 3 * rings * (rings + 1)
    assert all(h3.grid_distance(cell_hex(centre), cell_hex(c)) <= rings for c in cells)


def test_cells_around_a_pentagon_has_five_neighbours():
    pentagon = h3.get_pentagons(7)[0]
    lat, lng = h3.cell_to_latlng(pentagon)
    point = (round(lat * 1e6), round(lng * 1e6))
    assert cell_hex(cell_of(*point, 7)) == pentagon
    assert len(cells_around(*point, 7, 1)) == 6


@pytest.mark.parametrize("res", [-1, 16, True, 7.0, "7"])
def test_bad_resolution_is_a_caller_bug(res):
    for call in (lambda: cell_of(*CHARLOTTE, res), lambda: cells_around(*CHARLOTTE, res, 1),
                 lambda: ring_bound(1000, res)):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("rings", [-1, 1.0, None])
def test_bad_rings_are_a_caller_bug(rings):
    with pytest.raises(ValueError):
        cells_around(*CHARLOTTE, 7, rings)


@pytest.mark.parametrize("cell", [0, -1, 1 << 64, 123, 0x8744D84DAFFFFFF + 1, True, "x"])
def test_cell_hex_rejects_non_cells(cell):
    with pytest.raises(ValueError):
        cell_hex(cell)


# ---- the ring bound -----------------------------------------------------------------------


@pytest.mark.parametrize("radius_m, res, rings", [
    (1000, 7, 2),  # SPATIAL.md §2.2 observed 1, so this is the recommended k + 1
    (1000, 8, 3),  # observed 2
    (500, 7, 2),
    (2000, 7, 3),  # observed 2
    (2000, 8, 5),  # observed 3
    (0, 7, 1),
])
def test_ring_bound_table(radius_m, res, rings):
    assert ring_bound(radius_m, res) == rings


@pytest.mark.parametrize("radius_m", [-1, 1.5, None])
def test_ring_bound_rejects_bad_radius(radius_m):
    with pytest.raises(ValueError):
        ring_bound(radius_m, 7)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 15))
def test_ring_bound_grows_with_the_radius(r1, r2, res):
    lo, hi = sorted((r1, r2))
    assert 1 <= ring_bound(lo, res) <= ring_bound(hi, res)


def _random_nodes(rng: random.Random, res: int) -> list[tuple[int, int]]:
    """2000 nodes uniform on the sphere plus 20 around each pentagon (the most distorted)."""
    nodes = [(round(math.degrees(math.asin(rng.uniform(-1, 1))) * 1e6),
              round(rng.uniform(-180, 180) * 1e6)) for _ in range(2000)]
    for pentagon in h3.get_pentagons(res):
        lat, lng = h3.cell_to_latlng(pentagon)
        centre = (round(lat * 1e6), round(lng * 1e6))
        nodes += [destination(centre, rng.uniform(0, 360), rng.uniform(0, 3000))
                  for _ in range(20)]
    return nodes


@pytest.mark.parametrize("res", [7, 8])
def test_ring_bound_covers_random_points(res):
    radius = 1000
    k = ring_bound(radius, res)
    rng = random.Random(f"ring-bound-{res}")
    observed = 0
    for node in _random_nodes(rng, res):
        # the far edge of the disc is where a cell can lie furthest away
        point = destination(node, rng.uniform(0, 360), rng.uniform(0.9 * radius, radius - 1))
        assert distance_m(*node, *point) <= radius
        cell = cell_of(*point, res)
        assert cell in cells_around(*node, res, k), (node, point)
        observed = max(observed, next(j for j in range(k + 1)
                                      if cell in cells_around(*node, res, j)))
    assert observed == k - 1  # the bound is one ring above the worst case seen (§2.2)
