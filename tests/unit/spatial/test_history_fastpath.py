"""The reward history's fast paths: appending to a packed list, and the flat distance loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain.codec import pack, unpack
from crowdmesh.chain.contracts.spatial.contract import _append_packed
from crowdmesh.chain.contracts.spatial.geo import sum_distances_m
from crowdmesh.errors import ValidationError

coordinate = st.integers(-90_000_000, 90_000_000)


@pytest.mark.parametrize("n", [0, 1, 2, 14, 15, 16, 17, 255, 65_534, 65_535, 65_536, 65_537])
def test_append_packed_is_pack_of_the_longer_list_at_header_boundaries(n):
    items = [[i % 1000 - 500, -i] for i in range(n)]
    raw = pack(items) if n else None
    read = list(unpack(raw, 1 << 24)) if raw is not None else []
    assert _append_packed(raw, read, [7, -9]) == pack([*items, [7, -9]])


@given(st.lists(st.lists(coordinate, min_size=2, max_size=2), max_size=40),
       st.lists(coordinate, min_size=2, max_size=2))
def test_append_packed_matches_pack(items, item):
    raw = pack(items) if items else None
    read = list(unpack(raw, 1 << 24)) if raw is not None else []
    assert _append_packed(raw, read, item) == pack([*items, item])


@pytest.mark.parametrize("bad", [[True, 0], [0, False], [0.5, 0], [0, 180_000_001],
                                 [-90_000_001, 0], ["1", 0]])
def test_sum_of_distances_rejects_what_check_point_rejects(bad):
    with pytest.raises(ValidationError) as info:
        sum_distances_m(0, 0, [[1, 1], bad])
    assert info.value.code == "bad-spatial-point"
