"""Differential test: the real chain + store against the naive reference (py-evm style).

Hypothesis feeds random blocks (valid, invalid state roots, bad transactions, early timestamps,
over-cap miners), forks, reorgs, out-of-order delivery and restarts to both. After every step
the heads, heights and full states must agree, and the supply invariant must hold.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crowdmesh.chain import (
    Account,
    Block,
    Chain,
    ImportStatus,
    MemoryStore,
    SqliteStore,
    Transaction,
)
from crowdmesh.chain.rules import burned_fee
from crowdmesh.chain.state import muhash_of
from crowdmesh.errors import ValidationError

from .helpers import ADDRS, MINERS, make_genesis, transfer
from .reference import NOW, Reference

GENESIS = make_genesis(miner_cap_m=2, miner_cap_w=3)
AMOUNTS = [1, 1, 500, 500, 999_000, 5_000_000]  # the last always overspends


def supply_holds(chain: Chain) -> bool:
    """Σ balances == alloc + Σ rewards − Σ burned fees over the main chain."""
    g = chain.genesis
    expected = g.alloc_total()
    for height in range(1, chain.height + 1):
        block = chain.get_block_by_height(height)
        expected += g.reward(height) - sum(burned_fee(tx.fee, g) for tx in block.txs)
    return sum(a.balance for _, a in chain.iter_accounts()) == expected


class ChainComparison(RuleBasedStateMachine):
    """Real chain over a MemoryStore vs the naive reference."""

    def __init__(self) -> None:
        super().__init__()
        self.store = self.open_store()
        self.chain = Chain.open(self.store, GENESIS)
        self.ref = Reference(GENESIS)
        self.held: list[Block] = []  # built but not yet delivered (out-of-order delivery)

    def open_store(self) -> MemoryStore | SqliteStore:
        return MemoryStore()

    # ----- helpers -----------------------------------------------------------------------

    def valid_tips(self) -> list[bytes]:
        return [h for h in self.ref.order if self.ref.state(h) is not None]

    def draw_txs(self, data: st.DataObject, parent: bytes) -> tuple[Transaction, ...]:
        state = self.ref.state(parent) or {}
        nonces: dict[int, int] = {}
        txs = []
        for _ in range(data.draw(st.integers(0, 3), label="ntx")):
            sender = data.draw(st.integers(0, 3), label="sender")
            raw = state.get(b"a" + ADDRS[sender])
            base = Account.decode(raw).nonce if raw else 0
            nonce = base + nonces.get(sender, 0) + data.draw(st.sampled_from([0] * 8 + [1, -1]))
            nonces[sender] = nonces.get(sender, 0) + 1
            amount = data.draw(st.sampled_from(AMOUNTS), label="amount")
            to = ADDRS[data.draw(st.integers(0, 5), label="to")]
            txs.append(transfer(sender, max(nonce, 0), to, amount,
                                tip=data.draw(st.integers(0, 50), label="fee")))
        return tuple(txs)

    def build(self, data: st.DataObject, parent: bytes) -> Block:
        txs = self.draw_txs(data, parent)
        miner = MINERS[data.draw(st.integers(0, 2), label="miner")]
        dt = data.draw(st.sampled_from([1, 5, 10, 10, 30, 10, -30]), label="dt")
        bad_root = data.draw(st.integers(0, 19), label="bad_root") == 0
        try:
            return self.ref.build(parent, txs, miner, dt, bad_root=bad_root)
        except ValidationError:
            return self.ref.build_unchecked(parent, txs, miner, dt)

    def deliver(self, block: Block) -> None:
        self.ref.add(block)
        try:
            result = self.chain.import_block(block, NOW)
        except ValidationError as exc:
            assert self.ref.state(block.hash) is None, f"valid block refused: {exc.code}"
            return
        parent_ok = block.height == 0 or self.ref.state(block.header.parent) is not None
        if block.hash in self.ref.in_tree and parent_ok:
            assert result.status is not ImportStatus.ORPHAN
        elif block.hash not in self.ref.in_tree:
            assert result.status in (ImportStatus.ORPHAN, ImportStatus.DUPLICATE)
        if result.status is ImportStatus.CONNECTED:
            assert self.chain.is_main_chain(block.hash)

    # ----- rules -------------------------------------------------------------------------

    @rule(data=st.data())
    def extend_head(self, data: st.DataObject) -> None:
        self.deliver(self.build(data, self.ref.head()))

    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        self.deliver(self.build(data, data.draw(st.sampled_from(self.valid_tips()))))

    @rule(data=st.data(), length=st.integers(2, 5))
    def grow_branch(self, data: st.DataObject, length: int) -> None:
        """Several blocks on one valid block: makes deeper forks and reorgs."""
        parent = data.draw(st.sampled_from(self.valid_tips()))
        for _ in range(length):
            block = self.build(data, parent)
            self.deliver(block)
            if self.ref.state(block.hash) is None:
                return
            parent = block.hash

    @rule(data=st.data())
    def extend_any(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(sorted(self.ref.in_tree)))
        if self.ref.state(parent) is None:
            self.deliver(self.ref.build_unchecked(parent, (), MINERS[0]))
        else:
            self.deliver(self.build(data, parent))

    @rule(data=st.data())
    def hold_back(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(self.valid_tips()))
        block = self.build(data, parent)
        self.held.append(block)
        if self.ref.state(block.hash) is not None:
            self.deliver(self.build(data, block.hash))  # the child arrives first: orphan

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.deliver(self.held.pop(data.draw(st.integers(0, len(self.held) - 1))))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        self.deliver(self.ref.blocks[data.draw(st.sampled_from(sorted(self.ref.in_tree)))])

    @rule()
    def restart(self) -> None:
        """Reopen from the store: state survives, the orphan pool (memory only) does not."""
        self.store = self.reopen_store()
        self.chain = Chain.open(self.store, GENESIS)
        self.held.extend(self.ref.pool)
        self.ref.pool.clear()

    def reopen_store(self) -> MemoryStore | SqliteStore:
        return self.store

    # ----- invariants --------------------------------------------------------------------

    @invariant()
    def heads_and_states_agree(self) -> None:
        head = self.ref.head()
        assert self.chain.head_hash == head
        assert self.chain.height == self.ref.blocks[head].height
        state = dict(self.chain.iter_state())
        assert state == self.ref.state(head)
        assert self.chain.state_accumulator == muhash_of(sorted(state.items()))

    @invariant()
    def supply(self) -> None:
        assert supply_holds(self.chain)

    def teardown(self) -> None:
        self.store.close()


class SqliteChainComparison(ChainComparison):
    """The same differential test over the SQLite store, with real close/reopen restarts."""

    def open_store(self) -> SqliteStore:
        self.tmp = tempfile.mkdtemp(prefix="cm-chain-")
        return SqliteStore.open(self.tmp + "/chain.db")

    def reopen_store(self) -> SqliteStore:
        self.store.close()
        return SqliteStore.open(self.tmp + "/chain.db")

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestChainComparison = ChainComparison.TestCase
TestChainComparison.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestSqliteChainComparison = SqliteChainComparison.TestCase
TestSqliteChainComparison.settings = settings(
    max_examples=15, stateful_step_count=25, deadline=None)
