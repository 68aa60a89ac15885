"""Local testnet layout: N daemons on 127.0.0.1, their configs, keys and genesis on disk.

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
Rule 3 (processes): every daemon runs as ``python -m crowdmesh daemon --config
nodeI/crowdmesh.toml`` (:func:`daemon_command`). Two things start them: the harness
(``crowdmesh.daemon.client.harness``) as children of a trio nursery, and the launcher
(``crowdmesh.daemon.client.launcher``, ``crowdmesh testnet up``) detached, with pid files.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from crowdmesh.chain.block import MAX_TARGET
from crowdmesh.chain.genesis import Genesis
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.api import MiningMode
from crowdmesh.daemon.config import MAX_SOCKET_PATH, NodeConfig, render_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.errors import UsageError

__all__ = [
    "SPEC_FILE",
    "TOPOLOGIES",
    "NodeInfo",
    "TestnetSpec",
    "choose_ports",
    "daemon_command",
    "degrees",
    "has_testnet",
    "init_testnet",
    "load_layout",
    "topology_edges",
    "with_spec",
    "write_layout",
]

TOPOLOGIES: Final = ("line", "star", "mesh")
SPEC_FILE: Final = "testnet.json"
PORT_BASE: Final = 20000
PORT_SPAN: Final = 30000


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
        log_level=spec.log_level, account_key="miner",  # the daemon signs its roles' calls
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


def has_testnet(root: Path) -> bool:
    """True if ``root`` already holds a testnet (its ``testnet.json``)."""
    return (root / SPEC_FILE).exists()


def with_spec(spec: TestnetSpec, **changes: Any) -> TestnetSpec:
    """A copy of ``spec`` with ``changes`` (validated)."""
    return replace(spec, **changes)


# ---- processes ----------------------------------------------------------------------------


def daemon_command(config: Path) -> list[str]:
    """The argv that starts one daemon (the ``crowdmesh daemon`` entry point, see Rule 3)."""
    return [sys.executable, "-m", "crowdmesh", "daemon", "--config", str(config)]
