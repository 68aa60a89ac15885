"""Fork choice, reorgs, orphans, queries, templates, retargeting, stores, check_db/reindex."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crowdmesh.chain import (
    Block,
    BlockStatus,
    Chain,
    ImportStatus,
    MemoryStore,
    SqliteStore,
    check_db,
    merkle_root,
    reindex,
)
from crowdmesh.chain.layout import P_BLOCK, P_STATE, P_UNDO
from crowdmesh.chain.rules import next_target
from crowdmesh.errors import NotFound, UsageError, ValidationError

from .helpers import (
    ADDRS,
    ALLOC,
    BASE_FEE,
    CHAIN_ID,
    KEYS,
    MINERS,
    NOW,
    fresh_chain,
    make_genesis,
    mine_block,
    next_block,
    transfer,
)
from .reference import Reference


def test_extend_and_query() -> None:
    chain = fresh_chain()
    tx = transfer(0, 0, ADDRS[5], 500, tip=40)
    b1 = next_block(chain, (tx,))
    result = chain.import_block(b1, NOW)
    assert result.status is ImportStatus.CONNECTED and result.connected == (b1,)
    assert not result.reorg and result.head == b1.hash == chain.head_hash
    assert result.receipts[0][0].gas == tx.gas(1)  # the recipient's account is a new word
    assert chain.balance(ADDRS[5]) == 500 and chain.nonce(ADDRS[0]) == 1
    assert chain.balance(MINERS[0]) == 1000 + tx.fee * 3 // 4  # reward + fee minus 25 % burned
    assert chain.get_block_by_height(1) == b1 and chain.get_hash_at(0) == chain.genesis_hash
    assert chain.get_transaction(tx.txid) == (tx, b1.hash, 1)
    assert [h.height for h in chain.headers_range(0, 5)] == [0, 1]
    assert chain.locator() == [b1.hash, chain.genesis_hash]
    assert chain.find_fork_height([bytes(32), b1.hash]) == 1
    with pytest.raises(NotFound):
        chain.get_block_by_height(2)
    with pytest.raises(NotFound):
        chain.get_transaction(bytes(32))
    assert chain.import_block(b1, NOW).status is ImportStatus.DUPLICATE


def test_reorg_returns_transactions_and_restores_state() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    g = chain.genesis_hash
    tx_a = transfer(0, 0, ADDRS[1], 100)
    a1 = ref.build(g, (tx_a,), MINERS[0])
    ref.add(a1)
    chain.import_block(a1, NOW)
    before = dict(chain.iter_state())
    b1 = ref.build(g, (), MINERS[1], dt=11)
    ref.add(b1)
    assert chain.import_block(b1, NOW).status is ImportStatus.SIDE_CHAIN  # tie: first seen
    tx_b = transfer(2, 0, ADDRS[1], 7)
    b2 = ref.build(b1.hash, (tx_b,), MINERS[1])
    ref.add(b2)
    result = chain.import_block(b2, NOW)
    assert result.status is ImportStatus.CONNECTED and result.reorg
    assert result.disconnected == (a1,) and result.connected == (b1, b2)
    assert result.returned_txs == (tx_a,)
    assert chain.head_hash == ref.head() == b2.hash
    assert dict(chain.iter_state()) == ref.state(b2.hash)
    assert chain.block_status(a1.hash) is BlockStatus.VALID and not chain.is_main_chain(a1.hash)
    # and back: a2, a3 on the first branch
    a2 = ref.build(a1.hash, (), MINERS[0])
    ref.add(a2)
    a3 = ref.build(a2.hash, (), MINERS[0])
    ref.add(a3)
    chain.import_block(a2, NOW)
    result = chain.import_block(a3, NOW)
    assert result.disconnected == (b2, b1) and result.connected == (a1, a2, a3)
    assert result.returned_txs == (tx_b,)
    assert dict(chain.iter_state()) == ref.state(a3.hash) != before


def test_invalid_side_branch_is_found_when_it_becomes_heaviest() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    g = chain.genesis_hash
    a1 = ref.build(g, (), MINERS[0])
    chain.import_block(a1, NOW)
    bad = ref.build(g, (), MINERS[1], bad_root=True)
    assert chain.import_block(bad, NOW).status is ImportStatus.SIDE_CHAIN  # not checked yet
    child = ref.build(g, (), MINERS[1])  # any valid block can stand in for the PoW-only child
    child = mine_block(Block(dataclasses.replace(
        child.header, parent=bad.hash, height=2, timestamp=bad.header.timestamp + 1), ()))
    with pytest.raises(ValidationError) as exc:
        chain.import_block(child, NOW)
    assert exc.value.code == "bad-block-state-root"
    assert chain.head_hash == a1.hash
    assert chain.block_status(bad.hash) is chain.block_status(child.hash) is BlockStatus.INVALID


def test_orphans_connect_when_parent_arrives() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    blocks, parent = [], chain.genesis_hash
    for _ in range(4):
        blocks.append(ref.build(parent, (), MINERS[0]))
        ref.add(blocks[-1])
        parent = blocks[-1].hash
    for b in blocks[1:]:
        result = chain.import_block(b, NOW)
        assert result.status is ImportStatus.ORPHAN and result.missing_parent == blocks[0].hash
    result = chain.import_block(blocks[0], NOW)
    assert result.status is ImportStatus.CONNECTED and result.connected == tuple(blocks)
    assert chain.height == 4 and chain.orphan_count() == 0


def test_orphan_pool_is_bounded() -> None:
    from crowdmesh.chain import MAX_ORPHANS

    chain = fresh_chain()
    template = next_block(chain)
    for i in range(MAX_ORPHANS + 10):
        h = dataclasses.replace(template.header, parent=i.to_bytes(32, "big"))
        chain.import_block(Block(h), NOW)
    assert chain.orphan_count() == MAX_ORPHANS


def test_orphan_pool_is_bounded_in_bytes() -> None:
    from crowdmesh.chain import MAX_ORPHAN_BYTES, MAX_PAYLOAD_BYTES, TRANSFER, make_transaction

    chain = fresh_chain()
    txs = tuple(make_transaction(KEYS[0], CHAIN_ID, n, TRANSFER, bytes(MAX_PAYLOAD_BYTES), 1)
                for n in range(15))  # ≈ 1 MiB: a full block (orphans are not state-checked)
    body = next_block(chain)
    header = dataclasses.replace(body.header, tx_root=merkle_root([t.txid for t in txs]))
    size = len(Block(header, txs).encode())
    count = MAX_ORPHAN_BYTES // size + 5
    for i in range(count):
        h = dataclasses.replace(header, parent=i.to_bytes(32, "big"))
        chain.import_block(Block(h, txs), NOW)
    assert chain.orphan_bytes() <= MAX_ORPHAN_BYTES < chain.orphan_bytes() + size
    assert chain.orphan_count() == MAX_ORPHAN_BYTES // size < count


def test_template_skips_failing_transactions() -> None:
    chain = fresh_chain()
    good = transfer(0, 0, ADDRS[1], 5)
    broke = transfer(1, 0, ADDRS[2], ALLOC)
    gap = transfer(2, 3, ADDRS[1], 1)
    tpl = chain.build_block_template(MINERS[0], [good, broke, gap], NOW)
    assert tpl.block.txs == (good,)
    assert dict(tpl.skipped) == {broke.txid: "bad-tx-overspend", gap.txid: "bad-tx-nonce"}
    assert tpl.fees == good.fee - good.fee // 4 and tpl.gas == good.gas()
    assert chain.import_block(mine_block(tpl.block), NOW).status is ImportStatus.CONNECTED


def test_difficulty_retargets_toward_block_interval() -> None:
    g = make_genesis(target=1 << 248, retarget_interval=4, block_interval=10)
    fast = Chain.open(MemoryStore(), g)
    slow = Chain.open(MemoryStore(), g)
    for i in range(3):
        fast.import_block(next_block(fast, now=g.timestamp + 2 * (i + 1)), NOW)
        slow.import_block(next_block(slow, now=g.timestamp + 30 * (i + 1)), NOW)
    # blocks 1-3 took 2 s (fast) or 30 s (slow) each against 10 s wanted; height 4 retargets
    assert fast.head.target == 1 << 248
    assert fast.next_target() == (1 << 248) * 7 // 30  # 6 s clamped to a quarter of 30 s
    assert slow.next_target() == 1 << 248  # never easier than the genesis target
    info = fast._index[fast.head_hash].info
    assert next_target(g, info, fast._lookup) == fast.next_target()
    b = next_block(fast)
    assert b.header.target == fast.next_target()
    assert fast.import_block(b, NOW).status is ImportStatus.CONNECTED


def test_genesis_mismatch_and_open_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "chain.db")
    store = SqliteStore.open(path)
    chain = Chain.open(store, make_genesis())
    chain.import_block(next_block(chain, (transfer(0, 0, ADDRS[1], 5),)), NOW)
    with pytest.raises(UsageError) as exc:
        SqliteStore.open(path)
    assert exc.value.code == "datadir-locked"
    with pytest.raises(UsageError) as exc:
        Chain.open(store, make_genesis(block_reward=1))
    assert exc.value.code == "genesis-mismatch"
    store.close()
    store = SqliteStore.open(path)
    again = Chain.open(store, make_genesis())
    assert again.height == 1 and again.balance(ADDRS[1]) == ALLOC + 5
    assert check_db(store, make_genesis()) == []
    store.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_check_db_detects_corruption_and_reindex_repairs(tmp_path: Path, backend: str) -> None:
    store = MemoryStore() if backend == "memory" else SqliteStore.open(str(tmp_path / "c.db"))
    g = make_genesis()
    chain = Chain.open(store, g)
    ref = Reference(g)
    parent = chain.genesis_hash
    for n in range(3):
        b = ref.build(parent, (transfer(0, n, ADDRS[1], 5),), MINERS[0])
        ref.add(b)
        chain.import_block(b, NOW)
        parent = b.hash
    side = ref.build(chain.genesis_hash, (), MINERS[1], dt=3)
    chain.import_block(side, NOW)
    ref.add(side)
    for _ in range(2):  # an equal-work rival tip, seen second: the head must stay put
        side = ref.build(side.hash, (), MINERS[1], dt=3)
        ref.add(side)
        assert chain.import_block(side, NOW).status is ImportStatus.SIDE_CHAIN
    head, state = chain.head_hash, dict(chain.iter_state())
    assert check_db(store, g) == []
    key = P_STATE + b"a" + ADDRS[1]
    store.write_batch({key: b"\x93\x01\x00\x00", P_UNDO + head: None,
                       P_BLOCK + bytes(32): b"junk"})
    problems = check_db(store, g)
    assert any("accumulator" in p for p in problems) and any("undo" in p for p in problems)
    rebuilt = reindex(store, g, NOW)
    assert check_db(store, g) == []
    assert rebuilt.head_hash == head and dict(rebuilt.iter_state()) == state
    assert rebuilt.has_block(side.hash)
    store.close()


def test_mine_is_bounded_and_finds_valid_nonces() -> None:
    from crowdmesh.chain import mine

    chain = fresh_chain(target=1 << 252)
    header = next_block(chain).header
    nonce = mine(header, 0, 10_000)
    assert nonce is not None and dataclasses.replace(header, nonce=nonce).meets_target()
    assert all(not dataclasses.replace(header, nonce=n).meets_target() for n in range(nonce))
    impossible = dataclasses.replace(header, target=1)
    assert mine(impossible, 0, 1000) is None
    assert mine(impossible, 2**64 - 10, 1000) is None  # stops at the top of the nonce space


def test_supply_after_blocks_and_reorg() -> None:
    from .test_state_machine import supply_holds

    chain = fresh_chain()
    ref = Reference(chain.genesis)
    a1 = ref.build(chain.genesis_hash, (transfer(0, 0, ADDRS[1], 9, tip=41),), MINERS[0])
    ref.add(a1)
    chain.import_block(a1, NOW)
    assert supply_holds(chain)
    total = sum(a.balance for _, a in chain.iter_accounts())
    assert total == 4 * ALLOC + 1000 - (BASE_FEE + 41) * 2500 // 10_000
    b1 = ref.build(chain.genesis_hash, (transfer(1, 0, ADDRS[2], 3, tip=400),), MINERS[1], dt=9)
    ref.add(b1)
    b2 = ref.build(b1.hash, (), MINERS[1])
    chain.import_block(b1, NOW)
    assert chain.import_block(b2, NOW).reorg
    assert supply_holds(chain)
    assert sum(a.balance for _, a in chain.iter_accounts()) == (
        4 * ALLOC + 2000 - (BASE_FEE + 400) * 2500 // 10_000)


def test_invalid_pooled_orphan_is_reported_not_raised() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    b1 = ref.build(chain.genesis_hash, (), MINERS[0])
    ref.add(b1)
    good = ref.build(b1.hash, (), MINERS[0])
    bad = ref.build(b1.hash, (), MINERS[1], dt=12, bad_root=True)
    late = ref.build(b1.hash, (), MINERS[2], dt=-20)  # before the median time past
    for orphan in (bad, late, good):
        assert chain.import_block(orphan, NOW).status is ImportStatus.ORPHAN
    result = chain.import_block(b1, NOW)
    assert result.status is ImportStatus.CONNECTED
    assert dict(result.rejected) == {bad.hash: "bad-block-state-root",
                                     late.hash: "bad-block-time-early"}
    assert result.connected == (b1, good) and chain.head_hash == good.hash
    assert chain.orphan_count() == 0


def test_pooled_orphan_failing_for_now_can_be_imported_again() -> None:
    chain = fresh_chain()
    other = fresh_chain()
    b1 = next_block(other)
    other.import_block(b1, NOW)
    ahead = next_block(other, now=NOW + 3 * 3600)  # beyond the 2-hour rule at NOW
    assert chain.import_block(ahead, NOW).status is ImportStatus.ORPHAN
    result = chain.import_block(b1, NOW)
    assert dict(result.rejected) == {ahead.hash: "bad-block-time-future"}
    assert not chain.has_block(ahead.hash) and chain.orphan_bytes() == 0
    later = chain.import_block(ahead, NOW + 3 * 3600)  # not known, not cached as invalid
    assert later.status is ImportStatus.CONNECTED and chain.head_hash == ahead.hash


def _beacon_probe(state, tx, ctx):
    """A contract that reports the ancestor hashes its context gives (TxContext.hash_at)."""
    from crowdmesh.chain.contracts import Event

    seen = [ctx.hash_at(h) or b"" for h in (0, ctx.height - 1, ctx.height, ctx.height + 1)]
    return (Event("probed", tuple(seen)),)


def test_contracts_see_their_own_branch_ancestors_by_height_during_a_reorg() -> None:
    from crowdmesh.chain import CONTRACTS, MemoryStore, make_transaction

    contracts = {**CONTRACTS, "probe": _beacon_probe}
    chain = Chain.open(MemoryStore(), make_genesis(), contracts)
    fork = Chain.open(MemoryStore(), make_genesis(), contracts)
    for _ in range(2):
        chain.import_block(next_block(chain), NOW)
    probe = make_transaction(KEYS[0], CHAIN_ID, 0, "probe", b"", BASE_FEE)
    branch = []
    for txs in ((), (), (probe,)):  # heavier: the probe is connected during the reorg
        block = next_block(fork, txs, MINERS[1])
        fork.import_block(block, NOW)
        branch.append(block)
    results = [chain.import_block(b, NOW) for b in branch]
    assert results[-1].reorg
    (event,) = chain.tx_receipt(probe.txid).events
    g = chain.get_hash_at(0)
    assert event.fields == (g, branch[1].hash, b"", b"")  # its branch, never the old one
