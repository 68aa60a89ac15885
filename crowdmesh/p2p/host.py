"""The libp2p host: persistent Ed25519 node key, TCP + Noise only + yamux; peer liveness.

Invariants:
- The node key lives at ``<data_dir>/node_key`` (libp2p protobuf, mode 0600); the peer id is
  therefore stable across restarts. It is separate from any account key. It is written to a
  temporary file (0600), fsynced and renamed into place (then the directory is fsynced), so a
  crash during the first start leaves either no key or a whole one; a key file that does not
  parse is ``UsageError("bad-node-key")``, never a traceback.
- Only Noise is offered for security (the py-libp2p default would also accept
  ``/plaintext/2.0.0``, see LIBP2P.md §1) and only yamux for multiplexing.
- Every dial is bounded by a timeout and preceded by ``unblock_peer`` (py-libp2p keeps a 60 s
  negative dial cache, LIBP2P.md §3); reconnects back off exponentially up to a cap.
- :class:`PeerWatch` learns of connects and disconnects through a notifee and never blocks
  the swarm: it only updates sets and wakes waiters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from crowdmesh.errors import UsageError

__all__ = [
    "DIAL_TIMEOUT_S",
    "NODE_KEY_FILE",
    "Backoff",
    "PeerWatch",
    "dial",
    "load_or_create_node_key",
    "maintain_peer",
    "make_host",
    "parse_peer_addr",
]

log = logging.getLogger("crowdmesh.p2p")

NODE_KEY_FILE = "node_key"
DIAL_TIMEOUT_S = 5.0
RECHECK_S = 5.0


def load_or_create_node_key(data_dir: Path) -> KeyPair:
    """Load ``<data_dir>/node_key`` or create it (mode 0600) on first start.

    Raises:
        UsageError: ``bad-node-key`` when the file exists but is not a libp2p private key.
    """
    path = data_dir / NODE_KEY_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # why: a key readable by others is a leaked identity
        return _load_node_key(path)
    key_pair = create_new_key_pair()
    _write_atomically(path, key_pair.private_key.serialize())
    return key_pair


def _load_node_key(path: Path) -> KeyPair:
    try:
        private = deserialize_private_key(path.read_bytes())
        return KeyPair(private, private.get_public_key())
    except Exception as exc:  # protobuf and the key classes raise many unrelated types
        raise UsageError("bad-node-key", f"{path} is not a valid node key ({exc}); restore it "
                         "from a backup, or delete it to start with a new peer id") from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that a crash leaves the old state or all of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with suppress(FileNotFoundError):
        tmp.unlink()  # left by a crash during an earlier first start
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # why: makes the rename itself durable
    finally:
        os.close(dir_fd)


def make_host(key_pair: KeyPair) -> IHost:
    """Return a host offering only Noise and yamux over TCP."""
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_ID): noise},
        muxer_opt={TProtocol(YAMUX_ID): Yamux},
    )


def parse_peer_addr(addr: str) -> PeerInfo:
    """Parse ``/ip4/…/tcp/…/p2p/<id>``.

    Raises:
        UsageError: ``bad-peer-addr`` when the address is malformed or lacks a peer id.
    """
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:  # multiaddr raises many unrelated types for bad text
        raise UsageError("bad-peer-addr", f"{addr!r}: {exc}") from exc


class PeerWatch(INotifee):
    """Tracks connected peers; wakes tasks waiting for a peer to come up or go down."""

    def __init__(self, on_change: Callable[[str, ID], None] | None = None) -> None:
        self._connected: dict[ID, int] = {}
        self._changed = trio.Event()
        self._on_change = on_change

    def is_connected(self, peer: ID) -> bool:
        """True while at least one connection to ``peer`` is open."""
        return self._connected.get(peer, 0) > 0

    def connected_peers(self) -> list[ID]:
        """Peers with at least one open connection."""
        return [p for p, n in self._connected.items() if n > 0]

    async def wait_changed(self) -> None:
        """Return after the next connect or disconnect event."""
        await self._changed.wait()

    def _bump(self, peer: ID, delta: int) -> None:
        count = max(0, self._connected.get(peer, 0) + delta)
        was_up = self.is_connected(peer)
        self._connected[peer] = count
        if count == 0:
            del self._connected[peer]
        if was_up != (count > 0) and self._on_change is not None:
            self._on_change("up" if count > 0 else "down", peer)
        self._changed.set()
        self._changed = trio.Event()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._bump(conn.muxed_conn.peer_id, +1)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._bump(conn.muxed_conn.peer_id, -1)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff: ``first``, doubling, never above ``cap`` seconds."""

    first: float = 0.25
    cap: float = 5.0
    current: float = 0.0

    def next_delay(self) -> float:
        """Return the next delay and advance."""
        self.current = self.first if self.current == 0.0 else min(self.cap, self.current * 2)
        return self.current

    def reset(self) -> None:
        """Start again from ``first`` (after a successful connect)."""
        self.current = 0.0


async def dial(host: IHost, info: PeerInfo, timeout: float = DIAL_TIMEOUT_S) -> bool:
    """Dial once, bounded by ``timeout``; True on success. Clears the negative dial cache."""
    network: Any = host.get_network()  # the Swarm; INetworkService lacks unblock_peer
    network.unblock_peer(info.peer_id)
    with trio.move_on_after(timeout):
        try:
            await host.connect(info)
        except Exception as exc:  # py-libp2p raises assorted types for a refused dial
            log.debug("dial %s failed: %s", info.peer_id, exc)
            return False
        return True
    return False


async def maintain_peer(host: IHost, watch: PeerWatch, info: PeerInfo, backoff: Backoff) -> None:
    """Keep a connection to ``info`` forever: redial with capped backoff after every loss."""
    while True:
        if info.peer_id in host.get_connected_peers():
            backoff.reset()
            # why the bound: a notifee event could be missed between the check and the wait
            with trio.move_on_after(RECHECK_S):
                await watch.wait_changed()
        elif not await dial(host, info):
            await trio.sleep(backoff.next_delay())
