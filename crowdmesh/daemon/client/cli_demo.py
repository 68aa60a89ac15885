"""``make demo-crypto``: ``python -m crowdmesh.daemon.client.cli_demo [--kib K]
[--profile default|paper] [--processes P]``, the arguments of the CrowdSFL crypto walk-through.

Rule: only the arguments are parsed here; the walk-through is
:func:`crowdmesh.daemon.client.demo.run_walk_through`. Exit 0 when the model came back
bit-exact, else 1; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from crowdmesh.daemon.client.demo import run_walk_through

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the walk-through; return the exit status."""
    parser = argparse.ArgumentParser(description="CrowdSFL crypto walk-through")
    parser.add_argument("--kib", type=int, default=1024, help="model size in KiB (float32)")
    parser.add_argument("--profile", default="default", choices=["default", "paper"])
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes for chunk slices (1: none)"
    )
    args = parser.parse_args(argv)
    return run_walk_through(args.kib, args.profile, args.processes)


if __name__ == "__main__":
    raise SystemExit(main())
