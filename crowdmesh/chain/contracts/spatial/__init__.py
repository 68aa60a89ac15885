"""crowdmesh.chain.contracts.spatial: the pure core of spatial crowdsourcing (SPATIAL.md, DESIGN.md
"Spatial protocol").

Like the rest of ``chain/``, everything here is pure and deterministic: no I/O, clocks or
randomness, integers wherever a value reaches consensus, stable kebab-case reject codes.

Modules, one owner each:

- ``geo``: points as int micro-degrees, the one shared haversine distance in whole metres, and
  the H3 cells that route reports over gossip (``cell_of``, ``cells_around``, ``ring_bound``).
- ``rewards``: the §3 reward formulas (Φ, requester, worker, the per-tally mint bound) in exact
  integer arithmetic with one floor per formula.
- ``protocol``: the Report, Commit and Reveal messages, their ids, signatures and VRF tickets.
- ``committee``: freezing the committee S of K lowest tickets, H(S), and the tally decision.
- ``contract``: the tally transaction and every validator rule.

This ``__init__`` re-exports each module's public names: one import block per module, and each
name once in ``__all__``, which stays in ruff's (isort-style) sorted order.
"""

from crowdmesh.chain.contracts.spatial.geo import (
    EARTH_RADIUS_M,
    LAT_E6_MAX,
    LON_E6_MAX,
    MAX_RES,
    cell_hex,
    cell_of,
    cells_around,
    check_point,
    distance_m,
    ring_bound,
)
from crowdmesh.chain.contracts.spatial.rewards import (
    max_mint_per_tally,
    phi,
    requester_reward,
    worker_reward,
)

__all__ = [
    "EARTH_RADIUS_M",
    "LAT_E6_MAX",
    "LON_E6_MAX",
    "MAX_RES",
    "cell_hex",
    "cell_of",
    "cells_around",
    "check_point",
    "distance_m",
    "max_mint_per_tally",
    "phi",
    "requester_reward",
    "ring_bound",
    "worker_reward",
]
