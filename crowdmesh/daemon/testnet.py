"""Local testnet: N daemons on 127.0.0.1, and the multi-daemon harness the functional tests use.

Layout of a testnet directory (written by :func:`init_testnet`)::

    testnet.json            the spec and every node's port, peer id and miner account
    genesis.json            shared genesis: funded accounts user0…userK-1
    keys/userK.key          the funded account keys (a keystore: ``--data-dir <dir>``)
    nodeI/crowdmesh.toml    node I's config; nodeI/ is also its data dir
    nodeI/control.sock      its control socket;  nodeI/daemon.log  its stderr

Rule 1 (determinism): ports come from the seed: a block of N consecutive ports at
``20000 + H(seed, attempt) mod 30000``, the first attempt whose ports are all free on 127.0.0.1.
Peer ids are fixed at init (node keys are created then), so bootstrap lists are written once.
Rule 2 (topology): ``line`` (I dials I-1), ``star`` (all dial 0), ``mesh`` (I dials every J<I).
Rule 3 (processes): :class:`NodeHandle` starts a daemon as a child of a trio nursery, so
cancelling the test or the launcher kills it; ``testnet up`` instead detaches the daemons
(own session, pid files) and ``testnet down`` stops them.
Rule 4 (waits): every wait is bounded and its failure message shows every node's state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from crowdmesh.chain.block import MAX_TARGET
from crowdmesh.chain.genesis import Genesis
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.api import JsonObj, MiningMode
from crowdmesh.daemon.cli import EXIT_CONFIG
from crowdmesh.daemon.config import MAX_SOCKET_PATH, NodeConfig, render_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.daemon.rpc_client import ControlClient, DaemonUnavailable
from crowdmesh.errors import UsageError

__all__ = [
    "TOPOLOGIES",
    "NodeHandle",
    "NodeInfo",
    "Testnet",
    "TestnetSpec",
    "choose_ports",
    "degrees",
    "init_testnet",
    "load_layout",
    "topology_edges",
]

log = logging.getLogger("crowdmesh.testnet")

TOPOLOGIES: Final = ("line", "star", "mesh")
SPEC_FILE: Final = "testnet.json"
PORT_BASE: Final = 20000
PORT_SPAN: Final = 30000
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.05


# ---- layout -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestnetSpec:
    """What ``testnet init`` builds."""

    __test__ = False  # not a pytest test class despite the name

    n: int = 5
    seed: int = 1
    topology: str = "line"
    accounts: int = 10
    balance: int = 10**12
    mining_mode: MiningMode = "on-demand"
    difficulty_bits: int = 12  # expected hashes per block = 2**bits
    block_interval: int = 1
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 64:
            raise UsageError("bad-testnet", "n must be 1..64")
        if self.topology not in TOPOLOGIES:
            raise UsageError("bad-testnet", f"topology must be one of {TOPOLOGIES}")
        if not 0 <= self.difficulty_bits <= 32 or not 1 <= self.accounts <= 1000:
            raise UsageError("bad-testnet", "difficulty_bits 0..32, accounts 1..1000")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node's fixed facts, as written in ``testnet.json``."""

    index: int
    port: int
    peer_id: str
    account: str

    @property
    def addr(self) -> str:
        """Its full multiaddr for bootstrap lists."""
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"


def topology_edges(topology: str, n: int) -> list[tuple[int, int]]:
    """Edges ``(dialer, target)`` of a topology over nodes ``0..n-1`` (see Rule 2)."""
    table = {
        "line": [(i, i - 1) for i in range(1, n)],
        "star": [(i, 0) for i in range(1, n)],
        "mesh": [(i, j) for i in range(n) for j in range(i)],
    }
    return table[topology]


def degrees(edges: Iterable[tuple[int, int]], n: int) -> list[int]:
    """How many peers each node has in a topology given by ``edges``."""
    count = [0] * n
    for a, b in edges:
        count[a] += 1
        count[b] += 1
    return count


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(seed: int, n: int, attempts: int = 64) -> list[int]:
    """N consecutive free ports chosen deterministically from ``seed`` (Rule 1).

    Raises:
        UsageError: ``no-free-ports`` if ``attempts`` candidate blocks were all busy.
    """
    for attempt in range(attempts):
        digest = hashlib.sha256(f"crowdmesh-testnet:{seed}:{attempt}".encode()).digest()
        base = PORT_BASE + int.from_bytes(digest[:4], "big") % (PORT_SPAN - n)
        ports = list(range(base, base + n))
        if all(_port_free(p) for p in ports):
            return ports
    raise UsageError("no-free-ports", f"no block of {n} free ports found from seed {seed}")


def _peer_id(data_dir: Path) -> str:
    from libp2p.peer.id import ID

    from crowdmesh.p2p.host import load_or_create_node_key

    key_pair = load_or_create_node_key(data_dir)
    return str(ID.from_pubkey(key_pair.public_key).to_base58())


def _node_config(root: Path, spec: TestnetSpec, info: NodeInfo, bootstrap: Sequence[str]) -> str:
    node_dir = root / f"node{info.index}"
    cfg = NodeConfig(
        data_dir=node_dir, genesis_path=root / "genesis.json",
        control_socket=node_dir / "control.sock",
        listen=f"/ip4/127.0.0.1/tcp/{info.port}", bootstrap=tuple(bootstrap),
        roles=frozenset({"miner"}), mining_mode=spec.mining_mode, miner_account=info.account,
        log_level=spec.log_level,
    )
    return render_config(cfg)


def _make_genesis(spec: TestnetSpec, accounts: Iterable[bytes], now: int) -> Genesis:
    from crowdmesh.chain.codec import Address

    alloc = tuple(sorted((Address(a), spec.balance) for a in accounts))
    return Genesis(
        chain_id=f"testnet-{spec.seed}", timestamp=now, target=MAX_TARGET >> spec.difficulty_bits,
        block_interval=spec.block_interval, retarget_interval=0, alloc=alloc,
    )


def init_testnet(root: Path, spec: TestnetSpec) -> list[NodeInfo]:
    """Write a fresh testnet under ``root`` (see the module docstring); return its nodes.

    Raises:
        UsageError: ``testnet-exists`` if ``root`` already holds one; ``path-too-long`` if a
            control socket path would exceed the Unix limit; ``no-free-ports``.
    """
    root = root.resolve()
    if (root / SPEC_FILE).exists():
        raise UsageError("testnet-exists", f"{root} already holds a testnet; run down and rm it")
    if len(os.fsencode(root / f"node{spec.n - 1}" / "control.sock")) > MAX_SOCKET_PATH:
        raise UsageError("path-too-long", f"{root} is too long for Unix socket paths")
    rng = SystemRng()
    users = Keystore(root / "keys")
    funded = []
    for k in range(spec.accounts):
        key = AccountKey.generate(rng)
        users.save(f"user{k}", key, None, rng)
        funded.append(key.public)
    genesis = _make_genesis(spec, funded, int(time.time()))
    root.mkdir(parents=True, exist_ok=True)
    (root / "genesis.json").write_text(genesis.to_json())
    nodes = _init_nodes(root, spec, rng)
    write_layout(root, spec, nodes)
    return nodes


def _init_nodes(root: Path, spec: TestnetSpec, rng: SystemRng) -> list[NodeInfo]:
    nodes = []
    for i, port in enumerate(choose_ports(spec.seed, spec.n)):
        node_dir = root / f"node{i}"
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        miner = AccountKey.generate(rng)
        Keystore.in_data_dir(node_dir).save("miner", miner, None, rng)
        nodes.append(NodeInfo(i, port, _peer_id(node_dir), miner.public.hex()))
    return nodes


def write_layout(root: Path, spec: TestnetSpec, nodes: Sequence[NodeInfo],
                 edges: Sequence[tuple[int, int]] | None = None) -> None:
    """(Re)write ``testnet.json`` and every node's config for ``edges`` (default: the topology)."""
    edges = topology_edges(spec.topology, spec.n) if edges is None else edges
    for info in nodes:
        boot = [nodes[j].addr for i, j in edges if i == info.index]
        cfg_text = _node_config(root, spec, info, boot)
        (root / f"node{info.index}" / "crowdmesh.toml").write_text(cfg_text)
    doc = {"spec": asdict(spec), "nodes": [asdict(n) for n in nodes], "edges": list(edges)}
    (root / SPEC_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def load_layout(root: Path) -> tuple[TestnetSpec, list[NodeInfo]]:
    """Read ``testnet.json``.

    Raises:
        UsageError: ``no-testnet`` if ``root`` holds none.
    """
    try:
        doc = json.loads((root / SPEC_FILE).read_text())
    except FileNotFoundError:
        raise UsageError("no-testnet", f"no {SPEC_FILE} in {root}: run testnet init") from None
    return TestnetSpec(**doc["spec"]), [NodeInfo(**n) for n in doc["nodes"]]


# ---- processes ----------------------------------------------------------------------------


def daemon_command(config: Path) -> list[str]:
    """The argv that starts one daemon."""
    return [sys.executable, "-m", "crowdmesh.daemon.cli", "daemon", "--config", str(config)]


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


# ---- CLI: testnet init | up | status | down -----------------------------------------------


def setup_testnet_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``crowdmesh testnet``."""
    p.add_argument("action", choices=["init", "up", "status", "down"])
    p.add_argument("--dir", type=Path, default=Path("testnet"), help="testnet directory")
    p.add_argument("-n", type=int, default=5, help="number of daemons (init/up)")
    p.add_argument("--seed", type=int, default=1, help="port/chain seed (init/up)")
    p.add_argument("--topology", choices=TOPOLOGIES, default="line")
    p.add_argument("--mining", choices=["off", "continuous", "on-demand"], default="on-demand")


def run_testnet_command(args: argparse.Namespace) -> int:
    """Run ``crowdmesh testnet <action>``; return the exit status."""
    root = args.dir.resolve()
    if args.action in ("init", "up") and not (root / SPEC_FILE).exists():
        spec = TestnetSpec(n=args.n, seed=args.seed, topology=args.topology,
                           mining_mode=args.mining)
        nodes = init_testnet(root, spec)
        print(f"testnet initialised in {root}: {len(nodes)} nodes, seed {spec.seed}, "
              f"ports {nodes[0].port}-{nodes[-1].port}")
    if args.action == "init":
        return 0
    from crowdmesh.daemon.testnet_cli import down, show_status, up

    actions = {"up": up, "status": show_status, "down": down}
    return trio.run(actions[args.action], root, args.json)


def with_spec(spec: TestnetSpec, **changes: Any) -> TestnetSpec:
    """A copy of ``spec`` with ``changes`` (validated)."""
    return replace(spec, **changes)
