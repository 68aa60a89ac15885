"""Bytes ↔ QR-subgroup elements: exact round trips, subgroup outputs, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.crypto.encoding import chunks_needed, decode, encode
from crowdmesh.crypto.groups import FFDHE2048, FFDHE3072, Group, is_element
from crowdmesh.errors import DecodeError, UsageError

GROUPS = [FFDHE2048, FFDHE3072]


def roundtrip(group: Group, data: bytes, chunks: int | None = None) -> list[int]:
    elements = encode(group, data, chunks)
    assert all(is_element(group, y) for y in elements)
    assert decode(group, elements) == data
    return elements


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_edge_cases(group: Group) -> None:
    k = group.chunk_bytes
    assert len(roundtrip(group, b"")) == 1
    for data in (b"\0", bytes(1000), b"\xff" * (3 * k), b"\xff" * (k - 8), b"\xff" * (k - 7)):
        assert len(roundtrip(group, data)) == chunks_needed(group, len(data))
    assert chunks_needed(group, k - 8) == 1 and chunks_needed(group, k - 7) == 2


@given(st.binary(max_size=5000), st.sampled_from(GROUPS))
def test_random_roundtrip(data: bytes, group: Group) -> None:
    roundtrip(group, data)


@given(
    st.lists(st.sampled_from([b"\0" * 50, b"\xff" * 50, b"\x01", b"\x80"]), max_size=40),
    st.sampled_from(GROUPS),
)
def test_zero_and_ff_heavy_roundtrip(parts: list[bytes], group: Group) -> None:
    roundtrip(group, b"".join(parts))


@given(st.binary(max_size=600), st.integers(min_value=0, max_value=3))
def test_padding_to_chunk_count(data: bytes, extra: int) -> None:
    need = chunks_needed(FFDHE2048, len(data))
    assert len(roundtrip(FFDHE2048, data, need + extra)) == need + extra


def test_too_large_for_chunk_count() -> None:
    with pytest.raises(UsageError) as exc:
        encode(FFDHE2048, bytes(255), chunks=1)
    assert exc.value.code == "bundle-too-large"


def test_encoding_is_injective_on_neighbours() -> None:
    outs = {tuple(encode(FFDHE2048, bytes([i]))) for i in range(256)}
    assert len(outs) == 256


def decode_code(group: Group, elements: list[int]) -> str:
    with pytest.raises(DecodeError) as exc:
        decode(group, elements)
    return exc.value.code


def test_decode_rejects_malformed() -> None:
    g = FFDHE2048
    good = encode(g, b"hello world")
    assert decode_code(g, []) == "empty-encoding"
    for bad in (0, g.p, g.p - good[0], -1):  # p − y is a non-residue when y is a residue
        assert decode_code(g, [bad]) == "bad-group-element"
    # A residue whose x = min(y, p − y) exceeds 2^(8k) is no chunk's image.
    limit = 2 ** (8 * g.chunk_bytes)
    big = next(y for y in range(limit + 1, limit + 99) if is_element(g, y))
    assert decode_code(g, [big]) == "bad-chunk-value"
    # A length header claiming more than the buffer holds, and non-zero bytes after the data.
    forged = encode(g, b"x" * 10)
    forged_header = _with_header(g, forged, 1000)
    assert decode_code(g, forged_header) == "bad-length"
    padded = _with_header(g, encode(g, b"abc"), 1)  # "bc" becomes non-zero padding
    assert decode_code(g, padded) == "bad-padding"


def _with_header(group: Group, elements: list[int], length: int) -> list[int]:
    """Re-encode the raw buffer behind ``elements`` with another length header."""
    k = group.chunk_bytes
    raw = bytearray()
    for y in elements:
        x = y if y <= group.q else group.p - y
        raw += (x - 1).to_bytes(k, "big")
    raw[:8] = length.to_bytes(8, "big")
    out = []
    for i in range(0, len(raw), k):
        x = int.from_bytes(raw[i : i + k], "big") + 1
        out.append(x if is_element(group, x) else group.p - x)
    return out
