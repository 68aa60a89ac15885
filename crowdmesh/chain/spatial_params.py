"""The spatial-crowdsourcing parameters of a network (part of its genesis, SPATIAL.md §2.3, §3).

Invariants:
- Immutable and validated at construction (``DecodeError("bad-genesis")`` naming the field):
  K odd and ≥ 3, 0 < α_w < α_r < 1000 (per mille), positive windows and distances, at least
  one report type, an H3 resolution 0..15.
- Integers only: distances in metres, windows in seconds (block time), α in per mille, rewards
  in base units; the pair-cap window in blocks.
- ``pair_cap`` left out of the constructor is :func:`default_pair_cap` of K, resolved at
  construction: a genesis (its JSON, its hash) always carries the absolute number.
- ``to_obj``/``from_obj`` give the JSON form (an object with exactly the field names);
  :meth:`SpatialParams.encode` is the canonical form the genesis hash commits to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from crowdmesh.chain.codec import U64_MAX, pack
from crowdmesh.errors import DecodeError

__all__ = ["DEFAULT_REPORT_TYPES", "DEFAULT_SPATIAL", "SpatialParams", "default_pair_cap"]

DEFAULT_REPORT_TYPES = ("accident", "fire", "flood", "power-outage", "road-block")
_MAX_TYPES = 64
_MAX_TYPE_LEN = 32
_PAIR_CAP_AT_K3 = 4
_AUTO = -1  # pair_cap not given: derived from K in __post_init__


def default_pair_cap(k: int) -> int:
    """The default pair cap for committees of ``k``: 4 at K = 3, scaled by the number of pairs
    a committee holds, ⌈4 · K(K-1)/6⌉ (4, 14, 28, 48 for K = 3, 5, 7, 9).

    Why scaled: the lottery puts a given pair of nearby workers into a committee with
    probability K(K-1)/(n(n-1)) (n eligible workers), so honest co-service grows with K(K-1);
    a fixed cap of 3 refused 39 / 67 / 80 % of honest tallies at K = 5 / 7 / 9 in
    bench/spatial_eval.py (every report of the city inside one window, ≈ 15 eligible workers
    per report); with this default it refused 5 of 3,000 there at K = 3 and none at K ≥ 5.
    What it costs (SPATIAL.md §5 A2): a gang of m = ⌊K/2⌋ + 1 colluders that always lands in
    the committee together (a sparse area) still confirms at most this many reports per window.
    """
    return -(-_PAIR_CAP_AT_K3 * k * (k - 1) // 6)


@dataclass(frozen=True, slots=True)
class SpatialParams:
    """Consensus constants of spatial crowdsourcing.

    Attributes:
        report_types: the event types a report may carry.
        radius_m: R, how near a worker must be to the reported point.
        committee_k: K, workers per report (odd, ≥ 3).
        commit_window_s, reveal_window_s: T_c and T_r, in block time after the beacon block.
        dup_distance_m, dup_window_s: d_dup and T_dup, the duplicate-report rule.
        pair_cap, pair_window_blocks: two workers together in at most P tallies per W blocks
            (P defaults to :func:`default_pair_cap` of K).
        base_reward: B, in base units per confirmed report.
        alpha_r_permille, alpha_w_permille: α_r and α_w in per mille (0 < α_w < α_r < 1000).
        d0_m: D0, the diversity factor's scale distance.
        issuance_per_block: the most the spatial contract may mint in one block (all tallies).
        h3_resolution, h3_rings: report topics are H3 cells at this resolution; a worker
            subscribes to the cells within this many rings of its own.
    """

    report_types: tuple[str, ...] = DEFAULT_REPORT_TYPES
    radius_m: int = 1000
    committee_k: int = 3
    commit_window_s: int = 600
    reveal_window_s: int = 300
    dup_distance_m: int = 50
    dup_window_s: int = 3600
    pair_cap: int = _AUTO
    pair_window_blocks: int = 1000
    base_reward: int = 100_000
    alpha_r_permille: int = 600
    alpha_w_permille: int = 300
    d0_m: int = 1000
    issuance_per_block: int = 10_000_000
    h3_resolution: int = 7
    h3_rings: int = 2

    def __post_init__(self) -> None:
        if self.pair_cap == _AUTO and type(self.committee_k) is int:
            object.__setattr__(self, "pair_cap", default_pair_cap(self.committee_k))
        problems = [f"spatial.{n}" for n in _INT_FIELDS if not 0 <= getattr(self, n) <= U64_MAX]
        if self.committee_k < 3 or self.committee_k % 2 == 0:
            problems.append("spatial.committee_k (odd, >= 3)")
        if not 0 < self.alpha_w_permille < self.alpha_r_permille < 1000:
            problems.append("spatial.alpha (0 < alpha_w < alpha_r < 1000 per mille)")
        if min(self.radius_m, self.commit_window_s, self.reveal_window_s, self.d0_m,
               self.pair_cap, self.pair_window_blocks, self.base_reward) <= 0:
            problems.append("spatial windows, distances, pair cap and base reward (> 0)")
        if not 0 <= self.h3_resolution <= 15 or not 0 <= self.h3_rings <= 10:
            problems.append("spatial.h3_resolution (0..15) / h3_rings (0..10)")
        if not _types_ok(self.report_types):
            problems.append("spatial.report_types (1..64 distinct names, [a-z0-9-], <= 32)")
        if problems:
            raise DecodeError("bad-genesis", ", ".join(problems))

    @property
    def majority(self) -> int:
        """m = ⌊K/2⌋ + 1, the smallest winning majority of a committee."""
        return self.committee_k // 2 + 1

    def encode(self) -> bytes:
        """Canonical bytes (the genesis parameters hash commits to them)."""
        return pack([list(self.report_types), [getattr(self, n) for n in _INT_FIELDS]])

    def to_obj(self) -> dict[str, Any]:
        """JSON form."""
        obj: dict[str, Any] = {n: getattr(self, n) for n in _INT_FIELDS}
        obj["report_types"] = list(self.report_types)
        return obj

    @classmethod
    def from_obj(cls, obj: Any) -> SpatialParams:
        """Parse the JSON form strictly.

        Raises:
            DecodeError: ``bad-genesis`` for unknown or missing fields and bad values.
        """
        names = {f.name for f in fields(cls)}
        if not isinstance(obj, dict) or set(obj) != names:
            raise DecodeError("bad-genesis", "spatial wants exactly " + ", ".join(sorted(names)))
        if any(type(obj[n]) is not int for n in _INT_FIELDS):
            raise DecodeError("bad-genesis", "spatial parameters are integers")
        if obj["pair_cap"] == _AUTO:  # a file carries the number, never the constructor's marker
            raise DecodeError("bad-genesis", "spatial.pair_cap")
        types = obj["report_types"]
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise DecodeError("bad-genesis", "spatial.report_types is a list of names")
        return cls(report_types=tuple(types), **{n: obj[n] for n in _INT_FIELDS})


_INT_FIELDS = tuple(f.name for f in fields(SpatialParams) if f.name != "report_types")


def _types_ok(types: tuple[str, ...]) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return (0 < len(types) <= _MAX_TYPES and len(set(types)) == len(types)
            and all(0 < len(t) <= _MAX_TYPE_LEN and set(t) <= allowed for t in types))


DEFAULT_SPATIAL = SpatialParams()  # immutable, so one shared default is safe
