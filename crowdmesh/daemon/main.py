"""The ``crowdmesh`` process entry point: the client CLI plus the ``daemon`` command group.

Rule 1: this is the only module that joins the client (``crowdmesh.daemon.client``) and the
server (``crowdmesh.daemon.runner``); the client package never imports the server. The runner
is imported only when ``crowdmesh daemon`` runs, so client commands start without loading the
node, the p2p stack or the control server.
Rule 2: ``crowdmesh daemon --config FILE`` exits 78 (``EX_CONFIG``) when it stops on a
``CrowdmeshError`` (bad config, genesis, node key, data dir locked, socket in use…): retrying
cannot help, and the systemd units list 78 in ``RestartPreventExitStatus=`` so a broken install
does not restart forever. Any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

import trio

from crowdmesh.daemon.client import cli
from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation
from crowdmesh.daemon.client.exits import EXIT_CONFIG, EXIT_OK, fail
from crowdmesh.daemon.config import load_config
from crowdmesh.errors import CrowdmeshError, UsageError

__all__ = ["DAEMON", "GROUPS", "main"]


def _run_daemon(inv: Invocation) -> int:
    config = inv.options.config
    if config is None:
        raise UsageError("usage", "crowdmesh daemon needs --config FILE")
    status = EXIT_OK
    try:
        cfg = load_config(config)
        from crowdmesh.daemon.runner import run_daemon  # why: see Rule 1

        trio.run(run_daemon, cfg, config)
    except* CrowdmeshError as group:  # trio's nurseries deliver it grouped
        status = fail(group, EXIT_CONFIG)
    return status


DAEMON: Final = CommandGroup("daemon", "run the node", {
    "daemon": Command("run the daemon (needs --config)", _run_daemon),
})
GROUPS: Final[tuple[CommandGroup, ...]] = (DAEMON, *cli.GROUPS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crowdmesh`` command; returns the exit status."""
    return cli.main(argv, GROUPS)


if __name__ == "__main__":
    sys.exit(main())
