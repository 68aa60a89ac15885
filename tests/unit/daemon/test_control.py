"""The control socket over a real Unix socket: framing, errors, bounds, readiness, subscriptions."""

from __future__ import annotations

import json
import os
import socket
import stat
from contextlib import asynccontextmanager

import pytest
import trio

from crowdmesh.daemon import control
from crowdmesh.daemon.client.rpc import ControlClient, DaemonUnavailable, RpcCallError
from crowdmesh.daemon.control import ControlServer, EventHub, NodeSlot, bind_control_socket
from crowdmesh.errors import UsageError


@asynccontextmanager
async def serving(sock_dir, node, **kw):
    path = sock_dir / "control.sock"
    hub = EventHub()
    hub.bind()
    server = ControlServer(NodeSlot(node.services), hub, **kw)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, path)
        try:
            yield path, server, hub
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(sock_dir, node, **kw):
    async with serving(sock_dir, node, **kw) as (path, server, hub):
        client = await ControlClient.connect(path)
        try:
            yield client, server, hub
        finally:
            await client.aclose()


async def raw_exchange(path, payload: bytes) -> dict:
    async with await ControlClient.connect(path) as client:
        await client.send_raw(payload)
        with trio.fail_after(5):
            return await client.read_message()


async def test_socket_is_created_mode_0600_and_removed_on_exit(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, _):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    assert not path.exists()


async def test_methods_answer_through_the_client(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as (c, _, _):
        assert (await c.call("head"))["height"] == 3
        assert (await c.call("block", [3]))["hash"] == "ab" * 32
        assert (await c.call("block", {"ref": "AB" * 32}))["height"] == 3
        assert await c.call("set_mining", ["on-demand"]) == {"mode": "on-demand"}
        assert await c.call("generate", [2]) == ["cd" * 32] * 2
        assert (await c.call("submit_tx", ["aa11"]))["txid"] == "aa11"
        assert (await c.call("balance", ["ee" * 32]))["balance"] == 100
        assert "submit_tx" in await c.call("methods")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json\n", -32700),
        (b"\xff\xfe\n", -32700),
        (b"[" * 100_000 + b"\n", -32700),
        (b'"just a string"\n', -32600),
        (b'{"id":1,"method":"status"}\n', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":5}\n', -32600),
        (b'{"jsonrpc":"2.0","id":{},"method":"status"}\n', -32600),
        (b"[]\n", -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"no_such"}\n', -32601),
        (b'{"jsonrpc":"2.0","id":1,"method":"block"}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"block","params":[true]}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"block","params":["zz"]}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"block","params":{"hash":"ab"}}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"generate","params":[0]}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"set_mining","params":["fast"]}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"status","params":"x"}\n', -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"block","params":[7]}\n', -32004),
        (b'{"jsonrpc":"2.0","id":1,"method":"submit_tx","params":["0011"]}\n', -32602),
    ],
)
async def test_bad_requests_get_errors_and_the_connection_survives(
    sock_dir, fake_node, payload, code
):
    async with connected(sock_dir, fake_node) as (c, _, _):
        await c.send_raw(payload)
        with trio.fail_after(5):
            reply = await c.read_message()
        assert reply["error"]["code"] == code
        # the same connection still answers a good request
        assert (await c.call("head"))["height"] == 3


async def test_node_reject_code_travels_in_error_data(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as (c, _, _):
        with pytest.raises(RpcCallError) as info:
            await c.call("submit_tx", ["00ff"])
        assert info.value.rpc_code == -32602
        assert info.value.code == "bad-tx-sig"
        with pytest.raises(RpcCallError) as info:
            await c.call("tx", ["ab"])
        assert (info.value.rpc_code, info.value.code) == (-32004, "tx-not-found")


async def test_notifications_get_no_reply_and_batches_get_arrays(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, _):
        batch = [
            {"jsonrpc": "2.0", "method": "set_mining", "params": ["continuous"]},  # notification
            {"jsonrpc": "2.0", "id": "a", "method": "head"},
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        ]
        reply = await raw_exchange(path, json.dumps(batch).encode() + b"\n")
        assert [r["id"] for r in reply] == ["a", "b"]
        assert reply[0]["result"]["height"] == 3
        assert reply[1]["error"]["code"] == -32601
        assert fake_node.mode == "continuous"
        too_big = [{"jsonrpc": "2.0", "id": i, "method": "head"} for i in range(101)]
        reply = await raw_exchange(path, json.dumps(too_big).encode() + b"\n")
        assert reply["error"]["code"] == -32600


async def test_over_long_line_is_refused_and_server_keeps_serving(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, _):
        c = await ControlClient.connect(path)
        with trio.fail_after(10):
            await c.send_raw(b"x" * (control.MAX_LINE + 10))
            reply = await c.read_message()
            assert reply["error"]["code"] == -32006
            with pytest.raises(DaemonUnavailable):
                await c.read_message()  # the server closed this connection
        await c.aclose()
        c = await ControlClient.connect(path)
        assert (await c.call("head"))["height"] == 3
        await c.aclose()


async def test_line_at_the_cap_is_accepted(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, _):
        req = b'{"jsonrpc":"2.0","id":1,"method":"head"}'
        line = req + b" " * (control.MAX_LINE - len(req)) + b"\n"
        reply = await raw_exchange(path, line)
        assert reply["result"]["height"] == 3


async def test_100_concurrent_clients_each_get_an_answer(sock_dir, fake_node):
    fake_node.generate_delay = 0.3  # hold the slots while the others arrive
    async with serving(sock_dir, fake_node, max_clients=64) as (path, server, _):
        results = []

        async def one(i):
            try:
                async with await ControlClient.connect(path) as c:
                    results.append(("ok", await c.call("generate", [1])))
            except RpcCallError as exc:
                results.append(("err", exc.rpc_code))
            except DaemonUnavailable:
                results.append(("closed", None))

        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                for i in range(100):
                    n.start_soon(one, i)
        assert len(results) == 100
        ok = [r for r in results if r[0] == "ok"]
        refused = [r for r in results if r[0] == "err"]
        assert len(ok) >= 64
        assert all(code == -32005 for _, code in refused)
        assert len(ok) + len(refused) + sum(r[0] == "closed" for r in results) == 100
        with trio.fail_after(5):
            while server.clients:
                await trio.sleep(0.01)
        async with await ControlClient.connect(path) as c:
            assert (await c.call("head"))["height"] == 3


async def test_warming_up_until_ready(sock_dir, fake_node):
    fake_node.ready = False
    async with connected(sock_dir, fake_node) as (c, _, _):
        assert await c.call("ready") == {"ready": False}
        for method in ("status", "head", "peers", "mempool"):
            with pytest.raises(RpcCallError) as info:
                await c.call(method)
            assert info.value.rpc_code == -28
            assert info.value.message == "warming up"
        fake_node.ready = True
        await c.wait_ready(timeout_s=2)
        assert (await c.call("status"))["height"] == 3


async def test_no_node_yet_is_warming_up_and_stop_calls_the_fallback(sock_dir):
    stops = []
    hub = EventHub()
    server = ControlServer(NodeSlot(None), hub, on_stop=lambda: stops.append(1))
    async with trio.open_nursery() as n:
        await n.start(server.serve, sock_dir / "s")
        async with await ControlClient.connect(sock_dir / "s") as c:
            with pytest.raises(RpcCallError) as info:
                await c.call("head")
            assert info.value.rpc_code == -28
            assert await c.call("stop") == {"stopping": True}
        n.cancel_scope.cancel()
    assert stops == [1]


async def test_stop_asks_the_node_to_stop(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as (c, _, _):
        await c.call("stop")
    assert fake_node.stopped


async def test_request_timeout(sock_dir, fake_node):
    fake_node.generate_delay = 5
    async with connected(sock_dir, fake_node, request_timeout_s=0.01) as (c, _, _):
        with pytest.raises(RpcCallError) as info:
            await c.call("generate", [1])  # 0.01 s × timeout factor 20 = 0.2 s
        assert info.value.rpc_code == -32001


async def test_subscriptions_deliver_and_count_drops(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, hub):
        c = await ControlClient.connect(path)
        sid = await c.call("subscribe", ["heads"])
        await c.call("subscribe", {"topic": "txs"})
        hub.publish_nowait("heads", {"height": 4})
        hub.publish_nowait("logs", {"event": "nobody-listens"})
        with trio.fail_after(5):
            note = await c.next_notification()
        assert note["params"] == {"subscription": sid, "topic": "heads",
                                  "result": {"height": 4}, "missed": 0}
        # overflow the bounded queue without the forwarder getting a turn
        n_sent = hub.queue_size + 10
        for h in range(n_sent):
            hub.publish_nowait("heads", {"height": h})
        # the queue holds queue_size; a waiting forwarder may take one more at once
        assert 9 <= hub.dropped <= 10
        delivered = n_sent - hub.dropped
        seen = [await c.next_notification() for _ in range(delivered)]
        assert [n["params"]["result"]["height"] for n in seen] == list(range(delivered))
        hub.publish_nowait("heads", {"height": -1})
        last = await c.next_notification()
        assert last["params"]["result"] == {"height": -1}
        # each notification reports the drops since the previous one
        assert sum(n["params"]["missed"] for n in [*seen, last]) == hub.dropped
        assert await c.call("unsubscribe", [sid]) is True
        assert await c.call("unsubscribe", [sid]) is False
        await c.aclose()  # the server closes the remaining "txs" subscription
        with trio.fail_after(5):
            while hub.subscriber_count():
                await trio.sleep(0.01)


async def test_publish_from_a_worker_thread_reaches_subscribers(sock_dir, fake_node):
    async with connected(sock_dir, fake_node) as (c, _, hub):
        await c.call("subscribe", ["logs"])
        await trio.to_thread.run_sync(hub.publish_nowait, "logs", {"event": "from-thread"})
        with trio.fail_after(5):
            note = await c.next_notification()
        assert note["params"]["result"] == {"event": "from-thread"}


async def test_live_socket_is_not_stolen_and_stale_one_is_replaced(sock_dir, fake_node):
    async with serving(sock_dir, fake_node) as (path, _, _):
        with pytest.raises(UsageError) as info:
            await bind_control_socket(path)
        assert info.value.code == "control-socket-in-use"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file with nobody listening, as after SIGKILL
    bound = await bind_control_socket(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    bound.close()
    assert not path.exists()


async def test_a_regular_file_at_the_socket_path_is_never_deleted(sock_dir):
    path = sock_dir / "control.sock"
    path.write_text("precious\n")  # a misconfigured [control] socket naming a real file
    with pytest.raises(UsageError) as info:
        await bind_control_socket(path)
    assert info.value.code == "control-socket-not-a-socket"
    assert str(path) in str(info.value)
    assert path.read_text() == "precious\n"


async def test_idle_clients_are_closed_so_they_cannot_lock_out_stop(sock_dir, fake_node):
    async with serving(sock_dir, fake_node, max_clients=2, idle_timeout_s=0.3) as (
        path, server, _
    ):
        idle = [await ControlClient.connect(path) for _ in range(2)]
        with trio.fail_after(5):
            while server.clients < 2:
                await trio.sleep(0.01)
        # all slots held by clients that never send a line: after the idle deadline the
        # server closes them and a third client can still ask the daemon to stop
        with trio.fail_after(5):
            while server.clients:
                await trio.sleep(0.01)
        async with await ControlClient.connect(path) as c:
            assert await c.call("stop") == {"stopping": True}
        assert fake_node.stopped
        for c in idle:
            with trio.fail_after(5), pytest.raises(DaemonUnavailable):
                await c.read_message()  # the server closed it
            await c.aclose()


async def test_a_subscribed_client_is_not_closed_for_idleness(sock_dir, fake_node):
    async with connected(sock_dir, fake_node, idle_timeout_s=0.1) as (c, server, hub):
        await c.call("subscribe", ["heads"])
        await trio.sleep(0.5)  # five idle deadlines without a request line
        assert server.clients == 1
        hub.publish_nowait("heads", {"height": 4})
        with trio.fail_after(5):
            note = await c.read_message()
        assert note["params"]["result"] == {"height": 4}
        assert (await c.call("head"))["height"] == 3


async def test_client_reports_missing_daemon(sock_dir):
    with pytest.raises(DaemonUnavailable) as info:
        await ControlClient.connect(sock_dir / "absent.sock")
    assert info.value.code == "daemon-not-running"
    assert "is the daemon running" in str(info.value)
    (sock_dir / "plain").write_text("x")
    with pytest.raises(DaemonUnavailable) as info:
        await ControlClient.connect(sock_dir / "plain")
    assert info.value.code == "daemon-not-running"


async def test_client_vanishing_before_its_reply_does_not_hurt_the_server(sock_dir, fake_node):
    fake_node.generate_delay = 0.2
    async with serving(sock_dir, fake_node) as (path, server, hub):
        for _ in range(3):
            c = await ControlClient.connect(path)
            await c.call("subscribe", ["heads"])
            await c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"generate","params":[1]}\n')
            await c.aclose()  # gone before the reply is written
        hub.publish_nowait("heads", {"height": 9})
        with trio.fail_after(5):  # every vanished client and its subscription is cleaned up
            while server.clients or hub.subscriber_count():
                await trio.sleep(0.01)
        async with await ControlClient.connect(path) as c:
            assert (await c.call("head"))["height"] == 3


async def test_a_subscriber_that_stops_reading_is_dropped(sock_dir, fake_node, monkeypatch):
    monkeypatch.setattr(control, "WRITE_TIMEOUT_S", 0.2)
    async with serving(sock_dir, fake_node) as (path, server, hub):
        c = await ControlClient.connect(path)
        await c.call("subscribe", ["logs"])
        big = {"event": "x" * 60_000}
        with trio.fail_after(10):
            while server.clients:  # never read: the socket buffer fills, the write times out
                hub.publish_nowait("logs", big)
                await trio.sleep(0.01)
        await c.aclose()
        async with await ControlClient.connect(path) as c2:
            assert (await c2.call("head"))["height"] == 3
