"""Structured log lines, the logs topic, and sd_notify datagrams."""

from __future__ import annotations

import io
import logging
import shlex
import socket

import pytest

from crowdmesh.daemon.logs import format_kv, log_event, log_reject, set_level, setup_logging
from crowdmesh.daemon.notify import sd_notify


class ListSink:
    def __init__(self):
        self.events = []

    def publish_nowait(self, topic, event):
        self.events.append((topic, event))


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_kv_quoting_is_shell_splittable():
    line = format_kv({"event": "rejected", "code": "bad-tx-sig", "detail": 'a "b" = c', "n": 3,
                      "empty": "", "obj": {"k": [1, 2]}})
    parts = dict(p.split("=", 1) for p in shlex.split(line))
    assert parts == {"event": "rejected", "code": "bad-tx-sig", "detail": 'a "b" = c', "n": "3",
                     "empty": "", "obj": '{"k":[1,2]}'}


def test_one_line_per_event_with_reject_code_and_sink(restore_logging):
    out, sink = io.StringIO(), ListSink()
    log = setup_logging("info", sink, stream=out, env={})
    log_reject(logging.getLogger("crowdmesh.p2p"), "bad-tx-sig", peer="12D3", detail="two\nlines")
    log_event(log, "block-imported", height=5)
    logging.getLogger("crowdmesh.x").debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ts=") and "event=rejected code=bad-tx-sig peer=12D3" in lines[0]
    assert 'detail="two\\nlines"' in lines[0]
    assert "event=block-imported height=5" in lines[1]
    assert [t for t, _ in sink.events] == ["logs", "logs"]
    assert sink.events[0][1]["code"] == "bad-tx-sig" and sink.events[1][1]["height"] == 5
    set_level("debug")
    logging.getLogger("crowdmesh.x").debug("shown")
    assert "event=shown" in out.getvalue()


def test_journald_lines_carry_priority_and_no_timestamp(restore_logging):
    out = io.StringIO()
    log = setup_logging("info", None, stream=out, env={"JOURNAL_STREAM": "8:1234"})
    log.warning("peer-banned")
    log.info("ready")
    assert out.getvalue().splitlines() == [
        "<4>level=warning logger=crowdmesh event=peer-banned",
        "<6>level=info logger=crowdmesh event=ready",
    ]


def test_exceptions_stay_on_one_line(restore_logging):
    out = io.StringIO()
    log = setup_logging("info", None, stream=out, env={})
    try:
        raise ValueError("boom\nline2")
    except ValueError:
        log.exception("failed")
    assert len(out.getvalue().splitlines()) == 1
    assert 'exc="ValueError: boom\\nline2"' in out.getvalue()


def test_sd_notify_without_socket_is_a_no_op():
    assert sd_notify("READY=1", env={}) is False
    assert sd_notify("READY=1", env={"NOTIFY_SOCKET": "relative"}) is False


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_a_datagram(sock_dir, abstract):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@crowdmesh-test-{id(receiver)}"
        receiver.bind(b"\0" + name[1:].encode())
    else:
        name = str(sock_dir / "notify")
        receiver.bind(name)
    receiver.settimeout(5)
    try:
        assert sd_notify("READY=1\nSTATUS=serving", env={"NOTIFY_SOCKET": name}) is True
        assert receiver.recv(4096) == b"READY=1\nSTATUS=serving"
    finally:
        receiver.close()


def test_library_warnings_become_structured_lines(restore_logging):
    lib = logging.getLogger("libp2p.transport.tcp")
    logging.getLogger("libp2p").propagate = False  # what py-libp2p does on import
    out = io.StringIO()
    setup_logging("info", None, stream=out, env={})
    lib.info("chatty")
    lib.error("Failed to open TCP stream: %s", "refused")
    assert out.getvalue().splitlines() == [
        out.getvalue().splitlines()[0].split(" ", 1)[0]
        + ' level=error logger=libp2p.transport.tcp event="Failed to open TCP stream: refused"'
    ]


def test_library_inlined_tracebacks_are_cut_unless_debug(restore_logging):
    """py-libp2p writes whole tracebacks into warning messages for routine shutdown events."""
    lib = logging.getLogger("libp2p.network.swarm")
    text = "[ADDCONN_FAIL] add_conn failed: Cancelled\nTraceback (most recent call last):\n  x"
    out = io.StringIO()
    setup_logging("info", None, stream=out, env={})
    lib.warning(text)
    logging.getLogger("crowdmesh.node").warning(text)  # ours are never cut
    lines = out.getvalue().splitlines()
    assert "Traceback" not in lines[0] and "add_conn failed: Cancelled" in lines[0]
    assert "Traceback" in lines[1]
    out = io.StringIO()
    setup_logging("debug", None, stream=out, env={})
    lib.warning(text)
    assert "Traceback" in out.getvalue()
