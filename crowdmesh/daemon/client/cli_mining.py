"""Command group ``mining``: the daemon's mining mode, and mining blocks on demand.

Rule: ``mine --generate N`` and ``generate N`` are the same call (``generate``): the daemon
answers once N blocks of its own are on the chain, with their hashes.
"""

from __future__ import annotations

import argparse
from typing import Any, Final, get_args

from crowdmesh.daemon.api import MiningMode
from crowdmesh.daemon.client.cli_command import (
    CommandGroup,
    Invocation,
    client_command,
    rpc_command,
)

__all__ = ["GROUP"]

MINING_MODES: Final[tuple[str, ...]] = get_args(MiningMode)  # off, continuous, on-demand


def _setup_mine(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mode", choices=list(MINING_MODES))
    g.add_argument("--generate", type=int, metavar="N", help="mine N blocks now")


def _setup_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("n", type=int, metavar="N", help="how many blocks")


async def _mine(inv: Invocation) -> Any:
    if inv.args.generate:
        return await inv.call("generate", [inv.args.generate])
    return await inv.call("set_mining", [inv.args.mode])


GROUP: Final = CommandGroup("mining", "mining mode and blocks on demand", {
    "mine": client_command("set the mining mode or mine N blocks", _mine, _setup_mine),
    "generate": rpc_command("mine N blocks now", "generate", "n", setup=_setup_generate),
})
