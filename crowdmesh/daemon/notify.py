"""systemd ``sd_notify`` without libsystemd: a datagram to ``$NOTIFY_SOCKET``.

Rule 1: without ``$NOTIFY_SOCKET`` every call is a no-op returning False (not under systemd).
Rule 2: an abstract socket name starts with ``@`` and maps to a leading NUL byte (sd_notify(3)).
Rule 3: the daemon sends ``READY=1`` once, only after the control socket serves and the node is
ready; ``RELOADING=1`` … ``READY=1`` around a SIGHUP reload; ``STOPPING=1`` on shutdown.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["sd_notify"]


def _address(raw: str) -> str | bytes:
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def sd_notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=serving"``) to the service manager.

    Returns:
        True if a message was sent, False if not running under a notify-aware manager.
    Raises:
        OSError: the notify socket exists but the datagram could not be sent.
    """
    env = os.environ if env is None else env
    raw = env.get("NOTIFY_SOCKET", "")
    if not raw or raw[0] not in "/@":
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(_address(raw))
        sock.sendall(state.encode())
    return True
