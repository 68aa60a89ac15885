"""Structured logging: one event per line, ``key=value`` pairs, journald-friendly.

Rule 1: every record is one line: ``ts=… level=… logger=… event=<name> k=v …``. Values with
spaces, quotes or ``=`` are JSON-quoted, so ``shlex``-style parsers and ``grep event=`` both work.
Rule 2: rejects use ``event=rejected code=<stable kebab-case code>`` (:func:`log_reject`), the
same codes the errors carry, so tests and operators grep for them.
Rule 3: under systemd (``$JOURNAL_STREAM`` set) lines carry a ``<N>`` syslog priority prefix and
no timestamp: journald adds both fields itself.
Rule 4: every record is also published to the ``logs`` topic of the control socket's event sink
(never blocking), as ``{"ts", "level", "logger", "event", ...fields}``.
Rule 5: third-party loggers (:data:`_QUIET_LIBRARIES` and every logger below them) speak at
WARNING and above, or from INFO when the daemon's level is ``debug``; a library's own level
pin is undone (py-libp2p's auto-connector pins INFO and says "initiating N new dials" every
10 s).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

from crowdmesh.daemon.api import EventSink, JsonObj

__all__ = [
    "LEVELS",
    "KvFormatter",
    "SinkHandler",
    "adopt_library_loggers",
    "format_kv",
    "log_event",
    "log_reject",
    "set_level",
    "setup_logging",
]

LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG, "info": logging.INFO,
    "warning": logging.WARNING, "error": logging.ERROR,
}
# sd-daemon(3) priority prefixes: journald strips them and sets PRIORITY=.
_SYSLOG_PRIORITY: Final[dict[int, int]] = {
    logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
}
_ROOT: Final = "crowdmesh"
_FIELDS_ATTR: Final = "kv"
# Third-party libraries only speak at WARNING and above (py-libp2p is chatty at INFO).
_QUIET_LIBRARIES: Final = ("libp2p", "multiaddr", "async_service", "trio_websocket")


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                          default=str)
    if text == "" or any(c in text for c in ' ="\n\t\\'):
        return json.dumps(text)
    return text


def format_kv(fields: Mapping[str, Any]) -> str:
    """Render ``fields`` as ``k=v k2="v 2"`` in insertion order."""
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


_TRACEBACK_MARK: Final = "\nTraceback (most recent call last):"


def _message(record: logging.LogRecord) -> str:
    """The record's message; a library's inlined traceback is cut below debug level.

    why: py-libp2p formats tracebacks into warning messages for routine events (a connection
    cancelled while the node shuts down); an operator reads one line, a debug log keeps all.
    """
    text = record.getMessage()
    cut = text.find(_TRACEBACK_MARK)
    if cut < 0 or not _is_library(record.name) or logging.getLogger(_ROOT).level <= logging.DEBUG:
        return text
    return text[:cut] + " (traceback at log level debug)"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "level": record.levelname.lower(), "logger": record.name, "event": _message(record),
    }
    fields.update(getattr(record, _FIELDS_ATTR, {}) or {})
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        fields["exc"] = f"{type(exc).__name__}: {exc}"
    return fields


class KvFormatter(logging.Formatter):
    """Formats a record as one ``key=value`` line (see module rules)."""

    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(record)
        line = format_kv(fields).replace("\n", "\\n")
        if self.journald:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"ts={ts}.{int(record.msecs):03d}Z {line}"


class SinkHandler(logging.Handler):
    """Forwards records to an :class:`EventSink` ``logs`` topic (non-blocking)."""

    def __init__(self, sink: EventSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        event: JsonObj = {"ts": round(record.created, 3), **_record_fields(record)}
        self.sink.publish_nowait("logs", _jsonable(event))


def _jsonable(event: JsonObj) -> JsonObj:
    return {k: v if isinstance(v, str | int | float | bool | None) else str(v)
            for k, v in event.items()}


def setup_logging(
    level: str, sink: EventSink | None = None, stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> logging.Logger:
    """Configure the ``crowdmesh`` logger tree; idempotent (replaces earlier handlers).

    Args:
        level: one of :data:`LEVELS`.
        sink: where ``logs`` subscribers get records (the control socket's hub).
        stream: output stream (default stderr).
        env: environment used to detect journald (default ``os.environ``).
    Returns:
        the ``crowdmesh`` logger.
    """
    env = os.environ if env is None else env
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h.formatter, KvFormatter) or isinstance(h, SinkHandler):
            root.removeHandler(h)
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(KvFormatter(journald=bool(env.get("JOURNAL_STREAM"))))
    root.addHandler(out)
    if sink is not None:
        hub_handler = SinkHandler(sink)
        hub_handler.setFormatter(KvFormatter(journald=False))
        root.addHandler(hub_handler)
    set_level(level)  # also adopts the library loggers
    return logging.getLogger(_ROOT)


def _is_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in _QUIET_LIBRARIES)


def adopt_library_loggers() -> None:
    """Route third-party loggers through our handlers at their level (Rule 5).

    py-libp2p sets ``propagate = False`` on its logger when imported, so its warnings would
    reach stderr through ``logging.lastResort`` as bare, unstructured lines, and some of its
    modules pin their own logger's level; call this again after importing it.
    """
    debug = logging.getLogger(_ROOT).level == logging.DEBUG
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    for name, lib in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lib, logging.Logger) and _is_library(name):
            if name not in _QUIET_LIBRARIES:
                lib.setLevel(logging.NOTSET)  # inherit from the library's top logger
            lib.handlers.clear()
            lib.propagate = True


def set_level(level: str) -> None:
    """Change the level of the ``crowdmesh`` loggers, and the libraries' (used on SIGHUP)."""
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger(_ROOT).setLevel(LEVELS[level])
    adopt_library_loggers()


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` (a kebab-case noun phrase, past tense) with key=value ``fields``."""
    logger.log(level, event, extra={_FIELDS_ATTR: fields})


def log_reject(logger: logging.Logger, code: str, **fields: Any) -> None:
    """Log a dropped input with its stable reject ``code`` (``event=rejected code=…``)."""
    logger.log(logging.INFO, "rejected", extra={_FIELDS_ATTR: {"code": code, **fields}})
