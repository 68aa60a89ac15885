"""Crash safety: a child process importing blocks into SqliteStore is SIGKILLed at random points.

The block sequence holds two deep reorgs (12 and 16 blocks), so kills land inside extensions,
side-chain stores and reorg batches. After every kill the store must pass ``check_db`` and its
head and state must be those the naive reference has after some prefix of the sequence. The
children are forked from this (already warmed-up) process, so a trial costs milliseconds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from crowdmesh.chain import Account, Block, Chain, MemoryStore, SqliteStore, check_db, reindex
from crowdmesh.chain.layout import P_BLOCK
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError

from .helpers import ADDRS, MINERS, NOW, make_genesis, next_block, transfer
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
    # why relative: each trial lasts at most one full pass, which a loaded machine slows too
    deadline = time.monotonic() + max(50.0, 2 * KILLS * full)
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


class _FailingCommit:
    """A real SQLite connection whose next COMMIT fails (as on a full disk or I/O error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail = True

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail:
            self.fail = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)  # type: ignore[arg-type]

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction


def test_failed_commit_rolls_back_and_the_store_stays_usable(tmp_path: Path) -> None:
    store = SqliteStore.open(str(tmp_path / "c.db"))
    conn = store._conn
    store._conn = _FailingCommit(conn)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        store.write_batch({b"k1": b"v1"})
    assert not conn.in_transaction and store.get(b"k1") is None
    store.write_batch({b"k2": b"v2"})  # a left-open transaction would make BEGIN fail here
    assert store.get(b"k2") == b"v2"
    store._conn = conn
    store.close()


def test_check_db_flags_an_interrupted_reindex_and_reindex_recovers() -> None:
    store = MemoryStore()
    chain = Chain.open(store, GENESIS)
    for n in range(3):
        chain.import_block(next_block(chain, (transfer(0, n, ADDRS[5], 1),)), NOW)
    head = chain.head_hash
    # the reindex wipe batch committed, the re-import did not start: blocks stay, all else goes
    store.write_batch({k: None for k in list(store.data) if k[:1] != P_BLOCK})
    assert check_db(store, GENESIS) != []
    rebuilt = reindex(store, GENESIS, NOW)
    assert rebuilt.head_hash == head and check_db(store, GENESIS) == []
    assert check_db(MemoryStore(), GENESIS) == []  # a store never written is fresh
