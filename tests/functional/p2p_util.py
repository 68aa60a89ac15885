"""Helpers shared by the network functional tests: a running testnet and a transfer wallet.

Every wait is bounded; every daemon is a child of the test's nursery (cancelling the test kills
them). As in ``framework.py``, testnets live under a short ``/tmp/cmp-*`` directory (Unix socket
paths are capped at 107 bytes), removed on success and kept on failure, when its path and the
tail of the combined logs are printed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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


@contextmanager
def fresh_testnet_dir() -> Iterator[Path]:
    """A short fresh directory for a testnet: removed on success, kept (and shown) on failure."""
    root = Path(tempfile.mkdtemp(prefix="cmp-", dir="/tmp"))
    try:
        yield root / "tn"
    except BaseException:
        logs = sorted(root.glob("tn/node*/daemon.log"))
        tail = [f"{p.parent.name} {line}" for p in logs
                for line in p.read_text(errors="replace").splitlines()[-15:]]
        print(f"\n== testnet kept in {root}; last log lines:\n" + "\n".join(tail))
        raise
    shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def running_testnet(n: int = 5, seed: int = 7, **spec: Any) -> AsyncIterator[Testnet]:
    """Init and start an ``n``-node testnet; after the block, SIGTERM every daemon and check
    each stopped within 5 s with exit code 0 and no traceback."""
    with fresh_testnet_dir() as root:
        async with _started(root, n, seed, spec) as net:
            yield net


@asynccontextmanager
async def _started(root: Path, n: int, seed: int, spec: dict[str, Any]) -> AsyncIterator[Testnet]:
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
