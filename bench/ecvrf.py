"""ECVRF prove/verify cost (both RFC 9381 suites) beside Ed25519 sign/verify, in one run.

Usage: .venv/bin/python bench/ecvrf.py [--json FILE] [--rounds N] [--iters N]

Prints the median over ``rounds`` of the mean µs per call over ``iters`` calls, and the ratio to
Ed25519 measured in the same process, with the 1-minute load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

from rich.console import Console
from rich.table import Table

from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.ecvrf import Suite
from crowdmesh.crypto.identity import AccountKey, verify_signature

SEED = bytes(range(32))
ALPHA = b"report-id|beacon" * 4  # 64 bytes, the size of report_id ‖ beacon


def _median_us(fn: Callable[[], object], rounds: int, iters: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - start) / iters * 1e6)
    return statistics.median(samples)


def _cases() -> dict[str, Callable[[], object]]:
    key = AccountKey(SEED)
    sig = key.sign(ALPHA)
    pk = ecvrf.public_key(SEED)
    cases: dict[str, Callable[[], object]] = {
        "ed25519_sign": lambda: key.sign(ALPHA),
        "ed25519_verify": lambda: verify_signature(key.public, ALPHA, sig),
    }
    for suite in Suite:
        pi = ecvrf.prove(SEED, ALPHA, suite=suite)
        name = suite.name.lower()
        cases[f"{name}_prove"] = partial(ecvrf.prove, SEED, ALPHA, suite=suite)
        cases[f"{name}_verify"] = partial(ecvrf.verify, pk, pi, ALPHA, suite=suite)
        cases[f"{name}_proof_to_hash"] = partial(ecvrf.proof_to_hash, pi, suite=suite)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {name: _median_us(fn, args.rounds, args.iters) for name, fn in _cases().items()}
    load_after = os.getloadavg()[0]
    table = Table(title=f"ECVRF (median of {args.rounds} × {args.iters} calls)")
    for column in ("operation", "µs/call", "× Ed25519 same op"):
        table.add_column(column, justify="right" if column != "operation" else "left")
    for name, us in results.items():
        ref = results["ed25519_sign" if "prove" in name else "ed25519_verify"]
        table.add_row(name, f"{us:.0f}", "" if name.startswith("ed25519") else f"{us / ref:.1f}")
    console = Console()
    console.print(table)
    console.print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    if args.json:
        out = {f"{k}_us": round(v, 1) for k, v in results.items()}
        out["loadavg_1m"] = round(max(load_before, load_after), 2)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
