"""Command group ``account``: the daemon's own signing account (``[account]`` in its config).

Rule: ``pay`` and ``call`` are signed by the daemon, not by the CLI (unlike ``send``, which
signs with a local key file). Each carries an ``--id``; repeating a command with the same id
returns the call already made, so a retry after a timeout never pays twice (the daemon
remembers the ids of its newest 4,096 final calls). The daemon keeps the call until it is final
and resubmits it after a restart or a reorg; a refused call is forgotten, so its id may retry.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Final

from crowdmesh.daemon.client.cli_command import CommandGroup, rpc_command

__all__ = ["GROUP"]


def _id_option(p: argparse.ArgumentParser) -> None:
    # why built here: the parser is built once per command run, so each run gets a fresh id
    p.add_argument("--id", dest="call_id", default=uuid.uuid4().hex,
                   help="call id, to make a retry safe (default: a fresh random id)")


def _setup_pay(p: argparse.ArgumentParser) -> None:
    p.add_argument("to", help="recipient account id (64 hex)")
    p.add_argument("amount", type=int)
    _id_option(p)


def _setup_call(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", help="transaction kind (contract), e.g. transfer")
    p.add_argument("payload", help="contract payload as hex")
    _id_option(p)


GROUP: Final = CommandGroup("account", "the daemon's signing account and its calls", {
    "account": rpc_command("the daemon's account, balance and calls in flight", "account"),
    "pay": rpc_command("pay from the daemon's account (signed by the daemon)", "account_pay",
                       "to", "amount", "call_id", setup=_setup_pay),
    "call": rpc_command("send a contract call from the daemon's account", "account_call",
                        "kind", "payload", "call_id", setup=_setup_call),
})
