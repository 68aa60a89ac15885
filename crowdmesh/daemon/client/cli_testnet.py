"""Command group ``testnet``: a local testnet of detached daemons (``init|up|status|down``).

Rule: ``init`` and ``up`` write the testnet first if ``--dir`` holds none (``-n``, ``--seed``,
``--topology`` and ``--mining`` only matter then); ``up``, ``status`` and ``down`` are the
launcher's (``crowdmesh.daemon.client.launcher``), which returns the exit status.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, get_args

import trio

from crowdmesh.daemon.api import MiningMode
from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation
from crowdmesh.daemon.client.exits import EXIT_OK
from crowdmesh.daemon.client.launcher import down, show_status, up
from crowdmesh.daemon.client.testnet import TOPOLOGIES, TestnetSpec, has_testnet, init_testnet

__all__ = ["GROUP"]

_LAUNCHER: Final[dict[str, Callable[[Path, bool], Awaitable[int]]]] = {
    "up": up, "status": show_status, "down": down,
}


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["init", *_LAUNCHER])
    p.add_argument("--dir", type=Path, default=Path("testnet"), help="testnet directory")
    p.add_argument("-n", type=int, default=5, help="number of daemons (init/up)")
    p.add_argument("--seed", type=int, default=1, help="port/chain seed (init/up)")
    p.add_argument("--topology", choices=TOPOLOGIES, default="line")
    p.add_argument("--mining", choices=list(get_args(MiningMode)),
                   default="on-demand")


def _init(root: Path, spec: TestnetSpec) -> None:
    nodes = init_testnet(root, spec)
    print(f"testnet initialised in {root}: {len(nodes)} nodes, seed {spec.seed}, "
          f"ports {nodes[0].port}-{nodes[-1].port}")


def _run(inv: Invocation) -> int:
    args = inv.args
    root = args.dir.resolve()
    if args.action in ("init", "up") and not has_testnet(root):
        _init(root, TestnetSpec(n=args.n, seed=args.seed, topology=args.topology,
                                mining_mode=args.mining))
    if args.action == "init":
        return EXIT_OK
    return trio.run(_LAUNCHER[args.action], root, inv.options.json)


GROUP: Final = CommandGroup("testnet", "local testnet", {
    "testnet": Command("local testnet: init, up, status, down", _run, _setup),
})
