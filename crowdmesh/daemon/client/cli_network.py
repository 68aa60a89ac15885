"""Command group ``network``: the node's networking switch and one-off peer dials and drops.

``crowdmesh network off`` drops every peer, refuses inbound connections and stops dialling
(the host keeps listening); ``crowdmesh network on`` redials the bootstrap and known peers
(bitcoind's ``setnetworkactive``). ``connect ADDR`` and ``disconnect PEER`` are the
``connect``/``disconnect`` RPCs.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from crowdmesh.daemon.client.cli_command import (
    CommandGroup,
    Invocation,
    client_command,
    rpc_command,
)

__all__ = ["GROUP", "STATES"]

STATES: Final[dict[str, bool]] = {"on": True, "off": False}


def _setup_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("state", choices=sorted(STATES), help="turn networking on or off")


def _setup_connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("addr", help="/ip4/…/tcp/PORT/p2p/PEER_ID")


def _setup_disconnect(p: argparse.ArgumentParser) -> None:
    p.add_argument("peer", help="base58 peer id")


async def _network(inv: Invocation) -> Any:
    return await inv.call("setnetworkactive", [STATES[inv.args.state]])


GROUP: Final = CommandGroup("network", "networking on/off, one-off dials and drops", {
    "network": client_command("turn the node's networking on or off", _network, _setup_network),
    "connect": rpc_command("dial a peer once", "connect", "addr", setup=_setup_connect),
    "disconnect": rpc_command("drop a peer and stop redialling it", "disconnect", "peer",
                              setup=_setup_disconnect),
})
