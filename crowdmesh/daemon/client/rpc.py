"""Client of a daemon's control socket (used by the CLI, the testnet launcher and the tests).

Rule 1: one call is in flight per connection (a lock orders them); notifications that arrive
between responses are queued, bounded, for :meth:`ControlClient.next_notification`.
Rule 2: failures to reach the daemon raise :class:`DaemonUnavailable` with a stable code
(``daemon-not-running``, ``control-socket-denied``) and a message that says what to do.
Rule 3: a JSON-RPC error answer raises :class:`RpcCallError` carrying the numeric code and, for
node errors, the node's stable reject code.
Rule 4: the socket is found from an explicit path, else the config file's ``[control] socket``,
else ``$CROWDMESH_SOCKET``, else :data:`DEFAULT_SOCKET` (systemd's RuntimeDirectory); see
:func:`resolve_socket`.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket as stdlib_socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import trio

from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.config import load_config
from crowdmesh.errors import CrowdmeshError, UsageError

__all__ = [
    "DEFAULT_SOCKET",
    "ControlClient",
    "DaemonUnavailable",
    "Endpoint",
    "RpcCallError",
    "resolve_socket",
]

DEFAULT_SOCKET: Final = "/run/crowdmesh/crowdmesh.sock"
UNBOUNDED_S: Final = 1e9  # a timeout of None or 0 means "wait as long as it takes"
MAX_REPLY: Final = 64 << 20
MAX_PENDING_NOTIFICATIONS: Final = 10_000


class DaemonUnavailable(UsageError):
    """The control socket cannot be reached."""


class RpcCallError(CrowdmeshError):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        code = data.get("code") if isinstance(data, dict) else None
        super().__init__(str(code) if code else f"rpc-{-rpc_code}", message)
        self.rpc_code = rpc_code
        self.message = message
        self.data = data


_CONNECT_ERRORS: Final[dict[int, tuple[str, str]]] = {
    errno.ENOENT: ("daemon-not-running", "no control socket at {p}: is the daemon running?"),
    errno.ECONNREFUSED: ("daemon-not-running", "nothing listens on {p}: the daemon is not running"),
    errno.EACCES: ("control-socket-denied",
                   "permission denied on {p}: run as the daemon's user (e.g. sudo -u crowdmesh)"),
    errno.EPERM: ("control-socket-denied", "permission denied on {p}: run as the daemon's user"),
    errno.ENOTSOCK: ("daemon-not-running", "{p} is not a socket"),
}


class ControlClient:
    """A connection to one daemon's control socket."""

    def __init__(self, stream: trio.SocketStream, path: Path) -> None:
        self.path = path
        self._stream = stream
        self._buf = bytearray()
        self._ids = itertools.count(1)
        self._lock = trio.Lock()
        self._notes: deque[JsonObj] = deque(maxlen=MAX_PENDING_NOTIFICATIONS)

    @classmethod
    async def connect(cls, path: Path | str) -> ControlClient:
        """Open a connection to the socket at ``path``.

        Raises:
            DaemonUnavailable: the socket is missing, refuses or is not accessible.
        """
        p = Path(path)
        sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            await sock.connect(str(p))
        except OSError as exc:
            sock.close()
            code, msg = _CONNECT_ERRORS.get(
                exc.errno or 0, ("daemon-not-running", f"cannot connect to {{p}}: {exc}"))
            raise DaemonUnavailable(code, msg.format(p=p)) from None
        return cls(trio.SocketStream(sock), p)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._stream.aclose()

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes (tests use this to send malformed input)."""
        await self._stream.send_all(data)

    async def read_message(self) -> Any:
        """Read the next JSON line from the daemon (response or notification)."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return json.loads(line)
            if len(self._buf) > MAX_REPLY:
                raise CrowdmeshError("rpc-reply-too-long", "reply over 64 MiB")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise DaemonUnavailable("daemon-disconnected", "the daemon closed the connection")
            self._buf += chunk

    async def call(self, method: str, params: list[Any] | JsonObj | None = None) -> Any:
        """Call ``method`` and return its result.

        Raises:
            RpcCallError: the daemon answered with an error.
            DaemonUnavailable: the connection broke.
        """
        async with self._lock:
            req_id = next(self._ids)
            req: JsonObj = {"jsonrpc": "2.0", "id": req_id, "method": method}
            if params is not None:
                req["params"] = params
            try:
                await self._stream.send_all(json.dumps(req).encode() + b"\n")
                return await self._await_reply(req_id)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise DaemonUnavailable("daemon-disconnected", "connection lost") from None

    async def _await_reply(self, req_id: int) -> Any:
        while True:
            msg = await self.read_message()
            if isinstance(msg, dict) and "id" not in msg and msg.get("method"):
                self._notes.append(msg)
                continue
            if not isinstance(msg, dict) or msg.get("id") not in (req_id, None):
                continue  # not ours (should not happen: one call at a time)
            if "error" in msg:
                err = msg["error"]
                raise RpcCallError(int(err.get("code", 0)), str(err.get("message")),
                                   err.get("data"))
            return msg.get("result")

    async def next_notification(self) -> JsonObj:
        """The next subscription notification (waits for one)."""
        if self._notes:
            return self._notes.popleft()
        while True:
            msg = await self.read_message()
            if isinstance(msg, dict) and msg.get("method") == "subscription":
                return msg

    async def wait_ready(self, timeout_s: float, poll_s: float = 0.1) -> None:
        """Poll ``ready`` until true.

        Raises:
            trio.TooSlowError: not ready within ``timeout_s``.
        """
        with trio.fail_after(timeout_s):
            while not (await self.call("ready"))["ready"]:
                await trio.sleep(poll_s)


def resolve_socket(socket: str | Path | None, config: str | Path | None,
                   environ: Mapping[str, str] | None = None) -> Path:
    """Where the control socket is (see Rule 4).

    Raises:
        ConfigError: ``config`` is given (and ``socket`` is not) but cannot be read or parsed.
    """
    if socket:
        return Path(socket)
    if config:
        return load_config(config).control_socket
    env = os.environ if environ is None else environ
    return Path(env.get("CROWDMESH_SOCKET", DEFAULT_SOCKET))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A daemon's control socket and the time bound of each call (``None``: unbounded)."""

    socket: Path
    timeout: float | None = None

    async def call(self, method: str, params: Any = None) -> Any:
        """One call on a fresh connection, bounded by :attr:`timeout`.

        Raises:
            RpcCallError: the daemon answered with an error.
            DaemonUnavailable: the socket cannot be reached or the connection broke.
            trio.TooSlowError: no answer in time.
        """
        with trio.fail_after(self.timeout or UNBOUNDED_S):
            async with await ControlClient.connect(self.socket) as client:
                return await client.call(method, params)

    async def wait_ready(self, poll_s: float = 0.1) -> None:
        """Poll until the daemon answers ``ready``, tolerating a socket that does not exist yet.

        Raises:
            trio.TooSlowError: not ready within :attr:`timeout`.
        """
        with trio.fail_after(self.timeout or UNBOUNDED_S):
            while True:
                try:
                    async with await ControlClient.connect(self.socket) as client:
                        bound = self.timeout if self.timeout is not None else UNBOUNDED_S
                        await client.wait_ready(bound, poll_s)
                        return
                except DaemonUnavailable:
                    await trio.sleep(poll_s)
