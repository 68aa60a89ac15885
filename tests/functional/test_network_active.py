"""``setnetworkactive`` on real daemons: off drops every peer and the node stays isolated while
its peers keep redialling it and mine on; ``crowdmesh network on`` reconnects and it syncs."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from tests.functional.framework import CrowdmeshTestFramework, wait_until

pytestmark = pytest.mark.functional

# the CLI with the ``network`` group, whether or not cli.GROUPS lists it yet
CLI = ("import sys; from crowdmesh.daemon.client import cli, cli_network as n; "
       "g = cli.GROUPS if n.GROUP in cli.GROUPS else (*cli.GROUPS, n.GROUP); "
       "sys.exit(cli.main(sys.argv[1:], g))")
ISOLATED_S = 8.0  # longer than the redial backoff cap (5 s) of the peers that dial node0


class NetworkOffOn(CrowdmeshTestFramework):
    def set_test_params(self):
        self.num_nodes = 3
        self.topology = "mesh"  # node1 and node2 both dial node0: auto-dial must be refused
        self.mining_mode = "off"

    async def run_test(self):
        n0, n1, _ = self.nodes
        assert (await n0.rpc("status"))["network_active"] is True
        off = await n0.rpc("setnetworkactive", [False])
        assert off == {"network_active": False, "dropped": 2}
        assert (await n0.rpc("status"))["network_active"] is False

        async def no_peers():
            return len(await n0.rpc("peers")) == 0
        await wait_until(no_peers, 10, "node0 to drop its peers")
        await self.net.mine(n1, 3, sync=False)
        with trio.move_on_after(ISOLATED_S):
            while True:
                assert await n0.rpc("peers") == [], "a peer got through while off"
                await trio.sleep(0.25)
        assert (await n0.rpc("head"))["height"] == 0, "node0 heard of blocks while off"
        await n0.wait_for_log(["event=network-active active=false dropped=2"])
        # evidence that node1 kept redialling and was turned away (py-libp2p's wording)
        await n1.wait_for_log(["failed to upgrade security for peer " + n0.info.peer_id])

        argv = [sys.executable, "-c", CLI, "--json", "network", "on", "--socket", str(n0.socket)]
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert json.loads(proc.stdout)["network_active"] is True
        await self.net.wait_connected()
        assert (await self.net.sync_blocks())["height"] == 3


async def test_network_off_isolates_and_on_reconnects():
    await NetworkOffOn().main()
