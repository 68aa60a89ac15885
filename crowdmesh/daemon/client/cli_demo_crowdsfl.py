"""``make demo``: ``python -m crowdmesh.daemon.client.cli_demo_crowdsfl [--rounds 5] [--seed 3]
[--keep]``, the arguments of the CrowdSFL demo (a whole federated-learning task between 5
daemons).

Rule: only the arguments are parsed here; the demo is
:func:`crowdmesh.daemon.client.demo_crowdsfl.run_demo_in_tmp`. Exit 0 when every check passed,
else 1; 130 on Ctrl-C (after
stopping every daemon); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from crowdmesh.daemon.client.demo_crowdsfl import DEFAULT_SEED, run_demo_in_tmp

__all__ = ["main"]

DESCRIPTION = ("A whole CrowdSFL task (requester, CSP, 3 workers; full crypto and proofs) "
               "between 5 daemons, checked on every node.")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; return the exit status."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--rounds", type=int, default=5, choices=range(1, 21),
                        metavar="1..20", help="rounds of the task (default 5)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="picks the testnet's ports and chain id")
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory")
    args = parser.parse_args(argv)
    return run_demo_in_tmp(args.rounds, args.seed, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
