"""The control socket: newline-delimited JSON-RPC 2.0 over a Unix socket.

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
Rule 3 (errors): bad input from a client is answered with a JSON-RPC error and never crashes the
daemon; ``crowdmesh.errors`` raised by the node map through :data:`ERROR_CODES`; any other
exception is a bug and propagates.
Rule 4 (readiness): until ``NodeControl.is_ready()`` every method marked ``needs_ready`` answers
``-28 warming up`` (as bitcoind does); ``ready``, ``stop``, ``subscribe`` work at once.

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

from crowdmesh.daemon.api import (
    JsonObj,
    MiningMode,
    NodeControl,
    PeerControl,
    Topic,
)
from crowdmesh.daemon.eventhub import EventHub, Subscription
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
    "MAX_BATCH",
    "MAX_LINE",
    "METHODS",
    "BoundSocket",
    "ControlServer",
    "EventHub",
    "NodeSlot",
    "RpcError",
    "bind_control_socket",
]

MAX_LINE: Final = 1 << 20
MAX_BATCH: Final = 100
WRITE_TIMEOUT_S: Final = 10.0
IDLE_TIMEOUT_S: Final = 60.0
MAX_GENERATE: Final = 10_000

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
WARMING_UP: Final = -28
NOT_FOUND: Final = -32004
TIMED_OUT: Final = -32001
TOO_MANY_CLIENTS: Final = -32005
LINE_TOO_LONG: Final = -32006

# Exception family → JSON-RPC code; the exception's stable ``code`` travels in ``data``.
ERROR_CODES: Final[dict[type[CrowdmeshError], int]] = {
    NotFound: NOT_FOUND,
    ValidationError: INVALID_PARAMS,
    DecodeError: INVALID_PARAMS,
    UsageError: INVALID_PARAMS,
    ProtocolViolation: INVALID_PARAMS,
}
TOPICS: Final[tuple[str, ...]] = get_args(Topic)


class RpcError(Exception):
    """A JSON-RPC error to send back to the client."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> JsonObj:
        err: JsonObj = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def _from_crowdmesh(exc: CrowdmeshError) -> RpcError:
    code = next((c for t, c in ERROR_CODES.items() if isinstance(exc, t)), INVALID_PARAMS)
    return RpcError(code, str(exc), {"code": exc.code, "detail": exc.detail})



# ---- method table -------------------------------------------------------------------------


@dataclass(slots=True)
class NodeSlot:
    """Holds the node once ``run_node`` has started; the server answers -28 until then."""

    node: NodeControl | None = None

    def ready_node(self) -> NodeControl:
        """The node if it is ready, else raise the warming-up error."""
        if self.node is None or not self.node.is_ready():
            raise RpcError(WARMING_UP, "warming up")
        return self.node


def _param_str(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_LINE:
        raise RpcError(INVALID_PARAMS, f"{name} must be a non-empty string")
    return v


def _param_hex(v: Any, name: str) -> str:
    s = _param_str(v, name)
    try:
        bytes.fromhex(s)
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"{name} must be a hex string") from None
    return s.lower()


def _param_int(lo: int, hi: int) -> Callable[[Any, str], int]:
    def check(v: Any, name: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise RpcError(INVALID_PARAMS, f"{name} must be an integer in {lo}..{hi}")
        return v

    return check


def _param_ref(v: Any, name: str) -> str | int:
    if isinstance(v, int) and not isinstance(v, bool):
        return _param_int(0, 2**63)(v, name)
    return _param_hex(v, name)


def _param_choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(v: Any, name: str) -> str:
        if v not in choices:
            raise RpcError(INVALID_PARAMS, f"{name} must be one of {list(choices)}")
        return str(v)

    return check


Handler = Callable[["_Conn", list[Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC method: its parameter checks, handler and whether it waits for readiness."""

    params: tuple[tuple[str, Callable[[Any, str], Any]], ...]
    handler: Handler
    needs_ready: bool = True
    timeout_factor: float = 1.0
    doc: str = ""


def _sync(fn: Callable[[NodeControl, list[Any]], Any]) -> Handler:
    async def handler(conn: _Conn, args: list[Any]) -> Any:
        return fn(conn.server.slot.ready_node(), args)

    return handler


async def _submit_tx(conn: _Conn, args: list[Any]) -> Any:
    return await conn.server.slot.ready_node().submit_tx(args[0])


async def _generate(conn: _Conn, args: list[Any]) -> Any:
    return await conn.server.slot.ready_node().generate(args[0])


def _peer_control(conn: _Conn) -> PeerControl:
    node = conn.server.slot.ready_node()
    if not isinstance(node, PeerControl):
        raise RpcError(METHOD_NOT_FOUND, "this node does not support peer control")
    return node


async def _connect(conn: _Conn, args: list[Any]) -> Any:
    return await _peer_control(conn).connect_peer(args[0])


async def _disconnect(conn: _Conn, args: list[Any]) -> Any:
    return await _peer_control(conn).disconnect_peer(args[0])


async def _ready(conn: _Conn, args: list[Any]) -> Any:
    node = conn.server.slot.node
    return {"ready": node is not None and node.is_ready()}


async def _stop(conn: _Conn, args: list[Any]) -> Any:
    # why after the reply: stopping closes this connection, and the client deserves its answer
    conn.after_reply.append(conn.server.request_stop)
    return {"stopping": True}


async def _subscribe(conn: _Conn, args: list[Any]) -> Any:
    return conn.subscribe(args[0])


async def _unsubscribe(conn: _Conn, args: list[Any]) -> Any:
    return conn.unsubscribe(args[0])


async def _methods(conn: _Conn, args: list[Any]) -> Any:
    return {name: {"params": [p for p, _ in m.params], "doc": m.doc} for name, m in METHODS.items()}


def _set_mining(node: NodeControl, args: list[Any]) -> Any:
    mode: MiningMode = args[0]
    return node.set_mining(mode)


_MODES: Final[tuple[str, ...]] = ("off", "continuous", "on-demand")

METHODS: Final[dict[str, Method]] = {
    "ready": Method((), _ready, needs_ready=False, doc="is the node ready to serve"),
    "stop": Method((), _stop, needs_ready=False, doc="graceful shutdown"),
    "methods": Method((), _methods, needs_ready=False, doc="list methods"),
    "subscribe": Method(
        (("topic", _param_choice(TOPICS)),), _subscribe, needs_ready=False,
        doc="stream heads | txs | logs as notifications"),
    "unsubscribe": Method(
        (("subscription", _param_int(1, 2**62)),), _unsubscribe, needs_ready=False,
        doc="end a subscription"),
    "status": Method((), _sync(lambda n, a: n.status()), doc="node summary"),
    "peers": Method((), _sync(lambda n, a: n.peers()), doc="connected peers"),
    "head": Method((), _sync(lambda n, a: n.head()), doc="chain tip"),
    "block": Method((("ref", _param_ref),), _sync(lambda n, a: n.block(a[0])),
                    doc="block by height or hash"),
    "mempool": Method((), _sync(lambda n, a: n.mempool()), doc="pending transactions"),
    "submit_tx": Method((("raw", _param_hex),), _submit_tx, doc="submit a signed tx (hex)"),
    "tx": Method((("txid", _param_hex),), _sync(lambda n, a: n.tx(a[0])), doc="tx by id"),
    "balance": Method((("account", _param_hex),), _sync(lambda n, a: n.balance(a[0])),
                      doc="balance, nonce and pending_nonce of an account"),
    "set_mining": Method((("mode", _param_choice(_MODES)),), _sync(_set_mining),
                         doc="off | continuous | on-demand"),
    "connect": Method((("addr", _param_str),), _connect, doc="dial a peer multiaddr once"),
    "disconnect": Method((("peer", _param_str),), _disconnect, doc="drop a peer's connections"),
    "generate": Method((("n", _param_int(1, MAX_GENERATE)),), _generate, timeout_factor=20.0,
                       doc="mine n blocks now; returns their hashes"),
}


def _bind_params(method: Method, params: Any) -> list[Any]:
    """Check positional or named ``params`` against the method's table; return the values."""
    names = [n for n, _ in method.params]
    if params is None:
        params = []
    if isinstance(params, dict):
        extra = sorted(set(params) - set(names))
        if extra:
            raise RpcError(INVALID_PARAMS, f"unknown params {extra}; expected {names}")
        params = [params.get(n, _MISSING) for n in names]
    if not isinstance(params, list):
        raise RpcError(INVALID_PARAMS, "params must be an array or an object")
    if len(params) != len(names) or _MISSING in params:
        raise RpcError(INVALID_PARAMS, f"expected params {names}")
    return [check(v, name) for (name, check), v in zip(method.params, params, strict=True)]


_MISSING: Final = object()


# ---- connections --------------------------------------------------------------------------


class LineTooLong(Exception):
    """A client sent more than MAX_LINE bytes without a newline."""


class _LineReader:
    """Split a byte stream into lines of at most ``limit`` bytes (the newline excluded)."""

    def __init__(self, stream: trio.abc.ReceiveStream, limit: int = MAX_LINE) -> None:
        self._stream = stream
        self._limit = limit
        self._buf = bytearray()

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
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buf += chunk


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
        sub = self.server.hub.open(topic)
        self.subs.add(sub.sid)
        self.nursery.start_soon(self._forward, sub)
        return sub.sid

    def unsubscribe(self, sid: int) -> bool:
        if sid not in self.subs:
            return False
        self.subs.discard(sid)
        self.server.hub.close(sid)
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


def _valid_id(v: Any) -> bool:
    return v is None or isinstance(v, str) or (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))


class ControlServer:
    """Serves JSON-RPC over accepted streams; ``serve`` runs the Unix-socket accept loop."""

    def __init__(
        self, slot: NodeSlot, hub: EventHub, *, max_clients: int = 64,
        request_timeout_s: float = 30.0, on_stop: Callable[[], None] | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.slot = slot
        self.hub = hub
        self.max_clients = max_clients
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.clients = 0
        self.rejected_clients = 0
        self._on_stop = on_stop

    def request_stop(self) -> None:
        """Ask the daemon (``on_stop``) or, without one, the node to stop."""
        if self._on_stop is not None:
            self._on_stop()
        elif self.slot.node is not None:
            self.slot.node.request_stop()

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
                reply = await self.handle_line(conn, line)
                try:
                    if reply is not None:
                        await conn.send(reply)
                finally:
                    _run_all(conn.after_reply)

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
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not _valid_id(
            call.get("id")
        ) or not isinstance(call.get("method"), str):
            id_ = call.get("id") if isinstance(call, dict) and _valid_id(call.get("id")) else None
            return _error(id_, RpcError(INVALID_REQUEST, "invalid request"))
        is_notification = "id" not in call
        try:
            result = await self._dispatch(conn, call["method"], call.get("params"))
        except RpcError as err:
            return None if is_notification else _error(call.get("id"), err)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    async def _dispatch(self, conn: _Conn, name: str, params: Any) -> Any:
        method = METHODS.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:100]}")
        args = _bind_params(method, params)
        if method.needs_ready:
            self.slot.ready_node()
        timeout = self.request_timeout_s * method.timeout_factor
        try:
            with trio.fail_after(timeout):
                return await method.handler(conn, args)
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
