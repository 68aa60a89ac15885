"""The contract between the node (p2p, chain, miner) and its operators' surfaces.

The control socket (``crowdmesh.daemon.control``) serves JSON-RPC by calling a
:class:`NodeControl`; the node (``crowdmesh.daemon.node``) implements it. Values crossing this
boundary are plain JSON-able dicts/lists/str/int, so the RPC layer only frames and validates.
Hashes, ids and keys travel as lowercase hex strings; amounts as ints.

Log lines, new heads and new transactions reach subscribers through :class:`EventSink`, which
the node calls without awaiting; the control layer fans out to bounded per-client queues and
drops (and counts) when a slow client's queue is full.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["EventSink", "JsonObj", "MiningMode", "NodeControl", "PeerControl", "Topic"]

JsonObj = dict[str, Any]
Topic = Literal["heads", "txs", "logs"]
MiningMode = Literal["off", "continuous", "on-demand"]


class EventSink(Protocol):
    """Where the node pushes events for control-socket subscribers (never blocks)."""

    def publish_nowait(self, topic: Topic, event: JsonObj) -> None: ...


class NodeControl(Protocol):
    """Operations the control socket exposes; each raises a crowdmesh.errors class on bad input.

    ``NotFound`` → JSON-RPC error -32004, ``ValidationError``/``DecodeError`` → -32602 with the
    reject code in ``data``, ``UsageError`` → -32602.
    """

    def is_ready(self) -> bool: ...

    def status(self) -> JsonObj: ...

    def peers(self) -> list[JsonObj]: ...

    def head(self) -> JsonObj: ...

    def block(self, ref: str | int) -> JsonObj: ...

    def mempool(self) -> JsonObj: ...

    async def submit_tx(self, raw_hex: str) -> JsonObj: ...

    def tx(self, txid_hex: str) -> JsonObj: ...

    def balance(self, account_hex: str) -> JsonObj: ...

    def set_mining(self, mode: MiningMode) -> JsonObj: ...

    async def generate(self, n_blocks: int) -> list[str]: ...

    def request_stop(self) -> None: ...


@runtime_checkable
class PeerControl(Protocol):
    """Optional extension: a node that also has these gets the ``connect``/``disconnect`` RPCs.

    ``connect_peer`` dials a ``/ip4/…/tcp/…/p2p/<id>`` address once; ``disconnect_peer`` drops
    the connections to a base58 peer id. The testnet harness uses them for split/join when the
    node provides them and restarts the daemons with other bootstrap lists when it does not.
    """

    async def connect_peer(self, addr: str) -> JsonObj: ...

    async def disconnect_peer(self, peer_id: str) -> JsonObj: ...

    def set_bootstrap(self, addrs: tuple[str, ...]) -> JsonObj:
        """Replace the bootstrap list the node keeps dialling (SIGHUP reload)."""
        ...
