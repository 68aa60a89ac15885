"""Receipts (contract events per transaction) stored with their block.

Golden bytes and strict decoding of ``Event`` / ``Receipt`` / a block's receipt list; receipts
written in the batch that connects a block (and surviving SIGKILL at any point), across reorgs,
reopen and reindex; ``check_db`` codes for missing, damaged and mismatched rows.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain import (
    CONTRACTS,
    REGISTER_KEY,
    Block,
    Chain,
    Event,
    MemoryStore,
    Receipt,
    SqliteStore,
    TxId,
    check_db,
    make_transaction,
    register_key_payload,
    reindex,
)
from crowdmesh.chain.codec import U64_MAX, pack
from crowdmesh.chain.contracts.base import (
    MAX_EVENT_BYTES,
    MAX_EVENT_FIELDS,
    MAX_EVENT_NAME_LEN,
    MAX_EVENT_VALUE_LEN,
)
from crowdmesh.chain.layout import (
    P_RECEIPTS,
    decode_receipts,
    encode_receipts,
    height_key,
)
from crowdmesh.chain.rules import MAX_RECEIPT_EVENTS, apply_block
from crowdmesh.chain.state import State
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, NotFound, UsageError, ValidationError

from .helpers import (
    ADDRS,
    CHAIN_ID,
    KEYS,
    MINERS,
    NOW,
    fresh_chain,
    make_genesis,
    next_block,
    transfer,
)
from .reference import Reference
from .test_crash import GENESIS as CRASH_GENESIS
from .test_crash import build_sequence, run_child, wipe

# ----- codec: golden vectors and strict decoding ----------------------------------------------

GOLDEN_EVENT = Event("transferred", (b"\x01\x02", "ab", 5, -1, 1 << 40))
GOLDEN_EVENT_HEX = "92ab7472616e7366657272656495c4020102a2616205ffcf0000010000000000"
GOLDEN_RECEIPT = Receipt(TxId(bytes(range(32))), 21000, (GOLDEN_EVENT, Event("key-registered")))
GOLDEN_RECEIPT_HEX = (
    "93c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fcd5208"
    "92" + GOLDEN_EVENT_HEX + "92ae6b65792d726567697374657265649" + "0")
GOLDEN_LIST_HEX = "92" + GOLDEN_RECEIPT_HEX + "93c420" + "00" * 32 + "0090"


def test_golden_bytes() -> None:
    assert GOLDEN_EVENT.encode().hex() == GOLDEN_EVENT_HEX
    assert Event.decode(bytes.fromhex(GOLDEN_EVENT_HEX)) == GOLDEN_EVENT
    assert GOLDEN_RECEIPT.encode().hex() == GOLDEN_RECEIPT_HEX
    assert Receipt.decode(bytes.fromhex(GOLDEN_RECEIPT_HEX)) == GOLDEN_RECEIPT
    pair = (GOLDEN_RECEIPT, Receipt(TxId(bytes(32)), 0, ()))
    assert encode_receipts(pair).hex() == GOLDEN_LIST_HEX
    assert decode_receipts(bytes.fromhex(GOLDEN_LIST_HEX)) == pair
    assert encode_receipts(()) == b"\x90" and decode_receipts(b"\x90") == ()


BAD_EVENTS = {
    "93a17890c0": "bad-shape",  # an extra item after the fields
    "91a178": "bad-shape",  # fields missing
    "82a16e01a16602": "bad-shape",  # a map, not an array
    "92a17891c3": "bad-field",  # a bool value
    "92a17891cb3ff0000000000000": "bad-field",  # a float value
    "92a178919101": "bad-field",  # a nested list value
    "92a17891c0": "bad-field",  # nil value
    "92a090": "bad-field",  # empty name
    "92c4017890": "bad-field",  # name as bytes
    "92a178c400": "bad-shape",  # fields as bytes
    "92a17891cd0005": "non-canonical",  # 5 in a wider int encoding
    "92a17891d9017a": "non-canonical",  # "z" in str8 form
    "92a1789105ff": "bad-msgpack",  # trailing byte
    "92a17891": "bad-msgpack",  # truncated
}


@pytest.mark.parametrize(("raw_hex", "code"), sorted(BAD_EVENTS.items()))
def test_event_decode_is_strict(raw_hex: str, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        Event.decode(bytes.fromhex(raw_hex))
    assert info.value.code == code


def test_event_decode_caps() -> None:
    with pytest.raises(DecodeError) as info:
        Event.decode(b"\x90" * (MAX_EVENT_BYTES + 1))
    assert info.value.code == "oversize"
    too_many = "92a178" + "dc0011" + "00" * (MAX_EVENT_FIELDS + 1)
    with pytest.raises(DecodeError) as info:
        Event.decode(bytes.fromhex(too_many))
    assert info.value.code == "bad-shape"
    longest = Event("x", (b"\x00" * MAX_EVENT_VALUE_LEN, "y" * MAX_EVENT_VALUE_LEN))
    assert Event.decode(longest.encode()) == longest
    with pytest.raises(DecodeError) as info:
        Event.decode(pack(["x", [b"\x00" * (MAX_EVENT_VALUE_LEN + 1)]]))
    assert info.value.code == "bad-field"


BAD_RECEIPTS = {
    "94c420" + "00" * 32 + "009000": "bad-shape",  # an extra item
    "92c420" + "00" * 32 + "00": "bad-shape",  # events missing
    "93c41f" + "00" * 31 + "0090": "bad-field",  # 31-byte txid
    "93a0" + "0090": "bad-field",  # txid as text
    "93c420" + "00" * 32 + "ff90": "bad-field",  # negative gas
    "93c420" + "00" * 32 + "c290": "bad-field",  # gas as bool
    "93c420" + "00" * 32 + "00c0": "bad-shape",  # events nil
    "93c420" + "00" * 32 + "009192a17891c3": "bad-field",  # an event with a bool value
    "93c420" + "00" * 32 + "0091c0": "bad-shape",  # an event that is not an array
    "93c420" + "00" * 32 + "cd000090": "non-canonical",  # gas 0 in a wider encoding
}


@pytest.mark.parametrize(("raw_hex", "code"), sorted(BAD_RECEIPTS.items()))
def test_receipt_decode_is_strict(raw_hex: str, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        Receipt.decode(bytes.fromhex(raw_hex))
    assert info.value.code == code
    with pytest.raises(DecodeError) as info:  # inside a block's list too
        decode_receipts(bytes.fromhex("91" + raw_hex))
    assert info.value.code == code


def test_receipt_list_decode_is_strict() -> None:
    for raw, code in [(b"\xc0", "bad-shape"), (b"\x91\x90", "bad-shape"),
                      (b"\x90\x90", "bad-msgpack"), (b"\xdc\x00\x00", "non-canonical")]:
        with pytest.raises(DecodeError) as info:
            decode_receipts(raw)
        assert info.value.code == code


@pytest.mark.parametrize("fields", [
    (True,), (1.5,), ([1],), (bytearray(b"x"),), (None,), (1 << 64,), (-(1 << 63) - 1,),
    (b"\x00" * (MAX_EVENT_VALUE_LEN + 1),), ("x" * (MAX_EVENT_VALUE_LEN + 1),),
    (0,) * (MAX_EVENT_FIELDS + 1)])
def test_event_constructor_refuses_what_cannot_be_stored(fields: tuple) -> None:
    with pytest.raises(ValidationError) as info:
        Event("x", fields)
    assert info.value.code == "bad-event"


def test_event_constructor_checks_name_and_container() -> None:
    for name in ("", "n" * (MAX_EVENT_NAME_LEN + 1), b"x"):
        with pytest.raises(ValidationError):
            Event(name, ())  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Event("x", [1])  # type: ignore[arg-type]
    assert Event("x", (-(1 << 63), U64_MAX)).encode()  # both ends of msgpack's int range


values = st.one_of(st.integers(-(1 << 63), U64_MAX), st.binary(max_size=64),
                   st.text(max_size=16))
events = st.builds(Event, st.text(min_size=1, max_size=MAX_EVENT_NAME_LEN),
                   st.lists(values, max_size=MAX_EVENT_FIELDS).map(tuple))
receipts = st.builds(Receipt, st.binary(min_size=32, max_size=32).map(TxId),
                     st.integers(0, U64_MAX), st.lists(events, max_size=4).map(tuple))


@given(st.lists(receipts, max_size=4))
def test_round_trip(rs: list[Receipt]) -> None:
    for r in rs:
        assert Receipt.decode(r.encode()) == r
        for e in r.events:
            assert Event.decode(e.encode()) == e
    assert decode_receipts(encode_receipts(rs)) == tuple(rs)


# ----- stored with the block ------------------------------------------------------------------

def register_tx(nonce: int, seed: int = 7):
    rng = DeterministicRng(seed)
    sk = DEFAULT.random_exponent(rng)
    key = pow(DEFAULT.group.g, sk, DEFAULT.group.p)
    payload = register_key_payload("default", key, prove_key(DEFAULT, ADDRS[0], sk, rng))
    return make_transaction(KEYS[0], CHAIN_ID, nonce, REGISTER_KEY, payload, 10**6)


def test_transfer_and_register_key_events_are_stored_and_read_back() -> None:
    chain = fresh_chain()
    assert chain.block_receipts(chain.genesis_hash) == ()
    pay, reg = transfer(0, 0, ADDRS[5], 77), register_tx(1)
    block = next_block(chain, (pay, reg))
    result = chain.import_block(block, NOW)
    stored = chain.block_receipts(block.hash)
    assert stored == result.receipts[0]
    assert [r.txid for r in stored] == [pay.txid, reg.txid]
    assert stored[0].events == (Event("transferred", (ADDRS[0], ADDRS[5], 77)),)
    assert stored[0].gas == pay.gas(1)
    assert stored[1].events == (Event("key-registered", (ADDRS[0], "default")),)
    assert chain.tx_receipt(pay.txid) == stored[0] and chain.tx_receipt(reg.txid) == stored[1]
    assert chain.store.get(P_RECEIPTS + block.hash) == encode_receipts(stored)
    assert check_db(chain.store, chain.genesis) == []


def test_queries_raise_not_found() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    a1 = ref.build(chain.genesis_hash, (), MINERS[0])
    chain.import_block(a1, NOW)
    side = ref.build(chain.genesis_hash, (transfer(1, 0, ADDRS[5], 1),), MINERS[1], dt=11)
    chain.import_block(side, NOW)  # equal work, seen second: stored, never connected
    for unknown in (bytes(32), side.hash):
        with pytest.raises(NotFound) as info:
            chain.block_receipts(unknown)
        assert info.value.code == "receipts-not-found"
    for txid in (bytes(32), side.txs[0].txid):
        with pytest.raises(NotFound) as info:
            chain.tx_receipt(txid)
        assert info.value.code == "tx-not-found"


class RecordingStore(MemoryStore):
    """A MemoryStore that keeps a copy of every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[bytes, bytes | None]] = []

    def write_batch(self, writes: Mapping[bytes, bytes | None]) -> None:
        self.batches.append(dict(writes))
        super().write_batch(writes)


def test_receipts_are_in_the_batch_that_connects_the_block() -> None:
    store = RecordingStore()
    chain = Chain.open(store, make_genesis())
    ref = Reference(chain.genesis)
    a1 = ref.build(chain.genesis_hash, (transfer(0, 0, ADDRS[1], 5),), MINERS[0])
    b1 = ref.build(chain.genesis_hash, (transfer(1, 0, ADDRS[1], 6),), MINERS[1], dt=11)
    b2 = ref.build(b1.hash, (transfer(2, 0, ADDRS[1], 7),), MINERS[1])
    for block in (a1, b1, b2):  # extend, side chain, reorg
        chain.import_block(block, NOW)
    connecting = 0
    for batch in store.batches:
        connected = {v for k, v in batch.items() if k[:1] == height_key(0)[:1] and v}
        written = {k[1:] for k in batch if k[:1] == P_RECEIPTS}
        assert connected == written  # no receipts without their block, and the reverse
        connecting += bool(connected)
    assert connecting == 3  # genesis, a1, the reorg to b1+b2
    assert [r.txid for r in chain.block_receipts(b2.hash)] == [b2.txs[0].txid]


def expected_receipts(ref: Reference, block: Block) -> tuple[Receipt, ...]:
    """Receipts computed from scratch: the block applied to the reference parent state."""
    state = State(ref.state(block.header.parent).get)
    return tuple(apply_block(state, block, ref.genesis, CONTRACTS))


def test_sigkill_never_leaves_a_connected_block_without_receipts(tmp_path: Path) -> None:
    """The crash test's block sequence (two deep reorgs), killed at random points: every
    main-chain block of what survives has exactly the receipts a replay computes."""
    blocks, heads = build_sequence()
    ref = Reference(CRASH_GENESIS)
    for block in blocks:
        ref.add(block)
    want = {b.hash: expected_receipts(ref, b) for b in blocks if ref.state(b.hash) is not None}
    path = str(tmp_path / "chain.db")
    start = time.monotonic()
    assert run_child(path, blocks, None) == 0
    full = time.monotonic() - start
    wipe(path)
    rng = DeterministicRng(b"receipt-kills")
    killed, deadline = 0, time.monotonic() + 30
    while killed < 15:
        assert time.monotonic() < deadline, "crash test over its time budget"
        code = run_child(path, blocks, full * rng.randbelow(1000) / 1000)
        assert code in (0, -signal.SIGKILL)
        killed += code == -signal.SIGKILL
        store = SqliteStore.open(path)
        try:
            assert check_db(store, CRASH_GENESIS) == []
            chain = Chain.open(store, CRASH_GENESIS)
            assert chain.head_hash in heads
            for height in range(1, chain.height + 1):
                h = chain.get_hash_at(height)
                assert chain.block_receipts(h) == want[h]
            done = chain.head_hash == list(heads)[-1]
        finally:
            store.close()
        if done:
            wipe(path)


# ----- reorgs, reopen, reindex, check_db ------------------------------------------------------

def test_reorg_keeps_receipts_of_the_main_chain_right() -> None:
    chain = fresh_chain()
    ref = Reference(chain.genesis)
    g = chain.genesis_hash
    tx_a, tx_b = transfer(0, 0, ADDRS[1], 100), transfer(2, 0, ADDRS[1], 7)
    a1 = ref.build(g, (tx_a,), MINERS[0])
    ref.add(a1)
    chain.import_block(a1, NOW)
    a1_row = chain.store.get(P_RECEIPTS + a1.hash)
    b1 = ref.build(g, (), MINERS[1], dt=11)
    ref.add(b1)
    b2 = ref.build(b1.hash, (tx_b,), MINERS[1])
    ref.add(b2)
    chain.import_block(b1, NOW)
    assert chain.import_block(b2, NOW).reorg
    assert chain.block_receipts(b2.hash) == expected_receipts(ref, b2)
    assert chain.tx_receipt(tx_b.txid).events[0].fields == (ADDRS[2], ADDRS[1], 7)
    with pytest.raises(NotFound, match="tx-not-found"):
        chain.tx_receipt(tx_a.txid)  # a1 is off the main chain now
    assert chain.block_receipts(a1.hash) == expected_receipts(ref, a1)  # kept: it cannot change
    a2 = ref.build(a1.hash, (), MINERS[0])
    ref.add(a2)
    a3 = ref.build(a2.hash, (transfer(2, 0, ADDRS[3], 9),), MINERS[0])
    ref.add(a3)
    chain.import_block(a2, NOW)
    result = chain.import_block(a3, NOW)
    assert result.connected == (a1, a2, a3)
    assert result.receipts == tuple(expected_receipts(ref, b) for b in (a1, a2, a3))
    assert chain.store.get(P_RECEIPTS + a1.hash) == a1_row  # reconnecting rewrote the same bytes
    for block in (a1, a2, a3):
        assert chain.block_receipts(block.hash) == expected_receipts(ref, block)
    assert chain.tx_receipt(tx_a.txid).events[0].fields == (ADDRS[0], ADDRS[1], 100)
    with pytest.raises(NotFound, match="tx-not-found"):
        chain.tx_receipt(tx_b.txid)
    assert check_db(chain.store, chain.genesis) == []


def build_chain(store) -> tuple[Chain, list[Block]]:
    chain = Chain.open(store, make_genesis())
    blocks = []
    for n in range(3):
        block = next_block(chain, (transfer(0, n, ADDRS[5], 1 + n), transfer(1, n, ADDRS[4], 3)))
        chain.import_block(block, NOW)
        blocks.append(block)
    return chain, blocks


def test_receipts_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    store = SqliteStore.open(path)
    chain, blocks = build_chain(store)
    before = {b.hash: chain.block_receipts(b.hash) for b in blocks}
    store.close()
    store = SqliteStore.open(path)
    again = Chain.open(store, make_genesis())
    assert {b.hash: again.block_receipts(b.hash) for b in blocks} == before
    assert again.tx_receipt(blocks[1].txs[0].txid) == before[blocks[1].hash][0]
    assert check_db(store, make_genesis()) == []
    store.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_store_without_receipts_opens_and_reindex_fills_them_in(tmp_path: Path,
                                                                   backend: str) -> None:
    store = MemoryStore() if backend == "memory" else SqliteStore.open(str(tmp_path / "c.db"))
    chain, blocks = build_chain(store)
    before = {b.hash: chain.block_receipts(b.hash) for b in blocks}
    # what the previous version wrote: the same store, no r‖hash rows at all
    store.write_batch({k: None for k, _ in store.iterate(P_RECEIPTS)})
    old = Chain.open(store, make_genesis())
    assert old.height == 3 and old.get_transaction(blocks[0].txs[0].txid)[2] == 1
    with pytest.raises(NotFound, match="receipts-not-found"):
        old.block_receipts(blocks[0].hash)
    with pytest.raises(NotFound, match="receipts-not-found"):
        old.tx_receipt(blocks[0].txs[0].txid)
    problems = check_db(store, make_genesis())
    assert len(problems) == 4 and all(p.startswith("receipts-missing") for p in problems)
    rebuilt = reindex(store, make_genesis(), NOW)
    assert {b.hash: rebuilt.block_receipts(b.hash) for b in blocks} == before
    assert rebuilt.block_receipts(rebuilt.genesis_hash) == ()
    assert check_db(store, make_genesis()) == []
    store.close()


def test_reindex_rebuilds_damaged_receipts() -> None:
    store = MemoryStore()
    chain, blocks = build_chain(store)
    before = chain.block_receipts(blocks[2].hash)
    store.write_batch({P_RECEIPTS + blocks[2].hash: b"junk",
                       P_RECEIPTS + blocks[1].hash: encode_receipts(before)})
    assert len(check_db(store, make_genesis())) == 2
    rebuilt = reindex(store, make_genesis(), NOW)
    assert rebuilt.block_receipts(blocks[2].hash) == before
    assert check_db(store, make_genesis()) == []


def test_check_db_reports_receipt_damage_with_codes() -> None:
    store = MemoryStore()
    chain, blocks = build_chain(store)
    g = make_genesis()
    one_short = encode_receipts(chain.block_receipts(blocks[0].hash)[:1])
    other_ids = encode_receipts(chain.block_receipts(blocks[0].hash)[::-1])
    cases = {
        None: "receipts-missing",
        b"\x92\x01": "receipts-damaged",  # truncated msgpack
        b"\x91\xc0": "receipts-damaged",  # a receipt that is not an array
        one_short: "receipts-mismatch",  # fewer receipts than transactions
        other_ids: "receipts-mismatch",  # the block's txids in another order
    }
    key = P_RECEIPTS + blocks[0].hash
    good = store.get(key)
    for row, code in cases.items():
        store.write_batch({key: row})
        problems = check_db(store, g)
        assert len(problems) == 1 and problems[0].startswith(code), problems
        assert blocks[0].hash.hex() in problems[0]
    store.write_batch({key: b"\x92\x01"})
    with pytest.raises(UsageError, match="corrupt-store"):
        chain.block_receipts(blocks[0].hash)
    store.write_batch({key: other_ids})
    with pytest.raises(UsageError, match="corrupt-store"):
        chain.tx_receipt(blocks[0].txs[0].txid)
    store.write_batch({key: good})
    assert check_db(store, g) == []


# ----- contracts that report events which cannot be stored -------------------------------------

def loud(count: int, value: object):
    def contract(state, tx, ctx):
        return tuple(Event("shouted", (value,)) for _ in range(count))
    return contract


@pytest.mark.parametrize(("count", "value"), [(MAX_RECEIPT_EVENTS + 1, 1), (1, True)])
def test_a_tx_whose_events_cannot_be_stored_is_rejected(count: int, value: object) -> None:
    contracts = {**CONTRACTS, "loud": loud(count, value)}
    chain = Chain.open(MemoryStore(), make_genesis(), contracts)
    tx = make_transaction(KEYS[0], CHAIN_ID, 0, "loud", b"", 10**5)
    tpl = chain.build_block_template(MINERS[0], (tx,), NOW)
    assert tpl.skipped == ((tx.txid, "bad-event"),)
    ok = Chain.open(MemoryStore(), make_genesis(), {**CONTRACTS, "loud": loud(count - 1, 1)})
    block = next_block(ok, (tx,))
    ok.import_block(block, NOW)
    assert len(ok.tx_receipt(tx.txid).events) == count - 1
