"""Mempool: admission codes, nonce/fee ordering, bounds and eviction, head changes."""

from __future__ import annotations

import pytest

from crowdmesh.chain import TRANSFER, Mempool, Transaction, make_transaction, transfer_payload

from .helpers import (
    ADDRS,
    ALLOC,
    CHAIN_ID,
    KEYS,
    MINERS,
    NOW,
    fresh_chain,
    next_block,
    transfer,
)
from .reference import Reference


def add_code(pool: Mempool, tx: Transaction) -> str:
    from crowdmesh.errors import ValidationError

    with pytest.raises(ValidationError) as exc:
        pool.add(tx)
    return exc.value.code


def test_admission_codes() -> None:
    chain = fresh_chain()
    pool = Mempool(chain, max_per_sender=3)
    t0 = transfer(0, 0, ADDRS[1], 5)
    pool.add(t0)
    assert add_code(pool, t0) == "mempool-duplicate"
    assert add_code(pool, transfer(0, 2, ADDRS[1], 5)) == "mempool-nonce-gap"
    assert add_code(pool, transfer(0, 0, ADDRS[1], 6, tip=10)) == "mempool-conflict"
    pool.add(transfer(0, 1, ADDRS[1], 5))
    pool.add(transfer(0, 2, ADDRS[1], 5))
    assert add_code(pool, transfer(0, 3, ADDRS[1], 5)) == "mempool-sender-full"
    # the dry run sees the sender's pooled spends: nonces 0 and 1 cost 2 × (5 + fee)
    too_much = transfer(0, 2, ADDRS[1], ALLOC - 2 * (5 + t0.fee), tip=11)
    assert add_code(pool, too_much) == "bad-tx-overspend"
    assert len(pool) == 3 and t0.txid in pool


def test_replacement_by_fee() -> None:
    pool = Mempool(fresh_chain())
    low = transfer(0, 0, ADDRS[1], 5, tip=10)
    high = transfer(0, 0, ADDRS[1], 5, tip=11)
    pool.add(low)
    pool.add(high)
    assert low.txid not in pool and pool.get(high.txid) == high and len(pool) == 1


def test_select_orders_by_fee_keeping_nonce_order() -> None:
    pool = Mempool(fresh_chain())
    a0, a1 = transfer(0, 0, ADDRS[5], 1, tip=5), transfer(0, 1, ADDRS[5], 1, tip=50)
    b0, b1 = transfer(1, 0, ADDRS[5], 1, tip=20), transfer(1, 1, ADDRS[5], 1, tip=1)
    c0 = transfer(2, 0, ADDRS[5], 1, tip=10)
    for tx in (a0, a1, b0, b1, c0):
        pool.add(tx)
    assert pool.select() == [b0, c0, a0, a1, b1]
    assert pool.select(2) == [b0, c0]


def test_bounded_with_eviction_of_cheapest_tail() -> None:
    pool = Mempool(fresh_chain(), max_txs=3)
    cheap = transfer(0, 1, ADDRS[5], 1, tip=1)
    pool.add(transfer(0, 0, ADDRS[5], 1, tip=30))
    pool.add(cheap)
    pool.add(transfer(1, 0, ADDRS[5], 1, tip=20))
    assert add_code(pool, transfer(2, 0, ADDRS[5], 1, tip=1)) == "mempool-full"
    pool.add(transfer(2, 0, ADDRS[5], 1, tip=2))
    assert cheap.txid not in pool and len(pool) == 3
    by_bytes = Mempool(fresh_chain(), max_bytes=2 * len(cheap.encoded))
    by_bytes.add(transfer(0, 0, ADDRS[5], 1, tip=5))
    by_bytes.add(transfer(1, 0, ADDRS[5], 1, tip=5))
    assert add_code(by_bytes, transfer(2, 0, ADDRS[5], 1, tip=5)) == "mempool-full"
    assert by_bytes.size_bytes <= 2 * len(cheap.encoded)


def test_update_drops_confirmed_and_takes_back_disconnected() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    pool = Mempool(chain)
    t0, t1, t2 = (transfer(0, n, ADDRS[5], 1) for n in range(3))
    other = transfer(1, 0, ADDRS[5], 1)
    for tx in (t0, t1, t2, other):
        pool.add(tx)
    a1 = ref.build(chain.genesis_hash, (t0, t1), MINERS[0])
    ref.add(a1)
    pool.update(chain.import_block(a1, NOW))
    assert set(pool.transactions()) == {t2, other}
    # a heavier branch without t0, t1 but with `other`: t0, t1 come back, `other` leaves
    b1 = ref.build(chain.genesis_hash, (other,), MINERS[1], dt=12)
    ref.add(b1)
    b2 = ref.build(b1.hash, (), MINERS[1])
    ref.add(b2)
    chain.import_block(b1, NOW)
    result = chain.import_block(b2, NOW)
    assert result.returned_txs == (t0, t1)
    pool.update(result)
    assert pool.select() == [t0, t1, t2]
    blk = next_block(chain, tuple(pool.select()))
    pool.update(chain.import_block(blk, NOW))
    assert len(pool) == 0 and chain.nonce(ADDRS[0]) == 3


def test_remove_drops_later_nonces() -> None:
    pool = Mempool(fresh_chain())
    txs = [transfer(0, n, ADDRS[5], 1) for n in range(3)]
    for tx in txs:
        pool.add(tx)
    pool.remove([txs[1].txid, bytes(32)])
    assert pool.transactions() == [txs[0]]


def test_fee_bump_drops_later_txs_that_no_longer_apply() -> None:
    chain = fresh_chain()
    pool = Mempool(chain)
    pool.add(transfer(0, 0, ADDRS[5], 10))
    spends_rest = transfer(0, 1, ADDRS[5], ALLOC // 2)
    pool.add(spends_rest)
    bump = transfer(0, 0, ADDRS[5], ALLOC // 2, tip=20)  # now nonce 1 overspends
    pool.add(bump)
    assert pool.transactions() == [bump] and spends_rest.txid not in pool
    tpl = chain.build_block_template(MINERS[0], pool.select(), NOW)
    assert tpl.skipped == () and tpl.block.txs == (bump,)


def test_refill_refusal_leaves_no_credit_behind() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    small = transfer(1, 0, ADDRS[5], 1, tip=0)
    big = make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, transfer_payload(ADDRS[4], 10**8),
                           small.fee)  # funds ADDRS[4]; longer than `small` on the wire
    a1 = ref.build(chain.genesis_hash, (small, big), MINERS[0])
    ref.add(a1)
    chain.import_block(a1, NOW)
    spender = transfer(4, 0, ADDRS[5], 1, tip=0)  # only funded by `big`
    pool = Mempool(chain, max_bytes=len(small.encoded) + len(spender.encoded))
    pool.add(spender)
    b1 = ref.build(chain.genesis_hash, (), MINERS[1], dt=12)  # heavier branch without a1
    ref.add(b1)
    b2 = ref.build(b1.hash, (), MINERS[1])
    chain.import_block(b1, NOW)
    result = chain.import_block(b2, NOW)
    assert result.returned_txs == (small, big)
    pool.update(result)  # `small` fits, `big` is refused (mempool-full): `spender` is unfunded
    assert pool.transactions() == [small]
    tpl = chain.build_block_template(MINERS[0], pool.select(), NOW)
    assert tpl.skipped == ()
