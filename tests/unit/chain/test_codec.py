"""Golden byte vectors for every chain encoding, strict decoding, and codec round trips."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain import (
    MAX_TARGET,
    TRANSFER,
    Account,
    Block,
    BlockHash,
    BlockHeader,
    Genesis,
    Transaction,
    make_transaction,
    merkle_root,
    transfer_payload,
)
from crowdmesh.chain.codec import unpack
from crowdmesh.chain.layout import BlockStatus, IndexEntry, TxLocation, Undo
from crowdmesh.chain.rules import HeaderInfo
from crowdmesh.errors import DecodeError

from .helpers import ADDRS, CHAIN_ID, KEYS, MINERS, T0, make_genesis

TX_HEX = (
    "97a7636d2d74657374c420809d6cd2810a074583af8ed128b56de6decfed70ce20d0d3f264cfab41f0217c07"
    "a87472616e73666572c42692c420bdd10dd570602b61a31f4490bce1d0290b7e7fdcecc256126ec9bcb30092"
    "628bcd303963c440b65ce28b6b90f8b8fbd6f00cdce92979cf6ea8661a1bfb754a8ad1bc887d83d2b8ecbf5b"
    "6a96afdd7dc0b1eb9b669dd7c18a8d7e2190ae37cdd4601aff9d760b"
)
TXID_HEX = "0eea2b2bc51443cc02f2ff85331f7c02a90531fb69a437c6fbfaac116f1b7c4f"
HEADER_HEX = (
    "99a7636d2d7465737401c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "ce6553f10ac4208000000000000000000000000000000000000000000000000000000000000000c420c6a781"
    "4c4a063728d4b0f48077bfe7dade4ff86f7d2d9cf3cda4129e86a1ccadc42007070707070707070707070707"
    "07070707070707070707070707070707070707c420a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
    "a0a0a0a0a0a0a0a0a02a"
)
HEADER_HASH_HEX = "14a85f10a41b3f36262030b487c931c58b5c9b656cf5783f0a51ca2a736395e3"
BLOCK_SHA_HEX = "69e7816985bf0e484f8ac0ab17049a2c49fb4aa1bcec1fb291d93de9dc9717e4"
# Changed on purpose when the genesis gained its spatial parameters (the hash commits to them),
# and again when the default spatial pair cap became default_pair_cap(K) (4 at K = 3, was 3):
# a fixed cap of 3 refused most honest tallies at K >= 5 (docs/spatial.md, "Measured").
GENESIS_JSON_SHA_HEX = "0e9f00d82358428c15233babcc2e46b37cebec9386aa82864e2f3615664cfb5c"
GENESIS_HASH_HEX = "e1f02dc2234e016b09a5d0db53e698115ec7a68f4fb3806ba6156e5d6385a75b"


def golden_tx() -> Transaction:
    return make_transaction(KEYS[0], CHAIN_ID, 7, TRANSFER, transfer_payload(ADDRS[1], 12345), 99)


def golden_header() -> BlockHeader:
    return BlockHeader(CHAIN_ID, 1, BlockHash(bytes(range(32))), T0 + 10, 1 << 255,
                       merkle_root([golden_tx().txid]), bytes([7]) * 32, MINERS[0], 42)


def test_transaction_golden() -> None:
    tx = golden_tx()
    assert tx.encode().hex() == TX_HEX
    assert tx.txid.hex() == TXID_HEX == hashlib.sha256(bytes.fromhex(TX_HEX)).hexdigest()
    assert Transaction.decode(bytes.fromhex(TX_HEX)) == tx
    assert tx.has_valid_signature()


def test_header_golden_and_pow_preimage_layout() -> None:
    h = golden_header()
    assert h.encode().hex() == HEADER_HEX
    assert h.hash.hex() == HEADER_HASH_HEX
    prefix = msgpack.packb(msgpack.unpackb(bytes.fromhex(HEADER_HEX))[:8])
    assert hashlib.sha256(prefix + (42).to_bytes(8, "big")).hexdigest() == HEADER_HASH_HEX
    assert BlockHeader.decode(bytes.fromhex(HEADER_HEX)) == h


def test_block_golden() -> None:
    block = Block(golden_header(), (golden_tx(),))
    data = block.encode()
    assert hashlib.sha256(data).hexdigest() == BLOCK_SHA_HEX
    assert data == b"\x92" + bytes.fromhex(HEADER_HEX) + b"\x91" + bytes.fromhex(TX_HEX)
    assert Block.decode(data) == block


def test_genesis_golden() -> None:
    g = make_genesis()
    assert hashlib.sha256(g.to_json().encode()).hexdigest() == GENESIS_JSON_SHA_HEX
    assert g.header().hash.hex() == GENESIS_HASH_HEX
    assert Genesis.from_json(g.to_json()) == g
    assert g.header().parent == g.params_hash()
    assert make_genesis(block_reward=999).header().hash != g.header().hash


def test_genesis_spatial_parameters_are_committed_and_default_when_absent() -> None:
    import json

    from crowdmesh.chain.spatial_params import SpatialParams
    from crowdmesh.errors import DecodeError

    g = make_genesis()
    older = json.loads(g.to_json())
    del older["spatial"]  # a file written before the spatial parameters existed
    assert Genesis.from_json(json.dumps(older)) == g
    other = make_genesis(spatial=SpatialParams(committee_k=5))
    assert other.header().hash != g.header().hash
    assert Genesis.from_json(other.to_json()) == other
    for bad in ({"committee_k": 4}, {"alpha_w_permille": 700}, {"report_types": ()},
                {"radius_m": 0}):
        with pytest.raises(DecodeError):
            SpatialParams(**bad)  # type: ignore[arg-type]


def test_internal_records_golden() -> None:
    assert Account(5, 6, -7).encode() == bytes.fromhex("930506f9")
    assert Account().encode() is None
    entry = IndexEntry(HeaderInfo.of(golden_header()), 12, BlockStatus.VALID, 3)
    raw = entry.encode()
    assert raw.hex().startswith("9801c420000102") and raw.hex().endswith("0c0203")
    assert IndexEntry.decode(golden_header().hash, raw) == entry
    undo = Undo(1, ((b"ab", b"cd"), (b"ef", None)))
    assert hashlib.sha256(undo.encode()).hexdigest() == (
        "43eb85318c6d5c330e9aff96671852a951ce3d2bb5d7a2e96e6e853e1ef9ac4b")
    assert Undo.decode(undo.encode()) == undo
    loc = TxLocation(BlockHash(bytes(32)), 3)
    assert loc.encode().hex() == "92c420" + "00" * 32 + "03"


def test_merkle_root_golden_and_structure() -> None:
    ids = [bytes([i]) * 32 for i in range(3)]
    assert merkle_root(ids).hex() == (
        "ba8d94b7fbcecae7b81c4c80574fe24734a6917bf9c1ecd66ff3e0c34ead4620")
    leaf = [hashlib.sha256(b"\x00" + t).digest() for t in ids]
    node = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    assert merkle_root(ids) == hashlib.sha256(b"\x01" + node + leaf[2]).digest()
    assert merkle_root(ids) != merkle_root([*ids, ids[2]])  # no CVE-2012-2459 duplicate


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xc1", "bad-msgpack"),  # never-used byte
        (bytes.fromhex(TX_HEX) + b"\x00", "bad-msgpack"),  # trailing data
        (bytes.fromhex("96") + bytes.fromhex(TX_HEX)[1:], "bad-msgpack"),  # short array
        (b"\xd0\x05", "non-canonical"),  # int8 for a fixint
        (b"\xda\x00\x01a", "non-canonical"),  # str16 for a fixstr
        (b"\x90", "bad-shape"),  # missing fields
        (msgpack.packb([*msgpack.unpackb(bytes.fromhex(TX_HEX)), 1]), "bad-shape"),  # extra
        (msgpack.packb(["cm", ADDRS[0], True, "t", b"", 1, bytes(64)]), "bad-field"),  # bool
        (msgpack.packb(["cm", ADDRS[0], 1.5, "t", b"", 1, bytes(64)]), "bad-field"),  # float
        (msgpack.packb(["cm", "x" * 32, 1, "t", b"", 1, bytes(64)]), "bad-field"),  # str bin
        (msgpack.packb(["cm", ADDRS[0], -1, "t", b"", 1, bytes(64)]), "bad-field"),  # negative
        (msgpack.packb(["cm", ADDRS[0], 1, "t", b"", 1, bytes(63)]), "bad-field"),  # length
        (msgpack.packb({"a": 1}), "bad-shape"),  # a map
        (msgpack.packb(msgpack.ExtType(1, b"x")), "bad-shape"),  # ext type
    ],
)
def test_transaction_strict_decode(data: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as exc:
        Transaction.decode(data)
    assert exc.value.code == code


def test_block_and_header_strict_decode() -> None:
    with pytest.raises(DecodeError) as exc:
        BlockHeader.decode(bytes.fromhex(HEADER_HEX) + bytes(600))
    assert exc.value.code == "oversize"
    fields = msgpack.unpackb(bytes.fromhex(HEADER_HEX))
    fields[4] = fields[4][:31]
    with pytest.raises(DecodeError) as exc:
        BlockHeader.decode(msgpack.packb(fields))
    assert exc.value.code == "bad-field"
    with pytest.raises(DecodeError) as exc:
        Block.decode(msgpack.packb([msgpack.unpackb(bytes.fromhex(HEADER_HEX)), "txs"]))
    assert exc.value.code == "bad-shape"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("alloc"),
        lambda o: o.update(extra=1),
        lambda o: o.update(target="ff"),
        lambda o: o.update(block_reward=1.5),
        lambda o: o.update(fee_burn_bps=10_001),
        lambda o: o.update(alloc={"zz": 1}),
        lambda o: o.update(alloc={"00" * 32: 0}),
        lambda o: o.update(miner_cap_m=5, miner_cap_w=3),
    ],
)
def test_genesis_strict_parse(mutate: object) -> None:
    import json

    obj = json.loads(make_genesis().to_json())
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(DecodeError) as exc:
        Genesis.from_json(json.dumps(obj))
    assert exc.value.code == "bad-genesis"
    with pytest.raises(DecodeError):
        Genesis.from_json("{not json")


@given(
    nonce=st.integers(0, 2**64 - 1),
    fee=st.integers(0, 2**64 - 1),
    kind=st.text(min_size=1, max_size=32),
    payload=st.binary(max_size=300),
)
def test_transaction_roundtrip(nonce: int, fee: int, kind: str, payload: bytes) -> None:
    tx = Transaction(CHAIN_ID, ADDRS[0], nonce, kind, payload, fee, bytes(64))
    assert Transaction.decode(tx.encode()) == tx
    assert unpack(tx.encode(), 1 << 20)[2] == nonce


@given(
    height=st.integers(0, 2**64 - 1),
    timestamp=st.integers(0, 2**64 - 1),
    target=st.integers(1, MAX_TARGET),
    nonce=st.integers(0, 2**64 - 1),
    roots=st.binary(min_size=32, max_size=32),
)
def test_header_roundtrip(height: int, timestamp: int, target: int, nonce: int,
                          roots: bytes) -> None:
    h = BlockHeader(CHAIN_ID, height, BlockHash(roots), timestamp, target, roots, roots,
                    MINERS[1], nonce)
    assert BlockHeader.decode(h.encode()) == h
    assert Block.decode(Block(h, (golden_tx(),)).encode()).header.hash == h.hash
