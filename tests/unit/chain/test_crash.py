"""Crash safety: a child process importing blocks into SqliteStore is SIGKILLed at random points.

The block sequence holds two deep reorgs (12 and 16 blocks), so kills land inside extensions,
side-chain stores and reorg batches. After every kill the store must pass ``check_db`` and its
head and state must be those the naive reference has after some prefix of the sequence. The
children are forked from this (already warmed-up) process, so a trial costs milliseconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from crowdmesh.chain import Account, Block, Chain, SqliteStore, check_db
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError

from .helpers import ADDRS, MINERS, NOW, make_genesis, transfer
from .reference import Reference

GENESIS = make_genesis()
KILLS = 60  # SIGKILLed children wanted (the brief asks for at least 50)
MAX_TRIALS = 150


def build_sequence() -> tuple[list[Block], dict[bytes, dict[bytes, bytes]]]:
    """Blocks in delivery order and, for every prefix, the reference head → state."""
    ref = Reference(GENESIS)
    rng = DeterministicRng(b"crash")
    nonces = [0] * 4
    blocks: list[Block] = []

    def grow(parent: bytes, count: int, miner: bytes) -> bytes:
        for _ in range(count):
            txs = []
            for _ in range(rng.randbelow(3)):
                s = rng.randbelow(4)
                txs.append(transfer(s, nonces[s], ADDRS[rng.randbelow(6)], 1 + rng.randbelow(99)))
                nonces[s] += 1
            try:
                block = ref.build(parent, tuple(txs), miner)
            except ValidationError:
                block = ref.build(parent, (), miner)  # nonce from the other branch: leave out
            blocks.append(block)
            parent = block.hash
        return parent

    a3 = grow(ref.genesis_hash, 3, MINERS[0])
    a15 = grow(a3, 12, MINERS[0])
    nonces[:] = [_nonce(ref.state(a3), i) for i in range(4)]
    grow(a3, 16, MINERS[1])  # reorg to B when B reaches height 16
    nonces[:] = [_nonce(ref.state(a15), i) for i in range(4)]
    grow(a15, 7, MINERS[2])  # and back to A at height 20
    heads: dict[bytes, dict[bytes, bytes]] = {ref.genesis_hash: ref.state(ref.genesis_hash)}
    for block in blocks:
        ref.add(block)
        heads[ref.head()] = ref.state(ref.head())
    return blocks, heads


def _nonce(state: dict[bytes, bytes] | None, i: int) -> int:
    raw = (state or {}).get(b"a" + ADDRS[i])
    return Account.decode(raw).nonce if raw else 0


def import_all(path: str, blocks: list[Block]) -> None:
    store = SqliteStore.open(path)
    chain = Chain.open(store, GENESIS)
    for block in blocks:
        chain.import_block(block, NOW)
    store.close()


def run_child(path: str, blocks: list[Block], kill_after: float | None) -> int | None:
    """Fork a child that imports ``blocks``; SIGKILL it after ``kill_after`` seconds."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            import_all(path, blocks)
        except BaseException:
            code = 3
        os._exit(code)
    try:
        if kill_after is not None:
            time.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def wipe(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def test_sigkill_at_random_points_leaves_a_consistent_store(tmp_path: Path) -> None:
    blocks, heads = build_sequence()
    final = list(heads)[-1]
    path = str(tmp_path / "chain.db")
    start = time.monotonic()
    assert run_child(path, blocks, None) == 0  # uninterrupted run: also times one pass
    full = time.monotonic() - start
    wipe(path)
    rng = DeterministicRng(b"kill-times")
    seen_heads, killed = set(), 0
    deadline = time.monotonic() + 50
    for _ in range(MAX_TRIALS):
        if killed >= KILLS:
            break
        assert time.monotonic() < deadline, "crash test over its time budget"
        delay = full * rng.randbelow(1000) / 1000
        code = run_child(path, blocks, delay)
        assert code in (0, -signal.SIGKILL), f"child failed with {code}"
        killed += code == -signal.SIGKILL
        store = SqliteStore.open(path)
        try:
            assert check_db(store, GENESIS) == []
            chain = Chain.open(store, GENESIS)
            assert chain.head_hash in heads, "head is not one the reference ever had"
            assert dict(chain.iter_state()) == heads[chain.head_hash]
            seen_heads.add(chain.head_hash)
            done = chain.head_hash == final
        finally:
            store.close()
        if done:
            wipe(path)
    print(f"full pass {full:.3f}s, killed {killed}, distinct heads {len(seen_heads)}")
    assert killed >= KILLS
    assert len(seen_heads) >= 10  # kills landed all over the sequence
