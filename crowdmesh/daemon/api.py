"""The contract between the node's features and its operators' surfaces.

The control socket (``crowdmesh.daemon.control``) serves JSON-RPC from method tables that each
feature contributes (``crowdmesh.daemon.methods``); every table is backed by one narrow service
interface below, never by the node object itself. The node (``crowdmesh.daemon.node``) builds
one :class:`Services` once it serves. Values crossing this boundary are plain JSON-able
dicts/lists/str/int, so the RPC layer only frames and validates. Hashes, ids and keys travel as
lowercase hex strings; amounts as ints.

Adding a feature (a protocol such as crowdsfl or spatial) means: one service Protocol here, one
field on :class:`Services`, one method table module, and one argument where ``Node.attach``
builds the :class:`Services`. No method on ``Node``.

Log lines, new heads and new transactions reach subscribers through :class:`EventSink`, which
the node calls without awaiting; the control layer fans out to bounded per-client queues and
drops (and counts) when a slow client's queue is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "AccountService",
    "ChainService",
    "EventSink",
    "JsonObj",
    "MiningMode",
    "MiningService",
    "NodeService",
    "PeerService",
    "Services",
    "SflService",
    "SpatialService",
    "Topic",
]

JsonObj = dict[str, Any]
Topic = Literal["heads", "txs", "logs"]
MiningMode = Literal["off", "continuous", "on-demand"]


class EventSink(Protocol):
    """Where the node pushes events for control-socket subscribers (never blocks)."""

    def publish_nowait(self, topic: Topic, event: JsonObj) -> None: ...


# Each method raises a crowdmesh.errors class on bad input: ``NotFound`` → JSON-RPC -32004,
# ``ValidationError``/``DecodeError``/``UsageError`` → -32602 with the reject code in ``data``.


class NodeService(Protocol):
    """The node as a whole: readiness, the ``status`` summary, graceful stop."""

    def is_ready(self) -> bool: ...

    def status(self) -> JsonObj: ...

    def request_stop(self) -> None: ...


class ChainService(Protocol):
    """Chain and mempool queries, and transaction submission."""

    def head(self) -> JsonObj: ...

    def block(self, ref: str | int) -> JsonObj: ...

    def mempool(self) -> JsonObj: ...

    async def submit_tx(self, raw_hex: str) -> JsonObj: ...

    def tx(self, txid_hex: str) -> JsonObj: ...

    def balance(self, account_hex: str) -> JsonObj: ...


class MiningService(Protocol):
    """Mining mode and regtest-style ``generate``."""

    def set_mining(self, mode: MiningMode) -> JsonObj: ...

    async def generate(self, n_blocks: int) -> list[str]: ...


class PeerService(Protocol):
    """Connected peers, one-off dials and drops, and the bootstrap list (SIGHUP reload)."""

    def peers(self) -> list[JsonObj]: ...

    async def connect_peer(self, addr: str) -> JsonObj: ...

    async def disconnect_peer(self, peer_id: str) -> JsonObj: ...

    def set_bootstrap(self, addrs: tuple[str, ...]) -> JsonObj: ...

    async def set_network_active(self, active: bool) -> JsonObj: ...


class AccountService(Protocol):
    """The node's own account (``[account]``): contract calls the daemon signs and follows, the
    same path the roles' calls take (the operator's calls are the role ``operator``)."""

    def account(self) -> JsonObj: ...

    def call(self, kind: str, payload_hex: str, call_id: str) -> JsonObj: ...

    def pay(self, to_hex: str, amount: int, call_id: str) -> JsonObj: ...


class SpatialService(Protocol):
    """Spatial crowdsourcing: the node's location, reports, votes and rewards."""

    async def location_set(self, lat_e6: int, lon_e6: int) -> JsonObj: ...

    def report_submit(self, kind: str, lat_e6: int, lon_e6: int, request_id: str) -> JsonObj: ...

    def report_vote(self, report_id_hex: str, vote: str) -> JsonObj: ...

    def report_pending(self) -> list[JsonObj]: ...

    def report_list(self, near: tuple[int, int] | None, radius_m: int | None,
                    status: str | None) -> list[JsonObj]: ...

    def report_show(self, report_id_hex: str) -> JsonObj: ...

    def rewards(self, account_hex: str) -> JsonObj: ...


class SflService(Protocol):
    """CrowdSFL: tasks (create, join, views, models) and the node's ElGamal key."""

    def elgamal_key(self, profile: str = "default") -> JsonObj: ...

    def elgamal_register(self, profile: str = "default") -> JsonObj: ...

    def task_create(self, params: JsonObj, request_id: str) -> JsonObj: ...

    def task_join(self, task_hex: str) -> JsonObj: ...

    async def task_timeout(self, task_hex: str) -> JsonObj: ...

    def task_list(self) -> list[JsonObj]: ...

    def task_show(self, task_hex: str) -> JsonObj: ...

    def task_model(self, task_hex: str, round_: int | None) -> JsonObj: ...


@dataclass(frozen=True, slots=True)
class Services:
    """Every service a running node offers; one field per feature."""

    node: NodeService
    chain: ChainService
    mining: MiningService
    peers: PeerService
    account: AccountService
    spatial: SpatialService | None = None  # None: the node has no spatial role
    crowdsfl: SflService | None = None  # None: the node has no CrowdSFL role
