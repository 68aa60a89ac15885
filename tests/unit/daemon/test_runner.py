"""The daemon runner in-process with a stand-in node: start order, readiness, sd_notify, stop
RPC, SIGHUP reload, SIGTERM, and the grace deadline for a node that does not stop."""

from __future__ import annotations

import logging
import os
import signal
import socket

import pytest
import trio

from crowdmesh.daemon import runner
from crowdmesh.daemon.config import load_config
from crowdmesh.daemon.rpc_client import ControlClient, RpcCallError
from tests.unit.daemon.conftest import FakeNode


class SlowStartNode(FakeNode):
    def __init__(self, stubborn=False):
        super().__init__(ready=False)
        self.stop_event = trio.Event()
        self.stubborn = stubborn
        self.bootstrap = ()

    async def connect_peer(self, addr):
        return {"addr": addr, "connected": False}

    async def disconnect_peer(self, peer_id):
        return {"peer": peer_id, "disconnected": True}

    def set_bootstrap(self, addrs):
        self.bootstrap = addrs
        return {"bootstrap": list(addrs)}

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
        async def fake_run_node(config, events, task_status=trio.TASK_STATUS_IGNORED):
            nodes.append(config)
            task_status.started(node)
            await trio.sleep(0.2)
            node.ready = True
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
        with trio.fail_after(5):
            while not notifications(notify):
                await trio.sleep(0.01)  # READY=1 is sent right after the node turns ready
        assert (await client.call("head"))["height"] == 3
        await client.call("stop")
        await client.aclose()
    assert node.stopped
    assert notifications(notify) == ["STOPPING=1"]
    assert not cfg.control_socket.exists()


async def test_sighup_reloads_and_sigterm_stops(daemon_env):
    cfg_path, notify, install, _ = daemon_env
    node = SlowStartNode()
    install(node)
    cfg = load_config(cfg_path)
    async with trio.open_nursery() as n:
        n.start_soon(runner.run_daemon, cfg, cfg_path)
        client = await wait_for_socket(cfg.control_socket)
        await client.wait_ready(5, poll_s=0.02)
        await client.aclose()
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
    install(node)
    cfg = load_config(cfg_path)
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(runner.run_daemon, cfg, cfg_path)
            client = await wait_for_socket(cfg.control_socket)
            await client.call("stop")
            await client.aclose()
    assert node.stopped and not node.stop_event.is_set()
