"""The pull sync protocol ``/crowdmesh/sync/1.0.0``: status, headers by range, blocks by hash,
pending transactions by txid.

Frames are a 4-byte big-endian length followed by one wire message (``messages.py``).

Invariants:
- Every read is bounded: frame length is checked against :data:`MAX_SYNC_FRAME_BYTES` before
  the body is read, every request waits at most :data:`REQUEST_TIMEOUT_S` for its reply, and an
  inbound stream idle for :data:`IDLE_TIMEOUT_S` is closed.
- The server answers one request at a time per stream, through one table from request type to
  provider method; at most :data:`MAX_INBOUND_STREAMS` inbound streams are served at once, and
  at most :data:`MAX_STREAMS_PER_PEER` of them for one peer, so one peer cannot take every slot.
- One request's work on the trio thread is bounded: headers are served from whole stored
  blocks (the chain keeps no separate header record), so a reply carries at most
  :data:`MAX_SERVED_HEADERS` headers; the client continues from where a short reply ends.
- A provider that cannot serve a request (a crowdmesh error) answers ``SyncFailed(code)``.
- The client accepts only the reply type its request expects; anything else is a
  ``ProtocolViolation`` with a stable code, which the caller counts against the peer.
- Stream failures of every kind surface as ``ProtocolViolation("sync-io")``; the daemon never
  sees a raw libp2p exception from here.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from crowdmesh.errors import CrowdmeshError, DecodeError, ProtocolViolation
from crowdmesh.p2p.messages import (
    MAX_SYNC_FRAME_BYTES,
    Blocks,
    GetBlocks,
    GetHeaders,
    GetStatus,
    GetTxs,
    Headers,
    Message,
    Status,
    SyncFailed,
    Txs,
    decode_message,
    encode_message,
)

__all__ = [
    "IDLE_TIMEOUT_S",
    "MAX_SERVED_HEADERS",
    "MAX_STREAMS_PER_PEER",
    "REQUEST_TIMEOUT_S",
    "SYNC_PROTOCOL",
    "SyncProvider",
    "SyncServer",
    "SyncSession",
    "open_sync_session",
    "read_frame",
    "write_frame",
]

log = logging.getLogger("crowdmesh.p2p")

SYNC_PROTOCOL = TProtocol("/crowdmesh/sync/1.0.0")
REQUEST_TIMEOUT_S = 15.0
IDLE_TIMEOUT_S = 30.0
OPEN_TIMEOUT_S = 5.0
MAX_INBOUND_STREAMS = 32
MAX_STREAMS_PER_PEER = 4
MAX_SERVED_HEADERS = 128
"""Headers per reply: each costs a whole-block read and decode (up to the block size cap)."""
_LEN = struct.Struct(">I")

_IO_ERRORS = (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError, EOFError)


class SyncProvider(Protocol):
    """What the server needs from the chain (the node implements it)."""

    def sync_status(self) -> Status: ...

    def sync_headers(self, start: int, count: int) -> Headers: ...

    def sync_blocks(self, hashes: tuple[bytes, ...]) -> Blocks: ...

    def sync_txs(self, txids: tuple[bytes, ...]) -> Txs: ...


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))  # may return fewer bytes; b"" is EOF
        if not chunk:
            raise ProtocolViolation("sync-eof", f"after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


async def write_frame(stream: INetStream, msg: Message) -> None:
    """Write one length-prefixed message."""
    body = encode_message(msg)
    try:
        await stream.write(_LEN.pack(len(body)) + body)
    except _IO_ERRORS as exc:
        raise ProtocolViolation("sync-io", type(exc).__name__) from exc


async def read_frame(stream: INetStream, limit: int = MAX_SYNC_FRAME_BYTES) -> Message:
    """Read one length-prefixed message, refusing frames over ``limit`` before reading them.

    Raises:
        ProtocolViolation: ``sync-eof``, ``sync-io`` or ``sync-oversize``.
        DecodeError: the frame body is not a valid message.
    """
    try:
        (size,) = _LEN.unpack(await _read_exactly(stream, _LEN.size))
        if size > limit:
            raise ProtocolViolation("sync-oversize", f"{size} > {limit} bytes")
        body = await _read_exactly(stream, size)
    except _IO_ERRORS as exc:
        raise ProtocolViolation("sync-io", type(exc).__name__) from exc
    return decode_message(body, limit)


def _peer_of(stream: INetStream) -> str:
    peer: ID = stream.muxed_conn.peer_id
    return peer.to_base58()


class SyncServer:
    """Serves sync requests from a :class:`SyncProvider`."""

    def __init__(
        self, provider: SyncProvider, on_bad_peer: Callable[[str, str, str], None]
    ) -> None:
        self._provider = provider
        self._on_bad_peer = on_bad_peer
        self._active = 0
        self._per_peer: dict[str, int] = {}
        self.served = 0
        self.refused = 0
        # One table from request type to the provider call that answers it.
        self._handlers: dict[type[Message], Callable[[Message], Message]] = {
            GetStatus: lambda m: provider.sync_status(),
            GetHeaders: lambda m: self._headers(m),
            GetBlocks: lambda m: self._blocks(m),
            GetTxs: lambda m: self._txs(m),
        }

    def _headers(self, msg: Message) -> Message:
        assert isinstance(msg, GetHeaders)
        return self._provider.sync_headers(msg.start, min(msg.count, MAX_SERVED_HEADERS))

    def _blocks(self, msg: Message) -> Message:
        assert isinstance(msg, GetBlocks)
        return self._provider.sync_blocks(msg.hashes)

    def _txs(self, msg: Message) -> Message:
        assert isinstance(msg, GetTxs)
        return self._provider.sync_txs(msg.txids)

    def answer(self, request: Message) -> Message:
        """Return the reply to one request (``SyncFailed`` for non-request messages)."""
        handler = self._handlers.get(type(request))
        if handler is None:
            return SyncFailed("not-a-request")
        try:
            return handler(request)
        except CrowdmeshError as exc:  # e.g. a block pruned or reorged away meanwhile
            return SyncFailed(exc.code)

    def streams_of(self, peer: str) -> int:
        """How many inbound streams of ``peer`` are being served now."""
        return self._per_peer.get(peer, 0)

    async def handle_stream(self, stream: INetStream) -> None:
        """Stream handler: answer requests until EOF, idle timeout or a bad frame."""
        peer = _peer_of(stream)
        if self._active >= MAX_INBOUND_STREAMS or self.streams_of(peer) >= MAX_STREAMS_PER_PEER:
            self.refused += 1
            await _close(stream)
            return
        self._active += 1
        self._per_peer[peer] = self.streams_of(peer) + 1
        try:
            await self._serve(stream, peer)
        except (DecodeError, ProtocolViolation) as exc:
            if exc.code not in ("sync-eof", "sync-io"):
                self._on_bad_peer(peer, exc.code, exc.detail)
        finally:
            self._active -= 1
            self._release(peer)
            await _close(stream)

    def _release(self, peer: str) -> None:
        left = self._per_peer.pop(peer) - 1
        if left:
            self._per_peer[peer] = left

    async def _serve(self, stream: INetStream, peer: str) -> None:
        while True:
            with trio.move_on_after(IDLE_TIMEOUT_S):
                request = await read_frame(stream)
                await write_frame(stream, self.answer(request))
                self.served += 1
                continue
            return  # idle: the client will reopen when it needs us


async def _close(stream: INetStream) -> None:
    with trio.move_on_after(1.0):
        # why suppress: the peer may already be gone; nothing is left to release
        with contextlib.suppress(*_IO_ERRORS):
            await stream.close()


EXPECTED_REPLY: dict[type[Message], type[Message]] = {
    GetStatus: Status,
    GetHeaders: Headers,
    GetBlocks: Blocks,
    GetTxs: Txs,
}


class SyncSession:
    """A client stream to one peer; requests are sequential."""

    def __init__(self, stream: INetStream, peer: ID) -> None:
        self._stream = stream
        self.peer = peer

    async def request(self, msg: Message, timeout: float = REQUEST_TIMEOUT_S) -> Message:
        """Send ``msg`` and return the peer's reply of the expected type.

        Raises:
            ProtocolViolation: ``sync-timeout``, ``sync-io``, ``sync-eof``,
                ``sync-bad-reply`` or ``sync-refused``.
            DecodeError: the reply is not a valid message.
        """
        with trio.move_on_after(timeout):
            await write_frame(self._stream, msg)
            reply = await read_frame(self._stream)
            if isinstance(reply, SyncFailed):
                raise ProtocolViolation("sync-refused", reply.code)
            if type(reply) is not EXPECTED_REPLY[type(msg)]:
                raise ProtocolViolation("sync-bad-reply", f"{reply.TYPE} for {msg.TYPE}")
            return reply
        raise ProtocolViolation("sync-timeout", f"{msg.TYPE} after {timeout} s")

    async def status(self) -> Status:
        """The peer's :class:`Status`."""
        reply = await self.request(GetStatus())
        assert isinstance(reply, Status)
        return reply

    async def headers(self, start: int, count: int) -> Headers:
        """Up to ``count`` main-chain headers of the peer from height ``start``."""
        reply = await self.request(GetHeaders(start, count))
        assert isinstance(reply, Headers)
        return reply

    async def blocks(self, hashes: tuple[bytes, ...]) -> Blocks:
        """The peer's blocks for ``hashes`` (unknown ones skipped)."""
        reply = await self.request(GetBlocks(hashes))
        assert isinstance(reply, Blocks)
        return reply

    async def txs(self, txids: tuple[bytes, ...], timeout: float = REQUEST_TIMEOUT_S) -> Txs:
        """The peer's pending transactions for ``txids`` (unknown ones skipped)."""
        reply = await self.request(GetTxs(txids), timeout)
        assert isinstance(reply, Txs)
        return reply


@asynccontextmanager
async def open_sync_session(host: IHost, peer: ID) -> AsyncIterator[SyncSession]:
    """Open a sync stream to ``peer`` for the duration of the block.

    Raises:
        ProtocolViolation: ``sync-io`` if the stream cannot be opened.
    """
    stream = None
    with trio.move_on_after(OPEN_TIMEOUT_S):
        try:
            stream = await host.new_stream(peer, [SYNC_PROTOCOL])
        except _IO_ERRORS as exc:
            raise ProtocolViolation("sync-io", f"open: {type(exc).__name__}") from exc
    if stream is None:
        raise ProtocolViolation("sync-timeout", "open")
    try:
        yield SyncSession(stream, peer)
    finally:
        await _close(stream)
