"""FutureQueue (the gap buffer): per-sender slots, nonce distance, funds, eviction order."""

from __future__ import annotations

import pytest

from crowdmesh.chain import TRANSFER, make_transaction
from crowdmesh.chain.mempool import FutureQueue, tx_cost
from crowdmesh.errors import ValidationError

from .helpers import ADDRS, ALLOC, BASE_FEE, CHAIN_ID, KEYS, transfer


def code_of(queue: FutureQueue, tx, base: int = 0, funds: int = ALLOC) -> str:
    with pytest.raises(ValidationError) as exc:
        queue.add(tx, base, funds)
    return exc.value.code


def test_cost_is_fee_plus_transferred_value_and_fee_only_for_other_kinds() -> None:
    t = transfer(0, 1, ADDRS[1], 777)
    assert tx_cost(t) == t.fee + 777
    other = make_transaction(KEYS[0], CHAIN_ID, 1, "register-key", b"\x90", BASE_FEE)
    assert tx_cost(other) == BASE_FEE
    garbage = make_transaction(KEYS[0], CHAIN_ID, 1, TRANSFER, b"\xc1", BASE_FEE)
    assert tx_cost(garbage) == BASE_FEE  # malformed: the contract rejects it, not the queue


@pytest.mark.parametrize(("nonce", "amount", "funds", "code"), [
    (2, 1, ALLOC, None),
    (257, 1, ALLOC, None),  # exactly max_ahead past the head nonce 1
    (258, 1, ALLOC, "mempool-gap-too-far"),
    ((1 << 64) - 1, 1, ALLOC, "mempool-gap-too-far"),
    (2, 1, 0, "mempool-sender-cannot-pay"),  # unfunded
    (2, ALLOC, ALLOC, "mempool-sender-cannot-pay"),  # value + fee above the funds
])
def test_admission_codes(nonce, amount, funds, code) -> None:
    queue = FutureQueue()
    tx = transfer(0, nonce, ADDRS[1], amount)
    if code is None:
        queue.add(tx, 1, funds)
        assert tx.txid in queue and queue.peek(ADDRS[0], nonce) == tx
    else:
        assert code_of(queue, tx, 1, funds) == code
        assert len(queue) == 0


def test_queued_spends_count_against_the_funds_in_nonce_order() -> None:
    queue = FutureQueue()
    a = transfer(0, 2, ADDRS[1], 100)
    queue.add(a, 0, 3 * tx_cost(a))
    queue.add(transfer(0, 3, ADDRS[1], 100), 0, 3 * tx_cost(a))
    assert code_of(queue, transfer(0, 5, ADDRS[1], 101), 0, 3 * tx_cost(a)) == (
        "mempool-sender-cannot-pay")
    queue.add(transfer(0, 5, ADDRS[1], 100), 0, 3 * tx_cost(a))


def test_duplicate_and_replacement_by_fee() -> None:
    queue = FutureQueue()
    low, high = transfer(0, 3, ADDRS[1], 1, tip=10), transfer(0, 3, ADDRS[1], 1, tip=11)
    queue.add(low, 0, ALLOC)
    assert code_of(queue, low) == "mempool-duplicate"
    assert code_of(queue, transfer(0, 3, ADDRS[1], 2, tip=10)) == "mempool-conflict"
    queue.add(high, 0, ALLOC)
    assert low.txid not in queue and queue.peek(ADDRS[0], 3) == high and len(queue) == 1


def test_a_full_sender_keeps_its_lowest_nonces() -> None:
    queue = FutureQueue(per_sender=3)
    for n in (5, 6, 7):
        queue.add(transfer(0, n, ADDRS[1], 1), 0, ALLOC)
    assert code_of(queue, transfer(0, 8, ADDRS[1], 1)) == "mempool-account-queue-full"
    queue.add(transfer(0, 2, ADDRS[1], 1), 0, ALLOC)  # nearer to valid: displaces nonce 7
    assert sorted(t.nonce for t in queue.transactions()) == [2, 5, 6]


def test_over_the_global_cap_the_largest_sender_loses_its_highest_nonce() -> None:
    queue = FutureQueue(per_sender=10, max_txs=5)
    other = transfer(1, 4, ADDRS[0], 1)
    queue.add(other, 0, ALLOC)
    for n in range(2, 6):
        queue.add(transfer(0, n, ADDRS[1], 1), 0, ALLOC)
    queue.add(transfer(0, 1, ADDRS[1], 1), 0, ALLOC)  # 6 > 5: sender 0 (5 held) loses nonce 5
    assert sorted(t.nonce for t in queue.transactions() if t.sender == ADDRS[0]) == [1, 2, 3, 4]
    assert other.txid in queue
    # the largest sender's newcomer, above its highest nonce, is the one to go
    assert code_of(queue, transfer(0, 9, ADDRS[1], 1)) == "mempool-queue-full"
    assert other.txid in queue and len(queue) == 5


def test_prune_drops_stale_nonces_and_everything_from_the_first_unfunded() -> None:
    queue = FutureQueue()
    txs = [transfer(0, n, ADDRS[1], 100) for n in range(2, 7)]
    for t in txs:
        queue.add(t, 0, ALLOC)
    queue.prune(ADDRS[0], 3, 2 * tx_cost(txs[0]))  # nonce 2 mined; funds cover two more
    assert sorted(t.nonce for t in queue.transactions()) == [3, 4]
    queue.prune(ADDRS[0], 3, 0)
    assert len(queue) == 0 and queue.senders() == []
