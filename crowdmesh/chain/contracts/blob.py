"""Blobs: payloads larger than one transaction, carried in parts (DESIGN.md "Large payloads").

Payload of ``blob-part``: ``[blob hash (32), part index, part count, data]``; the blob hash is
SHA-256 of the whole blob. :func:`split_blob` builds the payloads a sender submits.

Invariants (each rule has its own reject code, checked in this order):
1. Shape and types (``bad-blob-payload``); 1 ≤ count ≤ :data:`MAX_PARTS` (``blob-bad-count``);
   index < count (``blob-bad-index``); every part but the last is exactly :data:`PART_BYTES`
   long and the last 1..PART_BYTES (``blob-part-size``), so a blob's layout is a function of its
   length and a complete blob is at most :data:`MAX_BLOB_BYTES`.
2. A blob already complete on chain takes no more parts (``blob-complete``): it is usable by
   anyone already.
3. Parts are stored per uploader: ``b p‖uploader‖hash‖index``. A part whose count disagrees with
   the uploader's earlier parts of the same hash is refused (``blob-count-mismatch``), and so is
   a part already stored (``blob-duplicate-part``). **Why per uploader:** if parts of one hash
   were shared, anyone watching the mempool could post a junk part at an index the honest sender
   has not sent yet and the blob could never complete (squatting). Per uploader, junk only
   wastes its sender's fees.
4. When the last missing part arrives the whole blob must hash to its name
   (``blob-hash-mismatch``, the part is refused); then ``b c‖hash`` records the uploader and the
   blob is complete. Contracts and roles name a blob by its hash alone (:func:`blob_bytes`):
   who uploaded it does not matter.
5. Fees and gas are those of any transaction (payload bytes and new storage words).

Blob parts are **not pruned**: a task's models and bundles must stay readable by roles that
restart or join late and by ``task model``; the chain's blocks hold them anyway. Pruning
(e.g. after a task settles plus a confirmation depth) is future work.

State (prefix ``b``): ``b m‖uploader‖hash`` → ``[count, received]`` while incomplete (deleted on
completion); ``b p‖uploader‖hash‖index(u16)`` → part bytes; ``b c‖hash`` → ``[uploader, count,
length]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.base import Event, TxContext, decode_payload
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import MAX_PAYLOAD_BYTES, Transaction
from crowdmesh.errors import ValidationError

__all__ = [
    "KIND",
    "MAX_BLOB_BYTES",
    "MAX_PARTS",
    "PART_BYTES",
    "PREFIX",
    "apply_blob_part",
    "blob_bytes",
    "blob_hash",
    "blob_head",
    "blob_info",
    "split_blob",
]

KIND = "blob-part"
PREFIX = b"b"
# 128 parts: a 1 MiB float32 model encrypted is ~2.2 MB (34 parts) and the CSP's blinded bundle
# (three columns) ~3.2 MB (49 parts); 128 leaves room for models up to ~2.7 MiB.
MAX_PARTS = 128
_OVERHEAD = 64  # msgpack array + 32-byte hash + two ints + bin32 header, with margin
PART_BYTES = MAX_PAYLOAD_BYTES - _OVERHEAD
MAX_BLOB_BYTES = MAX_PARTS * PART_BYTES

Get = Callable[[bytes], bytes | None]


def blob_hash(data: bytes) -> bytes:
    """The name of a blob: SHA-256 of its bytes."""
    return hashlib.sha256(data).digest()


def split_blob(data: bytes) -> list[bytes]:
    """The ``blob-part`` payloads that put ``data`` on chain, in index order.

    Raises:
        ValueError: empty data or more than :data:`MAX_BLOB_BYTES`.
    """
    if not 0 < len(data) <= MAX_BLOB_BYTES:
        raise ValueError(f"a blob holds 1..{MAX_BLOB_BYTES} bytes, not {len(data)}")
    name = blob_hash(data)
    parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    return [pack([name, i, len(parts), part]) for i, part in enumerate(parts)]


def _meta_key(uploader: bytes, name: bytes) -> bytes:
    return PREFIX + b"m" + uploader + name


def _part_key(uploader: bytes, name: bytes, index: int) -> bytes:
    return PREFIX + b"p" + uploader + name + index.to_bytes(2, "big")


def _complete_key(name: bytes) -> bytes:
    return PREFIX + b"c" + name


def blob_info(get: Get, name: bytes) -> tuple[bytes, int, int] | None:
    """(uploader, part count, length) of a complete blob, or None."""
    raw = get(_complete_key(name))
    if raw is None:
        return None
    uploader, count, length = unpack(raw, 128)
    return bytes(uploader), int(count), int(length)


def blob_bytes(get: Get, name: bytes) -> bytes | None:
    """The whole blob named ``name`` if it is complete on chain (``get`` reads state)."""
    info = blob_info(get, name)
    if info is None:
        return None
    uploader, count, _ = info
    parts = [get(_part_key(uploader, name, i)) for i in range(count)]
    assert all(p is not None for p in parts), "a complete blob has every part"
    return b"".join(p for p in parts if p is not None)


def blob_head(get: Get, name: bytes) -> bytes | None:
    """The first part of a complete blob (enough to read a bundle header), or None."""
    info = blob_info(get, name)
    return None if info is None else get(_part_key(info[0], name, 0))


def _decode(payload: bytes) -> tuple[bytes, int, int, bytes]:
    obj = decode_payload(payload, "bad-blob-payload")
    ok = (isinstance(obj, list) and len(obj) == 4 and type(obj[0]) is bytes and len(obj[0]) == 32
          and type(obj[1]) is int and type(obj[2]) is int and type(obj[3]) is bytes)
    if not ok:
        raise ValidationError("bad-blob-payload", "want [hash32, index, count, data]")
    return obj[0], obj[1], obj[2], obj[3]


def _check_layout(index: int, count: int, data: bytes) -> None:
    if not 1 <= count <= MAX_PARTS:
        raise ValidationError("blob-bad-count", f"{count} parts (1..{MAX_PARTS})")
    if not 0 <= index < count:
        raise ValidationError("blob-bad-index", f"{index} of {count}")
    last = index == count - 1
    if (last and not 0 < len(data) <= PART_BYTES) or (not last and len(data) != PART_BYTES):
        raise ValidationError("blob-part-size", f"part {index}: {len(data)} bytes")


def _record_part(state: State, uploader: bytes, name: bytes, index: int, count: int,
                 data: bytes) -> int:
    """Store one part; return how many of the uploader's parts of ``name`` are now stored."""
    raw = state.get(_meta_key(uploader, name))
    have_count, received = (count, 0) if raw is None else unpack(raw, 64)
    if have_count != count:
        raise ValidationError("blob-count-mismatch", f"earlier parts said {have_count}")
    if state.get(_part_key(uploader, name, index)) is not None:
        raise ValidationError("blob-duplicate-part", f"part {index}")
    state.set(_part_key(uploader, name, index), data)
    state.set(_meta_key(uploader, name), pack([count, received + 1]))
    return int(received) + 1


def _complete(state: State, uploader: bytes, name: bytes, count: int) -> int:
    parts = [state.get(_part_key(uploader, name, i)) or b"" for i in range(count)]
    data = b"".join(parts)
    if blob_hash(data) != name:
        raise ValidationError("blob-hash-mismatch", name.hex())
    state.set(_meta_key(uploader, name), None)
    state.set(_complete_key(name), pack([uploader, count, len(data)]))
    return len(data)


def apply_blob_part(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """Store a part; complete the blob when its last missing part arrives."""
    name, index, count, data = _decode(tx.payload)
    _check_layout(index, count, data)
    if state.get(_complete_key(name)) is not None:
        raise ValidationError("blob-complete", name.hex())
    received = _record_part(state, tx.sender, name, index, count, data)
    if received < count:
        return (Event("blob-part-stored", (name, index, count)),)
    length = _complete(state, tx.sender, name, count)
    return (Event("blob-part-stored", (name, index, count)),
            Event("blob-completed", (name, count, length)))
