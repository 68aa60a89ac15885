"""Chaos run against real daemons (issue 11): faults under load, invariants after each.

Usage: .venv/bin/python bench/chaos.py [--nodes 5] [--faults 100] [--seed S] [--json FILE]
       [--kinds kill,freeze,split,skew] [--rate TX_PER_S] [--converge-s BOUND] [--keep]

Prints one row per fault (kind, nodes hit, detail, seconds to one head after the heal, the
checked height, violations found) and a summary; ``--json`` writes ``faults``, ``violations``,
``max_converge_s``, ``lost_confirmed_txs`` plus every row and violation. Exit status 1 when
any invariant was violated. The core is ``crowdmesh.daemon.client.chaos`` (see there for
adding fault kinds or loads).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdmesh.daemon.client.chaos import ChaosConfig, run_chaos, summary_lines
from crowdmesh.daemon.client.chaos_faults import FAULTS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--faults", type=int, default=100)
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--kinds", default=",".join(FAULTS), help="comma-separated fault kinds")
    p.add_argument("--rate", type=float, default=4.0, help="transfers per second")
    p.add_argument("--converge-s", type=float, default=60.0)
    p.add_argument("--topology", default="mesh", choices=("line", "star", "mesh"))
    p.add_argument("--keep", action="store_true", help="keep the testnet dir even if clean")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        print(f"error: unknown fault kinds {unknown}; known: {list(FAULTS)}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp")) if args.keep else None
    cfg = ChaosConfig(nodes=args.nodes, faults=args.faults, seed=seed, topology=args.topology,
                      tx_rate=args.rate, converge_s=args.converge_s, kinds=kinds, root=root,
                      timeout_factor=float(os.environ.get("CROWDMESH_TIMEOUT_FACTOR", "1")))
    print(f"chaos: seed={seed} nodes={args.nodes} faults={args.faults} kinds={','.join(kinds)}",
          flush=True)
    report = trio.run(run_chaos, cfg)
    for line in summary_lines(report):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
