"""PoW batches off the trio thread: found blocks, prompt cancel, and the effect table."""

from __future__ import annotations

import trio

from crowdmesh.chain import Block, BlockHeader
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.mining import MiningRunner
from crowdmesh.roles.effects import effect_types

Z = b"\x00" * 32


def header(target: int) -> BlockHeader:
    return BlockHeader("t", 1, Z, 1_700_000_000, target, Z, Z, Z, 0)


async def test_runner_finds_a_block_and_reports_it() -> None:
    found: list[Block] = []
    done = trio.Event()

    async def on_found(block: Block) -> None:
        found.append(block)
        done.set()

    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, lambda parent: Block(header(1 << 248)), on_found,
                              batch=500)
        runner.mine_on(Z)
        with trio.fail_after(20):
            await done.wait()
    assert found[0].header.meets_target() and not runner.active
    assert runner.stats.found == 1 and runner.stats.hashes >= 1


async def test_stop_cancels_between_batches() -> None:
    async def on_found(block: Block) -> None:
        raise AssertionError("target 1 cannot be met")

    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, lambda parent: Block(header(1)), on_found, batch=2000)
        runner.mine_on(Z)
        with trio.fail_after(10):
            while runner.stats.hashes < 4000:
                await trio.sleep(0.01)
        assert runner.active
        start = trio.current_time()
        runner.stop()
    # the nursery closed: the search task ended; one batch of 2000 hashes is milliseconds
    assert trio.current_time() - start < 1.0 and not runner.active


async def test_new_head_restarts_the_search() -> None:
    parents: list[bytes] = []

    def template(parent: bytes) -> Block:
        parents.append(parent)
        return Block(header(1))

    async def on_found(block: Block) -> None:
        raise AssertionError("unreachable")

    async with trio.open_nursery() as nursery:
        runner = MiningRunner(nursery, template, on_found, batch=1000)
        runner.mine_on(b"\x01" * 32)
        with trio.fail_after(5):
            while not parents:  # the first search is running
                await trio.sleep(0.01)
        runner.mine_on(b"\x02" * 32)
        with trio.fail_after(5):
            while len(parents) < 2 or len(nursery.child_tasks) > 1:
                await trio.sleep(0.01)
        # only the second search is left: the first was cancelled, not left running beside it
        assert len(nursery.child_tasks) == 1 and runner.active
        runner.stop()
    assert parents == [b"\x01" * 32, b"\x02" * 32] and runner.stats.searches == 2


async def test_executor_table_covers_every_effect() -> None:
    async def noop(_: bytes) -> None:
        return None

    ports = EffectPorts(mine_on=lambda p, g: None, stop_mining=lambda: None, publish_block=noop,
                        publish_tx=noop, submit_tx=noop, deliver=lambda e: None)
    async with trio.open_nursery() as nursery:
        assert EffectExecutor(ports, nursery).handles() == frozenset(effect_types())
