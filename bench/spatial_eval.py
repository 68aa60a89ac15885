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
Parts live beside this file: ``spatial_eval_table1.py`` (1 and 3) and ``spatial_eval_stats.py``
(the vote mixes, the formula and pool models, aggregation and tables of 2).
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
from crowdmesh.chain.spatial_params import (
    DEFAULT_REPORT_TYPES,
    SpatialParams,
    default_pair_cap,
)
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto import ecvrf, identity
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from spatial_eval_stats import (  # (also re-exported: tests use them from here)
    A2_K,
    A2_MIXES,
    FRACS,
    KS,
    MIXES,
    Config,
    Mix,
    _jsonable,
    _protocol_json,
    a2_check,
    aggregate,
    claims,
    pool_confirm,
    rates,
    render_a2,
    render_claims,
    render_codes,
    render_protocol,
)
from spatial_eval_stats import (
    SECTION4 as SECTION4,
)
from spatial_eval_stats import (
    binom_tail as binom_tail,
)
from spatial_eval_stats import (
    formula as formula,
)
from spatial_eval_table1 import (
    Geometry,
    facilities_for,
    haversine_m,
    plots,
    random_points,
    render_table1,
    table1,
)
from spatial_eval_table1 import (
    nearest_neighbour_path as nearest_neighbour_path,
)
from spatial_eval_table1 import (
    open_route_m as open_route_m,
)
from spatial_eval_table1 import (
    path_length as path_length,
)
from spatial_eval_table1 import (
    two_opt as two_opt,
)

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
    saved = (ecvrf.verify, ecvrf.verify_decoded, ecvrf.decode_proof,
             protocol_mod.verify_signature, tx_mod.verify_signature)
    sig = functools.lru_cache(maxsize=None)(identity.verify_signature)
    ecvrf.verify = functools.lru_cache(maxsize=None)(ecvrf.verify)  # type: ignore[assignment]
    ecvrf.verify_decoded = functools.lru_cache(maxsize=None)(  # type: ignore[assignment]
        ecvrf.verify_decoded)
    ecvrf.decode_proof = functools.lru_cache(maxsize=None)(  # type: ignore[assignment]
        ecvrf.decode_proof)
    protocol_mod.verify_signature = sig  # type: ignore[assignment]
    tx_mod.verify_signature = sig  # type: ignore[assignment]
    try:
        yield
    finally:
        (ecvrf.verify, ecvrf.verify_decoded, ecvrf.decode_proof, protocol_mod.verify_signature,
         tx_mod.verify_signature) = saved


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
                        help="override the genesis pair cap (default: default_pair_cap(K))")
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
           "pair_cap": args.pair_cap or {k: default_pair_cap(k) for k in KS},
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
