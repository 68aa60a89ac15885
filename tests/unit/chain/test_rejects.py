"""One test per consensus rule: each asserts the stable reject code (Bitcoin-style)."""

from __future__ import annotations

import dataclasses

import pytest

from crowdmesh.chain import (
    MAX_FUTURE_SECONDS,
    MAX_PAYLOAD_BYTES,
    MAX_TARGET,
    REGISTER_KEY,
    TRANSFER,
    Block,
    BlockHeader,
    Chain,
    ImportStatus,
    Mempool,
    Transaction,
    make_transaction,
    merkle_root,
    minimum_fee,
    register_key_payload,
    registered_key,
    transfer_payload,
)
from crowdmesh.chain.codec import U64_MAX
from crowdmesh.chain.genesis import ISSUANCE_BLOCKS
from crowdmesh.chain.rules import median_time_past
from crowdmesh.chain.spatial_params import DEFAULT_SPATIAL
from crowdmesh.chain.state import State
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, ValidationError

from .helpers import (
    ADDRS,
    ALLOC,
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

FEE = 10**6  # covers the intrinsic gas of every transaction below


def raw_block(chain: Chain, txs: tuple[Transaction, ...] = (), **header: object) -> Block:
    """A mined block on the head with the given txs, a dummy state root and header overrides."""
    h = chain.head
    fields: dict[str, object] = dict(
        chain_id=CHAIN_ID, height=h.height + 1, parent=h.hash, timestamp=h.timestamp + 10,
        target=chain.next_target(), tx_root=merkle_root([t.txid for t in txs]),
        state_root=bytes(32), miner=MINERS[0], nonce=0)
    fields.update(header)
    return mine_block(Block(BlockHeader(**fields), txs))  # type: ignore[arg-type]


def reject_code(chain: Chain, block: Block, now: int = NOW) -> str:
    head = chain.head_hash
    with pytest.raises(ValidationError) as exc:
        chain.import_block(block, now)
    assert chain.head_hash == head
    return exc.value.code


def pool_code(chain: Chain, tx: Transaction) -> str:
    with pytest.raises(ValidationError) as exc:
        Mempool(chain).add(tx)
    return exc.value.code


# ----- transactions (checked in the mempool and again in blocks) ----------------------------


def test_bad_signature() -> None:
    chain = fresh_chain()
    good = transfer(0, 0, ADDRS[1], 5)
    forged = dataclasses.replace(good, signature=bytes(64))
    assert pool_code(chain, forged) == "bad-tx-sig"
    assert reject_code(chain, raw_block(chain, (forged,))) == "bad-tx-sig"
    other_key = dataclasses.replace(good, sender=ADDRS[2])  # signed by 0, claims 2
    assert pool_code(chain, other_key) == "bad-tx-sig"


def test_wrong_chain_id() -> None:
    chain = fresh_chain()
    tx = transfer(0, 0, ADDRS[1], 5, chain_id="other-net")
    assert pool_code(chain, tx) == "bad-tx-chain-id"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-tx-chain-id"


def test_replayed_nonce() -> None:
    chain = fresh_chain()
    tx = transfer(0, 0, ADDRS[1], 5)
    chain.import_block(next_block(chain, (tx,)), NOW)
    assert pool_code(chain, tx) == "bad-tx-nonce"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-tx-nonce"
    assert reject_code(chain, raw_block(chain, (transfer(0, 5, ADDRS[1], 5),))) == "bad-tx-nonce"


def test_overspend() -> None:
    chain = fresh_chain()
    tx = transfer(0, 0, ADDRS[1], ALLOC)  # the whole balance, but the fee comes on top
    assert pool_code(chain, tx) == "bad-tx-overspend"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-tx-overspend"
    assert pool_code(chain, transfer(4, 0, ADDRS[1], 0 + 1, tip=1)) == "bad-tx-overspend"


def test_oversize_payload() -> None:
    big = make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, bytes(MAX_PAYLOAD_BYTES), 1)
    with pytest.raises(ValidationError) as exc:
        make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, bytes(MAX_PAYLOAD_BYTES + 1), 1)
    assert exc.value.code == "bad-tx-payload-size"
    # the same on the wire: a hand-built encoding with one byte too many
    wire = big.encode().replace(b"\xc6\x00\x01\x00\x00" + bytes(10), b"\xc6\x00\x01\x00\x01"
                                + bytes(11), 1)
    assert wire != big.encode()
    with pytest.raises(ValidationError) as exc:
        Transaction.decode(wire)
    assert exc.value.code == "bad-tx-payload-size"
    with pytest.raises(DecodeError) as dec:
        Transaction.decode(wire + bytes(1000))
    assert dec.value.code == "oversize"


def test_fee_below_minimum() -> None:
    chain = fresh_chain(min_gas_price=3)
    payload = transfer_payload(ADDRS[1], 5)
    least = minimum_fee(payload, 3)
    assert least == 3 * make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, payload, 0).intrinsic_gas
    tx = make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, payload, least - 1)
    assert pool_code(chain, tx) == "bad-tx-fee"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-tx-fee"
    Mempool(chain).add(make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, payload, least))


def test_unfunded_sender_cannot_write_state() -> None:
    chain = fresh_chain()
    rng = DeterministicRng(99)
    key = AccountKey.generate(rng)  # never funded
    sk = DEFAULT.random_exponent(rng)
    payload = register_key_payload("default", pow(DEFAULT.group.g, sk, DEFAULT.group.p),
                                   prove_key(DEFAULT, key.public, sk, rng))
    free = make_transaction(key, CHAIN_ID, 0, REGISTER_KEY, payload, 0)
    assert pool_code(chain, free) == "bad-tx-fee"
    assert reject_code(chain, raw_block(chain, (free,))) == "bad-tx-fee"
    paying = make_transaction(key, CHAIN_ID, 0, REGISTER_KEY, payload, free.intrinsic_gas)
    assert pool_code(chain, paying) == "bad-tx-overspend"
    assert reject_code(chain, raw_block(chain, (paying,))) == "bad-tx-overspend"
    with pytest.raises(DecodeError) as exc:
        make_genesis(min_gas_price=0)  # a zero price would make every fee optional
    assert exc.value.code == "bad-genesis"


def test_unknown_kind() -> None:
    chain = fresh_chain()
    tx = make_transaction(KEYS[0], CHAIN_ID, 0, "no-such-contract", b"", FEE)
    assert pool_code(chain, tx) == "bad-tx-kind"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-tx-kind"


def test_bad_transfer_payload() -> None:
    chain = fresh_chain()
    for payload in (b"", b"\x92\xc4\x01\x00\x01", b"\x92" + b"\xc4\x20" + bytes(32) + b"\x00"):
        tx = make_transaction(KEYS[0], CHAIN_ID, 0, TRANSFER, payload, FEE)
        assert pool_code(chain, tx) == "bad-transfer-payload"
        assert reject_code(chain, raw_block(chain, (tx,))) == "bad-transfer-payload"


def test_balance_overflow() -> None:
    state = State(fresh_chain().state_get)
    state.credit(ADDRS[5], U64_MAX)
    with pytest.raises(ValidationError) as exc:
        state.credit(ADDRS[5], 1)
    assert exc.value.code == "bad-balance-overflow"
    assert state.account(ADDRS[5]).balance == U64_MAX
    # the bound counts what the spatial contract may mint per block too
    limit = (U64_MAX - 4 * ALLOC) // ISSUANCE_BLOCKS - DEFAULT_SPATIAL.issuance_per_block
    for reward in ((1 << 64) - 1, limit + 1):
        with pytest.raises(DecodeError) as dec:  # issuance could leave u64: refused up front
            make_genesis(block_reward=reward)
        assert dec.value.code == "bad-genesis"
    make_genesis(block_reward=limit)


# ----- blocks --------------------------------------------------------------------------------


def test_bad_pow() -> None:
    chain = fresh_chain(target=1 << 250)
    block = next_block(chain)
    assert block.header.meets_target()
    nonce = block.header.nonce + 1
    while dataclasses.replace(block.header, nonce=nonce).meets_target():
        nonce += 1
    bad = Block(dataclasses.replace(block.header, nonce=nonce), block.txs)
    assert reject_code(chain, bad) == "bad-block-pow"
    assert chain.import_block(block, NOW).status is ImportStatus.CONNECTED


def test_bad_merkle_root() -> None:
    chain = fresh_chain()
    good = next_block(chain, (transfer(0, 0, ADDRS[1], 5),))
    swapped = Block(good.header, (transfer(0, 0, ADDRS[1], 6),))
    assert reject_code(chain, mine_block(swapped)) == "bad-block-merkle"
    dropped = Block(good.header, ())
    assert reject_code(chain, dropped) == "bad-block-merkle"


def good_and_bad_root(chain: Chain) -> tuple[Block, Block]:
    """A valid next block and the same block with a wrong state root."""
    good = next_block(chain, (transfer(0, 0, ADDRS[1], 5),))
    return good, mine_block(Block(dataclasses.replace(good.header, state_root=bytes(32)),
                                  good.txs))


def test_bad_state_root() -> None:
    chain = fresh_chain()
    good, bad = good_and_bad_root(chain)
    assert reject_code(chain, bad) == "bad-block-state-root"
    assert chain.import_block(good, NOW).status is ImportStatus.CONNECTED


def test_timestamp_too_early() -> None:
    chain = fresh_chain()
    for _ in range(11):
        chain.import_block(next_block(chain), NOW)
    mtp = median_time_past(chain._index[chain.head_hash].info, chain._lookup)
    assert reject_code(chain, raw_block(chain, timestamp=mtp)) == "bad-block-time-early"


def test_timestamp_too_far_ahead() -> None:
    chain = fresh_chain()
    block = next_block(chain, now=NOW + MAX_FUTURE_SECONDS + 1)
    assert reject_code(chain, block, NOW) == "bad-block-time-future"
    assert chain.import_block(block, NOW + 1).status is ImportStatus.CONNECTED


def test_over_cap_miner() -> None:
    chain = fresh_chain(miner_cap_m=2, miner_cap_w=3)
    for _ in range(2):
        chain.import_block(next_block(chain, miner=MINERS[0]), NOW)
    with pytest.raises(ValidationError) as exc:
        chain.build_block_template(MINERS[0], (), NOW)
    assert exc.value.code == "bad-block-miner-cap"
    assert reject_code(chain, raw_block(chain, miner=MINERS[0])) == "bad-block-miner-cap"
    chain.import_block(next_block(chain, miner=MINERS[1]), NOW)
    chain.import_block(next_block(chain, miner=MINERS[0]), NOW)  # window is 0,1,0: allowed


def test_miner_cap_window_includes_this_block() -> None:
    solo = fresh_chain(miner_cap_m=1, miner_cap_w=1)  # window = this block only: no limit
    for _ in range(3):
        solo.import_block(next_block(solo, miner=MINERS[0]), NOW)
    assert solo.height == 3
    pair = fresh_chain(miner_cap_m=1, miner_cap_w=2)  # this block and its parent
    pair.import_block(next_block(pair, miner=MINERS[0]), NOW)
    assert reject_code(pair, raw_block(pair, miner=MINERS[0])) == "bad-block-miner-cap"
    pair.import_block(next_block(pair, miner=MINERS[1]), NOW)
    pair.import_block(next_block(pair, miner=MINERS[0]), NOW)


def test_retarget_interval_of_one_is_refused() -> None:
    with pytest.raises(DecodeError) as exc:  # one block spans no time: expected would be 0
        make_genesis(retarget_interval=1)
    assert exc.value.code == "bad-genesis"
    make_genesis(retarget_interval=2)


def test_wrong_target_height_chain_id_size() -> None:
    chain = fresh_chain(max_block_bytes=2000)
    assert reject_code(chain, raw_block(chain, target=1 << 255)) == "bad-block-target"
    assert reject_code(chain, raw_block(chain, height=5)) == "bad-block-height"
    assert reject_code(chain, raw_block(chain, chain_id="other")) == "bad-block-chain-id"
    txs = tuple(transfer(0, n, ADDRS[1], 1) for n in range(20))
    assert reject_code(chain, raw_block(chain, txs)) == "bad-block-size"


def test_orphan_with_wrong_body_is_refused() -> None:
    chain, other = fresh_chain(target=1 << 248), fresh_chain(target=1 << 248)
    b1 = next_block(other, (transfer(0, 0, ADDRS[5], 5),))
    other.import_block(b1, NOW)
    b2 = next_block(other, (transfer(0, 1, ADDRS[5], 5),))
    assert reject_code(chain, Block(b2.header, ())) == "bad-block-merkle"  # real hash, fake body
    assert chain.orphan_count() == 0 and not chain.has_block(b2.hash)
    assert chain.import_block(b2, NOW).status is ImportStatus.ORPHAN
    result = chain.import_block(b1, NOW)
    assert result.connected == (b1, b2) and result.rejected == ()


def test_orphan_with_easy_target_or_other_chain_is_refused() -> None:
    chain = fresh_chain(target=1 << 248)
    b1 = next_block(chain)
    easy = raw_block(chain, parent=b1.hash, height=2, target=MAX_TARGET)  # free PoW
    assert reject_code(chain, easy) == "bad-block-target"
    foreign = raw_block(chain, parent=b1.hash, height=2, chain_id="other")
    assert reject_code(chain, foreign) == "bad-block-chain-id"
    assert chain.orphan_count() == 0


def test_unknown_parent_goes_to_orphan_pool() -> None:
    chain = fresh_chain()
    b1 = next_block(chain)
    b2 = raw_block(chain, parent=b1.hash, height=2)
    result = chain.import_block(b2, NOW)
    assert result.status is ImportStatus.ORPHAN
    assert result.missing_parent == b1.hash
    assert chain.orphan_count() == 1 and chain.height == 0
    assert chain.import_block(b2, NOW).status is ImportStatus.DUPLICATE


def test_registry_key_without_valid_pok() -> None:
    chain = fresh_chain()
    rng = DeterministicRng(7)
    sk = DEFAULT.random_exponent(rng)
    key = pow(DEFAULT.group.g, sk, DEFAULT.group.p)
    proof_for_other = prove_key(DEFAULT, ADDRS[1], sk, rng)  # bound to another account
    tx = make_transaction(KEYS[0], CHAIN_ID, 0, REGISTER_KEY,
                          register_key_payload("default", key, proof_for_other), FEE)
    assert pool_code(chain, tx) == "bad-key-pok"
    assert reject_code(chain, raw_block(chain, (tx,))) == "bad-key-pok"
    rogue = key * pow(DEFAULT.group.g, 5, DEFAULT.group.p) % DEFAULT.group.p
    tx = make_transaction(KEYS[0], CHAIN_ID, 0, REGISTER_KEY,
                          register_key_payload("default", rogue, proof_for_other), FEE)
    assert pool_code(chain, tx) == "bad-key-pok"
    good = make_transaction(KEYS[0], CHAIN_ID, 0, REGISTER_KEY, register_key_payload(
        "default", key, prove_key(DEFAULT, ADDRS[0], sk, rng)), FEE)
    result = chain.import_block(next_block(chain, (good,)), NOW)
    assert result.receipts[0][0].events[0].name == "key-registered"
    assert registered_key(chain.state_get, ADDRS[0], "default") == key
    again = make_transaction(KEYS[0], CHAIN_ID, 1, REGISTER_KEY, register_key_payload(
        "default", key, prove_key(DEFAULT, ADDRS[0], sk, rng)), FEE)
    assert pool_code(chain, again) == "bad-registry-exists"
    junk = make_transaction(KEYS[0], CHAIN_ID, 1, REGISTER_KEY, b"\x93\xa3abc\x00\x00", FEE)
    assert pool_code(chain, junk) == "bad-registry-payload"


def test_block_from_invalid_ancestor_is_refused() -> None:
    chain = fresh_chain()
    _, bad = good_and_bad_root(chain)
    assert reject_code(chain, bad) == "bad-block-state-root"
    assert reject_code(chain, bad) == "bad-block-known-invalid"
    child = raw_block(chain, parent=bad.hash, height=2)
    assert reject_code(chain, child) == "bad-block-ancestor"
