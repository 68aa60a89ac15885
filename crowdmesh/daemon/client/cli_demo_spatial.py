"""``make demo-spatial``: ``python -m crowdmesh.daemon.client.cli_demo_spatial [--seed 2]
[--keep] [--bits 19]``, the arguments of the 9-daemon spatial crowdsourcing demo.

Rule: only the arguments are parsed here; the demo is
:func:`crowdmesh.daemon.client.demo_spatial.run_demo_in_tmp`. Exit 0 when every expectation
held, else 1 (each failure printed); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from crowdmesh.daemon.client.demo_spatial import DEFAULT_SEED, DIFFICULTY_BITS, run_demo_in_tmp

__all__ = ["main"]

DESCRIPTION = ("9 daemons around Charlotte, NC: a false report rejected, a true one confirmed, "
               "a duplicate refused, far workers never asked; rewards and balances agree.")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; return the exit status."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="ports and chain id")
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory")
    parser.add_argument("--bits", type=int, default=DIFFICULTY_BITS,
                        help="proof-of-work difficulty (expected hashes per block = 2**bits)")
    args = parser.parse_args(argv)
    return run_demo_in_tmp(args.seed, args.keep, args.bits)


if __name__ == "__main__":
    raise SystemExit(main())
