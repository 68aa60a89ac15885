"""Multi-daemon test framework, modelled on Bitcoin Core's ``test_framework``.

A test subclasses :class:`CrowdmeshTestFramework`, sets ``num_nodes`` etc. in
``set_test_params()`` and writes ``async def run_test(self)`` using ``self.nodes`` (a list of
:class:`crowdmesh.daemon.client.harness.NodeHandle`) and the helpers below. A pytest function
runs it with ``await MyTest().main()``.

Rules:
Tests that need no subclass use :func:`running_testnet` directly; ``main`` runs on it too, so
both share one lifecycle:
- Every daemon is a child of the testnet's nursery: a failing or cancelled test kills them.
- On success each node must stop within :data:`SIGTERM_LIMIT_S` of SIGTERM with exit code 0 and
  no traceback (checked by ``stop_node``), and the data dir is removed. On failure the data dir
  is kept, its path and the tail of the combined logs are printed.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet
from crowdmesh.daemon.config import load_config, render_config

log = logging.getLogger("crowdmesh.functional")

SIGTERM_LIMIT_S = 5.0  # issue: SIGTERM stops a daemon within 5 s


@asynccontextmanager
async def running_testnet(root: Path | None = None, *, start: bool = True,
                          timeout_factor: float = 1.0, nocleanup: bool = False,
                          **spec: Any) -> AsyncIterator[Testnet]:
    """Init a testnet of ``TestnetSpec(**spec)`` in ``root`` (default: a fresh short /tmp dir),
    start it unless ``start`` is false, and yield it. Afterwards every running daemon gets
    SIGTERM and must stop within :data:`SIGTERM_LIMIT_S`, exit 0, no traceback."""
    root = root or Path(tempfile.mkdtemp(prefix="cmf-", dir="/tmp"))
    init_testnet(root, TestnetSpec(**spec))
    net: Testnet | None = None
    passed = False
    try:
        async with trio.open_nursery() as nursery:
            net = Testnet(root, nursery, timeout_factor)
            try:
                if start:
                    with trio.fail_after(90 * timeout_factor):
                        await net.start_all()
                yield net
                stop_times = await net.stop_all()
                assert max(stop_times, default=0.0) < SIGTERM_LIMIT_S, stop_times
            finally:
                nursery.cancel_scope.cancel()
        passed = True
    finally:
        _finish(root, net, passed and not nocleanup)


def _finish(root: Path, net: Testnet | None, remove: bool) -> None:
    if remove:
        shutil.rmtree(root, ignore_errors=True)
        return
    tail = net.combined_logs().splitlines()[-60:] if net else []
    print(f"\n== data kept in {root}; last combined log lines:")
    print("\n".join(tail))


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float, what: str,
                     poll: float = 0.1) -> None:
    """Poll async ``pred()`` until true; AssertionError naming ``what`` on timeout."""
    with trio.move_on_after(timeout):
        while not await pred():
            await trio.sleep(poll)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def balances(node: NodeHandle, accounts: list[bytes]) -> list[int]:
    """Head balances of ``accounts`` on ``node``."""
    return [(await node.rpc("balance", [a.hex()]))["balance"] for a in accounts]


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

    def set_test_params(self) -> None:
        """Override to set ``num_nodes``, ``topology``, ``mining_mode``…"""

    async def run_test(self) -> None:
        """Override: the test body."""
        raise NotImplementedError

    @property
    def nodes(self) -> list[NodeHandle]:
        return self.net.nodes

    @property
    def net(self) -> Testnet:
        assert self.testnet is not None
        return self.testnet

    async def main(self) -> None:
        """Set up, run ``run_test``, stop every node cleanly, clean up (or keep on failure)."""
        log.info("seed=%d dir=%s (CROWDMESH_TEST_SEED=%d reproduces the ports and chain)",
                 self.seed, self.root, self.seed)
        async with running_testnet(
            self.root, start=self.start_nodes, timeout_factor=self.timeout_factor,
            nocleanup=self.nocleanup, n=self.num_nodes, seed=self.seed, topology=self.topology,
            accounts=self.accounts, mining_mode=self.mining_mode,
        ) as net:
            self.testnet = net
            await self.run_test()

    # ---- helpers ------------------------------------------------------------------------

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
