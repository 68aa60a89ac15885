"""The multi-daemon harness: testnet daemons as children of a trio nursery (Bitcoin's
``TestNode`` and test framework object), for the functional tests, the demo and the benchmarks.

Rule 1 (processes): :class:`NodeHandle` starts a daemon as a child of a trio nursery, so
cancelling the test or the demo kills it; a daemon that must stop does so on SIGTERM with exit
code 0 and no traceback (:meth:`NodeHandle.stop_node` checks).
Rule 2 (waits): every wait is bounded (scaled by ``timeout_factor``) and its failure message
shows every node's state: the log tail of a node, every node's tip or mempool size.
Rule 3 (layout): the testnet on disk is written by
:func:`~crowdmesh.daemon.client.testnet.init_testnet`; the harness only reads it, except
:meth:`Testnet.split` and :meth:`Testnet.join`, which rewrite the bootstrap lists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.client.exits import EXIT_CONFIG
from crowdmesh.daemon.client.rpc import ControlClient, DaemonUnavailable
from crowdmesh.daemon.client.testnet import (
    NodeInfo,
    daemon_command,
    degrees,
    load_layout,
    topology_edges,
    write_layout,
)

__all__ = ["NodeHandle", "Testnet"]

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.05


class NodeHandle:
    """One daemon process of a testnet (Bitcoin's ``TestNode``), driven from a trio nursery."""

    def __init__(self, root: Path, info: NodeInfo, timeout_factor: float = 1.0) -> None:
        self.info = info
        self.index = info.index
        self.datadir = root / f"node{info.index}"
        self.config = self.datadir / "crowdmesh.toml"
        self.socket = self.datadir / "control.sock"
        self.log_path = self.datadir / "daemon.log"
        self.timeout_factor = timeout_factor
        self.process: trio.Process | None = None
        self._log_offset = 0
        self._client: ControlClient | None = None

    def __repr__(self) -> str:
        return f"<node{self.index} port={self.info.port}>"

    @property
    def running(self) -> bool:
        """True while the daemon process is alive."""
        return self.process is not None and self.process.returncode is None

    async def start(self, nursery: trio.Nursery, extra_env: dict[str, str] | None = None) -> None:
        """Spawn the daemon (a child of ``nursery``: cancelling it kills the daemon)."""
        assert not self.running, f"{self} is already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        with self.log_path.open("ab") as out:
            self.process = await nursery.start(partial(
                trio.run_process, daemon_command(self.config), stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, check=False, env=env))

    def stderr_text(self) -> str:
        """What this run of the daemon wrote so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def _fail(self, what: str) -> AssertionError:
        tail = "\n".join(self.stderr_text().splitlines()[-30:])
        rc = self.process.returncode if self.process else None
        return AssertionError(f"{self} {what} (exit code {rc}); last log lines:\n{tail}")

    async def wait_for_control_socket(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the socket accepts connections; fail fast if the process exits."""
        with trio.move_on_after(timeout * self.timeout_factor):
            while True:
                if not self.running:
                    raise self._fail("exited before its control socket came up")
                try:
                    self._client = await ControlClient.connect(self.socket)
                    return
                except DaemonUnavailable:
                    await trio.sleep(POLL_S)
        raise self._fail(f"control socket not up within {timeout} s")

    async def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait for the socket, then for ``ready``."""
        await self.wait_for_control_socket(timeout)
        with trio.move_on_after(timeout * self.timeout_factor):
            while not (await self.rpc("ready"))["ready"]:
                if not self.running:
                    raise self._fail("exited while warming up")
                await trio.sleep(POLL_S)
            return
        raise self._fail(f"not ready within {timeout} s")

    async def rpc(self, method: str, params: Any = None) -> Any:
        """Call ``method`` on this daemon (one persistent connection)."""
        if self._client is None:
            self._client = await ControlClient.connect(self.socket)
        return await self._client.call(method, params)

    async def _drop_client(self) -> None:
        if self._client is not None:
            with trio.CancelScope(shield=True):
                await self._client.aclose()
            self._client = None

    async def stop_node(self, timeout: float = STOP_TIMEOUT_S, expect_clean: bool = True) -> float:
        """SIGTERM the daemon and wait; return seconds taken.

        Raises:
            AssertionError: it did not exit in time, exited non-zero, or printed a traceback.
        """
        assert self.process is not None
        await self._drop_client()
        started = time.monotonic()
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout * self.timeout_factor):
            await self.process.wait()
        elapsed = time.monotonic() - started
        if self.running:
            self.process.kill()
            await self.process.wait()
            raise self._fail(f"did not stop within {timeout} s of SIGTERM")
        if expect_clean:
            if self.process.returncode != 0:
                raise self._fail("exited non-zero after SIGTERM")
            if "Traceback" in self.stderr_text():
                raise self._fail("printed a traceback")
        return elapsed

    async def assert_start_raises_init_error(self, expected: str,
                                             config: Path | None = None) -> str:
        """Run a second daemon on ``config`` (default: this node's); it must exit 78
        (EX_CONFIG) with ``expected`` in its one-line error and no traceback. Returns stderr."""
        proc = await trio.run_process(daemon_command(config or self.config), capture_stderr=True,
                                      stdin=subprocess.DEVNULL, check=False)
        err = proc.stderr.decode(errors="replace")
        ok = proc.returncode == EXIT_CONFIG and expected in err and "Traceback" not in err
        assert ok, f"expected exit {EXIT_CONFIG} with {expected!r}, got {proc.returncode}: " \
                   f"{err[-2000:]}"
        return err

    async def kill(self) -> None:
        """SIGKILL the daemon (a crash) and reap it."""
        assert self.process is not None
        await self._drop_client()
        if self.running:
            self.process.kill()
        await self.process.wait()

    async def restart(self, nursery: trio.Nursery) -> None:
        """Stop (if running) and start again, waiting until ready."""
        if self.running:
            await self.stop_node()
        await self.start(nursery)
        await self.wait_ready()

    async def wait_for_log(self, needles: Sequence[str], timeout: float = 30.0) -> None:
        """Wait until every string in ``needles`` appears in this run's log (assert_debug_log)."""
        with trio.move_on_after(timeout * self.timeout_factor):
            while True:
                text = self.stderr_text()
                if all(n in text for n in needles):
                    return
                await trio.sleep(POLL_S * 4)
        missing = [n for n in needles if n not in self.stderr_text()]
        raise self._fail(f"log lacks {missing}")


class Testnet:
    """A running set of :class:`NodeHandle` (Bitcoin's framework object, minus the test)."""

    __test__ = False

    def __init__(self, root: Path, nursery: trio.Nursery, timeout_factor: float = 1.0) -> None:
        self.root = root.resolve()
        self.spec, infos = load_layout(self.root)
        self.nursery = nursery
        self.nodes = [NodeHandle(self.root, info, timeout_factor) for info in infos]
        self.timeout_factor = timeout_factor

    async def start_all(self, progress: Any = None) -> None:
        """Start every daemon and wait until all are ready and share one head."""
        for node in self.nodes:
            await node.start(self.nursery)
        async with trio.open_nursery() as n:
            for node in self.nodes:
                n.start_soon(self._ready_one, node, progress)
        await self.wait_connected()
        await self.sync_blocks()

    async def wait_connected(self, edges: Sequence[tuple[int, int]] | None = None,
                             timeout: float = 30.0) -> None:
        """Wait until every node has at least as many peers as the topology gives it."""
        edges = topology_edges(self.spec.topology, self.spec.n) if edges is None else edges
        want = degrees(edges, len(self.nodes))
        with trio.move_on_after(timeout * self.timeout_factor):
            while True:
                have = [len(await node.rpc("peers")) for node in self.nodes]
                if all(h >= w for h, w in zip(have, want, strict=True)):
                    return
                await trio.sleep(POLL_S * 2)
        have = [len(await node.rpc("peers")) for node in self.nodes]
        raise AssertionError(f"wait_connected timed out: peers {have}, wanted at least {want}")

    async def _ready_one(self, node: NodeHandle, progress: Any) -> None:
        await node.wait_ready()
        if progress is not None:
            progress(node)

    async def stop_all(self) -> list[float]:
        """SIGTERM every running daemon (in parallel); return their stop times."""
        times: list[float] = []

        async def one(node: NodeHandle) -> None:
            times.append(await node.stop_node())

        async with trio.open_nursery() as n:
            for node in self.nodes:
                if node.running:
                    n.start_soon(one, node)
        return times

    async def tips(self, nodes: Sequence[NodeHandle] | None = None) -> list[JsonObj]:
        """Every node's head (``{"height", "hash"}``), or its error."""
        rows = []
        for node in nodes or self.nodes:
            try:
                head = await node.rpc("head")
                rows.append({"node": node.index, "height": head.get("height"),
                             "hash": head.get("hash")})
            except Exception as exc:  # shown in a failure message, never swallowed silently
                rows.append({"node": node.index, "error": repr(exc)})
        return rows

    async def sync_blocks(self, nodes: Sequence[NodeHandle] | None = None,
                          timeout: float = 60.0) -> JsonObj:
        """Wait until ``nodes`` share one head; the failure message lists every tip."""
        nodes = list(nodes or self.nodes)
        with trio.move_on_after(timeout * self.timeout_factor):
            while True:
                tips = await self.tips(nodes)
                if len({t.get("hash") for t in tips}) == 1 and "error" not in tips[0]:
                    return tips[0]
                await trio.sleep(POLL_S * 2)
        tips = await self.tips(nodes)
        raise AssertionError("sync_blocks timed out; tips:\n" + _table(tips))

    async def sync_mempools(self, nodes: Sequence[NodeHandle] | None = None,
                            timeout: float = 60.0) -> set[str]:
        """Wait until ``nodes`` hold the same mempool transaction ids."""
        nodes = list(nodes or self.nodes)
        with trio.move_on_after(timeout * self.timeout_factor):
            while True:
                pools = [frozenset(_txids(await n.rpc("mempool"))) for n in nodes]
                if len(set(pools)) == 1:
                    return set(pools[0])
                await trio.sleep(POLL_S * 2)
        sizes = [{"node": n.index, "size": len(_txids(await n.rpc("mempool")))} for n in nodes]
        raise AssertionError("sync_mempools timed out:\n" + _table(sizes))

    async def sync_all(self, nodes: Sequence[NodeHandle] | None = None,
                       timeout: float = 60.0) -> None:
        """sync_blocks then sync_mempools."""
        await self.sync_blocks(nodes, timeout)
        await self.sync_mempools(nodes, timeout)

    async def mine(self, node: NodeHandle, n_blocks: int, sync: bool = True) -> list[str]:
        """Have ``node`` mine ``n_blocks`` now; optionally wait for everyone to follow."""
        hashes: list[str] = await node.rpc("generate", [n_blocks])
        if sync:
            await self.sync_blocks()
        return hashes

    async def split(self, groups: Sequence[Sequence[int]]) -> None:
        """Partition the network: restart every node with bootstrap peers only in its group."""
        edges = [(g[k], g[k - 1]) for g in groups for k in range(1, len(g))]
        await self._rewire(edges)

    async def join(self) -> None:
        """Undo :meth:`split`: restart every node with the full topology."""
        await self._rewire(topology_edges(self.spec.topology, self.spec.n))

    async def _rewire(self, edges: Sequence[tuple[int, int]]) -> None:
        await self.stop_all()
        write_layout(self.root, self.spec, [n.info for n in self.nodes], edges)
        for node in self.nodes:
            await node.start(self.nursery)
        async with trio.open_nursery() as n:
            for node in self.nodes:
                n.start_soon(node.wait_ready)
        await self.wait_connected(edges)

    def combined_logs(self) -> str:
        """Every node's log lines, merged by timestamp and prefixed with the node index."""
        entries: list[tuple[str, int, str]] = []
        for node in self.nodes:
            if node.log_path.exists():
                entries += _log_entries(node.index, node.log_path.read_text(errors="replace"))
        return "\n".join(text for _, _, text in sorted(entries))


def _log_entries(index: int, text: str) -> list[tuple[str, int, str]]:
    """(timestamp, sequence, line) per line; lines without ``ts=`` (tracebacks) keep the
    timestamp of the event before them so they stay together when merged."""
    out, ts = [], ""
    for seq, line in enumerate(text.splitlines()):
        if line.startswith("ts="):
            ts = line.split(" ", 1)[0]
        out.append((ts, index * 10**9 + seq, f"node{index} {line}"))
    return out


def _txids(mempool: Any) -> list[str]:
    if isinstance(mempool, dict):
        for key in ("txids", "txs", "transactions"):
            if isinstance(mempool.get(key), list):
                return [t if isinstance(t, str) else str(t.get("txid")) for t in mempool[key]]
    return []


def _table(rows: Sequence[JsonObj]) -> str:
    return "\n".join("  " + "  ".join(f"{k}={v}" for k, v in r.items()) for r in rows)
