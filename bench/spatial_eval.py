"""Offline reproduction of the spatial evaluation of [P] §6.2 (SPATIAL.md §4, §5 A2(iv)).

Usage: .venv/bin/python bench/spatial_eval.py [--seeds N] [--quick] [--json FILE] [--workers W]

1. Table 1 replica (numpy only). 100 random facilities and 1000 random reports in the box
   lat 35.05..35.40, lon -81.00..-80.65 (around Charlotte, NC); street distance = haversine
   (the network's ``geo.distance_m`` formula, vectorised, integer metres) × circuity; each
   report goes to its nearest facility. M1 = Σ facility→report time; M2 = Σ over facilities of
   an open route facility → its reports (nearest neighbour + bounded 2-opt). A random nested
   10/20/30/40 % of the reports is removed (1000, 900, …, 600). One speed per metric is
   calibrated so that the mean 1000-report total is [P]'s 1651.99 min. A constant circuity
   scales every distance alike, so ratios and calibrated minutes do not depend on it; only the
   calibrated speed does (the sweep shows it).
2. Precision and recall of RECORDED reports, by running the real protocol: virtual users
   (``AccountKey`` from ``DeterministicRng``) placed uniformly in the box, each honest (error
   5 %), newbie (error 30 %) or malicious (always confirms) per a mix; 1000 reports, 10 % or
   40 % of them incorrect (nested). For every report the users within R (``geo.distance_m``)
   make a real ``Commit`` (ECVRF ticket over the report id and the hash of block anchor + 1 of
   a real in-memory chain), ``committee.freeze`` picks the K lowest tickets, the K members
   ``Reveal``, ``committee.decide`` decides, and a confirmed report's tally goes through the
   real ``spatial-tally`` contract in mined blocks; "recorded" is read back from chain state,
   so the chain's own rules (pair cap, used combinations, duplicates) count too.
   Timeline: per batch of 50 reports one beacon block, and the batch's tallies one block
   T_c + T_r (600 + 300 s) later, so all 1000 tallies land within one pair-cap window
   (1000 blocks, ≈ 2.8 h at 10 s blocks). Beside the binomial formula of SPATIAL.md §4 the
   tables give the "pool" model: the same vote model over each report's actual eligible users
   (the K lowest tickets are a uniform K-subset of them, so this is the exact expectation of
   the committee decisions), then what the committees decided, then what the chain recorded.
   Sharing, and what it changes: tickets do not depend on the vote, so within one seed and K
   the reports, keys, beacons (a common chain prefix) and VRF proofs are shared by every mix
   and incorrect share, and each configuration then has its own chain for the tallies. Pure
   verifications (ECVRF verify and Ed25519 verify) are memoised per process in the sweep,
   so a proof or signature that several chains check is verified in full once. The timed
   single-configuration run (``sim_s``) shares and memoises nothing.
3. Figures 4 and 5 analogues (PNG in bench/out/, when matplotlib is installed): reports per
   facility by 1 km street-distance interval, and facility→report time per interval.

The load average is printed before and after: the machine has 2 cores and is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import crowdmesh.chain.contracts.spatial.protocol as protocol_mod
import crowdmesh.chain.tx as tx_mod
from crowdmesh.chain import MAX_TARGET, Address, Block, Chain, Genesis, MemoryStore, mine
from crowdmesh.chain import make_transaction as make_tx
from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.committee import TOO_FEW, decide, freeze
from crowdmesh.chain.contracts.spatial.contract import KIND_TALLY, tally_payload
from crowdmesh.chain.contracts.spatial.protocol import (
    Commit,
    Report,
    Reveal,
    commit_salt,
    commit_value,
    committee_hash,
)
from crowdmesh.chain.spatial_params import DEFAULT_REPORT_TYPES, SpatialParams
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto import ecvrf, identity
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError

# -- the scenario of [P] §6.2 ---------------------------------------------------------------

LAT_E6 = (35_050_000, 35_400_000)
LON_E6 = (-81_000_000, -80_650_000)
STEPS = (1000, 900, 800, 700, 600)
PAPER_MIN = {1000: 1651.99, 900: 1573.74, 800: 1329.33, 700: 1238.65, 600: 1146.84}
PAPER_RATIO = {n: PAPER_MIN[n] / PAPER_MIN[1000] for n in STEPS}
CIRCUITIES = (1.2, 1.3, 1.4)
MAIN_CIRCUITY = 1.3
FIXED_KMH = 30.0  # the sensitivity column of the circuity sweep
N_FACILITIES = 100
TWO_OPT_PASSES = 30
PROTOTYPE = {  # SPATIAL.md §4, 10 seeds, circuity 1.3: (M1 ratio, M2 ratio)
    1000: (1.000, 1.000), 900: (0.901, 0.942), 800: (0.799, 0.881), 700: (0.702, 0.817),
    600: (0.602, 0.745)}
_E6 = 1_000_000


# -- geometry -------------------------------------------------------------------------------


def random_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points in the box, as int64 micro-degrees (the network's point type)."""
    lat = rng.integers(LAT_E6[0], LAT_E6[1], n, endpoint=True)
    lon = rng.integers(LON_E6[0], LON_E6[1], n, endpoint=True)
    return lat.astype(np.int64), lon.astype(np.int64)


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """``geo.distance_m`` vectorised (broadcasting): same radius, same formula, integer metres.

    Coordinate differences are taken in exact integers as in ``geo``; numpy's sin/cos may
    differ from libm in the last ulp, so a result can be 1 m off ``geo.distance_m`` (tested).
    """
    lat1, lon1, lat2, lon2 = (np.asarray(v, dtype=np.int64) for v in (lat1, lon1, lat2, lon2))
    rad = math.pi / 180_000_000
    half_dlat = (lat2 - lat1) * rad / 2
    half_dlon = (lon2 - lon1) * rad / 2
    a = np.sin(half_dlat) ** 2 + np.cos(lat1 * rad) * np.cos(lat2 * rad) * np.sin(half_dlon) ** 2
    angle = 2 * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return np.floor(geo.EARTH_RADIUS_M * angle + 0.5)


def nearest_neighbour_path(dist: np.ndarray) -> np.ndarray:
    """An open path from node 0 through every node, always to the nearest unvisited one."""
    n = dist.shape[0]
    path = [0]
    free = np.ones(n, dtype=bool)
    free[0] = False
    for _ in range(n - 1):
        row = np.where(free, dist[path[-1]], np.inf)
        nxt = int(np.argmin(row))
        path.append(nxt)
        free[nxt] = False
    return np.array(path)


def two_opt(path: np.ndarray, dist: np.ndarray, max_passes: int = TWO_OPT_PASSES) -> np.ndarray:
    """Improve an open path with a fixed start (node 0) by segment reversals (first gain
    per start position, at most ``max_passes`` sweeps)."""
    path = path.copy()
    n = len(path)
    for _ in range(max_passes):
        improved = False
        for i in range(1, n - 1):
            a, b = path[i - 1], path[i]
            js = np.arange(i + 1, n)
            c = path[js]
            gain = dist[a, c] - dist[a, b]
            inner = js < n - 1
            d = path[js[inner] + 1]
            gain[inner] += dist[b, d] - dist[c[inner], d]
            j = int(np.argmin(gain))
            if gain[j] < -1e-9:
                path[i:js[j] + 1] = path[i:js[j] + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return path


def path_length(path: np.ndarray, dist: np.ndarray) -> float:
    return float(dist[path[:-1], path[1:]].sum())


def open_route_m(lat: np.ndarray, lon: np.ndarray) -> float:
    """Length (m, great-circle) of an open route from point 0 (the facility) through the rest."""
    if len(lat) <= 1:
        return 0.0
    dist = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    return path_length(two_opt(nearest_neighbour_path(dist), dist), dist)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Facilities, reports and the allocation of each report to its nearest facility."""

    fac_lat: np.ndarray
    fac_lon: np.ndarray
    rep_lat: np.ndarray
    rep_lon: np.ndarray
    facility: np.ndarray  # index of each report's facility
    reach_m: np.ndarray  # great-circle distance report ↔ its facility (m)

    @classmethod
    def build(cls, fac: tuple[np.ndarray, np.ndarray],
              rep: tuple[np.ndarray, np.ndarray]) -> Geometry:
        d = haversine_m(fac[0][:, None], fac[1][:, None], rep[0][None, :], rep[1][None, :])
        facility = np.argmin(d, axis=0)  # a constant circuity keeps the nearest one nearest
        return cls(fac[0], fac[1], rep[0], rep[1], facility,
                   d[facility, np.arange(d.shape[1])])

    def review_m(self, keep: np.ndarray) -> tuple[float, float]:
        """(M1, M2) great-circle metres over the kept reports (× circuity for street metres)."""
        m1 = float(self.reach_m[keep].sum())
        m2 = 0.0
        for f in np.unique(self.facility[keep]):
            mine_ = keep & (self.facility == f)
            lat = np.concatenate(([self.fac_lat[f]], self.rep_lat[mine_]))
            lon = np.concatenate(([self.fac_lon[f]], self.rep_lon[mine_]))
            m2 += open_route_m(lat, lon)
        return m1, m2


def facilities_for(seed: int, n: int = N_FACILITIES) -> tuple[np.ndarray, np.ndarray]:
    return random_points(np.random.default_rng([17, seed]), n)


def table1_seed(seed: int, n_reports: int = 1000,
                steps: Sequence[int] = STEPS) -> dict[str, Any]:
    """One seed of the Table 1 replica: M1/M2 great-circle metres per step, and the
    facility→report distances of the kept reports per step (for Figures 4 and 5)."""
    rng = np.random.default_rng([29, seed])
    geom = Geometry.build(facilities_for(seed), random_points(rng, n_reports))
    removal = rng.permutation(n_reports)  # the first (1000 − N) are the incorrect ones
    out: dict[str, Any] = {"m1": {}, "m2": {}, "reach": {}}
    for n in steps:
        keep = np.zeros(n_reports, dtype=bool)
        keep[removal[n_reports - round(n * n_reports / steps[0]):]] = True
        out["m1"][n], out["m2"][n] = geom.review_m(keep)
        out["reach"][n] = geom.reach_m[keep]
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = list(values)
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def table1(seeds: int, n_reports: int = 1000, steps: Sequence[int] = STEPS,
           circuity: float = MAIN_CIRCUITY) -> dict[str, Any]:
    """The Table 1 replica over ``seeds`` seeds (calibrated to [P]'s 1000-report minutes)."""
    runs = [table1_seed(s, n_reports, steps) for s in range(seeds)]
    first = steps[0]
    rows: dict[str, Any] = {}
    meta: dict[str, Any] = {"seeds": seeds, "reports": n_reports, "facilities": N_FACILITIES,
                            "circuity": circuity, "kmh": {}, "circuity_sweep": {}}
    for metric in ("m1", "m2"):
        km_first = statistics.fmean(r[metric][first] for r in runs) / 1000
        for c in CIRCUITIES:  # speed that makes the mean first-step total 1651.99 min
            meta["circuity_sweep"].setdefault(str(c), {})[f"{metric}_kmh"] = (
                km_first * c / (PAPER_MIN[1000] / 60))
            meta["circuity_sweep"][str(c)][f"{metric}_min_at_{FIXED_KMH:g}kmh"] = _mean_sd(
                [r[metric][first] / 1000 * c / FIXED_KMH * 60 for r in runs])
        kmh = km_first * circuity / (PAPER_MIN[1000] / 60)
        meta["kmh"][metric] = kmh
        for n in steps:
            minutes = [r[metric][n] / 1000 * circuity / kmh * 60 for r in runs]
            ratios = [r[metric][n] / r[metric][first] for r in runs]
            row = rows.setdefault(str(n), {})
            row[f"{metric}_min"], row[f"{metric}_min_sd"] = _mean_sd(minutes)
            row[f"{metric}_ratio"], row[f"{metric}_ratio_sd"] = _mean_sd(ratios)
    for n in steps:
        if n in PAPER_MIN:
            rows[str(n)]["paper_min"] = PAPER_MIN[n]
            rows[str(n)]["paper_ratio"] = PAPER_RATIO[n]
    figures = figure_data(runs, steps, circuity, meta["kmh"]["m1"])
    return {"rows": rows, "meta": meta, "figures": figures}


def figure_data(runs: list[dict[str, Any]], steps: Sequence[int], circuity: float,
                kmh: float) -> dict[str, Any]:
    """Per step, mean over seeds of the reports and of the facility→report minutes (M1 speed)
    per 1 km street-distance interval, summed over all facilities (divide by the facility
    count for per-facility values, as the figures do)."""
    top = max(float(r["reach"][steps[0]].max()) for r in runs) * circuity / 1000
    edges = np.arange(0, math.ceil(top) + 1)
    out: dict[str, Any] = {"bin_km": edges[:-1].tolist(), "reports": {}, "minutes": {},
                           "facilities": N_FACILITIES}
    for n in steps:
        counts, minutes = [], []
        for r in runs:
            km = r["reach"][n] * circuity / 1000
            counts.append(np.histogram(km, edges)[0])
            minutes.append(np.histogram(km, edges, weights=km / kmh * 60)[0])
        out["reports"][str(n)] = np.mean(counts, axis=0).round(3).tolist()
        out["minutes"][str(n)] = np.mean(minutes, axis=0).round(3).tolist()
    return out


# -- the protocol ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mix:
    """Shares of honest, newbie and malicious (always-confirm) users, and error rates."""

    name: str
    honest: float
    newbie: float
    malicious: float
    honest_err: float = 0.05
    newbie_err: float = 0.30

    def p_confirm(self, true_report: bool) -> float:
        """Probability that one random user's vote confirms (the formula's per-vote model)."""
        wrong = self.honest * self.honest_err + self.newbie * self.newbie_err
        right = self.honest + self.newbie - wrong
        return (right if true_report else wrong) + self.malicious


MIXES = (Mix("100/0/0", 1.0, 0.0, 0.0), Mix("70/20/10", 0.7, 0.2, 0.1),
         Mix("50/30/20", 0.5, 0.3, 0.2), Mix("40/20/40", 0.4, 0.2, 0.4))
KS = (3, 5, 7, 9)
FRACS = (0.10, 0.40)
A2_MIXES = (Mix("80/0/20 exact", 0.8, 0.0, 0.2, honest_err=0.0), Mix("80/0/20", 0.8, 0.0, 0.2))
A2_K = 5
SECTION4 = {  # SPATIAL.md §4 "realistic filter" rows: P(rec|T), P(rec|F), prec@10, prec@40
    ("100/0/0", 3): (0.9928, 0.0073, 0.999, 0.995),
    ("70/20/10", 3): (0.9746, 0.0992, 0.989, 0.936),
    ("70/20/10", 7): (0.9977, 0.0306, 0.997, 0.980),
    ("50/30/20", 5): (0.9873, 0.1835, 0.980, 0.890),
    ("40/20/40", 9): (0.9997, 0.4509, 0.952, 0.769),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One protocol configuration within a (seed, K) family: a mix and an incorrect share."""

    mix: Mix
    frac_false: float

    @property
    def key(self) -> str:
        return f"{self.mix.name}@{round(self.frac_false * 100)}"


def binom_tail(p: float, k: int) -> float:
    """P(strictly more than k/2 of k independent votes confirm), each with probability p."""
    return sum(math.comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(k // 2 + 1, k + 1))


def formula(mix: Mix, k: int, frac: float) -> dict[str, float]:
    """SPATIAL.md §4's formula: independent per-vote draws, majority of K."""
    pt, pf = binom_tail(mix.p_confirm(True), k), binom_tail(mix.p_confirm(False), k)
    rec_t, rec_f = (1 - frac) * pt, frac * pf
    return {"p_rec_true": pt, "p_rec_false": pf, "precision": rec_t / (rec_t + rec_f),
            "recall": pt}


CHAIN_ID = "cm-spatial-eval"
T0 = 1_700_000_000
MINER = Address(bytes([0xA0]) * 32)
COMMIT_WINDOW_S, REVEAL_WINDOW_S = 600, 300
BATCH = 50  # reports anchored at one height; one beacon block and one tally block per batch
BLOCK_GAP_S = 10
ISSUANCE = 100_000_000  # a batch of 50 K = 9 tallies mints at most 50 × 420,000
RELAY_FUNDS = 10**9


def eval_genesis(k: int, radius_m: int, funded: Sequence[bytes],
                 pair_cap: int | None = None) -> Genesis:
    """tests/unit/chain/helpers.make_genesis's easy-PoW network, with the spatial parameters
    of this evaluation (defaults except K, R, windows, the per-block issuance and, if given,
    the pair cap)."""
    extra = {} if pair_cap is None else {"pair_cap": pair_cap}
    spatial = SpatialParams(committee_k=k, radius_m=radius_m, commit_window_s=COMMIT_WINDOW_S,
                            reveal_window_s=REVEAL_WINDOW_S, issuance_per_block=ISSUANCE,
                            **extra)
    return Genesis(
        chain_id=CHAIN_ID, timestamp=T0, target=MAX_TARGET, block_interval=BLOCK_GAP_S,
        retarget_interval=0, miner_cap_m=0, miner_cap_w=0, block_reward=1000,
        halving_interval=0, min_gas_price=1, fee_burn_bps=2500, max_block_bytes=1 << 20,
        alloc=tuple(sorted((Address(a), RELAY_FUNDS) for a in funded)), spatial=spatial)


def mine_block(block: Block) -> Block:
    """Set a nonce that meets the header's target (helpers.mine_block)."""
    nonce = mine(block.header, 0, 1 << 22)
    assert nonce is not None
    return Block(dataclasses.replace(block.header, nonce=nonce), block.txs)


def add_block(chain: Chain, txs: Sequence[Any], now: int) -> tuple[Block, dict[bytes, str]]:
    """Mine the head's template at ``now`` and import it; return it and the skipped txs' codes."""
    tpl = chain.build_block_template(MINER, txs, now)
    block = mine_block(tpl.block)
    chain.import_block(block, now)
    assert chain.head_hash == block.header.hash, "the new block did not become the head"
    return block, dict(tpl.skipped)


@contextlib.contextmanager
def memoised_verification(enabled: bool = True) -> Iterator[None]:
    """Memoise ECVRF and Ed25519 verification (pure functions of their bytes) in this process.

    Every distinct (key, proof or signature, input) is still verified in full once; repeats,
    e.g. the same commit checked by several configurations' chains, by a template and again
    by the block import, hit the cache. Restores the originals on exit.
    """
    if not enabled:
        yield
        return
    saved = (ecvrf.verify, protocol_mod.verify_signature, tx_mod.verify_signature)
    vrf = functools.lru_cache(maxsize=None)(ecvrf.verify)
    sig = functools.lru_cache(maxsize=None)(identity.verify_signature)
    ecvrf.verify = vrf  # type: ignore[assignment]
    protocol_mod.verify_signature = sig  # type: ignore[assignment]
    tx_mod.verify_signature = sig  # type: ignore[assignment]
    try:
        yield
    finally:
        ecvrf.verify, protocol_mod.verify_signature, tx_mod.verify_signature = saved


def same_ticket_commit(key: AccountKey, first: Commit, vote: int, salt: bytes) -> Commit:
    """The commit ``Commit.create`` would return for ``vote``, reusing ``first``'s VRF proof
    (the proof depends on the key, report and beacon only; equality is tested)."""
    commitment = commit_value(first.report_id, first.worker, vote, salt)
    unsigned = Commit(first.report_id, first.worker, first.vrf_proof, commitment, bytes(64))
    return Commit(first.report_id, first.worker, first.vrf_proof, commitment,
                  key.sign(unsigned.signing_bytes()))


@dataclasses.dataclass(frozen=True)
class Task:
    """One (seed, K) family of configurations."""

    seed: int
    k: int
    configs: tuple[Config, ...]
    n_reports: int
    n_users: int
    radius_m: int
    memo: bool = True
    review: bool = True  # compute M1/M2 review time of the recorded reports
    pair_cap: int | None = None  # None: the genesis default


@dataclasses.dataclass
class Population:
    """What a seed fixes for every K and configuration: users, reports, roles and draws."""

    users: list[AccountKey]
    requesters: list[AccountKey]
    u_lat: np.ndarray
    u_lon: np.ndarray
    r_lat: np.ndarray
    r_lon: np.ndarray
    types: np.ndarray
    user_rank: np.ndarray  # role order: lowest ranks are malicious, then newbies
    report_rank: np.ndarray  # lowest ranks are the incorrect reports (nested)
    draws: np.ndarray  # (users, reports) uniform draws deciding honest/newbie errors
    eligible: list[list[int]]


def population(seed: int, n_users: int, n_reports: int, radius_m: int) -> Population:
    rng = np.random.default_rng([41, seed])
    u_lat, u_lon = random_points(rng, n_users)
    r_lat, r_lon = random_points(rng, n_reports)
    types = rng.integers(0, len(DEFAULT_REPORT_TYPES), n_reports)
    user_rank = np.argsort(rng.permutation(n_users))
    report_rank = np.argsort(rng.permutation(n_reports))
    draws = rng.random((n_users, n_reports))
    users = [AccountKey.generate(DeterministicRng(f"se/{seed}/u/{i}".encode()))
             for i in range(n_users)]
    requesters = [AccountKey.generate(DeterministicRng(f"se/{seed}/r/{i}".encode()))
                  for i in range(n_reports)]
    return Population(users, requesters, u_lat, u_lon, r_lat, r_lon, types, user_rank,
                      report_rank, draws, eligible_users(u_lat, u_lon, r_lat, r_lon, radius_m))


def eligible_users(u_lat: np.ndarray, u_lon: np.ndarray, r_lat: np.ndarray, r_lon: np.ndarray,
                   radius_m: int) -> list[list[int]]:
    """Per report, the users with ``geo.distance_m`` ≤ R (numpy pre-filter with a 2 m margin,
    then the network's exact integer distance, as an honest client checks it)."""
    near = haversine_m(u_lat[:, None], u_lon[:, None], r_lat[None, :], r_lon[None, :])
    out = []
    for r in range(len(r_lat)):
        cand = np.flatnonzero(near[:, r] <= radius_m + 2)
        out.append([int(u) for u in cand if geo.distance_m(
            int(u_lat[u]), int(u_lon[u]), int(r_lat[r]), int(r_lon[r])) <= radius_m])
    return out


def votes_for(pop: Population, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(incorrect-report mask, vote matrix users × reports; 1 = confirm) for a configuration."""
    n_users, n_reports = pop.draws.shape
    false = pop.report_rank < round(cfg.frac_false * n_reports)
    n_mal = round(cfg.mix.malicious * n_users)
    n_new = round(cfg.mix.newbie * n_users)
    err = np.where(pop.user_rank < n_mal + n_new, cfg.mix.newbie_err, cfg.mix.honest_err)
    right = np.broadcast_to(~false, pop.draws.shape)  # the correct vote: confirm iff true
    vote = np.where(pop.draws >= err[:, None], right, ~right)
    vote[pop.user_rank < n_mal] = True
    return false, vote.astype(np.int8)


def simulate_family(task: Task) -> dict[str, Any]:
    """Run every configuration of one (seed, K) family through the real protocol and chain.

    Returns per configuration the per-report masks (incorrect, too few commits, committee
    confirmed, recorded on chain), the chain's reject codes, and the review times.
    """
    started, cpu = time.perf_counter(), time.process_time()
    with memoised_verification(task.memo):
        out = _simulate(task)
    out["wall_s"] = time.perf_counter() - started
    out["cpu_s"] = time.process_time() - cpu
    return out


def _simulate(task: Task) -> dict[str, Any]:
    pop = population(task.seed, task.n_users, task.n_reports, task.radius_m)
    n = task.n_reports
    genesis = eval_genesis(task.k, task.radius_m, [k.public for k in pop.requesters],
                           task.pair_cap)
    votes = [votes_for(pop, cfg) for cfg in task.configs]
    # 1. the common prefix: per batch, the reports anchored at the head, then the beacon block
    prefix = Chain.open(MemoryStore(), genesis)
    batches = [range(b, min(n, b + BATCH)) for b in range(0, n, BATCH)]
    reports: list[Report] = []
    beacons: list[bytes] = []
    prefix_blocks: list[tuple[Block, int]] = []
    for b, batch in enumerate(batches):
        ts, anchor = T0 + BLOCK_GAP_S * b + 1, prefix.height
        for i in batch:
            reports.append(Report.create(
                pop.requesters[i], CHAIN_ID, DEFAULT_REPORT_TYPES[int(pop.types[i])],
                int(pop.r_lat[i]), int(pop.r_lon[i]), ts, anchor))
        now = T0 + BLOCK_GAP_S * (b + 1)
        block, _ = add_block(prefix, (), now)
        prefix_blocks.append((block, now))
        beacons.extend([prefix.get_hash_at(anchor + 1)] * len(batch))
    # 2. commits (one VRF proof per eligible user), the frozen committee, reveals, decisions
    too_few = np.zeros(n, dtype=bool)
    confirmed = np.zeros((len(task.configs), n), dtype=bool)
    tallies: list[list[Any]] = [[None] * n for _ in task.configs]
    for i, report in enumerate(reports):
        _decide_report(task, pop, votes, report, beacons[i], i, too_few, confirmed, tallies)
    # 3. each configuration's own chain: the common prefix, then one tally block per batch
    results = []
    for c, cfg in enumerate(task.configs):
        chain = Chain.open(MemoryStore(), genesis)
        for block, now in prefix_blocks:
            chain.import_block(block, now)
        codes: Counter[str] = Counter()
        for b, batch in enumerate(batches):
            txs = [tallies[c][i] for i in batch if tallies[c][i] is not None]
            _, skipped = add_block(chain, txs, T0 + BLOCK_GAP_S * b + 1 + COMMIT_WINDOW_S
                                   + REVEAL_WINDOW_S)
            codes.update(skipped.values())
        recorded = np.array([_is_recorded(chain, r.report_id) for r in reports])
        false = votes[c][0]
        entry = {"config": cfg.key, "false": false, "too_few": too_few.copy(),
                 "confirmed": confirmed[c], "recorded": recorded, "codes": dict(codes),
                 "pool_model": pool_model(pop, cfg, task.k, false, too_few)}
        results.append(entry)
    out: dict[str, Any] = {"seed": task.seed, "k": task.k, "configs": results,
                           "mean_eligible": statistics.fmean(len(e) for e in pop.eligible)}
    if task.review:
        _add_review_times(task, pop, results)
    return out


def roles_of(pop: Population, mix: Mix) -> np.ndarray:
    """Per user: 2 malicious, 1 newbie, 0 honest (the same ranks as :func:`votes_for`)."""
    n_users = len(pop.users)
    n_mal, n_new = round(mix.malicious * n_users), round(mix.newbie * n_users)
    return np.where(pop.user_rank < n_mal, 2, np.where(pop.user_rank < n_mal + n_new, 1, 0))


@functools.lru_cache(maxsize=1 << 16)
def pool_confirm(n_mal: int, n_new: int, n_hon: int, k: int, p_new: float,
                 p_hon: float) -> float:
    """P(majority of K confirms) when the K members are a uniformly random K-subset of a pool
    of n_mal always-confirm, n_new newbie (confirm w.p. p_new) and n_hon honest (p_hon) users.

    This is what the VRF lottery does (the lowest K tickets are a uniform K-subset of the
    eligible users), so it is the exact expectation for the measured committee decisions; the
    binomial formula instead assumes an infinite pool with the global shares.
    """
    total, need_all = n_mal + n_new + n_hon, k // 2 + 1
    out = 0.0
    for a in range(min(k, n_mal) + 1):
        for b in range(min(k - a, n_new) + 1):
            c = k - a - b
            if c > n_hon:
                continue
            weight = math.comb(n_mal, a) * math.comb(n_new, b) * math.comb(n_hon, c)
            need = need_all - a
            if need <= 0:
                out += weight
                continue
            tail = sum(math.comb(b, x) * p_new**x * (1 - p_new) ** (b - x)
                       * math.comb(c, y) * p_hon**y * (1 - p_hon) ** (c - y)
                       for x in range(b + 1) for y in range(c + 1) if x + y >= need)
            out += weight * tail
    return out / math.comb(total, k)


def pool_model(pop: Population, cfg: Config, k: int, false: np.ndarray,
               too_few: np.ndarray) -> dict[str, float]:
    """Mean of :func:`pool_confirm` over the reports that had a committee, true and false."""
    roles = roles_of(pop, cfg.mix)
    sums: dict[bool, list[float]] = {True: [], False: []}
    for i, pool in enumerate(pop.eligible):
        if too_few[i]:
            continue
        counts = np.bincount(roles[pool], minlength=3) if pool else np.zeros(3, dtype=int)
        true_report = not bool(false[i])
        p_new = 1 - cfg.mix.newbie_err if true_report else cfg.mix.newbie_err
        p_hon = 1 - cfg.mix.honest_err if true_report else cfg.mix.honest_err
        sums[true_report].append(pool_confirm(int(counts[2]), int(counts[1]), int(counts[0]),
                                              k, p_new, p_hon))
    return {"committee_true": statistics.fmean(sums[True]) if sums[True] else math.nan,
            "committee_false": statistics.fmean(sums[False]) if sums[False] else math.nan}


def _decide_report(task: Task, pop: Population, votes: list[tuple[np.ndarray, np.ndarray]],
                   report: Report, beacon: bytes, i: int, too_few: np.ndarray,
                   confirmed: np.ndarray, tallies: list[list[Any]]) -> None:
    rid = report.report_id
    salts: dict[int, bytes] = {}
    commits: dict[tuple[int, int], Commit] = {}
    first: list[Commit] = []
    for u in pop.eligible[i]:
        key = pop.users[u]
        salts[u] = salt = commit_salt(key, rid)
        needed = sorted({int(v[u, i]) for _, v in votes})
        c0 = Commit.create(key, rid, beacon, needed[0], salt)
        commits[(u, needed[0])] = c0
        first.append(c0)
        for vote in needed[1:]:
            commits[(u, vote)] = same_ticket_commit(key, c0, vote, salt)
    try:  # the chain checks "never the same combination" (spatial-combination-used) itself
        committee = freeze(report, first, beacon, task.k, used=lambda _h: False)
    except ValidationError as exc:
        if exc.code != TOO_FEW:
            raise
        too_few[i] = True
        return
    by_worker = {pop.users[u].public: u for u in pop.eligible[i]}
    members = [by_worker[c.worker] for c in committee]
    h_s = committee_hash([c.worker for c in committee])
    reveals: dict[tuple[int, int], Reveal] = {}
    outcome: dict[tuple[int, ...], tuple[bool, Any]] = {}
    for c, (_, vote_matrix) in enumerate(votes):
        cast = tuple(int(vote_matrix[u, i]) for u in members)
        if cast not in outcome:
            s_cfg = [commits[(u, v)] for u, v in zip(members, cast, strict=True)]
            for u, v in zip(members, cast, strict=True):
                if (u, v) not in reveals:
                    reveals[(u, v)] = Reveal.create(pop.users[u], rid, v, salts[u], h_s)
            opened = [reveals[(u, v)] for u, v in zip(members, cast, strict=True)]
            decision = decide(s_cfg, opened)
            tx = None
            if decision.confirmed:  # the requester submits the tally (its own funded account)
                payload = tally_payload(report, s_cfg, opened)
                tx = make_tx(pop.requesters[i], CHAIN_ID, 0, KIND_TALLY, payload,
                             minimum_fee(payload, 1))
            outcome[cast] = (decision.confirmed, tx)
        confirmed[c, i], tallies[c][i] = outcome[cast]


def _is_recorded(chain: Chain, report_id: bytes) -> bool:
    raw = chain.state_get(b"xr" + report_id)
    return raw is not None and int(unpack(raw, 4096)[0]) == 1


def _add_review_times(task: Task, pop: Population, results: list[dict[str, Any]]) -> None:
    """M1/M2 review time of the recorded reports, of the correct ones (a perfect filter), and
    of everything submitted, with [P]'s 100 facilities (great-circle metres: ratios only)."""
    geom = Geometry.build(facilities_for(task.seed), (pop.r_lat, pop.r_lon))
    everything = geom.review_m(np.ones(task.n_reports, dtype=bool))
    perfect: dict[float, tuple[float, float]] = {}
    for entry, cfg in zip(results, task.configs, strict=True):
        if cfg.frac_false not in perfect:
            perfect[cfg.frac_false] = geom.review_m(~entry["false"])
        rec = geom.review_m(entry["recorded"])
        entry["review"] = {"all": everything, "perfect": perfect[cfg.frac_false],
                           "recorded": rec}


def family_configs(k: int) -> tuple[Config, ...]:
    configs = [Config(m, f) for m in MIXES for f in FRACS]
    if k == A2_K:
        configs += [Config(m, 1.0) for m in A2_MIXES]
    return tuple(configs)


def run_sweep(seeds: int, n_reports: int, n_users: int, radius_m: int, workers: int,
              ks: Sequence[int] = KS, pair_cap: int | None = None,
              progress: Console | None = None) -> list[dict[str, Any]]:
    """Every (seed, K) family, in ``workers`` processes (fork) when more than one."""
    tasks = [Task(s, k, family_configs(k), n_reports, n_users, radius_m, pair_cap=pair_cap)
             for s in range(seeds) for k in ks]
    done: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            results: Iterator[dict[str, Any]] = map(simulate_family, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap_unordered(simulate_family, tasks)
        for fam in results:
            done.append(fam)
            if progress is not None:
                progress.print(f"  family {len(done)}/{len(tasks)}: seed {fam['seed']}, K = "
                               f"{fam['k']}, {fam['wall_s']:.1f} s")
    return sorted(done, key=lambda f: (f["seed"], f["k"]))


# -- aggregation ----------------------------------------------------------------------------


def rates(entry: dict[str, Any]) -> dict[str, float]:
    """Per-seed rates of one configuration."""
    false, rec, conf, few = entry["false"], entry["recorded"], entry["confirmed"], entry["too_few"]
    true = ~false
    n_t, n_f = int(true.sum()), int(false.sum())
    rec_t, rec_f = int((rec & true).sum()), int((rec & false).sum())
    decided = ~few
    out = {
        "p_rec_true": rec_t / n_t if n_t else math.nan,
        "p_rec_false": rec_f / n_f if n_f else math.nan,
        "precision": rec_t / (rec_t + rec_f) if rec_t + rec_f else math.nan,
        "recall": rec_t / n_t if n_t else math.nan,
        "committee_true": _ratio(conf & true, decided & true),
        "committee_false": _ratio(conf & false, decided & false),
        "too_few": float(few.mean()),
        "pool_true": entry["pool_model"]["committee_true"],
        "pool_false": entry["pool_model"]["committee_false"],
        "chain_lost": float((conf & ~rec).sum() / max(1, conf.sum())),
        "n_false": n_f, "rec_false": rec_f,
        "committee_false_n": int((decided & false).sum()),
        "committee_false_yes": int((conf & false).sum()),
    }
    if "review" in entry:
        rv = entry["review"]
        for i, metric in enumerate(("m1", "m2")):
            out[f"{metric}_recorded_ratio"] = rv["recorded"][i] / rv["all"][i]
            out[f"{metric}_perfect_ratio"] = rv["perfect"][i] / rv["all"][i]
    return out


def _ratio(hits: np.ndarray, among: np.ndarray) -> float:
    n = int(among.sum())
    return int(hits.sum()) / n if n else math.nan


def aggregate(families: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(config key, K) → mean and sd over seeds of every rate, pooled counts, codes."""
    per: dict[tuple[str, int], list[dict[str, float]]] = {}
    codes: dict[tuple[str, int], Counter[str]] = {}
    for fam in families:
        for entry in fam["configs"]:
            key = (entry["config"], fam["k"])
            per.setdefault(key, []).append(rates(entry))
            codes.setdefault(key, Counter()).update(entry["codes"])
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for key, rows in per.items():
        agg: dict[str, Any] = {"seeds": len(rows), "codes": dict(codes[key])}
        for name in rows[0]:
            vals = [r[name] for r in rows if not math.isnan(r[name])]
            if name in ("n_false", "rec_false", "committee_false_n", "committee_false_yes"):
                agg[name] = sum(int(v) for v in vals)
            elif vals:
                agg[name], agg[f"{name}_sd"] = _mean_sd(vals)
        out[key] = agg
    return out


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# -- output ---------------------------------------------------------------------------------


def pm(mean: float, sd: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def render_table1(console: Console, t1: dict[str, Any]) -> None:
    meta, rows = t1["meta"], t1["rows"]
    table = Table(title=(
        f"Table 1 replica — {meta['seeds']} seeds, {meta['facilities']} facilities, circuity "
        f"{meta['circuity']}; calibrated speeds M1 {meta['kmh']['m1']:.1f} km/h, M2 "
        f"{meta['kmh']['m2']:.1f} km/h"))
    for col in ("reports", "[P] min", "[P] ratio", "M1 min", "M1 ratio", "M2 min", "M2 ratio",
                "§4 proto M1/M2"):
        table.add_column(col, justify="right")
    for n, row in rows.items():
        proto = PROTOTYPE.get(int(n))
        table.add_row(
            n, f"{row.get('paper_min', math.nan):.2f}", f"{row.get('paper_ratio', math.nan):.3f}",
            pm(row["m1_min"], row["m1_min_sd"], 1), pm(row["m1_ratio"], row["m1_ratio_sd"]),
            pm(row["m2_min"], row["m2_min_sd"], 1), pm(row["m2_ratio"], row["m2_ratio_sd"]),
            f"{proto[0]:.3f} / {proto[1]:.3f}" if proto else "-")
    console.print(table)
    sweep = Table(title="Circuity sweep (ratios and calibrated minutes do not depend on it)")
    for col in ("circuity", "M1 km/h", "M2 km/h", f"M1 min @ {FIXED_KMH:g} km/h",
                f"M2 min @ {FIXED_KMH:g} km/h"):
        sweep.add_column(col, justify="right")
    for c, row in meta["circuity_sweep"].items():
        fixed = f"_min_at_{FIXED_KMH:g}kmh"
        sweep.add_row(c, f"{row['m1_kmh']:.1f}", f"{row['m2_kmh']:.1f}",
                      pm(*row[f"m1{fixed}"], 0), pm(*row[f"m2{fixed}"], 0))
    console.print(sweep)


def _three(*values: float, digits: int = 4) -> str:
    return " / ".join("-" if math.isnan(v) else f"{v:.{digits}f}" for v in values)


def render_protocol(console: Console, agg: dict[tuple[str, int], dict[str, Any]],
                    run: dict[str, Any]) -> None:
    for frac in FRACS:
        pct = round(frac * 100)
        table = Table(title=(
            f"Real protocol, {pct} % incorrect — {run['seeds']} seeds × {run['reports']} "
            f"reports, {run['users']} users, R = {run['radius_m']} m (mean {run['eligible']:.1f}"
            f" eligible/report), pair cap {run['pair_cap']}. formula = SPATIAL.md §4 binomial; "
            "pool = the same vote model over each report's actual eligible pool; committee = "
            "committee.decide over reports with ≥ K commits; recorded = on chain (mean ± sd "
            "over seeds)"))
        for col in ("mix", "K", "P(rec|T) formula / pool / committee", "P(rec|T) recorded",
                    "P(rec|F) formula / pool / committee", "P(rec|F) recorded",
                    "precision formula", "precision recorded", "recall recorded", "too few",
                    "lost on chain"):
            table.add_column(col, justify="right")
        for mix in MIXES:
            for k in KS:
                a = agg.get((f"{mix.name}@{pct}", k))
                if a is None:
                    continue
                f = formula(mix, k, frac)
                table.add_row(
                    mix.name, str(k),
                    _three(f["p_rec_true"], a["pool_true"], a["committee_true"]),
                    pm(a["p_rec_true"], a["p_rec_true_sd"], 4),
                    _three(f["p_rec_false"], a["pool_false"], a["committee_false"]),
                    pm(a["p_rec_false"], a["p_rec_false_sd"], 4),
                    f"{f['precision']:.3f}", pm(a["precision"], a["precision_sd"]),
                    pm(a["recall"], a["recall_sd"]), f"{a['too_few']:.3f}",
                    f"{a['chain_lost']:.3f}")
        console.print(table)
    s4 = Table(title="SPATIAL.md §4 formula rows beside the measured ones (prec@10 / prec@40)")
    for col in ("mix", "K", "§4 P(rec|T)", "meas P(rec|T)@10", "§4 P(rec|F)",
                "meas P(rec|F)@40", "§4 precision", "measured precision"):
        s4.add_column(col, justify="right")
    for (name, k), (pt, pf, p10, p40) in SECTION4.items():
        a10, a40 = agg.get((f"{name}@10", k)), agg.get((f"{name}@40", k))
        if a10 is None or a40 is None:
            continue
        s4.add_row(name, str(k), f"{pt:.4f}", f"{a10['p_rec_true']:.4f}", f"{pf:.4f}",
                   f"{a40['p_rec_false']:.4f}", f"{p10:.3f} / {p40:.3f}",
                   f"{a10['precision']:.3f} / {a40['precision']:.3f}")
    console.print(s4)


def claims(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """[P]'s "accuracy +40 %" and "review time −30 %" at 40 % incorrect, as measured."""
    out: dict[str, Any] = {}
    for mix in MIXES:
        for k in KS:
            a = agg.get((f"{mix.name}@40", k))
            if a is None or "m1_recorded_ratio" not in a:
                continue
            out[f"{mix.name}/K={k}"] = {
                "accuracy_points": 100 * (a["precision"] - 0.60),
                "incorrect_kept_out": 1 - a["p_rec_false"],
                "m1_time_change": a["m1_recorded_ratio"] - 1,
                "m2_time_change": a["m2_recorded_ratio"] - 1,
                "m1_perfect_change": a["m1_perfect_ratio"] - 1,
                "m2_perfect_change": a["m2_perfect_ratio"] - 1,
            }
    return out


def render_claims(console: Console, cl: dict[str, Any]) -> None:
    table = Table(title=(
        "[P]'s claims at 40 % incorrect, measured: accuracy of the recorded set vs the 60 % "
        "submitted ([P]: +40 points), review time vs all 1000 submitted ([P]: −30.6 %)"))
    for col in ("mix / K", "accuracy (points)", "incorrect kept out", "M1 time", "M2 time",
                "perfect filter M1 / M2"):
        table.add_column(col, justify="right")
    for name, c in cl.items():
        table.add_row(name, f"{c['accuracy_points']:+.1f}", f"{c['incorrect_kept_out']:.3f}",
                      f"{100 * c['m1_time_change']:+.1f} %", f"{100 * c['m2_time_change']:+.1f} %",
                      f"{100 * c['m1_perfect_change']:+.1f} % / "
                      f"{100 * c['m2_perfect_change']:+.1f} %")
    console.print(table)


def a2_check(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """A2(iv): colluder share 0.2, K = 5, every report false → rate recorded vs binomial."""
    out: dict[str, Any] = {}
    for mix in A2_MIXES:
        a = agg.get((f"{mix.name}@100", A2_K))
        if a is None:
            continue
        lo, hi = wilson(a["rec_false"], a["n_false"])
        clo, chi = wilson(a["committee_false_yes"], a["committee_false_n"])
        out[mix.name] = {
            "binomial": binom_tail(mix.p_confirm(False), A2_K),
            "recorded": a["rec_false"] / a["n_false"], "recorded_ci95": [lo, hi],
            "recorded_sd_over_seeds": a["p_rec_false_sd"],
            "committee": a["committee_false_yes"] / max(1, a["committee_false_n"]),
            "committee_ci95": [clo, chi], "reports": a["n_false"], "too_few": a["too_few"],
            "pool_model": a["pool_false"],
            "codes": a["codes"],
        }
    return out


def render_a2(console: Console, a2: dict[str, Any]) -> None:
    table = Table(title="A2(iv): colluders c = 0.2 always confirm, K = 5, all reports false")
    for col in ("honest users", "binomial tail", "pool model", "committee confirms (95 % CI)",
                "recorded on chain (95 % CI)", "sd over seeds", "reports", "chain rejects"):
        table.add_column(col, justify="right")
    for name, r in a2.items():
        err = "error 0" if "exact" in name else "error 5 %"
        table.add_row(err, f"{r['binomial']:.4f}", f"{r['pool_model']:.4f}",
                      f"{r['committee']:.4f} [{r['committee_ci95'][0]:.4f}, "
                      f"{r['committee_ci95'][1]:.4f}]",
                      f"{r['recorded']:.4f} [{r['recorded_ci95'][0]:.4f}, "
                      f"{r['recorded_ci95'][1]:.4f}]",
                      f"{r['recorded_sd_over_seeds']:.4f}", str(r["reports"]),
                      ", ".join(f"{c} {n}" for c, n in sorted(r["codes"].items())) or "-")
    console.print(table)


def render_codes(console: Console, agg: dict[tuple[str, int], dict[str, Any]]) -> None:
    totals: dict[int, Counter[str]] = {}
    for (_, k), a in agg.items():
        totals.setdefault(k, Counter()).update(a["codes"])
    table = Table(title="Confirmed tallies the chain refused, all configurations (reject codes)")
    table.add_column("K", justify="right")
    table.add_column("codes")
    for k in sorted(totals):
        table.add_row(str(k), ", ".join(f"{c} {n}" for c, n in totals[k].most_common()) or "-")
    console.print(table)


def plots(t1: dict[str, Any], out_dir: Path) -> list[Path] | str:
    """Figures 4 and 5 analogues; the reason if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots skipped: matplotlib not installed"
    fig_data = t1["figures"]
    per = fig_data["facilities"]
    bins = np.array(fig_data["bin_km"])
    steps = list(fig_data["reports"])
    width = 0.8 / len(steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, key, ylabel in (
            ("spatial_fig4.png", "reports", "reports per facility"),
            ("spatial_fig5.png", "minutes", "review time per facility (min, M1 speed)")):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for j, n in enumerate(steps):
            ax.bar(bins + j * width, np.array(fig_data[key][n]) / per, width,
                   label=f"{n} reports")
        ax.set_xticks(bins + 0.4 - width / 2, [f"{b}-{b + 1}" for b in bins], rotation=45)
        ax.set_xlabel("street distance facility → report (km)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{'Fig. 4' if key == 'reports' else 'Fig. 5'} analogue: mean over "
                     f"{per} facilities and {t1['meta']['seeds']} seeds, circuity "
                     f"{t1['meta']['circuity']}")
        ax.legend()
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _jsonable(agg: dict[tuple[str, int], dict[str, Any]], field: str,
              fracs: Sequence[float] = FRACS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mix in MIXES:
        for k in KS:
            row = {}
            for frac in fracs:
                a = agg.get((f"{mix.name}@{round(frac * 100)}", k))
                if a is not None and field in a:
                    row[f"incorrect_{round(frac * 100)}"] = a[field]
                    row[f"incorrect_{round(frac * 100)}_sd"] = a[f"{field}_sd"]
            if row:
                out.setdefault(mix.name, {})[f"K={k}"] = row
    return out


def _protocol_json(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (key, k), a in sorted(agg.items()):
        name, pct = key.split("@")
        mix = next((m for m in (*MIXES, *A2_MIXES) if m.name == name), None)
        entry = {n: v for n, v in a.items()}
        if mix is not None:
            entry["formula"] = formula(mix, k, int(pct) / 100) if int(pct) < 100 else {
                "p_rec_false": binom_tail(mix.p_confirm(False), k)}
        out.setdefault(name, {}).setdefault(f"K={k}", {})[f"incorrect_{pct}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None,
                        help="protocol seeds (default 10, quick 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--reports", type=int, default=None,
                        help="reports per seed in the protocol sweep (default 1000, quick 60)")
    parser.add_argument("--sim-reports", type=int, default=None,
                        help="reports of the timed one-configuration run (default 1000, "
                        "quick 100)")
    parser.add_argument("--t1-seeds", type=int, default=None,
                        help="Table 1 seeds (default max(30, 3 × --seeds), quick 5)")
    parser.add_argument("--users", type=int, default=None, help="virtual users (default 400)")
    parser.add_argument("--radius-m", type=int, default=None,
                        help="eligibility radius R (default 4000 m; quick 7000 m)")
    parser.add_argument("--pair-cap", type=int, default=None,
                        help="override the genesis pair cap (default: SpatialParams' 3)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for the sweep (default: min(2, cores))")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="directory for the figures")
    args = parser.parse_args(argv)
    quick = args.quick
    seeds = args.seeds if args.seeds is not None else (2 if quick else 10)
    t1_seeds = args.t1_seeds or (5 if quick else max(30, 3 * seeds))
    n_reports = args.reports or (60 if quick else 1000)
    n_users = args.users or (120 if quick else 400)
    radius_m = args.radius_m or (7000 if quick else 4000)
    console = Console(width=200)
    console.print(f"load average before: {os.getloadavg()}")
    result: dict[str, Any] = {"quick": quick}

    started = time.perf_counter()
    t1 = table1(t1_seeds)
    result["table1"] = t1["rows"]
    result["table1_meta"] = t1["meta"]
    result["figures"] = t1["figures"]
    result["table1_s"] = time.perf_counter() - started
    render_table1(console, t1)

    # the timed run of the target: one seed, one configuration, nothing shared
    sim_reports = args.sim_reports or (100 if quick else 1000)
    sim_task = Task(0, 5, (Config(MIXES[1], 0.10),), sim_reports, n_users, radius_m,
                    memo=False, review=False, pair_cap=args.pair_cap)
    sim = simulate_family(sim_task)
    sim_rates = rates(sim["configs"][0])
    result["sim_s"] = sim["wall_s"]
    result["sim_cpu_s"] = sim["cpu_s"]
    result["sim"] = {"reports": sim_reports, "users": n_users, "radius_m": radius_m, "k": 5,
                     "mix": MIXES[1].name, "incorrect": 0.10, "codes": sim["configs"][0]["codes"],
                     "mean_eligible": sim["mean_eligible"], **sim_rates}
    console.print(
        f"sim_s: {sim['wall_s']:.1f} s wall ({sim['cpu_s']:.1f} s CPU) for {sim_reports} "
        f"reports, {n_users} users, K = 5, mix "
        f"{MIXES[1].name}, 10 % incorrect, one process, no sharing or memo (target ≤ 60 s for "
        f"1000); mean {sim['mean_eligible']:.1f} eligible users per report; precision "
        f"{sim_rates['precision']:.3f}, recall {sim_rates['recall']:.3f}")

    started = time.perf_counter()
    families = run_sweep(seeds, n_reports, n_users, radius_m, args.workers,
                         pair_cap=args.pair_cap, progress=console)
    sweep_s = time.perf_counter() - started
    agg = aggregate(families)
    run = {"seeds": seeds, "reports": n_reports, "users": n_users, "radius_m": radius_m,
           "eligible": statistics.fmean(f["mean_eligible"] for f in families),
           "ks": list(KS), "workers": args.workers, "sweep_s": sweep_s,
           "pair_cap": args.pair_cap or SpatialParams().pair_cap,
           "pair_window_blocks": SpatialParams().pair_window_blocks,
           "family_wall_s": sum(f["wall_s"] for f in families),
           "family_cpu_s": sum(f["cpu_s"] for f in families)}
    result["protocol_run"] = run
    render_protocol(console, agg, run)
    render_codes(console, agg)
    result["precision"] = _jsonable(agg, "precision")
    result["recall"] = _jsonable(agg, "recall")
    result["protocol"] = _protocol_json(agg)
    result["claims"] = claims(agg)
    render_claims(console, result["claims"])
    result["a2_iv"] = a2_check(agg)
    render_a2(console, result["a2_iv"])
    console.print(f"protocol sweep: {sweep_s:.1f} s wall in {args.workers} process(es) "
                  f"({run['family_wall_s']:.0f} s wall, {run['family_cpu_s']:.0f} s CPU summed "
                  f"over {len(families)} (seed, K) families)")

    drawn = plots(t1, args.out)
    if isinstance(drawn, str):
        console.print(drawn)
    else:
        console.print("figures: " + ", ".join(str(p) for p in drawn))
    load = os.getloadavg()
    console.print(f"load average after: {load}")
    result["loadavg_after"] = list(load)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True, default=_default) + "\n")
    return 0


def _default(obj: Any) -> Any:
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


if __name__ == "__main__":
    sys.exit(main())
