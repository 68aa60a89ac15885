"""``make demo-transfer``: ``python -m crowdmesh.daemon.client.cli_demo_testnet [-n 5]
[--transfers 40] [--seed 1] [--keep]``, the arguments of the 5-daemon testnet demo.

Rule: only the arguments are parsed here; the demo is
:func:`crowdmesh.daemon.client.demo_testnet.run_demo_in_tmp`. Exit 0 when every node agreed
and stopped cleanly, else 1; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from crowdmesh.daemon.client.demo_testnet import run_demo_in_tmp

__all__ = ["main"]

DESCRIPTION = "5 daemons doing real work, then a clean stop."


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; return the exit status."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--transfers", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory")
    args = parser.parse_args(argv)
    return run_demo_in_tmp(args.n, args.transfers, args.seed, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
