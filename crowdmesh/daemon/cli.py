"""``crowdmesh``: run the daemon, talk to it over its control socket, manage keys and testnets.

Rule 1: one table (:data:`COMMANDS`) maps a subcommand to its argument setup and handler.
Rule 2: every client command prints a readable table (rich) or, with ``--json``, the raw
JSON-RPC result; exit status 0 on success, 1 on an error from the daemon or bad input, 2 on
usage errors (argparse), 3 when the daemon cannot be reached. ``crowdmesh daemon`` exits 78
(``EX_CONFIG``) when it stops on a ``CrowdmeshError`` (bad config, genesis, node key, data dir
locked, socket in use…): retrying cannot help, and the systemd units list 78 in
``RestartPreventExitStatus=`` so a broken install does not restart forever.
Rule 3: errors are one line ``error: <code>: <detail>`` on stderr, never a traceback; a
traceback means a bug.
Rule 4: the control socket is found from ``--socket``, else ``--config`` (its ``[control]
socket``), else ``$CROWDMESH_SOCKET``, else :data:`DEFAULT_SOCKET` (systemd's RuntimeDirectory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.table import Table

from crowdmesh.daemon.config import load_config
from crowdmesh.daemon.rpc_client import ControlClient, DaemonUnavailable
from crowdmesh.errors import CrowdmeshError, UsageError

__all__ = ["COMMANDS", "DEFAULT_SOCKET", "main"]

DEFAULT_SOCKET: Final = "/run/crowdmesh/crowdmesh.sock"
EXIT_ERROR: Final = 1
EXIT_UNREACHABLE: Final = 3
EXIT_CONFIG: Final = 78  # sysexits.h EX_CONFIG


# ---- output -------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def render(result: Any, as_json: bool, title: str = "", out: Console | None = None) -> None:
    """Print ``result``: JSON if asked, a key/value table for objects, a table for lists."""
    console = out or Console()
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        cols = list(dict.fromkeys(k for r in result for k in r))
        table = Table(*cols, title=title or None)
        for r in result:
            table.add_row(*(_cell(r.get(c, "")) for c in cols))
        console.print(table)
    elif isinstance(result, dict):
        table = Table("field", "value", title=title or None, show_header=False)
        for k, v in result.items():
            table.add_row(str(k), _cell(v))
        console.print(table)
    elif isinstance(result, list):
        for item in result:
            console.print(_cell(item))
    else:
        console.print(_cell(result))


# ---- socket and calls ---------------------------------------------------------------------


def socket_path(args: argparse.Namespace) -> Path:
    """Where the control socket is (see Rule 4)."""
    if args.socket:
        return Path(args.socket)
    if args.config:
        return load_config(args.config).control_socket
    return Path(os.environ.get("CROWDMESH_SOCKET", DEFAULT_SOCKET))


async def rpc(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    """One call on a fresh connection, bounded by ``--timeout``."""
    with trio.fail_after(args.timeout or 1e9):
        async with await ControlClient.connect(socket_path(args)) as client:
            return await client.call(method, params)


Handler = Callable[[argparse.Namespace], Awaitable[Any]]


def _simple(method: str, *names: str) -> Handler:
    async def handler(args: argparse.Namespace) -> Any:
        return await rpc(args, method, [getattr(args, n) for n in names] if names else None)

    return handler


def _parse_ref(text: str) -> str | int:
    return int(text) if text.isdigit() else text


async def _chain(args: argparse.Namespace) -> Any:
    head = await rpc(args, "head")
    top = int(head.get("height", 0))
    blocks = [await rpc(args, "block", [h]) for h in range(top, max(-1, top - args.count), -1)]
    return [_block_row(b) for b in blocks]


def _block_row(b: dict[str, Any]) -> dict[str, Any]:
    return {"height": b.get("height"), "hash": str(b.get("hash", ""))[:16],
            "time": b.get("timestamp"), "txs": b.get("tx_count", len(b.get("txids", []))),
            "miner": str(b.get("miner", ""))[:16]}


async def _mine(args: argparse.Namespace) -> Any:
    if args.generate:
        return await rpc(args, "generate", [args.generate])
    return await rpc(args, "set_mining", [args.mode])


async def _balance(args: argparse.Namespace) -> Any:
    from crowdmesh.daemon.wallet import resolve_account

    return await rpc(args, "balance", [resolve_account(args.account, args.data_dir)])


async def _send(args: argparse.Namespace) -> Any:
    from crowdmesh.daemon.wallet import send_transfer

    return await send_transfer(args, rpc)


async def _wait_ready(args: argparse.Namespace) -> Any:
    """Poll until the daemon answers ``ready`` (tolerating a socket that does not exist yet)."""
    with trio.fail_after(args.timeout or 1e9):
        while True:
            try:
                async with await ControlClient.connect(socket_path(args)) as client:
                    await client.wait_ready(args.timeout)
                    return {"ready": True}
            except DaemonUnavailable:
                await trio.sleep(0.1)


async def _logs(args: argparse.Namespace) -> Any:
    async with await ControlClient.connect(socket_path(args)) as client:
        await client.call("subscribe", ["logs"])
        while True:
            note = await client.next_notification()
            event = note["params"]["result"]
            if args.json:
                print(json.dumps(event), flush=True)
            else:
                from crowdmesh.daemon.logs import format_kv

                print(format_kv(event), flush=True)


# ---- command table ------------------------------------------------------------------------


Setup = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: help text, its arguments, and either an RPC handler or a local runner."""

    help: str
    setup: Setup | None = None
    handler: Handler | None = None  # async client commands: result is rendered
    local: Callable[[argparse.Namespace], int] | None = None  # run in-process, returns status
    timeout: float | None = 30.0  # default of --timeout for this command (None: unbounded)


def _no_args(p: argparse.ArgumentParser) -> None:
    return None


def _setup_block(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", type=_parse_ref, help="height or block hash (hex)")


def _setup_tx(p: argparse.ArgumentParser) -> None:
    p.add_argument("txid", help="transaction id (hex)")


def _setup_chain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=10, help="how many recent blocks (default 10)")


def _setup_mine(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mode", choices=["off", "continuous", "on-demand"])
    g.add_argument("--generate", type=int, metavar="N", help="mine N blocks now")


def _setup_balance(p: argparse.ArgumentParser) -> None:
    p.add_argument("account", help="account id (64 hex) or a key name in --data-dir")
    p.add_argument("--data-dir", type=Path, help="data dir whose keystore names the key")


def _setup_send(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="sender", required=True, help="key name in the keystore")
    p.add_argument("--to", required=True, help="account id (64 hex) or key name")
    p.add_argument("--amount", type=int, required=True)
    p.add_argument("--fee", type=int, default=None, help="default: the minimum fee")
    p.add_argument("--nonce", type=int, default=None, help="default: the daemon's pending_nonce")
    p.add_argument("--data-dir", type=Path, required=True, help="data dir holding keys/")
    p.add_argument("--passphrase-env", help="environment variable holding the key passphrase")


def _setup_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", required=True,
                   help="stream log events as they happen (until Ctrl-C)")


def _run_daemon(args: argparse.Namespace) -> int:
    from crowdmesh.daemon.runner import run_daemon

    if not args.config:
        raise UsageError("usage", "crowdmesh daemon needs --config FILE")
    status = 0
    try:
        cfg = load_config(args.config)
        trio.run(run_daemon, cfg, Path(args.config))
    except* CrowdmeshError as group:  # trio's nurseries deliver it grouped
        status = _fail(group, EXIT_CONFIG)
    return status


def _keys_setup(p: argparse.ArgumentParser) -> None:
    from crowdmesh.daemon.wallet import setup_keys_parser

    setup_keys_parser(p)


def _keys_run(args: argparse.Namespace) -> int:
    from crowdmesh.daemon.wallet import run_keys

    return run_keys(args)


def _db_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="default: data_dir of --config")


def _check_db(args: argparse.Namespace) -> int:
    from crowdmesh.daemon.offline import check_db_command

    return check_db_command(args)


def _reindex(args: argparse.Namespace) -> int:
    from crowdmesh.daemon.offline import reindex_command

    return reindex_command(args)


def _testnet_setup(p: argparse.ArgumentParser) -> None:
    from crowdmesh.daemon.testnet import setup_testnet_parser

    setup_testnet_parser(p)


def _testnet_run(args: argparse.Namespace) -> int:
    from crowdmesh.daemon.testnet import run_testnet_command

    return run_testnet_command(args)


COMMANDS: Final[dict[str, Command]] = {
    "daemon": Command("run the daemon (needs --config)", _no_args, local=_run_daemon),
    "status": Command("node summary", _no_args, _simple("status")),
    "peers": Command("connected peers", _no_args, _simple("peers")),
    "chain": Command("recent blocks", _setup_chain, _chain),
    "block": Command("one block by height or hash", _setup_block, _simple("block", "ref")),
    "tx": Command("one transaction by id", _setup_tx, _simple("tx", "txid")),
    "mempool": Command("pending transactions", _no_args, _simple("mempool")),
    "balance": Command("balance and nonce of an account", _setup_balance, _balance),
    "send": Command("sign and submit a transfer", _setup_send, _send),
    "mine": Command("set the mining mode or mine N blocks", _setup_mine, _mine),
    "logs": Command("follow the daemon's log events", _setup_logs, _logs, timeout=None),
    "stop": Command("stop the daemon gracefully", _no_args, _simple("stop")),
    "wait-ready": Command("wait until the daemon serves", _no_args, _wait_ready, timeout=60.0),
    "keys": Command("account keys: new, list, show", _keys_setup, local=_keys_run),
    "check-db": Command("verify a stopped node's database", _db_setup, local=_check_db),
    "reindex": Command("rebuild a stopped node's indexes and state", _db_setup, local=_reindex),
    "testnet": Command("local testnet: init, up, status, down", _testnet_setup,
                       local=_testnet_run),
}


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand (common options go before or after it)."""
    common = _common_options()
    parser = argparse.ArgumentParser(prog="crowdmesh", description=__doc__.split("\n")[0],
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, parents=[common])
        if cmd.setup is not None:
            cmd.setup(p)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and fill the common options' defaults."""
    args = build_parser().parse_args(argv)
    defaults = {"config": None, "socket": None, "json": False,
                "timeout": COMMANDS[args.command].timeout}
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


async def _run_client(cmd: Command, args: argparse.Namespace) -> Any:
    assert cmd.handler is not None
    return await cmd.handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crowdmesh`` command; returns the exit status."""
    args = parse_args(argv)
    cmd = COMMANDS[args.command]
    status = 0
    try:
        if cmd.local is not None:
            return cmd.local(args)
        render(trio.run(_run_client, cmd, args), args.json, title=args.command)
    except* DaemonUnavailable as group:
        status = _fail(group, EXIT_UNREACHABLE)
    except* CrowdmeshError as group:
        status = _fail(group, EXIT_ERROR)
    except* trio.TooSlowError:
        print(f"error: timeout: no answer within {args.timeout} s", file=sys.stderr)
        status = EXIT_ERROR
    except* KeyboardInterrupt:
        status = 130
    return status


def _fail(group: BaseExceptionGroup[Any], status: int) -> int:
    for exc in _leaves(group):
        print(f"error: {exc}", file=sys.stderr)
    return status


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [group]


if __name__ == "__main__":
    sys.exit(main())
