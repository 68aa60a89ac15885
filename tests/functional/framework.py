"""Multi-daemon test framework, modelled on Bitcoin Core's ``test_framework``.

A test subclasses :class:`CrowdmeshTestFramework`, sets ``num_nodes`` etc. in
``set_test_params()`` and writes ``async def run_test(self)`` using ``self.nodes`` (a list of
:class:`crowdmesh.daemon.testnet.NodeHandle`) and the helpers below. A pytest function runs it
with ``await MyTest().main()``.

Rules:
- Every daemon is a child of the framework's nursery: a failing or cancelled test kills them.
- On success each node must stop within ``STOP_TIMEOUT_S`` of SIGTERM with exit code 0 and no
  traceback (checked by ``stop_node``), and the data dir is removed. On failure the data dir is
  kept, its path and the tail of the combined logs are printed.
- Knobs (environment): ``CROWDMESH_TEST_SEED`` (ports and chain id; logged at start),
  ``CROWDMESH_TIMEOUT_FACTOR`` (multiplies every wait), ``CROWDMESH_NOCLEANUP=1`` (keep data).
- Data dirs live under a short ``/tmp/cmf-*`` path: Unix socket paths are capped at 107 bytes.
- A daemon that cannot start exits 78 (``EX_CONFIG``) with one ``error: <code>: …`` line and no
  traceback (``assert_start_raises_init_error``).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import trio

from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.tx import make_transaction, minimum_fee
from crowdmesh.daemon.config import load_config, render_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.testnet import (
    NodeHandle,
    Testnet,
    TestnetSpec,
    init_testnet,
)

log = logging.getLogger("crowdmesh.functional")


def _env_seed() -> int:
    raw = os.environ.get("CROWDMESH_TEST_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


class CrowdmeshTestFramework:
    """Base class: override ``set_test_params`` and ``run_test``."""

    num_nodes = 2
    topology = "line"
    mining_mode = "on-demand"
    accounts = 4
    start_nodes = True

    def __init__(self) -> None:
        self.seed = _env_seed()
        self.timeout_factor = float(os.environ.get("CROWDMESH_TIMEOUT_FACTOR", "1"))
        self.nocleanup = os.environ.get("CROWDMESH_NOCLEANUP") == "1"
        self.set_test_params()
        self.root = Path(tempfile.mkdtemp(prefix="cmf-", dir="/tmp"))
        self.testnet: Testnet | None = None
        self.nonces: dict[str, int] = {}
        self.min_gas_price: int | None = None

    def set_test_params(self) -> None:
        """Override to set ``num_nodes``, ``topology``, ``mining_mode``…"""

    async def run_test(self) -> None:
        """Override: the test body."""
        raise NotImplementedError

    @property
    def nodes(self) -> list[NodeHandle]:
        assert self.testnet is not None
        return self.testnet.nodes

    async def main(self) -> None:
        """Set up, run ``run_test``, stop every node cleanly, clean up (or keep on failure)."""
        log.info("seed=%d dir=%s (CROWDMESH_TEST_SEED=%d reproduces the ports and chain)",
                 self.seed, self.root, self.seed)
        spec = TestnetSpec(n=self.num_nodes, seed=self.seed, topology=self.topology,
                           accounts=self.accounts, mining_mode=self.mining_mode)
        init_testnet(self.root, spec)
        passed = False
        try:
            async with trio.open_nursery() as nursery:
                self.testnet = Testnet(self.root, nursery, self.timeout_factor)
                if self.start_nodes:
                    await self.testnet.start_all()
                await self.run_test()
                await self.testnet.stop_all()
            passed = True
        finally:
            self._finish(passed)

    def _finish(self, passed: bool) -> None:
        if passed and not self.nocleanup:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        tail = self.testnet.combined_logs().splitlines()[-60:] if self.testnet else []
        print(f"\n== data kept in {self.root} (seed {self.seed}); last combined log lines:")
        print("\n".join(tail))

    # ---- helpers ------------------------------------------------------------------------

    @property
    def net(self) -> Testnet:
        assert self.testnet is not None
        return self.testnet

    async def assert_start_raises_init_error(self, config: Path, expected: str) -> str:
        """Run a daemon on ``config``; see ``NodeHandle.assert_start_raises_init_error``."""
        with trio.fail_after(60 * self.timeout_factor):
            return await self.net.nodes[0].assert_start_raises_init_error(expected, config)

    def config_with_socket(self, node: NodeHandle, name: str) -> Path:
        """A copy of ``node``'s config that differs only in its control socket path."""
        cfg = replace(load_config(node.config), control_socket=self.root / f"{name}.sock")
        path = self.root / f"{name}.toml"
        path.write_text(render_config(cfg))
        return path

    def user_key(self, k: int):
        """The funded account key ``user<k>``."""
        return Keystore(self.root / "keys").load(f"user{k}", None)

    async def transfer(self, node: NodeHandle, frm: int, to: int, amount: int) -> str:
        """Sign a transfer user<frm> → user<to> (nonces tracked here) and submit it to ``node``."""
        key, dest = self.user_key(frm), self.user_key(to)
        sender = key.public.hex()
        if sender not in self.nonces:
            self.nonces[sender] = int((await node.rpc("balance", [sender]))["nonce"])
        chain_id = f"testnet-{self.seed}"
        if self.min_gas_price is None:
            self.min_gas_price = int((await node.rpc("status"))["min_gas_price"])
        payload = transfer_payload(dest.public, amount)
        tx = make_transaction(key, chain_id, self.nonces[sender], TRANSFER, payload,
                              minimum_fee(payload, self.min_gas_price))
        self.nonces[sender] += 1
        result = await node.rpc("submit_tx", [tx.encode().hex()])
        assert result["txid"] == tx.txid.hex()
        return result["txid"]
