"""Group commit: pending writes are visible, merged, and committed once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain import MemoryStore
from crowdmesh.daemon.groupstore import GroupCommitStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def write_batch(self, writes) -> None:
        self.batches += 1
        super().write_batch(writes)


def test_outside_a_group_every_batch_commits() -> None:
    inner = CountingStore()
    store = GroupCommitStore(inner)
    store.write_batch({b"a": b"1"})
    store.write_batch({b"b": b"2"})
    assert inner.batches == 2 and inner.get(b"b") == b"2"


def test_group_merges_into_one_commit_and_reads_see_pending() -> None:
    inner = CountingStore()
    store = GroupCommitStore(inner)
    store.write_batch({b"k1": b"old", b"k2": b"x"})
    with store.group():
        store.write_batch({b"k1": b"new"})
        store.write_batch({b"k2": None, b"k3": b"3"})
        assert store.get(b"k1") == b"new" and store.get(b"k2") is None
        assert inner.get(b"k1") == b"old"  # nothing on disk yet
        assert list(store.iterate(b"k")) == [(b"k1", b"new"), (b"k3", b"3")]
    assert inner.batches == 2
    assert list(inner.iterate(b"k")) == [(b"k1", b"new"), (b"k3", b"3")]


def test_group_flushes_on_exception() -> None:
    inner = CountingStore()
    store = GroupCommitStore(inner)
    with pytest.raises(RuntimeError), store.group():
        store.write_batch({b"a": b"1"})
        raise RuntimeError("import failed")
    assert inner.get(b"a") == b"1"


OPS = st.lists(st.dictionaries(st.sampled_from([b"p1", b"p2", b"q1", b"p3"]),
                               st.one_of(st.none(), st.binary(min_size=1, max_size=3)),
                               max_size=3), max_size=6)


@given(OPS)
def test_grouped_equals_ungrouped(batches) -> None:
    plain, grouped_inner = MemoryStore(), MemoryStore()
    grouped = GroupCommitStore(grouped_inner)
    for b in batches:
        plain.write_batch(b)
    with grouped.group():
        for b in batches:
            grouped.write_batch(b)
        assert list(grouped.iterate(b"p")) == list(plain.iterate(b"p"))
    assert list(grouped_inner.iterate(b"")) == list(plain.iterate(b""))
