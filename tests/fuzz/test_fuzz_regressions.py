"""Every crash or unexpected exception the fuzz campaign found, as a test with its input.

Fixed here: a non-bytes item where a tally bundle needs encoded bytes (``codec.unpack`` now
raises ``DecodeError("bad-field")`` instead of ``TypeError``); config paths and locations that
raised ``RuntimeError``, ``ValueError`` and ``decimal.InvalidOperation`` (now ``bad-config``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgpack
import pytest

from crowdmesh.chain import Block
from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts import SPATIAL_TALLY
from crowdmesh.chain.contracts.spatial.protocol import Reveal
from crowdmesh.daemon.config import parse_config
from crowdmesh.errors import DecodeError, UsageError, ValidationError
from tests.fuzz.targets import SURFACES
from tests.fuzz.world import KEYS, build_world, mined


def _tally_with(world, reveals):
    assert world.report is not None
    return msgpack.packb([world.report.encode(), [c.encode() for c in world.commits], reveals],
                         use_bin_type=True)


@pytest.mark.parametrize("item", [True, 1.5, None, 7, [], "text"])
def test_a_tally_item_that_is_not_bytes_is_a_payload_error(item) -> None:
    # found by contract-spatial-tally: a reveal `true` raised TypeError out of apply_tx, which
    # reverts only on ValidationError
    world = build_world()
    run = SURFACES["contract-spatial-tally"].make(world).run
    with pytest.raises(ValidationError) as info:
        run(_tally_with(world, [item]))
    assert info.value.code == "bad-spatial-payload"


def test_a_block_carrying_such_a_tally_is_rejected_not_a_crash() -> None:
    # the same input inside a block from a peer: before the fix import_block raised TypeError,
    # which no peer task catches (every node that received the block would exit)
    world = build_world()
    tx = world.tx(KEYS[2], SPATIAL_TALLY, _tally_with(world, [True]))
    base = world.next_block
    assert base is not None
    block = Block(base.header, (tx,))
    block = mined(Block(dataclasses.replace(base.header, tx_root=block.computed_tx_root()),
                        block.txs))
    with pytest.raises(ValidationError) as info:
        world.chain.import_block(block, world.now)
    assert info.value.code == "bad-spatial-payload"


@pytest.mark.parametrize("value", [True, 3, None, "x", [b"\x90"]])
def test_unpack_refuses_what_is_not_bytes(value) -> None:
    with pytest.raises(DecodeError) as info:
        unpack(value, 256)
    assert info.value.code == "bad-field"
    with pytest.raises(DecodeError):
        Reveal.decode(value)


# ---- found in daemon/config.py: config problems that escaped as other exceptions ----------

CONFIG_FINDINGS = [
    ('data_dir = "~nosuchuser/x"\n', "RuntimeError: Path.expanduser, unknown user"),
    ('data_dir = "d"\ngenesis = "~nobody_x/g.json"\n', "RuntimeError: Path.expanduser"),
    ('data_dir = "a\\u0000b"\n', "ValueError: embedded null byte in Path.resolve"),
    ('data_dir = "d"\n[control]\nsocket = "\\u0000"\n', "ValueError: embedded null byte"),
    ('data_dir = "d"\n[spatial]\nground_truth = "a\\u0000"\n', "ValueError: null byte"),
    ('data_dir = "d"\n[spatial]\nlocation = [1e999, 0]\n',
     "decimal.InvalidOperation from quantize in degrees_e6"),
    ('data_dir = "d"\n[control]\nrequest_timeout = nan\n',
     "decimal.InvalidOperation comparing NaN in _positive_number (the 10^6 campaign)"),
    ('data_dir = "d"\n[control]\nrequest_timeout = inf\n', "infinite seconds"),
]


@pytest.mark.parametrize(("text", "what"), CONFIG_FINDINGS)
def test_config_problems_are_config_errors(tmp_path: Path, text: str, what: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(text, source="fuzz.toml", base_dir=tmp_path, env={})
    assert info.value.code == "bad-config"
