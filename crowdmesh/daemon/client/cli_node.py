"""Command group ``node``: the daemon's lifecycle and its log stream.

Rule: ``wait-ready`` tolerates a socket that does not exist yet (a daemon still starting) and
is bounded by ``--timeout`` (default 60 s); ``logs -f`` runs until interrupted (no timeout).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from crowdmesh.daemon.client.cli_command import (
    CommandGroup,
    Invocation,
    client_command,
    rpc_command,
)
from crowdmesh.daemon.client.rpc import ControlClient
from crowdmesh.daemon.logs import format_kv

__all__ = ["GROUP"]


def _setup_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", required=True,
                   help="stream log events as they happen (until Ctrl-C)")


async def _wait_ready(inv: Invocation) -> Any:
    await inv.endpoint().wait_ready()
    return {"ready": True}


async def _logs(inv: Invocation) -> Any:
    async with await ControlClient.connect(inv.socket()) as client:
        await client.call("subscribe", ["logs"])
        while True:
            note = await client.next_notification()
            event = note["params"]["result"]
            print(json.dumps(event) if inv.options.json else format_kv(event), flush=True)


GROUP: Final = CommandGroup("node", "the daemon's lifecycle and logs", {
    "stop": rpc_command("stop the daemon gracefully", "stop"),
    "wait-ready": client_command("wait until the daemon serves", _wait_ready, timeout=60.0),
    "logs": client_command("follow the daemon's log events", _logs, _setup_logs, timeout=None),
})
