"""``crowdmesh``: talk to a daemon over its control socket, manage keys, databases and testnets.

Rule 1: the CLI is a table of command groups (:data:`GROUPS`); each group is one
``cli_<group>`` module contributing its subcommands (see ``cli_command``). Adding a protocol's
commands means one such module and one line in the table. Subcommand names are global (a
group only organises them), and ``crowdmesh.daemon.main`` adds the ``daemon`` group.
Rule 2: every client command prints a readable table (rich) or, with ``--json``, the raw
JSON-RPC result; exit status 0 on success, 1 on an error from the daemon or bad input, 2 on
usage errors (argparse), 3 when the daemon cannot be reached (``crowdmesh.daemon.client.exits``).
Rule 3: errors are one line ``error: <code>: <detail>`` on stderr, never a traceback; a
traceback means a bug. Output piped into a reader that quits early (``| head -1``) ends the
command quietly with status 141.
Rule 4: the control socket is found from ``--socket``, else ``--config`` (its ``[control]
socket``), else ``$CROWDMESH_SOCKET``, else :data:`DEFAULT_SOCKET` (systemd's RuntimeDirectory).
Rule 5: common options (``--config --socket --json --timeout``) go before or after the
subcommand; ``--timeout`` defaults to the command's own bound.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import trio

from crowdmesh.daemon.client import (
    cli_account,
    cli_chain,
    cli_db,
    cli_keys,
    cli_mining,
    cli_network,
    cli_node,
    cli_report,
    cli_task,
    cli_testnet,
)
from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation, Options
from crowdmesh.daemon.client.exits import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    fail,
    quiet_broken_pipe,
)
from crowdmesh.daemon.client.render import render
from crowdmesh.daemon.client.rpc import DEFAULT_SOCKET, DaemonUnavailable
from crowdmesh.errors import CrowdmeshError

__all__ = [
    "DEFAULT_SOCKET",
    "EXIT_CONFIG",
    "GROUPS",
    "build_parser",
    "commands",
    "main",
    "parse_args",
    "render",
    "socket_path",
]

GROUPS: Final[tuple[CommandGroup, ...]] = (
    cli_chain.GROUP,
    cli_mining.GROUP,
    cli_node.GROUP,
    cli_network.GROUP,
    cli_keys.GROUP,
    cli_db.GROUP,
    cli_testnet.GROUP,
    cli_account.GROUP,
    cli_report.GROUP,
    cli_task.GROUP,
)


def commands(groups: Iterable[CommandGroup] = GROUPS) -> dict[str, Command]:
    """Every subcommand of ``groups`` by name.

    Raises:
        ValueError: two groups define the same subcommand.
    """
    table: dict[str, Command] = {}
    for group in groups:
        for name, cmd in group.commands.items():
            if name in table:
                raise ValueError(f"command {name!r} of group {group.name!r} is defined twice")
            table[name] = cmd
    return table


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the subcommand is not reset by the subparser's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="daemon config file (TOML)")
    common.add_argument("--socket", default=argparse.SUPPRESS,
                        help="control socket path (overrides --config)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print raw JSON")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds to wait for the daemon")
    return common


def _epilog(groups: Iterable[CommandGroup]) -> str:
    lines = [f"  {g.name:<9} {g.help}: {', '.join(g.commands)}" for g in groups]
    return "command groups:\n" + "\n".join(lines)


def build_parser(groups: Sequence[CommandGroup] = GROUPS) -> argparse.ArgumentParser:
    """The argument parser for every subcommand (common options go before or after it)."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="crowdmesh", description=(__doc__ or "").split("\n")[0], parents=[common],
        epilog=_epilog(groups), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in commands(groups).items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, parents=[common])
        if cmd.setup is not None:
            cmd.setup(p)
    return parser


def parse_args(argv: Sequence[str] | None,
               groups: Sequence[CommandGroup] = GROUPS) -> argparse.Namespace:
    """Parse ``argv`` and fill the common options' defaults."""
    args = build_parser(groups).parse_args(argv)
    defaults = {"config": None, "socket": None, "json": False,
                "timeout": commands(groups)[args.command].timeout}
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def socket_path(args: argparse.Namespace) -> Path:
    """Where the control socket of parsed arguments is (see Rule 4)."""
    return Invocation(args.command, Options.from_namespace(args), args).socket()


def main(argv: Sequence[str] | None = None, groups: Sequence[CommandGroup] = GROUPS) -> int:
    """Run the subcommand of ``argv`` from ``groups``; return the exit status."""
    args = parse_args(argv, groups)
    cmd = commands(groups)[args.command]
    status = EXIT_OK
    try:
        status = cmd.run(Invocation(args.command, Options.from_namespace(args), args))
        sys.stdout.flush()  # why: a closed pipe must show here, not in the flush at exit
    except* BrokenPipeError:
        status = quiet_broken_pipe()
    except* DaemonUnavailable as group:
        status = fail(group, EXIT_UNREACHABLE)
    except* CrowdmeshError as group:
        status = fail(group, EXIT_ERROR)
    except* trio.TooSlowError:
        print(f"error: timeout: no answer within {args.timeout} s", file=sys.stderr)
        status = EXIT_ERROR
    except* KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    return status
