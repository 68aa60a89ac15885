"""A short run of every fuzz target (the campaign is ``bench/fuzz.py``, docs/fuzzing.md).

Each surface gets ``SMOKE_INPUTS`` deterministic mutation inputs and must end with no
unexpected exception and at least a minimum of distinct outcomes (a target whose inputs all
die at the first decode check would pass vacuously). Hypothesis adds structure-aware msgpack
trees for the decoders, which the mutation engine reaches only through its seeds' shapes.
"""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdmesh.chain import Block, Transaction
from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.p2p.messages import MESSAGE_TYPES, decode_message
from tests.fuzz.engine import run_surface
from tests.fuzz.targets import _CONTRACT_SEEDS as SEEDED
from tests.fuzz.targets import SURFACES
from tests.fuzz.world import build_world

SMOKE_INPUTS = 600
# Fewest distinct outcomes a smoke run must reach (default 2): evidence the inputs get past the
# first check of the deeper surfaces.
MIN_CODES = {"message": 12, "gossip": 10, "sync-server": 8, "sync-client": 10, "tx": 10,
             "block": 10, "spatial-msg": 8, "control": 15, "config": 10, "genesis": 10,
             "contract-spatial-tally": 5}
# Unexpected exception types a surface may still raise while a finding awaits its fix (each
# tracked by a strict xfail in test_fuzz_regressions.py); empty: every finding is fixed.
KNOWN: dict[str, set[str]] = {}


@pytest.fixture(scope="module")
def world():
    return build_world()


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_smoke(name: str, world) -> None:
    stats = run_surface(name, SMOKE_INPUTS, seed=0, world=world)
    assert stats.inputs == SMOKE_INPUTS
    unexpected = {k: v for k, v in stats.unexpected.items() if k not in KNOWN.get(name, ())}
    assert not unexpected, stats.samples
    # contract kinds without world objects (generic seeds) may only reach their payload check
    floor = MIN_CODES.get(name, 2 if name.removeprefix("contract-") in SEEDED else 1)
    assert len(stats.codes) >= floor, dict(stats.codes)


_leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=80)
         | st.text(max_size=40) | st.floats(allow_nan=True))
_tree = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=10), max_leaves=40)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tag=st.sampled_from(sorted(MESSAGE_TYPES)), body=st.lists(_tree, max_size=6))
def test_tagged_msgpack_trees_only_raise_decode_errors(tag, body) -> None:
    data = msgpack.packb([tag, *body], use_bin_type=True)
    with contextlib.suppress(DecodeError):
        decode_message(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=_tree)
def test_chain_decoders_only_raise_stable_errors(tree) -> None:
    data = msgpack.packb(tree, use_bin_type=True)
    for decode in (Transaction.decode, Block.decode):
        with contextlib.suppress(DecodeError, ValidationError):
            decode(data)
