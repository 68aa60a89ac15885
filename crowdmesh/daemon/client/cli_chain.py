"""Command group ``chain``: the chain and mempool as the daemon sees them, balances, transfers.

Rule: every command here is a call on the control socket; ``send`` signs locally with a key of
``--data-dir`` (see ``crowdmesh.daemon.client.wallet``) and submits only the signed
transaction.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

from crowdmesh.daemon.client.cli_command import (
    CommandGroup,
    Invocation,
    client_command,
    rpc_command,
)
from crowdmesh.daemon.client.wallet import (
    TransferRequest,
    data_dir_of,
    passphrase_from_env,
    resolve_account,
    send_transfer,
)

__all__ = ["GROUP"]


def _parse_ref(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _setup_block(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", type=_parse_ref, help="height or block hash (hex)")


def _setup_tx(p: argparse.ArgumentParser) -> None:
    p.add_argument("txid", help="transaction id (hex)")


def _setup_chain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=10, help="how many recent blocks (default 10)")


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


async def _chain(inv: Invocation) -> Any:
    head = await inv.call("head")
    top = int(head.get("height", 0))
    count = inv.args.count
    blocks = [await inv.call("block", [h]) for h in range(top, max(-1, top - count), -1)]
    return [_block_row(b) for b in blocks]


def _block_row(b: dict[str, Any]) -> dict[str, Any]:
    return {"height": b.get("height"), "hash": str(b.get("hash", ""))[:16],
            "time": b.get("timestamp"), "txs": b.get("tx_count", len(b.get("txids", []))),
            "miner": str(b.get("miner", ""))[:16]}


async def _balance(inv: Invocation) -> Any:
    return await inv.call("balance", [resolve_account(inv.args.account, inv.args.data_dir)])


async def _send(inv: Invocation) -> Any:
    args = inv.args
    data_dir = data_dir_of(args.data_dir, inv.options.config)
    passphrase = passphrase_from_env(args.passphrase_env)
    request = TransferRequest(sender=args.sender, to=args.to, amount=args.amount, fee=args.fee,
                              nonce=args.nonce)
    return await send_transfer(inv.call, data_dir, request, passphrase)


GROUP: Final = CommandGroup("chain", "chain and mempool queries, balances, transfers", {
    "status": rpc_command("node summary", "status"),
    "peers": rpc_command("connected peers", "peers"),
    "head": rpc_command("the head block's header", "head"),
    "chain": client_command("recent blocks", _chain, _setup_chain),
    "block": rpc_command("one block by height or hash", "block", "ref", setup=_setup_block),
    "tx": rpc_command("one transaction by id", "tx", "txid", setup=_setup_tx),
    "mempool": rpc_command("pending transactions", "mempool"),
    "balance": client_command("balance and nonce of an account", _balance, _setup_balance),
    "send": client_command("sign and submit a transfer", _send, _setup_send),
})
