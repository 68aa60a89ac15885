"""Helpers shared by the network functional tests: a running testnet and a transfer wallet.

Every wait is bounded; every daemon is a child of the test's nursery (cancelling the test kills
them); the testnet directory stays under pytest's tmp_path, so it is kept on failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from crowdmesh.chain import Transaction, make_transaction, transfer_payload
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.testnet import NodeHandle, Testnet, TestnetSpec, init_testnet

log = logging.getLogger("crowdmesh.functional")

FEE = 100_000


class Wallet:
    """The testnet's funded accounts, with locally tracked nonces."""

    def __init__(self, root: Path) -> None:
        genesis = json.loads((root / "genesis.json").read_text())
        self.chain_id: str = genesis["chain_id"]
        store = Keystore(root / "keys")
        self.keys: list[AccountKey] = [store.load(e.name, None) for e in store.list_keys()]
        self.nonces = [0] * len(self.keys)

    def transfer(self, sender: int, to: bytes, amount: int) -> Transaction:
        """A signed transfer from account ``sender`` with its next nonce."""
        tx = make_transaction(self.keys[sender], self.chain_id, self.nonces[sender], "transfer",
                              transfer_payload(to, amount), FEE)
        self.nonces[sender] += 1
        return tx


@asynccontextmanager
async def running_testnet(tmp: Path, n: int = 5, seed: int = 7,
                          **spec: Any) -> AsyncIterator[Testnet]:
    """Init and start an ``n``-node testnet; after the block, SIGTERM every daemon and check
    each stopped within 5 s with exit code 0 and no traceback."""
    root = tmp / "tn"
    init_testnet(root, TestnetSpec(n=n, seed=seed, **spec))
    async with trio.open_nursery() as nursery:
        net = Testnet(root, nursery)
        try:
            with trio.fail_after(90):
                await net.start_all()
            log.info("testnet of %d nodes up in %s", n, root)
            yield net
            stop_times = await net.stop_all()  # each: exit 0, no traceback (checked inside)
            assert max(stop_times, default=0.0) < 5.0, f"slow SIGTERM stops: {stop_times}"
        finally:
            nursery.cancel_scope.cancel()


async def wait_until(pred: Any, timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll async ``pred()`` until true; AssertionError naming ``what`` on timeout."""
    with trio.move_on_after(timeout):
        while not await pred():
            await trio.sleep(poll)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def balances(node: NodeHandle, accounts: list[bytes]) -> list[int]:
    """Head balances of ``accounts`` on ``node``."""
    return [(await node.rpc("balance", [a.hex()]))["balance"] for a in accounts]
