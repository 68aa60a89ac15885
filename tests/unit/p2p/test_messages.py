"""The wire codec: golden bytes, round trips, and every strict-decode reject code."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.errors import DecodeError
from crowdmesh.p2p.messages import (
    MAX_GOSSIP_BYTES,
    MESSAGE_TYPES,
    Blocks,
    GetBlocks,
    GetHeaders,
    GetStatus,
    GetTxs,
    Headers,
    NewBlock,
    Status,
    TxAnnounce,
    TxBatch,
    TxGossip,
    Txs,
    decode_message,
    encode_message,
)

H = bytes(range(32))

GOLDEN = [
    (TxGossip(b"\x01\x02"), "92a27478c4020102"),
    (GetStatus(), "91aa6765742d737461747573"),
    (GetHeaders(5, 2), "93ab6765742d686561646572730502"),
    (Status("c", 7, H, "123"),
     "95a6737461747573a16307c420" + H.hex() + "a3313233"),
    (TxAnnounce((H,)), "92ab74782d616e6e6f756e636591c420" + H.hex()),
    (GetTxs((H, H[::-1])), "92a76765742d74787392c420" + H.hex() + "c420" + H[::-1].hex()),
    (Txs((b"\x01\x02",)), "92a974782d626f6469657391c4020102"),
    (Txs(()), "92a974782d626f6469657390"),
]


@pytest.mark.parametrize(("msg", "hexed"), GOLDEN, ids=lambda v: getattr(v, "TYPE", ""))
def test_golden_bytes(msg, hexed) -> None:
    assert encode_message(msg).hex() == hexed
    assert decode_message(bytes.fromhex(hexed)) == msg


MESSAGES = st.one_of(
    st.builds(TxGossip, st.binary(min_size=1, max_size=300)),
    st.builds(NewBlock, st.binary(min_size=1, max_size=300)),
    st.builds(TxBatch, st.lists(st.binary(min_size=1, max_size=50), min_size=1,
                                max_size=20).map(tuple)),
    st.builds(GetHeaders, st.integers(0, 2**40), st.integers(1, 2048)),
    st.builds(Headers, st.integers(0, 2**40),
              st.lists(st.binary(min_size=1, max_size=50), max_size=20).map(tuple)),
    st.builds(GetBlocks, st.lists(st.binary(min_size=32, max_size=32), min_size=1,
                                  max_size=20).map(tuple)),
    st.builds(Blocks, st.lists(st.binary(min_size=1, max_size=50), max_size=20).map(tuple)),
    st.builds(TxAnnounce, st.lists(st.binary(min_size=32, max_size=32), min_size=1,
                                    max_size=64, unique=True).map(tuple)),
    st.builds(GetTxs, st.lists(st.binary(min_size=32, max_size=32), min_size=1,
                                max_size=64, unique=True).map(tuple)),
    st.builds(Txs, st.lists(st.binary(min_size=1, max_size=50), max_size=64).map(tuple)),
    st.builds(Status, st.text(max_size=20), st.integers(0, 2**40),
              st.binary(min_size=32, max_size=32), st.integers(0, 2**200).map(str)),
)


@given(MESSAGES)
def test_round_trip(msg) -> None:
    assert decode_message(encode_message(msg)) == msg


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xc1", "bad-msgpack"),
        (pack(["tx", b"a"]) + b"\x00", "bad-msgpack"),
        (pack({"tx": b"a"}), "bad-msgpack"),
        (pack("tx"), "bad-msg-shape"),
        (pack([]), "bad-msg-shape"),
        (pack(["nope", b"a"]), "unknown-msg-type"),
        (pack([1, b"a"]), "unknown-msg-type"),
        (pack(["tx"]), "bad-msg-shape"),
        (pack(["tx", b"a", b"b"]), "bad-msg-shape"),
        (pack(["tx", "text"]), "bad-msg-field-type"),
        (pack(["get-headers", True, 1]), "bad-msg-field-type"),
        (pack(["get-headers", 1.0, 1]), "bad-msg-field-type"),
        (pack(["get-headers", 0, 0]), "bad-msg-count"),
        (pack(["get-headers", -1, 1]), "bad-msg-field"),
        (pack(["get-blocks", [b"short"]]), "bad-msg-hash"),
        (pack(["blocks", [b"x", "y"]]), "bad-msg-field-type"),
        (pack(["tx", b""]), "bad-msg-item"),
        (pack(["txs", []]), "bad-msg-count"),
        (pack(["txs", [b"a"] * 1025]), "bad-msg-count"),
        (pack(["status", "c", 1, H, "-5"]), "bad-msg-field"),
        (pack(["tx-announce", []]), "bad-msg-count"),
        (pack(["tx-announce", [H] * 65]), "bad-msg-count"),
        (pack(["tx-announce", [H, H]]), "bad-msg-item"),
        (pack(["tx-announce", [b"short"]]), "bad-msg-hash"),
        (pack(["tx-announce", H]), "bad-msg-field-type"),
        (pack(["get-txs", []]), "bad-msg-count"),
        (pack(["get-txs", [bytes([i]) * 32 for i in range(65)]]), "bad-msg-count"),
        (pack(["get-txs", [H, H]]), "bad-msg-item"),
        (pack(["tx-bodies", [b"t"] * 65]), "bad-msg-count"),
        (pack(["tx-bodies", [b""]]), "bad-msg-item"),
        (pack(["tx-bodies", [b"t" * (128 * 1024 + 1)]]), "bad-msg-item"),
        (pack(["tx-bodies", [b"t", 1]]), "bad-msg-field-type"),
    ],
)
def test_strict_decode_rejects(data: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(data)
    assert info.value.code == code


def test_size_cap_checked_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(b"\xc1" * (MAX_GOSSIP_BYTES + 1), MAX_GOSSIP_BYTES)
    assert info.value.code == "oversize"


def test_registry_has_unique_tags() -> None:
    assert len({cls.TYPE for cls in MESSAGE_TYPES.values()}) == len(MESSAGE_TYPES)
    assert all(tag == MESSAGE_TYPES[tag].TYPE for tag in MESSAGE_TYPES)


def test_caps_of_the_tx_fetch_messages() -> None:
    ids = tuple(bytes([i]) * 32 for i in range(64))
    assert decode_message(encode_message(TxAnnounce(ids))) == TxAnnounce(ids)
    # an announcement of the most txids is a small gossip message
    assert len(encode_message(TxAnnounce(ids))) < 4 * 1024
    big = Txs(tuple(bytes([i % 251 + 1]) * (128 * 1024) for i in range(64)))
    assert decode_message(encode_message(big)) == big  # the largest reply fits one sync frame
    with pytest.raises(DecodeError) as info:
        TxAnnounce((*ids, bytes(32)))
    assert info.value.code == "bad-msg-count"
