"""Wire messages: frozen dataclasses with a strict, canonical msgpack codec.

Invariants:
- Every message encodes as one msgpack array ``[TYPE, field_1, …, field_n]`` in declaration
  order; ints are ints (never bools or floats), bytes are bin, text is str, sequences are arrays.
- :data:`MESSAGE_TYPES` is the one registry from type tag to class; decoding rejects unknown
  tags, extra or missing fields, wrong field types and any input over its size cap *before*
  parsing (``DecodeError`` with a stable code).
- Constructors validate field values, so a decoded message is always well-formed.
- Chain objects (transactions, blocks, headers) travel as their own canonical bytes; this module
  never interprets them, so the wire layer does not depend on the chain's internals.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

import msgpack

from crowdmesh.errors import DecodeError

__all__ = [
    "MAX_GOSSIP_BYTES",
    "MAX_SYNC_FRAME_BYTES",
    "MESSAGE_TYPES",
    "BlockAnnounce",
    "Blocks",
    "GetBlocks",
    "GetHeaders",
    "GetStatus",
    "GetTxs",
    "Headers",
    "Message",
    "NewBlock",
    "SpatialGossip",
    "Status",
    "SyncFailed",
    "TxAnnounce",
    "TxBatch",
    "TxGossip",
    "Txs",
    "decode_message",
    "encode_message",
]

MAX_GOSSIP_BYTES = 64 * 1024
"""Gossip payload cap (DESIGN: gossip carries small messages only; bodies use sync)."""
MAX_SYNC_FRAME_BYTES = 16 * 1024 * 1024
"""Largest sync frame either side accepts."""
MAX_HEADERS_PER_REQUEST = 2048
MAX_BLOCKS_PER_REQUEST = 256
MAX_ITEM_BYTES = 4 * 1024 * 1024
MAX_TXS_PER_BATCH = 1024
MAX_TXIDS_PER_MESSAGE = 64
"""Most txids one :class:`TxAnnounce` or :class:`GetTxs` carries (and txs one :class:`Txs`)."""
MAX_TX_ITEM_BYTES = 128 * 1024
"""Bound on one transaction in :class:`Txs`: above the chain's own cap (64 KiB payload plus
fixed fields), which the chain decoder enforces exactly."""
HASH_SIZE = 32
MAX_HEIGHT = 2**48
"""Largest height or start a message may carry: far above any real chain, and small enough that
arithmetic on it (``start + count``, store keys) stays in range."""
MAX_WORK_DIGITS = 80
MAX_SPATIAL_BYTES = 1024
"""Bound on one spatial message's ``raw`` (the protocol's own caps are 256 bytes each)."""
SPATIAL_KINDS = ("report", "commit", "reveal")
# why not str.isdigit: it accepts "²" and other Unicode digits that int() refuses
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class Message:
    """Base of every wire message; subclasses are frozen slotted dataclasses."""

    __slots__ = ()
    TYPE: ClassVar[str]


def _need(cond: bool, code: str, detail: str) -> None:
    if not cond:
        raise DecodeError(code, detail)


def _check_height(value: int, what: str) -> None:
    _need(0 <= value <= MAX_HEIGHT, "bad-msg-field", what)


def _check_hashes(items: tuple[bytes, ...], cap: int) -> None:
    _need(len(items) <= cap, "bad-msg-count", f"{len(items)} > {cap}")
    _need(all(len(h) == HASH_SIZE for h in items), "bad-msg-hash", "hashes are 32 bytes")


def _check_txids(items: tuple[bytes, ...]) -> None:
    _need(0 < len(items) <= MAX_TXIDS_PER_MESSAGE, "bad-msg-count",
          f"1..{MAX_TXIDS_PER_MESSAGE} txids")
    _check_hashes(items, MAX_TXIDS_PER_MESSAGE)
    _need(len(set(items)) == len(items), "bad-msg-item", "repeated txid")


def _check_items(items: tuple[bytes, ...], cap: int) -> None:
    _need(len(items) <= cap, "bad-msg-count", f"{len(items)} > {cap}")
    _need(all(0 < len(b) <= MAX_ITEM_BYTES for b in items), "bad-msg-item", "item size")


@dataclass(frozen=True, slots=True)
class TxGossip(Message):
    """A transaction (its canonical chain encoding) gossiped on the txs topic."""

    TYPE: ClassVar[str] = "tx"
    tx: bytes

    def __post_init__(self) -> None:
        _need(0 < len(self.tx) <= MAX_GOSSIP_BYTES, "bad-msg-item", "tx size")


@dataclass(frozen=True, slots=True)
class TxBatch(Message):
    """Several transactions in one gossip message: per-message costs (signing, encryption,
    validation) dominate small transactions, so a node batches what it originates."""

    TYPE: ClassVar[str] = "txs"
    txs: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _need(0 < len(self.txs) <= MAX_TXS_PER_BATCH, "bad-msg-count", "1..1024 transactions")
        _need(all(0 < len(t) <= MAX_GOSSIP_BYTES for t in self.txs), "bad-msg-item", "tx size")


@dataclass(frozen=True, slots=True)
class NewBlock(Message):
    """A whole block small enough to gossip (saves the sync round trip)."""

    TYPE: ClassVar[str] = "block"
    block: bytes

    def __post_init__(self) -> None:
        _need(0 < len(self.block) <= MAX_GOSSIP_BYTES, "bad-msg-item", "block size")


@dataclass(frozen=True, slots=True)
class BlockAnnounce(Message):
    """A header of a block too large to gossip; receivers fetch the body over sync."""

    TYPE: ClassVar[str] = "announce"
    header: bytes

    def __post_init__(self) -> None:
        _need(0 < len(self.header) <= MAX_GOSSIP_BYTES, "bad-msg-item", "header size")


@dataclass(frozen=True, slots=True)
class TxAnnounce(Message):
    """Txids of transactions too large to gossip, held by the announcing peer; receivers that
    lack them fetch the bodies with :class:`GetTxs` over sync (Bitcoin's ``inv``)."""

    TYPE: ClassVar[str] = "tx-announce"
    txids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_txids(self.txids)


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    """Sync request: the peer's chain id, head and cumulative work."""

    TYPE: ClassVar[str] = "get-status"


@dataclass(frozen=True, slots=True)
class Status(Message):
    """Sync reply to :class:`GetStatus`; ``total_work`` is decimal text (it exceeds 64 bits)."""

    TYPE: ClassVar[str] = "status"
    chain_id: str
    height: int
    head: bytes
    total_work: str

    def __post_init__(self) -> None:
        _check_height(self.height, "height")
        _need(len(self.head) == HASH_SIZE, "bad-msg-hash", "head")
        _need(len(self.total_work) <= MAX_WORK_DIGITS
              and _DECIMAL.fullmatch(self.total_work) is not None, "bad-msg-field", "work")

    @property
    def work(self) -> int:
        """``total_work`` as an int (the constructor guarantees canonical ASCII decimal)."""
        return int(self.total_work)


@dataclass(frozen=True, slots=True)
class GetHeaders(Message):
    """Sync request: main-chain headers for heights ``start … start + count - 1``."""

    TYPE: ClassVar[str] = "get-headers"
    start: int
    count: int

    def __post_init__(self) -> None:
        _check_height(self.start, "start")
        _need(0 < self.count <= MAX_HEADERS_PER_REQUEST, "bad-msg-count", "count")


@dataclass(frozen=True, slots=True)
class Headers(Message):
    """Sync reply to :class:`GetHeaders`: encoded headers in height order (may be shorter)."""

    TYPE: ClassVar[str] = "headers"
    start: int
    headers: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_height(self.start, "start")
        _check_items(self.headers, MAX_HEADERS_PER_REQUEST)


@dataclass(frozen=True, slots=True)
class GetBlocks(Message):
    """Sync request: whole blocks by hash."""

    TYPE: ClassVar[str] = "get-blocks"
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _need(len(self.hashes) > 0, "bad-msg-count", "empty")
        _check_hashes(self.hashes, MAX_BLOCKS_PER_REQUEST)


@dataclass(frozen=True, slots=True)
class Blocks(Message):
    """Sync reply to :class:`GetBlocks`: the blocks found, in request order (unknown skipped)."""

    TYPE: ClassVar[str] = "blocks"
    blocks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_items(self.blocks, MAX_BLOCKS_PER_REQUEST)


@dataclass(frozen=True, slots=True)
class GetTxs(Message):
    """Sync request: pending transactions by txid (Bitcoin's ``getdata``)."""

    TYPE: ClassVar[str] = "get-txs"
    txids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_txids(self.txids)


@dataclass(frozen=True, slots=True)
class Txs(Message):
    """Sync reply to :class:`GetTxs`: the transactions found (unknown ones skipped)."""

    TYPE: ClassVar[str] = "tx-bodies"
    txs: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _need(len(self.txs) <= MAX_TXIDS_PER_MESSAGE, "bad-msg-count",
              f"{len(self.txs)} > {MAX_TXIDS_PER_MESSAGE}")
        _need(all(0 < len(t) <= MAX_TX_ITEM_BYTES for t in self.txs), "bad-msg-item", "tx size")


@dataclass(frozen=True, slots=True)
class SyncFailed(Message):
    """Sync reply when a request cannot be served; ``code`` is a stable reject code."""

    TYPE: ClassVar[str] = "sync-failed"
    code: str

    def __post_init__(self) -> None:
        _need(0 < len(self.code) <= 64, "bad-msg-field", "code")


@dataclass(frozen=True, slots=True)
class SpatialGossip(Message):
    """A spatial crowdsourcing message (``kind``: report, commit or reveal) as its canonical
    protocol encoding (``chain.contracts.spatial.protocol``): reports travel on a cell topic,
    commits and reveals on the votes topic (SPATIAL.md §2.3)."""

    TYPE: ClassVar[str] = "spatial"
    kind: str
    raw: bytes

    def __post_init__(self) -> None:
        _need(self.kind in SPATIAL_KINDS, "bad-msg-field", f"spatial kind {self.kind[:16]!r}")
        _need(0 < len(self.raw) <= MAX_SPATIAL_BYTES, "bad-msg-item", "spatial message size")


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        TxGossip,
        TxBatch,
        NewBlock,
        BlockAnnounce,
        TxAnnounce,
        GetStatus,
        Status,
        GetHeaders,
        Headers,
        GetBlocks,
        Blocks,
        GetTxs,
        Txs,
        SyncFailed,
        SpatialGossip,
    )
}


def _is_bytes_tuple(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is bytes for v in value)


# Field type → (strict check of the decoded msgpack value, conversion to the field value).
_FIELD_CODECS: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    bytes: (lambda v: type(v) is bytes, lambda v: v),
    int: (lambda v: type(v) is int, lambda v: v),
    str: (lambda v: type(v) is str, lambda v: v),
    tuple[bytes, ...]: (_is_bytes_tuple, tuple),
}


def _field_types(cls: type[Message]) -> list[Any]:
    hints = get_type_hints(cls)
    return [hints[f.name] for f in dataclasses.fields(cls)]  # type: ignore[arg-type]


_SCHEMAS: dict[str, list[Any]] = {tag: _field_types(cls) for tag, cls in MESSAGE_TYPES.items()}


def encode_message(msg: Message) -> bytes:
    """Return the canonical encoding ``[TYPE, *fields]`` of ``msg``."""
    values = [getattr(msg, f.name) for f in dataclasses.fields(msg)]  # type: ignore[arg-type]
    wire = [list(v) if isinstance(v, tuple) else v for v in values]
    out: bytes = msgpack.packb([msg.TYPE, *wire], use_bin_type=True)
    return out


def _unpack(data: bytes, limit: int) -> Any:
    _need(len(data) <= limit, "oversize", f"{len(data)} > {limit} bytes")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=MAX_HEADERS_PER_REQUEST + 1,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DecodeError("bad-msgpack", type(exc).__name__) from exc


def decode_message(data: bytes, limit: int = MAX_SYNC_FRAME_BYTES) -> Message:
    """Decode one message strictly.

    Raises:
        DecodeError: ``oversize``, ``bad-msgpack``, ``bad-msg-shape``, ``unknown-msg-type``,
            ``bad-msg-field-type`` or a constructor code such as ``bad-msg-hash``.
    """
    obj = _unpack(data, limit)
    _need(isinstance(obj, list) and len(obj) >= 1, "bad-msg-shape", "not a tagged array")
    tag = obj[0]
    _need(type(tag) is str and tag in MESSAGE_TYPES, "unknown-msg-type", repr(tag)[:40])
    schema = _SCHEMAS[tag]
    _need(len(obj) == 1 + len(schema), "bad-msg-shape", f"{tag}: field count")
    values = []
    for ftype, raw in zip(schema, obj[1:], strict=True):
        check, convert = _FIELD_CODECS[ftype]
        _need(check(raw), "bad-msg-field-type", f"{tag}: {ftype}")
        values.append(convert(raw))
    return MESSAGE_TYPES[tag](*values)
