"""The daemon runner in-process with a stand-in node: start order, readiness, sd_notify, stop
RPC, SIGHUP reload, SIGTERM, and the grace deadline for a node that does not stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
from contextlib import asynccontextmanager

import pytest
import trio

from crowdmesh.daemon import runner
from crowdmesh.daemon.client.rpc import ControlClient, RpcCallError
from crowdmesh.daemon.config import load_config
from crowdmesh.errors import UsageError
from tests.unit.daemon.conftest import FakeNode


class SlowStartNode(FakeNode):
    def __init__(self, stubborn=False):
        super().__init__(ready=False)
        self.stop_event = trio.Event()
        self.stubborn = stubborn

    def request_stop(self):
        self.stopped = True
        if not self.stubborn:
            self.stop_event.set()


@pytest.fixture
def daemon_env(sock_dir, monkeypatch):
    cfg_path = sock_dir / "n.toml"
    cfg_path.write_text('data_dir = "d"\nroles = ["miner"]\n[mining]\nmode = "on-demand"\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_dir / "notify"))
    notify.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_dir / "notify"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    nodes = []

    def install(node):
        # like the real run_node: starting takes a while, and started() means serving
        async def fake_run_node(config, events, task_status=trio.TASK_STATUS_IGNORED):
            nodes.append(config)
            await trio.sleep(0.2)
            node.ready = True
            task_status.started(node.services)
            await node.stop_event.wait()

        monkeypatch.setattr("crowdmesh.daemon.node.run_node", fake_run_node)

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield cfg_path, notify, install, nodes
    notify.close()
    root.handlers[:] = saved[0]  # run_daemon installs the daemon's log handlers
    root.setLevel(saved[1])


def notifications(sock):
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def wait_for_socket(path):
    with trio.fail_after(5):
        while True:
            try:
                return await ControlClient.connect(path)
            except Exception:
                await trio.sleep(0.01)


@asynccontextmanager
async def running_daemon(cfg_path, node, install):
    """run_daemon with ``node`` in a nursery; yields once it is ready (the client is closed)."""
    install(node)
    cfg = load_config(cfg_path)
    async with trio.open_nursery() as n:
        n.start_soon(runner.run_daemon, cfg, cfg_path)
        client = await wait_for_socket(cfg.control_socket)
        await client.wait_ready(5, poll_s=0.02)
        await client.aclose()
        yield cfg


async def wait_notifications(sock, count):
    got = []
    with trio.fail_after(5):
        while len(got) < count:
            got += notifications(sock)
            await trio.sleep(0.01)
    return got


async def test_warming_up_then_ready_then_stop_rpc(daemon_env):
    cfg_path, notify, install, _ = daemon_env
    node = SlowStartNode()
    install(node)
    cfg = load_config(cfg_path)
    async with trio.open_nursery() as n:
        n.start_soon(runner.run_daemon, cfg, cfg_path)
        client = await wait_for_socket(cfg.control_socket)
        with pytest.raises(RpcCallError) as info:
            await client.call("head")
        assert info.value.rpc_code == -28
        assert not [m for m in notifications(notify) if m.startswith("READY=1")]
        await client.wait_ready(5, poll_s=0.02)
        sent = notifications(notify)  # READY=1 went out as the node started: no poll delay
        assert len(sent) == 1 and sent[0].startswith("READY=1"), sent
        assert (await client.call("head"))["height"] == 3
        await client.call("stop")
        await client.aclose()
    assert node.stopped
    assert notifications(notify) == ["STOPPING=1"]
    assert not cfg.control_socket.exists()


async def test_sighup_reloads_and_sigterm_stops(daemon_env):
    cfg_path, notify, install, _ = daemon_env
    node = SlowStartNode()
    async with running_daemon(cfg_path, node, install):
        peer = "/ip4/127.0.0.1/tcp/7351/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        cfg_path.write_text(cfg_path.read_text().replace("on-demand", "continuous")
                            + f'[p2p]\nbootstrap = ["{peer}"]\n')
        os.kill(os.getpid(), signal.SIGHUP)
        with trio.fail_after(5):
            while node.mode != "continuous":
                await trio.sleep(0.01)
        assert node.bootstrap == (peer,)
        os.kill(os.getpid(), signal.SIGTERM)
    assert node.stopped
    sent = notifications(notify)
    assert sent[0].startswith("READY=1") and sent[1:] == ["RELOADING=1", "READY=1", "STOPPING=1"]


async def test_a_node_that_does_not_stop_is_cancelled_after_the_grace_period(
    daemon_env, monkeypatch
):
    cfg_path, _, install, _ = daemon_env
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.3)
    node = SlowStartNode(stubborn=True)
    with trio.fail_after(5):
        async with (running_daemon(cfg_path, node, install) as cfg,
                    await ControlClient.connect(cfg.control_socket) as client):
            await client.call("stop")
    assert node.stopped and not node.stop_event.is_set()


class NotAMinerNode(SlowStartNode):
    def set_mining(self, mode):
        raise UsageError("not-a-miner", 'add "miner" to roles in the config')


async def test_a_reload_the_node_refuses_is_logged_and_the_daemon_keeps_serving(
    daemon_env, caplog
):
    cfg_path, notify, install, _ = daemon_env
    cfg_path.write_text('data_dir = "d"\n')
    node = NotAMinerNode()
    async with running_daemon(cfg_path, node, install) as cfg:
        assert len(await wait_notifications(notify, 1)) == 1  # READY=1
        # roles are not reloadable: the node refuses mining → must not kill the daemon
        cfg_path.write_text('data_dir = "d"\nroles = ["miner"]\nlog_level = "debug"\n'
                            '[mining]\nmode = "continuous"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        assert await wait_notifications(notify, 2) == ["RELOADING=1", "READY=1"]
        async with await ControlClient.connect(cfg.control_socket) as client:
            assert (await client.call("head"))["height"] == 3, "still serving after the reload"
            failed = [r for r in caplog.records if r.getMessage() == "reload-failed"]
            assert failed and failed[0].kv["code"] == "not-a-miner"
            assert logging.getLogger().level != logging.DEBUG, "a refused reload changes nothing"
            await client.call("stop")
    assert node.stopped
