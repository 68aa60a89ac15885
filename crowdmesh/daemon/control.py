"""The control socket: newline-delimited JSON-RPC 2.0 over a Unix socket.

This module is only the server: framing, connections, subscriptions, bounds, error mapping and
the socket. What the methods do comes from a :data:`~crowdmesh.daemon.methods.MethodTable`
(``DEFAULT_METHODS`` unless another is passed), whose handlers see only the node's
:class:`~crowdmesh.daemon.api.Services`; the server itself serves just the methods that need the
connection or the server (``ready``, ``stop``, ``methods``, ``subscribe``, ``unsubscribe``).

Rule 1 (access): the socket is created under ``umask 0177`` and chmod 0600, so only the daemon's
user can connect; a live socket at the path is never stolen, a stale one is replaced, and
anything at the path that is not a socket is never deleted (startup fails instead).
Rule 2 (bounds): a request line is at most :data:`MAX_LINE` bytes (longer → error, connection
closed), at most ``max_clients`` connections are served (extra ones get one error line and are
closed), a connection without a subscription that sends no complete line for
``idle_timeout_s`` is closed (so idle clients cannot hold every slot and lock out ``stop``;
subscribers such as ``logs -f`` stay), every request runs under a timeout, a batch holds at
most :data:`MAX_BATCH` calls, and every subscriber queue is bounded: when a slow client's
queue is full the event is dropped and counted (each notification's ``missed`` = drops since
the previous one).
Rule 2b (reserve): subscribers are never idle-closed, so at most ``max_clients -`` the reserve
(:func:`reserved_slots`) connections may subscribe; the reserved slots stay for plain calls, so
``status`` and ``stop`` always get through (a further ``subscribe`` answers -32005
``too-many-subscribers``).
Rule 2c (hang-up): while a call runs the server keeps reading the connection; when the client
closes it, the call is cancelled (``generate`` stops asking for blocks) and answered -32007
``client-closed`` if anything still listens. A client keeps its end open until its answer.
Rule 3 (errors): bad input from a client is answered with a JSON-RPC error and never crashes the
daemon; ``crowdmesh.errors`` raised by the node map through :data:`ERROR_CODES`; any other
exception is a bug and propagates. No client number is ever converted to a float: an ``id`` is
an integer within ±2^63, a finite float, a string or null, else -32600 ``bad-request-id``.
Rule 4 (readiness): until ``services.node.is_ready()`` every method marked ``needs_ready`` answers
``-28 warming up`` (as bitcoind does), and every table method does until the node has handed
over its services; ``ready``, ``stop``, ``subscribe`` work at once.

Notifications look like
``{"jsonrpc":"2.0","method":"subscription","params":{"subscription":1,"topic":"heads","result":{…},"missed":0}}``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket as stdlib_socket
import stat
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_args

import trio

from crowdmesh.daemon.api import JsonObj, Services, Topic
from crowdmesh.daemon.eventhub import EventHub, Subscription
from crowdmesh.daemon.methods import (
    INVALID_PARAMS,
    MAX_LINE,
    Method,
    MethodTable,
    Param,
    RpcError,
    bind_params,
    call_handler,
    param_choice,
    param_int,
)
from crowdmesh.daemon.methods.all import DEFAULT_METHODS
from crowdmesh.errors import (
    CrowdmeshError,
    DecodeError,
    NotFound,
    ProtocolViolation,
    UsageError,
    ValidationError,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = [
    "ERROR_CODES",
    "ID_LIMIT",
    "MAX_BATCH",
    "MAX_LINE",
    "RESERVED_SLOTS",
    "BoundSocket",
    "ControlServer",
    "EventHub",
    "NodeSlot",
    "RpcError",
    "bind_control_socket",
    "reserved_slots",
]

MAX_BATCH: Final = 100
WRITE_TIMEOUT_S: Final = 10.0
IDLE_TIMEOUT_S: Final = 60.0
RESERVED_SLOTS: Final = 8  # connections a subscriber can never take (Rule 2b)
ID_LIMIT: Final = 1 << 63  # why: ids are echoed back, and JSON peers hold numbers as int64

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
WARMING_UP: Final = -28
NOT_FOUND: Final = -32004
TIMED_OUT: Final = -32001
TOO_MANY_CLIENTS: Final = -32005
LINE_TOO_LONG: Final = -32006
CLIENT_CLOSED: Final = -32007

# Exception family → JSON-RPC code; the exception's stable ``code`` travels in ``data``.
ERROR_CODES: Final[dict[type[CrowdmeshError], int]] = {
    NotFound: NOT_FOUND,
    ValidationError: INVALID_PARAMS,
    DecodeError: INVALID_PARAMS,
    UsageError: INVALID_PARAMS,
    ProtocolViolation: INVALID_PARAMS,
}
TOPICS: Final[tuple[str, ...]] = get_args(Topic)


def _from_crowdmesh(exc: CrowdmeshError) -> RpcError:
    code = next((c for t, c in ERROR_CODES.items() if isinstance(exc, t)), INVALID_PARAMS)
    return RpcError(code, str(exc), {"code": exc.code, "detail": exc.detail})


# ---- the server's own methods -------------------------------------------------------------


@dataclass(slots=True)
class NodeSlot:
    """Holds the node's services once ``run_node`` has started; the server answers -28 until."""

    services: Services | None = None

    def is_ready(self) -> bool:
        return self.services is not None and self.services.node.is_ready()

    def ready_services(self, require_ready: bool = True) -> Services:
        """The services if the node has started (and, if ``require_ready``, is ready).

        Raises:
            RpcError: -28 ``warming up`` otherwise.
        """
        if self.services is None or (require_ready and not self.services.node.is_ready()):
            raise RpcError(WARMING_UP, "warming up")
        return self.services


@dataclass(frozen=True, slots=True)
class _Builtin:
    """A method that needs the connection or the server, so no feature table can serve it."""

    params: tuple[Param, ...]
    handler: Callable[[_Conn, list[Any]], Any]
    doc: str


def _stop(conn: _Conn, args: list[Any]) -> JsonObj:
    # why after the reply: stopping closes this connection, and the client deserves its answer
    conn.after_reply.append(conn.server.request_stop)
    return {"stopping": True}


# sync and node-free: they work before the node has started (Rule 4)
_BUILTINS: Final[dict[str, _Builtin]] = {
    "ready": _Builtin((), lambda c, a: {"ready": c.server.slot.is_ready()},
                      "is the node ready to serve"),
    "stop": _Builtin((), _stop, "graceful shutdown"),
    "methods": _Builtin((), lambda c, a: c.server.describe(), "list methods"),
    "subscribe": _Builtin((("topic", param_choice(TOPICS)),), lambda c, a: c.subscribe(a[0]),
                          "stream heads | txs | logs as notifications"),
    "unsubscribe": _Builtin((("subscription", param_int(1, 2**62)),),
                            lambda c, a: c.unsubscribe(a[0]), "end a subscription"),
}


# ---- connections --------------------------------------------------------------------------


class LineTooLong(Exception):
    """A client sent more than MAX_LINE bytes without a newline."""


class _LineReader:
    """Split a byte stream into lines of at most ``limit`` bytes (the newline excluded)."""

    def __init__(self, stream: trio.abc.ReceiveStream, limit: int = MAX_LINE) -> None:
        self._stream = stream
        self._limit = limit
        self._buf = bytearray()
        self.eof = False

    async def next_line(self) -> bytes | None:
        """The next line, or None at end of stream; raises LineTooLong."""
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            if len(self._buf) > self._limit:
                raise LineTooLong
            start = len(self._buf)
            if not await self._receive():
                return None

    async def wait_eof(self) -> None:
        """Read ahead (buffering what arrives) until the client closes its end (Rule 2c)."""
        while len(self._buf) <= self._limit:
            if not await self._receive():
                return
        await trio.sleep_forever()  # why: the next line is too long anyway; next_line says so

    async def _receive(self) -> bool:
        """Buffer one chunk; False (and ``eof`` set) at end of stream."""
        if not self.eof:
            chunk = await self._stream.receive_some(65536)
            self.eof = not chunk
            self._buf += chunk
        return not self.eof


@dataclass(slots=True, eq=False)
class _Conn:
    """One client connection: requests in order, notifications interleaved under a lock."""

    server: ControlServer
    stream: trio.abc.Stream
    nursery: trio.Nursery
    lock: trio.Lock = field(default_factory=trio.Lock)
    subs: set[int] = field(default_factory=set)
    after_reply: list[Callable[[], None]] = field(default_factory=list)

    async def send(self, obj: Any) -> None:
        line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        async with self.lock:
            with trio.fail_after(WRITE_TIMEOUT_S):
                await self.stream.send_all(line)

    def subscribe(self, topic: Topic) -> int:
        if len(self.subs) >= len(TOPICS) * 4:
            raise RpcError(INVALID_PARAMS, "too many subscriptions on this connection")
        if not self.subs:
            self.server.claim_subscriber_slot()
        sub = self.server.hub.open(topic)
        self.subs.add(sub.sid)
        self.nursery.start_soon(self._forward, sub)
        return sub.sid

    def unsubscribe(self, sid: int) -> bool:
        if sid not in self.subs:
            return False
        self.subs.discard(sid)
        self.server.hub.close(sid)
        if not self.subs:
            self.server.subscribers -= 1
        return True

    async def _forward(self, sub: Subscription) -> None:
        try:
            async for event in sub.recv:
                missed, sub.missed = sub.missed, 0
                params = {"subscription": sub.sid, "topic": sub.topic, "result": event,
                          "missed": missed}
                await self.send({"jsonrpc": "2.0", "method": "subscription", "params": params})
        except trio.ClosedResourceError:
            pass  # unsubscribed

    def close_subs(self) -> None:
        for sid in list(self.subs):
            self.unsubscribe(sid)


def _run_all(actions: list[Callable[[], None]]) -> None:
    while actions:
        actions.pop(0)()


def _error(id_: Any, err: RpcError) -> JsonObj:
    return {"jsonrpc": "2.0", "id": id_, "error": err.to_json()}


# id type → is this value acceptable; ``bool`` is absent on purpose (JSON true is not an id).
# why no float(): ``math.isfinite`` on a 400-digit int raises OverflowError (issue 11 fault 1)
_ID_CHECKS: Final[dict[type, Callable[[Any], bool]]] = {
    type(None): lambda v: True,
    str: lambda v: True,
    int: lambda v: -ID_LIMIT <= v < ID_LIMIT,
    float: math.isfinite,
}


def _valid_id(v: Any) -> bool:
    check = _ID_CHECKS.get(type(v))
    return check is not None and check(v)


def _request_problem(call: Any) -> tuple[str, str] | None:
    """Why ``call`` is not a valid JSON-RPC request: (stable code, message), or None."""
    if not isinstance(call, dict) or call.get("jsonrpc") != "2.0":
        return "bad-request", "invalid request: not a JSON-RPC 2.0 request object"
    if not _valid_id(call.get("id")):
        return "bad-request-id", ("invalid request: id must be null, a string, an integer in "
                                  "-2^63..2^63-1 or a finite number")
    if not isinstance(call.get("method"), str):
        return "bad-request", "invalid request: method must be a string"
    return None


def reserved_slots(max_clients: int) -> int:
    """Connections kept for plain calls out of ``max_clients`` (Rule 2b): at least one, at most
    :data:`RESERVED_SLOTS`, and a quarter when there are few."""
    return max(1, min(RESERVED_SLOTS, max_clients // 4))


class ControlServer:
    """Serves JSON-RPC over accepted streams; ``serve`` runs the Unix-socket accept loop."""

    def __init__(
        self, slot: NodeSlot, hub: EventHub, *, methods: MethodTable = DEFAULT_METHODS,
        max_clients: int = 64, request_timeout_s: float = 30.0,
        on_stop: Callable[[], None] | None = None, idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        """Serve ``methods`` (plus the server's own) for the node in ``slot``.

        Raises:
            ValueError: ``methods`` redefines one of the server's own methods.
        """
        clash = sorted(_BUILTINS.keys() & methods.keys())
        if clash:
            raise ValueError(f"duplicate-rpc-method: {clash} are the control server's own")
        self.slot: NodeSlot = slot
        self.methods: MethodTable = methods
        self.hub = hub
        self.max_clients = max_clients
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.clients = 0
        self.rejected_clients = 0
        self.subscribers = 0  # connections holding at least one subscription
        self.max_subscribers = max_clients - reserved_slots(max_clients)
        self._on_stop = on_stop

    def claim_subscriber_slot(self) -> None:
        """Count one more subscribing connection.

        Raises:
            RpcError: -32005 ``too-many-subscribers`` when only reserved slots are left.
        """
        if self.subscribers >= self.max_subscribers:
            raise RpcError(TOO_MANY_CLIENTS, f"too many subscribers: {self.max_subscribers} "
                           "at most, the other connections are kept for calls",
                           {"code": "too-many-subscribers"})
        self.subscribers += 1

    def request_stop(self) -> None:
        """Ask the daemon (``on_stop``) or, without one, the node to stop."""
        if self._on_stop is not None:
            self._on_stop()
        elif self.slot.services is not None:
            self.slot.services.node.request_stop()

    def describe(self) -> JsonObj:
        """The ``methods`` RPC: every method served, with its parameter names and doc line."""
        listed: list[tuple[str, _Builtin | Method]] = [*_BUILTINS.items(), *self.methods.items()]
        return {name: {"params": [p for p, _ in m.params], "doc": m.doc} for name, m in listed}

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one client until it disconnects or breaks a bound."""
        async with stream:
            if self.clients >= self.max_clients:
                self.rejected_clients += 1
                await self._refuse(stream)
                return
            self.clients += 1
            try:
                await self._serve_client(stream)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                # the client went away or stopped reading (write timeout): drop it; these
                # arrive grouped from the connection's nursery, hence except*
                pass
            finally:
                self.clients -= 1

    async def _refuse(self, stream: trio.abc.Stream) -> None:
        err = _error(None, RpcError(TOO_MANY_CLIENTS, "too many clients"))
        with trio.move_on_after(1), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(json.dumps(err).encode() + b"\n")

    async def _serve_client(self, stream: trio.abc.Stream) -> None:
        reader = _LineReader(stream)
        async with trio.open_nursery() as nursery:
            conn = _Conn(self, stream, nursery)
            try:
                await self._request_loop(conn, reader)
            finally:
                conn.close_subs()
                nursery.cancel_scope.cancel()

    async def _request_loop(self, conn: _Conn, reader: _LineReader) -> None:
        while True:
            try:
                line = await self._next_line(conn, reader)
            except LineTooLong:
                err = RpcError(LINE_TOO_LONG, f"request line over {MAX_LINE} bytes")
                await conn.send(_error(None, err))
                return
            if line is None:
                return
            if line.strip():
                reply = await self._answer_unless_closed(conn, reader, line)
                try:
                    if reply is not None:
                        await conn.send(reply)
                finally:
                    _run_all(conn.after_reply)

    async def _answer_unless_closed(self, conn: _Conn, reader: _LineReader, line: bytes) -> Any:
        """Answer ``line``, cancelling the call if the client closes its end meanwhile (Rule 2c).

        Why: ``generate 10000`` from a client that went away would otherwise mine on for hours.
        """
        reply: Any = _error(None, RpcError(CLIENT_CLOSED, "call cancelled: the client closed "
                                                          "the connection",
                                           {"code": "client-closed"}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_at_eof, reader, nursery.cancel_scope)
            reply = await self.handle_line(conn, line)
            nursery.cancel_scope.cancel()
        return reply

    async def _next_line(self, conn: _Conn, reader: _LineReader) -> bytes | None:
        """The next request line; None at end of stream or when an unsubscribed client idles."""
        if conn.subs:  # why: a subscriber (``logs -f``) rightly sends nothing for hours
            return await reader.next_line()
        with trio.move_on_after(self.idle_timeout_s):
            return await reader.next_line()
        return None

    async def handle_line(self, conn: _Conn, line: bytes) -> Any:
        """Answer one request line (single call or batch); None if nothing to send back."""
        try:
            doc = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error(None, RpcError(PARSE_ERROR, "parse error"))
        if isinstance(doc, list):
            if not doc or len(doc) > MAX_BATCH:
                return _error(None, RpcError(INVALID_REQUEST, f"batch of 1..{MAX_BATCH} calls"))
            replies = [await self.handle_call(conn, call) for call in doc]
            return [r for r in replies if r is not None] or None
        return await self.handle_call(conn, doc)

    async def handle_call(self, conn: _Conn, call: Any) -> JsonObj | None:
        """Answer one JSON-RPC call object; None for a notification (no ``id``)."""
        problem = _request_problem(call)
        if problem is not None:
            id_ = call.get("id") if isinstance(call, dict) and _valid_id(call.get("id")) else None
            return _error(id_, RpcError(INVALID_REQUEST, problem[1], {"code": problem[0]}))
        is_notification = "id" not in call
        try:
            result = await self._dispatch(conn, call["method"], call.get("params"))
        except RpcError as err:
            return None if is_notification else _error(call.get("id"), err)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    async def _dispatch(self, conn: _Conn, name: str, params: Any) -> Any:
        builtin = _BUILTINS.get(name)
        if builtin is not None:
            return builtin.handler(conn, bind_params(builtin.params, params))
        method = self.methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:100]}")
        args = bind_params(method.params, params)
        services = self.slot.ready_services(require_ready=method.needs_ready)
        return await self._run(name, method.timeout_factor,
                               call_handler(method.handler, services, args))

    async def _run(self, name: str, timeout_factor: float, call: Awaitable[Any]) -> Any:
        """Await ``call`` under the request timeout, mapping ``crowdmesh.errors`` (Rule 3)."""
        timeout = self.request_timeout_s * timeout_factor
        try:
            with trio.fail_after(timeout):
                return await call
        except trio.TooSlowError:
            raise RpcError(TIMED_OUT, f"{name} timed out after {timeout:g} s") from None
        except CrowdmeshError as exc:
            raise _from_crowdmesh(exc) from None

    async def serve(
        self, path: Path, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind ``path`` (mode 0600), accept clients until cancelled, then remove the socket."""
        bound = await bind_control_socket(path)
        try:
            listener = trio.SocketListener(bound.sock)
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self.handle_stream, [listener], handler_nursery=nursery)
        finally:
            bound.close()


async def _cancel_at_eof(reader: _LineReader, scope: trio.CancelScope) -> None:
    await reader.wait_eof()
    scope.cancel()


def _socket_is_live(path: Path) -> bool:
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@dataclass(slots=True)
class BoundSocket:
    """A listening Unix socket and the inode it was created with."""

    path: Path
    sock: trio.socket.SocketType
    inode: int

    def close(self) -> None:
        """Close the socket and unlink the path if it still names our socket (not a successor)."""
        self.sock.close()
        with suppress(FileNotFoundError):
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()


async def bind_control_socket(path: Path, backlog: int = 128) -> BoundSocket:
    """Create the listening Unix socket at ``path`` with mode 0600.

    Raises:
        UsageError: ``control-socket-in-use`` if another process serves on ``path``;
            ``control-socket-not-a-socket`` if something else (a file, a symlink…) is there;
            ``control-socket-error`` if the path cannot be bound.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if _socket_is_live(path):
            raise UsageError("control-socket-in-use", f"another daemon is serving on {path}")
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise UsageError("control-socket-not-a-socket",
                             f"{path} exists and is not a socket; not deleting it (check "
                             "[control] socket in the config)")
        path.unlink()  # stale socket left by a killed daemon
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
    try:
        await sock.bind(str(path))
    except OSError as exc:
        sock.close()
        code = "control-socket-in-use" if exc.errno == errno.EADDRINUSE else "control-socket-error"
        raise UsageError(code, f"cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return BoundSocket(path, sock, path.stat().st_ino)
