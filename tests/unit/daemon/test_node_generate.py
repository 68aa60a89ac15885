"""A real node (run_node, one process) whose search keeps stopping: ``generate`` fails with
``mining-stalled`` after a bounded number of stops instead of waiting forever."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crowdmesh.chain import Genesis
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.mining import MAX_GENERATE_STALLS
from crowdmesh.daemon.node import run_node
from crowdmesh.errors import UsageError
from tests.unit.inprocess import InProcessNode


class Sink:
    def publish_nowait(self, topic, event) -> None:
        pass


async def test_generate_gives_up_when_the_search_keeps_stopping(tmp_path: Path) -> None:
    # a miner may mine 1 of any 3 blocks: after our first block no template can be built
    genesis = Genesis(chain_id="stall", timestamp=1_700_000_000, target=1 << 250,
                      block_interval=1, retarget_interval=0, alloc=(),
                      miner_cap_m=1, miner_cap_w=3)
    (tmp_path / "genesis.json").write_text(genesis.to_json())
    cfg = NodeConfig(data_dir=tmp_path / "d", genesis_path=tmp_path / "genesis.json",
                     control_socket=tmp_path / "c.sock", listen="/ip4/127.0.0.1/tcp/0",
                     roles=frozenset({"miner"}))
    async with trio.open_nursery() as nursery:
        node = InProcessNode(await nursery.start(run_node, cfg, Sink()))
        try:
            with trio.fail_after(10 + 2 * MAX_GENERATE_STALLS), pytest.raises(UsageError) as info:
                await node.generate(3)
            assert info.value.code == "mining-stalled"
            assert "1 of 3 blocks mined" in str(info.value)
            assert node.ledger.chain.height == 1
        finally:
            node.request_stop()
