"""Event fan-out for control-socket subscribers: the daemon's :class:`EventSink`.

Rule 1: ``publish_nowait`` never blocks and never raises for a slow or gone subscriber: a full
queue drops the event and counts it (``Subscription.missed``, ``EventHub.dropped``).
Rule 2: every subscriber queue is a bounded trio memory channel; memory channels are not
thread-safe, so a publish from a worker thread hops to the trio thread first.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import Final

import trio

from crowdmesh.daemon.api import EventSink, JsonObj, Topic

__all__ = ["SUBSCRIBER_QUEUE", "EventHub", "Subscription"]

SUBSCRIBER_QUEUE: Final = 256


@dataclass(slots=True, eq=False)
class Subscription:
    """One client's bounded queue for one topic."""

    sid: int
    topic: Topic
    send: trio.MemorySendChannel[JsonObj]
    recv: trio.MemoryReceiveChannel[JsonObj]
    missed: int = 0


def _in_trio_thread() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


@dataclass(slots=True, eq=False)
class EventHub:
    """The :class:`EventSink` the node publishes to; fans out to bounded subscriber queues.

    ``publish_nowait`` never blocks. Called from a worker thread (e.g. a log record emitted
    during PoW) it hops to the trio thread first, because memory channels are not thread-safe.
    """

    queue_size: int = SUBSCRIBER_QUEUE
    dropped: int = 0
    published: int = 0
    _subs: dict[int, Subscription] = field(default_factory=dict)
    _next: int = 1
    _token: trio.lowlevel.TrioToken | None = None

    def bind(self) -> None:
        """Remember the running trio loop so other threads can publish."""
        self._token = trio.lowlevel.current_trio_token()

    def publish_nowait(self, topic: Topic, event: JsonObj) -> None:
        """Queue ``event`` for every subscriber of ``topic``; drop (and count) on full queues."""
        if not _in_trio_thread():
            if self._token is not None:
                # RunFinishedError: the daemon is exiting; nobody is left to read the event.
                with suppress(trio.RunFinishedError):
                    self._token.run_sync_soon(self.publish_nowait, topic, event)
            return
        self.published += 1
        for sub in [s for s in self._subs.values() if s.topic == topic]:
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.missed += 1
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs.pop(sub.sid, None)

    def open(self, topic: Topic) -> Subscription:
        """Create a subscription; the caller must :meth:`close` it."""
        send, recv = trio.open_memory_channel[JsonObj](self.queue_size)
        sub = Subscription(self._next, topic, send, recv)
        self._subs[sub.sid] = sub
        self._next += 1
        return sub

    def close(self, sid: int) -> None:
        """End a subscription (idempotent)."""
        sub = self._subs.pop(sid, None)
        if sub is not None:
            sub.send.close()
            sub.recv.close()

    def subscriber_count(self) -> int:
        """Number of open subscriptions (for status and tests)."""
        return len(self._subs)


def _check_sink(hub: EventHub) -> EventSink:
    return hub  # mypy checks EventHub satisfies the EventSink protocol
