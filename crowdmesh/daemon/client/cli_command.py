"""What a command group is made of: the types every ``cli_<group>`` module and ``cli`` share.

Rule 1: a command group is one module ``cli_<group>.py`` that exports ``GROUP``, a
:class:`CommandGroup` naming its subcommands; one line in ``cli.GROUPS`` adds it to the
``crowdmesh`` command (``crowdmesh.daemon.main`` adds the ``daemon`` group the same way).
Rule 2: argparse stops here. A command's ``setup`` declares its arguments on an
``ArgumentParser`` and its ``run`` reads them from the :class:`Invocation`, then calls library
code with typed values (paths, ints, dataclasses); library modules never see a Namespace.
Rule 3: ``run`` returns the exit status; errors propagate as exceptions and ``cli.main`` turns
them into one ``error:`` line and a status (see ``crowdmesh.daemon.client.exits``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from crowdmesh.daemon.client.exits import EXIT_OK
from crowdmesh.daemon.client.render import render
from crowdmesh.daemon.client.rpc import Endpoint, resolve_socket

__all__ = [
    "Command",
    "CommandGroup",
    "Handler",
    "Invocation",
    "Options",
    "Setup",
    "client_command",
    "rpc_command",
]

DEFAULT_TIMEOUT_S = 30.0

Setup = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True, slots=True)
class Options:
    """The options every command accepts, before or after its name."""

    config: Path | None
    socket: Path | None
    json: bool
    timeout: float | None  # seconds to wait for the daemon; None or 0: no bound

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        """The common options of parsed arguments (defaults already filled in)."""
        return cls(config=Path(args.config) if args.config else None,
                   socket=Path(args.socket) if args.socket else None,
                   json=bool(args.json), timeout=args.timeout)


@dataclass(frozen=True, slots=True)
class Invocation:
    """One run of a command: its name, the common options and its own parsed arguments."""

    command: str
    options: Options
    args: argparse.Namespace

    def socket(self) -> Path:
        """The control socket: ``--socket``, ``--config``'s, ``$CROWDMESH_SOCKET``, default."""
        return resolve_socket(self.options.socket, self.options.config)

    def endpoint(self) -> Endpoint:
        """The daemon to call, each call bounded by ``--timeout``."""
        return Endpoint(self.socket(), self.options.timeout)

    async def call(self, method: str, params: Any = None) -> Any:
        """One call on the daemon, on a fresh connection (see :meth:`Endpoint.call`)."""
        return await self.endpoint().call(method, params)


Handler = Callable[[Invocation], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: help text, its arguments, what it runs, its default ``--timeout``."""

    help: str
    run: Callable[[Invocation], int]  # returns the exit status
    setup: Setup | None = None
    timeout: float | None = DEFAULT_TIMEOUT_S  # None: unbounded (e.g. ``logs -f``)


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """The subcommands one area (a protocol, the keystore, the testnet…) adds to the CLI."""

    name: str
    help: str
    commands: Mapping[str, Command]


def client_command(help: str, handler: Handler, setup: Setup | None = None,
                   timeout: float | None = DEFAULT_TIMEOUT_S) -> Command:
    """A command that talks to the daemon: ``handler``'s result is rendered (table or JSON)."""

    def run(inv: Invocation) -> int:
        render(trio.run(handler, inv), inv.options.json, title=inv.command)
        return EXIT_OK

    return Command(help, run, setup, timeout)


def rpc_command(help: str, method: str, *arg_names: str, setup: Setup | None = None) -> Command:
    """A command that is one RPC call whose params are the named arguments, in order."""

    async def handler(inv: Invocation) -> Any:
        params = [getattr(inv.args, n) for n in arg_names] if arg_names else None
        return await inv.call(method, params)

    return client_command(help, handler, setup)
