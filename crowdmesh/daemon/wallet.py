"""CLI helpers that use account keys: ``keys new|list|show``, ``send`` and name lookup.

Rule 1: keys live in a :class:`Keystore` (``<data_dir>/keys``, files 0600); secrets never go
to the daemon: ``send`` signs locally and submits only the signed transaction.
Rule 2: a passphrase is read from the environment variable named by ``--passphrase-env``
(never from argv, where ``ps`` would show it); without it keys are stored unencrypted.
Rule 3: the nonce is ``--nonce`` or the daemon's ``pending_nonce`` (the head nonce advanced past
the sender's pooled and gap-buffered transactions, so consecutive sends before a block get
consecutive nonces; an older daemon without it gives the head-state ``nonce``), the chain id
comes from ``status``, and the default fee is the minimum: intrinsic gas × ``min_gas_price``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.tx import Transaction, make_transaction, minimum_fee
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.config import load_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.errors import UsageError

__all__ = ["TestnetWallet", "resolve_account", "run_keys", "send_transfer", "setup_keys_parser"]

_HEX_ACCOUNT = re.compile(r"^[0-9a-fA-F]{64}$")
Rpc = Callable[[argparse.Namespace, str, Any], Awaitable[Any]]


def _data_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if args.config:
        return load_config(args.config).data_dir
    raise UsageError("no-data-dir", "give --data-dir DIR or --config FILE")


def _passphrase(args: argparse.Namespace) -> bytes | None:
    var = getattr(args, "passphrase_env", None)
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise UsageError("no-passphrase", f"environment variable {var} is empty or unset")
    return value.encode()


def resolve_account(text: str, data_dir: Path | None) -> str:
    """An account id from 64 hex digits or from a key name in ``data_dir``'s keystore.

    Raises:
        UsageError: ``unknown-account`` if it is neither.
    """
    if _HEX_ACCOUNT.match(text):
        return text.lower()
    if data_dir is not None:
        for entry in Keystore.in_data_dir(data_dir).list_keys():
            if entry.name == text and entry.public is not None:
                return entry.public.hex()
    raise UsageError("unknown-account", f"{text!r} is not 64 hex digits nor a key in --data-dir")


async def send_transfer(args: argparse.Namespace, rpc: Rpc) -> Any:
    """Sign a transfer with key ``args.sender`` and submit it; return the daemon's answer."""
    data_dir = _data_dir(args)
    key = Keystore.in_data_dir(data_dir).load(args.sender, _passphrase(args))
    to = bytes.fromhex(resolve_account(args.to, data_dir))
    if args.amount <= 0:
        raise UsageError("bad-amount", "amount must be positive")
    status = await rpc(args, "status", None)
    account = await rpc(args, "balance", [key.public.hex()])
    nonce = args.nonce if args.nonce is not None else int(
        account.get("pending_nonce", account.get("nonce", 0)))
    chain_id = str(status["chain_id"])
    payload = transfer_payload(to, args.amount)
    fee = args.fee
    if fee is None:
        fee = minimum_fee(payload, int(status.get("min_gas_price", 0)))
    tx = make_transaction(key, chain_id, nonce, TRANSFER, payload, fee)
    result = await rpc(args, "submit_tx", [tx.encode().hex()])
    return {"txid": tx.txid.hex(), "nonce": nonce, "fee": fee, **(result or {})}


# ---- keys ---------------------------------------------------------------------------------


def setup_keys_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``crowdmesh keys``."""
    p.add_argument("action", choices=["new", "list", "show"])
    p.add_argument("name", nargs="?", help="key name (new, show)")
    p.add_argument("--data-dir", type=Path, help="default: data_dir of --config")
    p.add_argument("--passphrase-env", help="environment variable holding a passphrase (new)")


def _key_new(args: argparse.Namespace, store: Keystore) -> dict[str, Any]:
    if not args.name:
        raise UsageError("usage", "keys new NAME")
    rng = SystemRng()
    key = AccountKey.generate(rng)
    passphrase = _passphrase(args)
    path = store.save(args.name, key, passphrase, rng)
    return {"name": args.name, "account": key.public.hex(), "encrypted": passphrase is not None,
            "path": str(path)}


def _key_rows(store: Keystore) -> list[dict[str, Any]]:
    return [{"name": e.name, "account": e.public.hex() if e.public else "-",
             "encrypted": e.encrypted, "problem": e.problem or ""}
            for e in store.list_keys()]


def run_keys(args: argparse.Namespace) -> int:
    """Run ``crowdmesh keys <action>``; return the exit status."""
    from crowdmesh.daemon.cli import render

    store = Keystore.in_data_dir(_data_dir(args))
    if args.action == "new":
        render(_key_new(args, store), args.json, "new key")
        return 0
    rows = _key_rows(store)
    if args.action == "show":
        match = [r for r in rows if r["name"] == args.name]
        if not match:
            raise UsageError("key-not-found", f"no key named {args.name!r} in {store.directory}")
        render(match[0], args.json, args.name)
        return 0
    if args.json or rows:
        render(rows, args.json, f"keys in {store.directory}")
    else:
        Console().print(Table(title=f"no keys in {store.directory}"))
    return 0


class TestnetWallet:
    """A local testnet's funded ``user<k>`` accounts, signing transfers with nonces tracked
    here and the genesis's minimum fee (the demo, the benchmarks and the functional tests)."""

    __test__ = False  # not a pytest class despite the name

    def __init__(self, root: Path, accounts: int) -> None:
        genesis = Genesis.from_json((root / "genesis.json").read_text())
        self.chain_id = genesis.chain_id
        self.min_gas_price = genesis.min_gas_price
        store = Keystore(root / "keys")
        self.keys = [store.load(f"user{k}", None) for k in range(accounts)]
        self.nonces = [0] * accounts

    def continue_from(self, pending_nonces: list[int]) -> None:
        """Carry on after transactions sent earlier (each account's ``pending_nonce``)."""
        self.nonces = list(pending_nonces)

    def transfer(self, sender: int, to: bytes, amount: int) -> Transaction:
        """A signed transfer from ``user<sender>`` with its next nonce and the minimum fee."""
        payload = transfer_payload(to, amount)
        tx = make_transaction(self.keys[sender], self.chain_id, self.nonces[sender], TRANSFER,
                              payload, minimum_fee(payload, self.min_gas_price))
        self.nonces[sender] += 1
        return tx
