"""The harness's own network operations on real daemons: split, mine on both sides, join, and
a SIGKILLed node that passes check-db, reindexes, restarts and resyncs."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from tests.functional.framework import CrowdmeshTestFramework

pytestmark = pytest.mark.functional


class SplitJoin(CrowdmeshTestFramework):
    def set_test_params(self):
        self.num_nodes = 4
        self.topology = "line"
        self.mining_mode = "off"  # blocks only from generate: deterministic work per side

    async def run_test(self):
        n0, n1, n2, n3 = self.nodes
        await self.net.mine(n0, 2)
        await self.net.split([[0, 1], [2, 3]])
        await self.net.mine(n0, 2, sync=False)
        await self.net.mine(n2, 4, sync=False)
        left = await self.net.sync_blocks([n0, n1])
        right = await self.net.sync_blocks([n2, n3])
        assert (left["height"], right["height"]) == (4, 6)
        await self.net.join()
        tip = await self.net.sync_blocks(timeout=60)
        assert tip["hash"] == right["hash"], "everyone reorgs to the heavier side"

        # SIGKILL (a crash), then check-db on the stopped data dir, then resync
        await n3.kill()
        await self.net.mine(n0, 3, sync=False)
        proc = await trio.run_process(
            [sys.executable, "-m", "crowdmesh", "check-db", "--config",
             str(n3.config)], capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        proc = await trio.run_process(
            [sys.executable, "-m", "crowdmesh", "--json", "reindex", "--config",
             str(n3.config)], capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert json.loads(proc.stdout)["height"] == 6  # what n3 had when it was killed
        await n3.start(self.net.nursery)
        await n3.wait_ready()
        assert (await self.net.sync_blocks())["height"] == 9


async def test_split_join_kill_restart():
    await SplitJoin().main()
