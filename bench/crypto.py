"""Benchmark of the CrowdSFL crypto pipeline per profile, beside bare gmpy2 powmod costs.

Usage: .venv/bin/python bench/crypto.py [--json FILE] [--runs N] [--kib K] [--paper-kib K]

For each profile it times, on a random model of K KiB (one bundle):
  worker Enc (encode + encrypt under PK),
  CSP (validate + blind + shuffle + ReEnc + batched DLEQ proof; the paper profile runs the
       paper's ReEnc-then-Blind without proof),
  requester (verify the proof + Dec + decode),
  and the full pipeline (sum of the three),
in KB/s of model bytes (1 KB = 1000 B). Beside each: the ratio of the measured time to the *bare
powmod cost* of the same step, i.e. the number of modular exponentiations the textbook step does
per chunk times the bare ``gmpy2.powmod`` time for that exponent size, measured in the same run
(280-bit secrets and 128-bit batch weights in ``default``, full-length in ``paper``). Fixed-base
tables and the multi-exponentiation make the default ratios fall below 1; the paper profile has
neither, so its ratio is the Python overhead over bare powmod. ``overhead_ratio`` in the JSON is
the largest ratio of all rows.

Runs are interleaved (powmod baseline, then each step) and reported as median and min. The load
average is printed before and after, because the machine is shared.

With ``--processes P`` (default 2; 0 to skip) a third table runs the default profile with the
daemon's process pool (``crowdmesh.daemon.jobs.ProcessMapper``) over chunk slices; the
JSON then also has ``parallel_*_kb_s`` keys. The targets are for one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gmpy2
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdmesh.crypto import (
    DEFAULT,
    PAPER,
    Profile,
    csp_process,
    csp_process_paper,
    decrypt,
    encrypt,
    keygen,
    requester_open,
    task_keys,
)
from crowdmesh.crypto._mapper import SERIAL, Mapper
from crowdmesh.daemon.jobs import ProcessMapper
from crowdmesh.daemon.rng import SystemRng

console = Console(width=120)
ROLES = ("enc", "csp", "req", "pipeline")
LABELS = {
    "enc": "worker Enc",
    "csp": "CSP (blind+shuffle+ReEnc+proof)",
    "req": "requester (verify+Dec)",
    "pipeline": "full pipeline",
}
PAPER_LABELS = {**LABELS, "csp": "CSP (ReEnc, then Blind; no proof)", "req": "requester (Dec)"}
TARGETS = {"enc": 1500.0, "csp": 300.0, "req": 350.0, "pipeline": 150.0}


@dataclass
class Sample:
    """One run: seconds per role, and bare powmod seconds per exponent size."""

    seconds: dict[str, float]
    powmod: dict[int, float]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bare_powmod(profile: Profile, bits: int, count: int) -> float:
    """Median seconds of one gmpy2.powmod with a random base and a ``bits``-bit exponent."""
    rng = SystemRng()
    p = profile.group.p
    times = []
    for _ in range(count):
        base, exp = gmpy2.mpz(rng.randbelow(p)), gmpy2.mpz(rng.randbits(bits) | 1 << (bits - 1))
        times.append(timed(lambda b=base, e=exp: gmpy2.powmod(b, e, p))[0])
    return statistics.median(times)


def exponent_sizes(profile: Profile) -> dict[str, int]:
    """Exponent bits by kind, for the kinds this profile's steps use."""
    kinds = {kind for counts in bare_counts(profile).values() for kind in counts}
    return {k: v for k, v in {"secret": profile.secret_bits, "weight": 128}.items() if k in kinds}


def bare_counts(profile: Profile) -> dict[str, dict[str, int]]:
    """Textbook exponentiations per chunk, by role and exponent kind."""
    if profile is PAPER:  # the paper's order: no proof, so no batch weights
        return {
            "enc": {"secret": 2},
            "csp": {"secret": 3},
            "req": {"secret": 1},
        }
    return {
        "enc": {"secret": 2},  # g^r, PK^r
        "csp": {"secret": 3, "weight": 1},  # g^r', PK^r', c1^sk; C = ∏ c1^z
        "req": {"secret": 1, "weight": 2},  # c1^sk; C and D
    }


def run_once(profile: Profile, data: bytes, mapper: Mapper) -> Sample:
    rng = SystemRng()
    sizes = exponent_sizes(profile)
    powmod = {bits: bare_powmod(profile, bits, 15) for bits in set(sizes.values())}
    csp, req = keygen(profile, rng), keygen(profile, rng)
    keys = task_keys(profile, csp.pk, req.pk)
    start = time.perf_counter()
    bundle = encrypt(keys.joint, data, rng, mapper=mapper)
    t_enc = time.perf_counter() - start
    if profile is PAPER:
        (final,) = csp_process_paper(keys, csp.sk, [bundle], rng, mapper=mapper)
        t_csp = time.perf_counter() - start - t_enc
        plain = decrypt(profile, req.sk, final, mapper=mapper)
    else:
        (proven,) = csp_process(keys, csp.sk, [bundle], rng, mapper=mapper).outputs
        t_csp = time.perf_counter() - start - t_enc
        plain = requester_open(keys, req.sk, proven, mapper=mapper)
    t_req = time.perf_counter() - start - t_enc - t_csp
    if plain != data:
        raise SystemExit("pipeline did not return the model")
    seconds = {"enc": t_enc, "csp": t_csp, "req": t_req, "pipeline": t_enc + t_csp + t_req}
    return Sample(seconds, powmod)


def bare_seconds(profile: Profile, sample: Sample, chunks: int) -> dict[str, float]:
    sizes = exponent_sizes(profile)
    per_role = {
        role: chunks * sum(n * sample.powmod[sizes[kind]] for kind, n in counts.items())
        for role, counts in bare_counts(profile).items()
    }
    per_role["pipeline"] = sum(per_role.values())
    return per_role


@dataclass
class Summary:
    kb_s_median: dict[str, float]
    kb_s_min_time: dict[str, float]
    ratio_median: dict[str, float]
    powmod_us: dict[int, float]


def summarise(profile: Profile, samples: list[Sample], nbytes: int, chunks: int) -> Summary:
    kb = nbytes / 1000
    med = {r: statistics.median(s.seconds[r] for s in samples) for r in ROLES}
    best = {r: min(s.seconds[r] for s in samples) for r in ROLES}
    ratios = {
        r: statistics.median(s.seconds[r] / bare_seconds(profile, s, chunks)[r] for s in samples)
        for r in ROLES
    }
    pm = {b: statistics.median(s.powmod[b] for s in samples) * 1e6 for b in samples[0].powmod}
    return Summary({r: kb / med[r] for r in ROLES}, {r: kb / best[r] for r in ROLES}, ratios, pm)


def print_table(
    profile: Profile, summary: Summary, nbytes: int, chunks: int, runs: int, processes: int
) -> None:
    labels = PAPER_LABELS if profile is PAPER else LABELS
    pm = ", ".join(f"{b}-bit {us:.0f} µs" for b, us in sorted(summary.powmod_us.items()))
    where = "one process" if processes == 1 else f"{processes} worker processes"
    table = Table(
        title=f"profile {profile.name} ({profile.group.name}), {where}, {nbytes / 1024:.0f} KiB "
        f"model, {chunks} chunks, {runs} runs; bare powmod (one core): {pm}"
    )
    for col in ("step", "KB/s median", "KB/s best", "× bare powmod", "target"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for role in ROLES:
        target = TARGETS[role] if profile is DEFAULT else (14.0 if role == "pipeline" else None)
        table.add_row(
            labels[role],
            f"{summary.kb_s_median[role]:.1f}",
            f"{summary.kb_s_min_time[role]:.1f}",
            f"{summary.ratio_median[role]:.2f}",
            "" if target is None else f"≥ {target:g}",
        )
    console.print(table)


def bench_profile(profile: Profile, kib: int, runs: int, mapper: Mapper = SERIAL) -> Summary:
    data = SystemRng().token_bytes(kib * 1024)
    chunks = (8 + len(data) + profile.group.chunk_bytes - 1) // profile.group.chunk_bytes
    samples = []
    with console.status(f"{profile.name}: run 1/{runs}") as status:
        for i in range(runs):
            status.update(f"{profile.name}: run {i + 1}/{runs}")
            samples.append(run_once(profile, data, mapper))
    summary = summarise(profile, samples, len(data), chunks)
    print_table(profile, summary, len(data), chunks, runs, mapper.parallelism)
    return summary


def bench_parallel(kib: int, runs: int, processes: int) -> dict[str, float]:
    with ProcessMapper(processes) as pool:
        pool.warm_up()
        summary = bench_profile(DEFAULT, kib, runs, pool)
    return {f"parallel_{role}_kb_s": summary.kb_s_median[role] for role in ROLES}


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kib", type=int, default=1024, help="default-profile model size")
    parser.add_argument("--paper-kib", type=int, default=16, help="paper-profile model size")
    parser.add_argument("--processes", type=int, default=2, help="pool size for table 3 (0: skip)")
    args = parser.parse_args(argv)
    console.print(f"load average before: {loadavg()}  (cpus: {os.cpu_count()})")
    default = bench_profile(DEFAULT, args.kib, args.runs)
    paper = bench_profile(PAPER, args.paper_kib, args.runs)
    parallel = bench_parallel(args.kib, args.runs, args.processes) if args.processes else {}
    console.print(f"load average after: {loadavg()}")
    figures = {
        "pipeline_kb_s": default.kb_s_median["pipeline"],
        "enc_kb_s": default.kb_s_median["enc"],
        "csp_kb_s": default.kb_s_median["csp"],
        "req_kb_s": default.kb_s_median["req"],
        "paper_pipeline_kb_s": paper.kb_s_median["pipeline"],
        "overhead_ratio": max(*default.ratio_median.values(), *paper.ratio_median.values()),
        **parallel,
    }
    console.print(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
