"""The built-in chaos load: signed transfers among the testnet's accounts (``chaos_base`` Rule 1).

Invariants:
- Transfers go only between the funded ``user<k>`` accounts and the nodes' miner accounts, so
  the supply check can sum exactly those balances.
- Each step submits one transfer to a random available node over the load's own control
  connection (not the harness's), bounded by :data:`SUBMIT_TIMEOUT_S`; a refused, lost or
  timed-out submission is counted, never raised.
- Nonces are tracked here; after each round of checks :meth:`TransferLoad.resync` restarts each
  sender at the highest ``pending_nonce`` any node reports, so a transaction lost with a
  SIGKILLed daemon (or refused) leaves no permanent gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.client.chaos_base import ChaosRun, Load, LoadFactory, LoadSetup
from crowdmesh.daemon.client.rpc import ControlClient, DaemonUnavailable
from crowdmesh.daemon.client.wallet import TestnetWallet
from crowdmesh.errors import CrowdmeshError

__all__ = ["LOADS", "TransferLoad"]

SUBMIT_TIMEOUT_S: Final = 5.0


@dataclass(slots=True)
class TransferLoad:
    """``rate`` transfers per second from ``accounts`` funded users."""

    root: Path
    accounts: int
    recipients: list[bytes]
    rate: float = 4.0
    name: str = "transfers"
    submitted: int = 0
    refused: int = 0
    failed: int = 0
    _wallet: TestnetWallet = field(init=False)
    _clients: dict[int, ControlClient] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._wallet = TestnetWallet(self.root, self.accounts)

    async def step(self, run: ChaosRun) -> None:
        nodes = run.available()
        await trio.sleep(1.0 / self.rate)
        if not nodes:
            return
        node = run.rng.choice(nodes)
        sender = run.rng.randrange(self.accounts)
        tx = self._wallet.transfer(sender, run.rng.choice(self.recipients),
                                   run.rng.randint(1, 1000))
        with trio.move_on_after(SUBMIT_TIMEOUT_S) as scope:
            try:
                client = await self._client(node.index, node.socket)
                await client.call("submit_tx", [tx.encode().hex()])
                run.fees[tx.txid.hex()] = tx.fee
                run.sent_to[tx.txid.hex()] = node.index
                self.submitted += 1
            except (DaemonUnavailable, OSError, trio.BrokenResourceError):
                self.failed += 1
                await self._drop(node.index)
            except CrowdmeshError:  # refused (e.g. a nonce the node already has)
                self.refused += 1
        if scope.cancelled_caught:
            self.failed += 1
            await self._drop(node.index)

    async def _client(self, index: int, socket: Path) -> ControlClient:
        if index not in self._clients:
            self._clients[index] = await ControlClient.connect(socket)
        return self._clients[index]

    async def _drop(self, index: int) -> None:
        client = self._clients.pop(index, None)
        if client is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await client.aclose()

    async def resync(self, run: ChaosRun) -> None:
        for index in list(self._clients):
            await self._drop(index)  # a restarted daemon has a new socket
        nonces = []
        for key in self._wallet.keys:
            rows = await run.rpc_all("balance", [key.public.hex()])
            nonces.append(max(int(r.get("pending_nonce", r["nonce"])) for r in rows))
        self._wallet.continue_from(nonces)

    def stats(self) -> JsonObj:
        return {"submitted": self.submitted, "refused": self.refused, "failed": self.failed}


def transfer_load(setup: LoadSetup) -> Load:
    """The default load (a factory, since a load needs the testnet's keys)."""
    return TransferLoad(setup.root, setup.accounts, list(setup.recipients), setup.rate)


LOADS: Final[dict[str, LoadFactory]] = {"transfers": transfer_load}
