"""Command group ``keys``: the account keys of a data dir's keystore (``keys new|list|show``),
and the running daemon's ElGamal key (``keys elgamal [show|register]``: CrowdSFL requester and
CSP; ``register`` sends ``register-key`` with its proof of knowledge from the node's account).

Rule: the keystore is ``--data-dir``'s, else that of ``--config``'s data dir; a passphrase for
``new`` comes from the environment variable named by ``--passphrase-env``, never from argv.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio
from rich.console import Console
from rich.table import Table

from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation
from crowdmesh.daemon.client.exits import EXIT_OK
from crowdmesh.daemon.client.render import render
from crowdmesh.daemon.client.wallet import (
    data_dir_of,
    find_key,
    key_rows,
    new_key,
    passphrase_from_env,
)
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.errors import UsageError

__all__ = ["GROUP"]


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=list(_ACTIONS))
    p.add_argument("name", nargs="?", help="key name (new, show); show|register (elgamal)")
    p.add_argument("--data-dir", type=Path, help="default: data_dir of --config")
    p.add_argument("--passphrase-env", help="environment variable holding a passphrase (new)")


def _new(inv: Invocation, store: Keystore) -> None:
    name = inv.args.name
    if not name:
        raise UsageError("usage", "keys new NAME")
    made = new_key(store, name, passphrase_from_env(inv.args.passphrase_env), SystemRng())
    render(made, inv.options.json, "new key")


def _show(inv: Invocation, store: Keystore) -> None:
    render(find_key(store, inv.args.name), inv.options.json, inv.args.name)


def _list(inv: Invocation, store: Keystore) -> None:
    rows = key_rows(store)
    if inv.options.json or rows:
        render(rows, inv.options.json, f"keys in {store.directory}")
    else:
        Console().print(Table(title=f"no keys in {store.directory}"))


def _elgamal(inv: Invocation, store: Keystore) -> None:
    what = inv.args.name or "show"
    if what not in ("show", "register"):
        raise UsageError("usage", "keys elgamal [show|register]")
    method = "elgamal_register" if what == "register" else "elgamal_key"
    render(trio.run(inv.call, method, []), inv.options.json, f"elgamal key ({what})")


_ACTIONS: Final[dict[str, Callable[[Invocation, Keystore], None]]] = {
    "new": _new, "list": _list, "show": _show, "elgamal": _elgamal,
}


def _run(inv: Invocation) -> int:
    store = Keystore.in_data_dir(data_dir_of(inv.args.data_dir, inv.options.config))
    _ACTIONS[inv.args.action](inv, store)
    return EXIT_OK


GROUP: Final = CommandGroup("keys", "account keys", {
    "keys": Command("account keys: new, list, show", _run, _setup),
})
