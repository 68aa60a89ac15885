"""Coordinates, distances and H3 cells of spatial crowdsourcing (SPATIAL.md §2.2, §3).

Invariants:
- A point is two ``int`` micro-degrees: ``lat_e6`` in [-90_000_000, 90_000_000] and ``lon_e6`` in
  [-180_000_000, 180_000_000]. Anything else (out of range, float, bool, str) is rejected with
  ``ValidationError("bad-spatial-point")`` by every function here that takes a point.
- :func:`distance_m` is the ONE distance of the network: rewards (D_r, D_w), the duplicate rule
  and eligibility all call it, so every validator agrees. It is haversine on a sphere of radius
  6_371_008.8 m in float64, rounded once to integer metres. It is exactly symmetric (the two
  points are put in a canonical order first, so it does not depend on libm's odd symmetry) and
  0 for equal points. libm may differ in the last ulp across platforms; rounding to whole
  metres makes a disagreement vanishingly rare, not impossible (SPATIAL.md §3).
- H3 cells (the ``h3`` 4.x package) route gossip: a report goes to the topic of its point's
  cell, a worker subscribes to the cells around its own. Cells are ``int`` H3 indexes;
  :func:`cell_hex` gives the topic spelling. Cell membership is decided in floating point by the
  H3 C library, so nothing consensus-critical may depend on it beyond what every validator
  recomputes from the same integers with the same library version.
- :func:`ring_bound` is conservative: every point within ``radius_m`` of a node lies in a cell
  within that many rings of the node's cell (derivation in its docstring; checked empirically
  by the tests, as SPATIAL.md §2.2 did).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import h3.api.basic_int as _h3  # type: ignore[import-untyped]  # h3 ships no type hints

from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.errors import ValidationError

__all__ = [
    "EARTH_RADIUS_M",
    "LAT_E6_MAX",
    "LON_E6_MAX",
    "MAX_RES",
    "cell_hex",
    "cell_of",
    "cells_around",
    "cells_for",
    "check_point",
    "distance_m",
    "ring_bound",
    "rings_for",
    "sum_distances_m",
]

LAT_E6_MAX = 90_000_000
LON_E6_MAX = 180_000_000
EARTH_RADIUS_M = 6_371_008.8  # the IUGG mean radius (SPATIAL.md §3)
MAX_RES = 15  # H3 resolutions are 0..15

_E6 = 1_000_000
_RAD_PER_E6 = math.pi / 180_000_000  # radians per micro-degree
_SQRT3 = math.sqrt(3.0)

# ring_bound's geometry, measured over every cell within 4 rings of the 12 pentagons and 300
# random cells per resolution (great-circle distances): the smallest hexagon inradius is
# 0.602 × the average edge length at res >= 3 (0.62..0.77 below), and the largest ratio of a
# hexagon's circumradius to its own inradius is 1.453 (1.155 for a regular hexagon). The
# constants leave a margin on the safe side of both.
_MIN_INRADIUS_PER_AVG_EDGE = 0.58
_MAX_CIRCUM_PER_INRADIUS = 1.5


def _is_coordinate(value: object, bound: int) -> bool:
    # type() not isinstance(): bool is an int subclass but never a coordinate
    return type(value) is int and -bound <= value <= bound


def check_point(lat_e6: int, lon_e6: int) -> None:
    """Check that ``(lat_e6, lon_e6)`` is a point (see the module invariants).

    Raises:
        ValidationError: ``bad-spatial-point``.
    """
    if not (_is_coordinate(lat_e6, LAT_E6_MAX) and _is_coordinate(lon_e6, LON_E6_MAX)):
        raise ValidationError("bad-spatial-point", f"({lat_e6!r}, {lon_e6!r})")


def distance_m(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> int:
    """The great-circle distance between two points, in whole metres (the network's one distance).

    Returns:
        Haversine on a sphere of radius :data:`EARTH_RADIUS_M`, rounded half up to an int.

    Raises:
        ValidationError: ``bad-spatial-point`` if either point is not a point.
    """
    check_point(lat1_e6, lon1_e6)
    check_point(lat2_e6, lon2_e6)
    # Canonical order: d(a, b) and d(b, a) then run the very same float operations.
    (lat1, lon1), (lat2, lon2) = sorted(((lat1_e6, lon1_e6), (lat2_e6, lon2_e6)))
    return _round_half_up(EARTH_RADIUS_M * _central_angle(lat1, lon1, lat2, lon2))


def sum_distances_m(lat_e6: int, lon_e6: int, points: Iterable[Sequence[int]]) -> int:
    """Σ ``distance_m((lat_e6, lon_e6), p)`` over ``points``, exactly (the same float operations
    per pair, in the same canonical order), but with the one point checked once and its cosine
    computed once: the reward sums run over an account's whole history (SPATIAL.md §3).

    Raises:
        ValidationError: ``bad-spatial-point`` if any point is not a point.
    """
    check_point(lat_e6, lon_e6)
    cos_here = math.cos(lat_e6 * _RAD_PER_E6)
    # why one flat loop: it runs once per earlier report of the account, and calls to
    # check_point, _angle and _round_half_up per pair cost more than their float operations,
    # which are written out here in the same order (the tests compare with distance_m)
    cos, sin, asin, sqrt, rad = math.cos, math.sin, math.asin, math.sqrt, _RAD_PER_E6
    total = 0
    for lat, lon in points:
        if not (type(lat) is int and -LAT_E6_MAX <= lat <= LAT_E6_MAX
                and type(lon) is int and -LON_E6_MAX <= lon <= LON_E6_MAX):
            check_point(lat, lon)  # raises, with check_point's own message
        cos_there = cos(lat * rad)
        # canonical order (lat_e6, lon_e6) <= (lat, lon); a·b == b·a in IEEE arithmetic
        if lat_e6 < lat or (lat_e6 == lat and lon_e6 <= lon):
            a = sin((lat - lat_e6) * rad / 2) ** 2 \
                + cos_here * cos_there * sin((lon - lon_e6) * rad / 2) ** 2
        else:
            a = sin((lat_e6 - lat) * rad / 2) ** 2 \
                + cos_there * cos_here * sin((lon_e6 - lon) * rad / 2) ** 2
        total += int(EARTH_RADIUS_M * (2 * asin(sqrt(1.0 if a > 1.0 else a))) + 0.5)
    return total


def _central_angle(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    cos_product = math.cos(lat1_e6 * _RAD_PER_E6) * math.cos(lat2_e6 * _RAD_PER_E6)
    return _angle(lat2_e6 - lat1_e6, lon2_e6 - lon1_e6, cos_product)


def _angle(dlat_e6: int, dlon_e6: int, cos_product: float) -> float:
    # Differences are taken in exact integers before converting, so nearby points lose no bits.
    half_dlat = dlat_e6 * _RAD_PER_E6 / 2
    half_dlon = dlon_e6 * _RAD_PER_E6 / 2
    a = math.sin(half_dlat) ** 2 + cos_product * math.sin(half_dlon) ** 2
    # rounding can push a just past 1 for antipodal points; asin would then raise
    return 2 * math.asin(math.sqrt(min(a, 1.0)))


def _round_half_up(x: float) -> int:
    # the spec's one rounding: half away from zero, and x >= 0 here
    return int(x + 0.5)


def _check_res(res: int) -> None:
    if type(res) is not int or not 0 <= res <= MAX_RES:
        raise ValueError(f"H3 resolution must be an int in 0..{MAX_RES}, got {res!r}")


def cell_of(lat_e6: int, lon_e6: int, res: int) -> int:
    """The H3 cell containing a point.

    Args:
        lat_e6, lon_e6: the point, in micro-degrees.
        res: the H3 resolution (0..15; a network's is ``SpatialParams.h3_resolution``).

    Returns:
        The H3 index as an int.

    Raises:
        ValidationError: ``bad-spatial-point``.
        ValueError: a resolution outside 0..15 (a caller bug: it comes from the genesis).
    """
    check_point(lat_e6, lon_e6)
    _check_res(res)
    return int(_h3.latlng_to_cell(lat_e6 / _E6, lon_e6 / _E6, res))


def cells_around(lat_e6: int, lon_e6: int, res: int, rings: int) -> tuple[int, ...]:
    """The cells within ``rings`` grid steps of a point's cell (H3 ``grid_disk``), sorted.

    Sorted so that every node derives the same tuple (grid_disk's order is unspecified).
    There are 1 + 3·rings·(rings + 1) cells, fewer near one of the 12 pentagons.

    Raises:
        ValidationError: ``bad-spatial-point``.
        ValueError: a bad resolution or a negative ``rings`` (caller bugs).
    """
    if type(rings) is not int or rings < 0:
        raise ValueError(f"rings must be a non-negative int, got {rings!r}")
    centre = cell_of(lat_e6, lon_e6, res)
    return tuple(sorted(int(c) for c in _h3.grid_disk(centre, rings)))


def cell_hex(cell: int) -> str:
    """The canonical hexadecimal spelling of a cell, as in gossip topic names.

    Raises:
        ValueError: ``cell`` is not a valid H3 cell index (a caller bug).
    """
    if type(cell) is not int or not 0 <= cell < 1 << 64 or not _h3.is_valid_cell(cell):
        raise ValueError(f"not an H3 cell index: {cell!r}")
    return str(_h3.int_to_str(cell))


def ring_bound(radius_m: int, res: int) -> int:
    """A conservative number of rings that covers a disc of ``radius_m`` around any node.

    Derivation: let p be the node, q a point with d(p, q) <= R, and c0, cq their cells, locally
    like a hexagonal lattice of cells with inradius r and circumradius at most Q·r. The centres
    of c0 and cq are within R + 2·Q·r of each other (p and q each lie within Q·r of their own
    cell's centre). In a hexagonal lattice the centres of adjacent cells are 2r apart, so a cell
    k rings away has its centre at least k·2r·cos 30° = √3·k·r away. Hence
    k <= R/(√3·r) + 2Q/√3, which grows as r shrinks, so r = the smallest inradius at ``res``.

    Args:
        radius_m: R in metres (>= 0), e.g. ``SpatialParams.radius_m``.
        res: the H3 resolution.

    Returns:
        k >= the largest grid distance between a node's cell and the cell of any point within
        ``radius_m`` of it. For R = 1 km it is 2 at res 7 and 3 at res 8, one more than the
        largest distance observed in SPATIAL.md §2.2.

    Raises:
        ValueError: a negative radius or a bad resolution (caller bugs).
    """
    if type(radius_m) is not int or radius_m < 0:
        raise ValueError(f"radius_m must be a non-negative int, got {radius_m!r}")
    _check_res(res)
    r_min = _MIN_INRADIUS_PER_AVG_EDGE * float(_h3.average_hexagon_edge_length(res, unit="m"))
    return math.floor(radius_m / (_SQRT3 * r_min) + 2 * _MAX_CIRCUM_PER_INRADIUS / _SQRT3)


def rings_for(params: SpatialParams) -> int:
    """Rings a worker joins: the genesis's ``h3_rings``, more if R needs them (``ring_bound``)."""
    return max(params.h3_rings, ring_bound(params.radius_m, params.h3_resolution))


def cells_for(lat_e6: int, lon_e6: int, params: SpatialParams) -> frozenset[int]:
    """The H3 cells a worker at ``(lat_e6, lon_e6)`` joins (the daemon subscribes to exactly
    these; a demo or a test asks the same question with this one rule).

    Raises:
        ValidationError: ``bad-spatial-point``.
    """
    return frozenset(cells_around(lat_e6, lon_e6, params.h3_resolution, rings_for(params)))
