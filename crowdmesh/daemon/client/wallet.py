"""Account keys on the client side: the keystore commands, signing a transfer, name lookup.

Rule 1: keys live in a :class:`Keystore` (``<data_dir>/keys``, files 0600); secrets never go
to the daemon: :func:`send_transfer` signs locally and submits only the signed transaction.
Rule 2: a passphrase is read from an environment variable (:func:`passphrase_from_env`), never
from argv, where ``ps`` would show it; without one keys are stored unencrypted.
Rule 3: the nonce is the request's, else the daemon's ``pending_nonce`` (the head nonce advanced
past the sender's pooled and gap-buffered transactions, so consecutive sends before a block get
consecutive nonces; an older daemon without it gives the head-state ``nonce``), the chain id
comes from ``status``, and the default fee is the minimum: intrinsic gas × ``min_gas_price``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.tx import Transaction, make_transaction, minimum_fee
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import Rng
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.config import load_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.errors import UsageError

__all__ = [
    "Call",
    "TestnetWallet",
    "TransferRequest",
    "data_dir_of",
    "find_key",
    "key_rows",
    "new_key",
    "passphrase_from_env",
    "resolve_account",
    "send_transfer",
]

_HEX_ACCOUNT = re.compile(r"^[0-9a-fA-F]{64}$")
Call = Callable[[str, Any], Awaitable[Any]]
"""One JSON-RPC call on a daemon: ``await call(method, params)`` (e.g. ``Endpoint.call``)."""


def data_dir_of(data_dir: Path | None, config: Path | str | None) -> Path:
    """The data dir: ``data_dir`` if given, else the ``data_dir`` of the config file.

    Raises:
        UsageError: ``no-data-dir`` if neither is given.
        ConfigError: the config file cannot be read or parsed.
    """
    if data_dir:
        return Path(data_dir)
    if config:
        return load_config(config).data_dir
    raise UsageError("no-data-dir", "give --data-dir DIR or --config FILE")


def passphrase_from_env(var: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The passphrase held by environment variable ``var`` (``None`` if no variable is named).

    Raises:
        UsageError: ``no-passphrase`` if the variable is named but empty or unset.
    """
    if not var:
        return None
    value = (os.environ if environ is None else environ).get(var)
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


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A transfer to sign: key name, recipient (hex or key name), amount, optional fee/nonce."""

    sender: str
    to: str
    amount: int
    fee: int | None = None  # None: the minimum fee
    nonce: int | None = None  # None: the daemon's pending_nonce


async def send_transfer(call: Call, data_dir: Path, request: TransferRequest,
                        passphrase: bytes | None) -> JsonObj:
    """Sign ``request`` with a key of ``data_dir``'s keystore and submit it through ``call``.

    Returns:
        ``{"txid", "nonce", "fee"}`` plus the daemon's ``submit_tx`` answer.

    Raises:
        UsageError: unknown key or recipient, or a non-positive amount.
        RpcCallError: the daemon refused the transaction (e.g. ``bad-tx-nonce``).
    """
    key = Keystore.in_data_dir(data_dir).load(request.sender, passphrase)
    to = bytes.fromhex(resolve_account(request.to, data_dir))
    if request.amount <= 0:
        raise UsageError("bad-amount", "amount must be positive")
    status = await call("status", None)
    account = await call("balance", [key.public.hex()])
    nonce = request.nonce if request.nonce is not None else int(
        account.get("pending_nonce", account.get("nonce", 0)))
    payload = transfer_payload(to, request.amount)
    fee = request.fee
    if fee is None:
        fee = minimum_fee(payload, int(status.get("min_gas_price", 0)))
    tx = make_transaction(key, str(status["chain_id"]), nonce, TRANSFER, payload, fee)
    result = await call("submit_tx", [tx.encode().hex()])
    return {"txid": tx.txid.hex(), "nonce": nonce, "fee": fee, **(result or {})}


# ---- keys ---------------------------------------------------------------------------------


def new_key(store: Keystore, name: str, passphrase: bytes | None, rng: Rng) -> JsonObj:
    """Create key ``name`` in ``store``; describe it.

    Raises:
        UsageError: ``key-exists`` or a bad name (from the keystore).
    """
    key = AccountKey.generate(rng)
    path = store.save(name, key, passphrase, rng)
    return {"name": name, "account": key.public.hex(), "encrypted": passphrase is not None,
            "path": str(path)}


def key_rows(store: Keystore) -> list[JsonObj]:
    """One row per key file: name, account, whether encrypted, and any problem reading it."""
    return [{"name": e.name, "account": e.public.hex() if e.public else "-",
             "encrypted": e.encrypted, "problem": e.problem or ""}
            for e in store.list_keys()]


def find_key(store: Keystore, name: str) -> JsonObj:
    """The row of key ``name`` (see :func:`key_rows`).

    Raises:
        UsageError: ``key-not-found``.
    """
    for row in key_rows(store):
        if row["name"] == name:
            return row
    raise UsageError("key-not-found", f"no key named {name!r} in {store.directory}")


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
