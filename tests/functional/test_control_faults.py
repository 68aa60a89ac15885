"""Issue 11's control-socket faults against a real daemon: a huge JSON-RPC id, hex with
whitespace, ``generate`` that outlives its client or ``mine --mode off``, a CLI piped into a
reader that quit, and 64 subscribers that locked the operator out."""

from __future__ import annotations

import os
import sys

import pytest
import trio

from crowdmesh.daemon.client.rpc import ControlClient, RpcCallError
from tests.functional.framework import CrowdmeshTestFramework

pytestmark = pytest.mark.functional

HUGE_ID = "1" + "0" * 400
GENERATE = b'{"jsonrpc":"2.0","id":1,"method":"generate","params":[10000]}\n'


class ControlFaults(CrowdmeshTestFramework):
    def set_test_params(self):
        self.num_nodes = 1

    async def run_test(self):
        (node,) = self.nodes
        await self.huge_ids_are_refused(node)
        await self.hex_with_whitespace_is_refused(node)
        await self.generate_stops_when_its_client_hangs_up(node)
        await self.generate_stops_when_mining_is_switched_off(node)
        await self.cli_into_a_closed_pipe_exits_quietly(node)
        await self.subscribers_leave_room_for_stop(node)  # last: it stops the daemon

    async def huge_ids_are_refused(self, node):
        async with await ControlClient.connect(node.socket) as c:
            for line in (f'{{"jsonrpc":"2.0","id":{HUGE_ID},"method":"head"}}',
                         f'[{{"jsonrpc":"2.0","id":{HUGE_ID},"method":"head"}}]'):
                await c.send_raw(line.encode() + b"\n")
                with trio.fail_after(10 * self.timeout_factor):
                    reply = await c.read_message()
                reply = reply[0] if isinstance(reply, list) else reply
                assert reply["error"]["code"] == -32600, reply
                assert reply["error"]["data"]["code"] == "bad-request-id"
        assert node.running
        assert (await node.rpc("head"))["height"] == 0

    async def hex_with_whitespace_is_refused(self, node):
        account = self.net.nodes[0].info.account
        assert (await node.rpc("balance", [account]))["balance"] >= 0
        for text in (f" {account}", f"{account}\n", account[:2] + " " + account[2:]):
            with pytest.raises(RpcCallError) as info:
                await node.rpc("balance", [text])
            assert info.value.rpc_code == -32602

    async def height(self, node):
        return (await node.rpc("head"))["height"]

    async def wait_height(self, node, height):
        with trio.fail_after(60 * self.timeout_factor):
            while await self.height(node) < height:
                await trio.sleep(0.05)

    async def assert_height_holds(self, node, started_at):
        """Mining has stopped: after a settling second the height no longer moves."""
        await trio.sleep(1.0)
        settled = await self.height(node)
        await trio.sleep(1.5)
        assert await self.height(node) == settled
        assert settled < started_at + 1000, "generate 10000 ran on"

    async def generate_stops_when_its_client_hangs_up(self, node):
        start = await self.height(node)
        c = await ControlClient.connect(node.socket)
        await c.send_raw(GENERATE)
        await self.wait_height(node, start + 3)
        await c.aclose()
        await self.assert_height_holds(node, start)

    async def generate_stops_when_mining_is_switched_off(self, node):
        start = await self.height(node)
        async with await ControlClient.connect(node.socket) as c:
            await c.send_raw(GENERATE)
            await self.wait_height(node, start + 3)
            out = await self.cli(node, "mine", "--mode", "off")
            assert out is not None
            with trio.fail_after(10 * self.timeout_factor):
                reply = await c.read_message()
            assert reply["error"]["data"]["code"] == "generate-cancelled", reply
        await self.assert_height_holds(node, start)

    async def cli_into_a_closed_pipe_exits_quietly(self, node):
        """``crowdmesh --json chain | head -1`` where head has already quit."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        cmd = [sys.executable, "-m", "crowdmesh", "--socket", str(node.socket), "--json",
               "chain", "--count", "5"]
        try:
            proc = await trio.run_process(cmd, stdout=write_end, capture_stderr=True,
                                          check=False)
        finally:
            os.close(write_end)
        assert proc.stderr.decode() == ""
        assert proc.returncode == 141

    async def subscribers_leave_room_for_stop(self, node):
        clients = []
        try:
            for _ in range(64):
                c = await ControlClient.connect(node.socket)
                try:
                    await c.call("subscribe", ["logs"])
                    clients.append(c)
                except RpcCallError as exc:
                    assert exc.code == "too-many-subscribers"
                    await c.aclose()
            assert len(clients) == 56  # 64 slots less the reserve of 8
            async with await ControlClient.connect(node.socket) as op:
                assert (await op.call("status"))["height"] > 0
                assert await op.call("stop") == {"stopping": True}
            assert node.process is not None
            with trio.fail_after(20 * self.timeout_factor):
                await node.process.wait()
            assert node.process.returncode == 0
        finally:
            for c in clients:
                await c.aclose()

    async def cli(self, node, *args):
        cmd = [sys.executable, "-m", "crowdmesh", "--socket", str(node.socket), *args]
        proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode()


async def test_control_faults_of_issue_11():
    await ControlFaults().main()

