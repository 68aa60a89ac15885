"""Regression tests for the faults of issue 11 in the control socket, ``generate``, the logs,
the testnet launcher and the CLI (each failed before its fix)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from crowdmesh.chain import Genesis
from crowdmesh.daemon import control
from crowdmesh.daemon.client import launcher
from crowdmesh.daemon.client.rpc import ControlClient, RpcCallError
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet, load_layout
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.control import ControlServer, EventHub, NodeSlot
from crowdmesh.daemon.logs import set_level, setup_logging
from crowdmesh.daemon.methods import RpcError, param_hex
from crowdmesh.daemon.node import run_node
from crowdmesh.errors import UsageError
from tests.unit.inprocess import InProcessNode

HUGE = 10**400


@asynccontextmanager
async def serving(sock_dir, node, **kw):
    path = sock_dir / "control.sock"
    hub = EventHub()
    hub.bind()
    server = ControlServer(NodeSlot(node.services), hub, **kw)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, path)
        try:
            yield path, server
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(sock_dir, node, **kw):
    async with serving(sock_dir, node, **kw) as (path, _):
        client = await ControlClient.connect(path)
        try:
            yield client
        finally:
            await client.aclose()


async def exchange(client, payload: bytes):
    await client.send_raw(payload)
    with trio.fail_after(5):
        return await client.read_message()


# ---- fault 1: a huge integer id crashed the daemon ------------------------------------------


@pytest.mark.parametrize("raw_id", [str(HUGE), str(-HUGE), str(2**63), "1e999", "NaN", "true"])
async def test_an_id_out_of_range_is_an_invalid_request_not_a_crash(sock_dir, fake_node, raw_id):
    async with connected(sock_dir, fake_node) as c:
        line = f'{{"jsonrpc":"2.0","id":{raw_id},"method":"head"}}\n'.encode()
        reply = await exchange(c, line)
        assert reply["id"] is None
        assert reply["error"]["code"] == -32600
        assert reply["error"]["data"]["code"] == "bad-request-id"
        # inside a batch: that call is refused, its neighbour answered
        batch = f'[{{"jsonrpc":"2.0","id":{raw_id},"method":"head"}},' \
                f'{{"jsonrpc":"2.0","id":7,"method":"head"}}]\n'.encode()
        first, second = await exchange(c, batch)
        assert first["error"]["data"]["code"] == "bad-request-id"
        assert second == {"jsonrpc": "2.0", "id": 7, "result": {"height": 3, "hash": "ab" * 32}}
        assert (await c.call("head"))["height"] == 3


async def test_ids_in_range_are_echoed(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as c:
        for id_ in (2**63 - 1, -(2**63), 1.5, "x", None):
            line = json.dumps({"jsonrpc": "2.0", "id": id_, "method": "head"}).encode()
            assert (await exchange(c, line + b"\n"))["id"] == id_


# ---- fault 5: subscribers held every slot, so status and stop were refused ---------------


async def test_subscribers_never_take_the_reserved_slots(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, server):
        assert server.max_clients == 64  # the default, as in the fault report
        clients, refused = [], []
        try:
            for _ in range(64):
                c = await ControlClient.connect(path)
                clients.append(c)
                try:
                    await c.call("subscribe", ["logs"])
                except RpcCallError as exc:
                    refused.append((exc.rpc_code, exc.code))
                    await clients.pop().aclose()
            assert len(clients) == 56  # 64 - the reserve of 8
            assert set(refused) == {(-32005, "too-many-subscribers")}
            # every subscriber is still connected, and the operator gets through
            async with await ControlClient.connect(path) as op:
                assert (await op.call("status"))["height"] == 3
                assert await op.call("stop") == {"stopping": True}
            assert fake_node.stopped
            # a subscriber that leaves frees its slot for the next one
            await clients.pop().aclose()
            with trio.fail_after(5):
                while server.clients > 55:
                    await trio.sleep(0.01)
            async with await ControlClient.connect(path) as late:
                assert await late.call("subscribe", ["heads"]) > 0
        finally:
            for c in clients:
                await c.aclose()


def test_the_reserve_is_a_quarter_when_slots_are_few():
    assert [control.reserved_slots(n) for n in (1, 4, 8, 20, 64, 10_000)] == [1, 1, 2, 5, 8, 8]


# ---- fault 6 (server side): a call whose client hangs up is cancelled -----------------------


async def test_a_running_call_is_cancelled_when_its_client_hangs_up(sock_dir, fake_node):
    ended = trio.Event()

    async def generate_forever(n_blocks):
        try:
            await trio.sleep_forever()
        finally:
            ended.set()

    fake_node.generate = generate_forever
    async with serving(sock_dir, fake_node) as (path, server):
        c = await ControlClient.connect(path)
        await c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"generate","params":[10000]}\n')
        await trio.sleep(0.1)
        assert not ended.is_set()
        await c.aclose()
        with trio.fail_after(5):
            await ended.wait()
            while server.clients:
                await trio.sleep(0.01)


async def test_pipelined_lines_are_still_answered_in_order(sock_dir, fake_node):
    fake_node.generate_delay = 0.2  # the second line arrives while the first call runs
    async with connected(sock_dir, fake_node) as c:
        await c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"generate","params":[1]}\n'
                         b'{"jsonrpc":"2.0","id":2,"method":"head"}\n')
        with trio.fail_after(5):
            first, second = await c.read_message(), await c.read_message()
        assert (first["id"], second["id"]) == (1, 2)
        assert first["result"] == ["cd" * 32]


# ---- fault 6 (node side): generate stops on cancel and on mining off ----------------------


@asynccontextmanager
async def mining_node(tmp_path: Path):
    genesis = Genesis(chain_id="gen-stop", timestamp=1_700_000_000, target=1 << 250,
                      block_interval=1, retarget_interval=0, alloc=())
    (tmp_path / "genesis.json").write_text(genesis.to_json())
    cfg = NodeConfig(data_dir=tmp_path / "d", genesis_path=tmp_path / "genesis.json",
                     control_socket=tmp_path / "c.sock", listen="/ip4/127.0.0.1/tcp/0",
                     roles=frozenset({"miner"}))
    async with trio.open_nursery() as nursery:
        node = InProcessNode(await nursery.start(run_node, cfg, _Sink()))
        try:
            yield node, nursery
        finally:
            node.request_stop()


class _Sink:
    def publish_nowait(self, topic, event) -> None:
        pass


async def wait_height(node, height: int) -> None:
    with trio.fail_after(30):
        while node.ledger.chain.height < height:
            await trio.sleep(0.01)


async def assert_mining_stopped(node) -> None:
    """At most the one block already asked for is still mined, then the height holds."""
    stopped_at = node.ledger.chain.height
    await trio.sleep(1.0)
    settled = node.ledger.chain.height
    assert settled <= stopped_at + 1
    await trio.sleep(1.0)
    assert node.ledger.chain.height == settled
    assert not node.producer.runner.active


async def test_generate_stops_when_its_caller_is_cancelled(tmp_path):
    async with mining_node(tmp_path) as (node, nursery):
        scope, gone = trio.CancelScope(), trio.Event()

        async def caller():
            with scope:
                await node.generate(10_000)
            gone.set()

        nursery.start_soon(caller)
        await wait_height(node, 3)
        scope.cancel()
        with trio.fail_after(5):
            await gone.wait()
        await assert_mining_stopped(node)
        assert node.ledger.chain.height < 1000
        # generate works again afterwards
        before = node.ledger.chain.height
        with trio.fail_after(30):
            assert len(await node.generate(2)) == 2
        assert node.ledger.chain.height >= before + 2


async def test_generate_stops_when_mining_is_switched_off(tmp_path):
    async with mining_node(tmp_path) as (node, nursery):
        outcome = []

        async def caller():
            try:
                await node.generate(10_000)
            except UsageError as exc:
                outcome.append(exc.code)

        nursery.start_soon(caller)
        await wait_height(node, 3)
        node.set_mining("off")
        with trio.fail_after(5):
            while not outcome:
                await trio.sleep(0.01)
        assert outcome == ["generate-cancelled"]
        await assert_mining_stopped(node)


# ---- fault 7: hex params, testnet up, libp2p dial logs, broken pipes -----------------------


@pytest.mark.parametrize("text", [" ab", "ab ", "ab\n", "\tab", "ab cd", "abc", "0x ab", "zz"])
def test_hex_params_with_whitespace_or_odd_length_are_refused(text):
    with pytest.raises(RpcError) as info:
        param_hex(text, "raw")
    assert info.value.code == -32602
    assert param_hex("AbCd", "raw") == "abcd"


async def test_hex_whitespace_is_refused_through_the_server(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as c:
        with pytest.raises(RpcCallError) as info:
            await c.call("balance", [" " + "ee" * 32 + "\n"])
        assert info.value.rpc_code == -32602


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("crowdmesh").setLevel(logging.NOTSET)


def test_libp2p_dial_chatter_is_hidden_unless_debug(restore_logging):
    import libp2p.network.auto_connector  # noqa: F401  pins its logger to INFO at import

    out = io.StringIO()
    setup_logging("info", stream=out, env={})
    dials = logging.getLogger("libp2p.network.auto_connector")
    dials.info("initiating %s new dials", 3)
    dials.warning("dial failed")
    assert "new dials" not in out.getvalue()
    assert "dial failed" in out.getvalue()
    set_level("debug")
    dials.info("initiating %s new dials", 4)
    assert "initiating 4 new dials" in out.getvalue()
    set_level("info")
    dials.info("initiating %s new dials", 5)
    assert "initiating 5 new dials" not in out.getvalue()


def _sleeper(config: Path) -> subprocess.Popen:
    """A process naming the node's config in its argv, as launcher._is_our_daemon looks for."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(config)])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    for _ in range(500):  # why: Popen may return before the kernel has set the new argv
        if os.fsencode(config) in cmdline.read_bytes().split(b"\0"):
            break
        time.sleep(0.01)
    return proc


async def test_a_failed_testnet_up_stops_only_the_nodes_it_started(tmp_path, monkeypatch):
    root = tmp_path / "net"
    init_testnet(root, TestnetSpec(n=3, seed=5, accounts=1))
    _, nodes = load_layout(root)
    config = [root / f"node{n.index}" / "crowdmesh.toml" for n in nodes]
    theirs = _sleeper(config[0])  # a daemon someone else started, with its pid file
    (root / "node0" / "daemon.pid").write_text(f"{theirs.pid}\n")
    ours: list[subprocess.Popen] = []

    def spawn(root_, info):
        ours.append(_sleeper(config[info.index]))
        (root_ / f"node{info.index}" / "daemon.pid").write_text(f"{ours[-1].pid}\n")
        return ours[-1].pid

    monkeypatch.setattr(launcher, "_spawn", spawn)
    monkeypatch.setattr(launcher, "UP_TIMEOUT_S", 1.0)  # sleepers never answer "ready"
    try:
        with trio.fail_after(30):
            assert await launcher.up(root, as_json=True) == 1
        assert len(ours) == 2
        # the launcher reaps its children itself, so Popen only sees that they ended
        assert all(p.wait(timeout=10) in (0, -signal.SIGTERM) for p in ours)
        assert theirs.poll() is None, "up SIGTERMed a daemon it did not start"
        assert (root / "node0" / "daemon.pid").exists()
        assert not (root / "node1" / "daemon.pid").exists()
    finally:
        for p in (theirs, *ours):
            p.kill()
            p.wait()


PRINT_A_LOT = """
import sys
from crowdmesh.daemon.client import cli
from crowdmesh.daemon.client.cli_command import Command, CommandGroup

def run(inv):
    for _ in range(10_000):
        print('{"x": 1}')
    return 0

sys.exit(cli.main(["spam"], [CommandGroup("t", "test", {"spam": Command("spam", run)})]))
"""


def test_a_cli_whose_reader_went_away_exits_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (``head -1``) is already gone
    try:
        proc = subprocess.run([sys.executable, "-c", PRINT_A_LOT], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60, text=True)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141

