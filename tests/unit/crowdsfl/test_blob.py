"""Blobs on a real chain: split and reassembly, one test per reject code, squatting, sizes."""

from __future__ import annotations

import pytest

from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts.blob import (
    KIND,
    MAX_BLOB_BYTES,
    MAX_PARTS,
    PART_BYTES,
    blob_bytes,
    blob_hash,
    blob_info,
    split_blob,
)
from crowdmesh.chain.contracts.crowdsfl.spec import max_bundle_chunks
from crowdmesh.crypto.encoding import chunks_needed
from crowdmesh.crypto.groups import DEFAULT
from tests.unit.crowdsfl.world import OTHER, REQ

DATA = bytes(range(256)) * (PART_BYTES * 5 // 2 // 256)  # 2.5 parts
NAME = blob_hash(DATA)


def _part(index: int, count: int = 3, data: bytes | None = None, name: bytes = NAME) -> bytes:
    if data is None:
        data = DATA[index * PART_BYTES:(index + 1) * PART_BYTES]
    return pack([name, index, count, data])


def test_split_then_upload_reassembles_the_blob(world):
    parts = split_blob(DATA)
    assert len(parts) == 3
    world.block(world.tx(REQ, KIND, parts[2]), world.tx(REQ, KIND, parts[0]))
    assert blob_bytes(world.chain.state_get, NAME) is None
    world.send(REQ, KIND, parts[1])
    assert blob_bytes(world.chain.state_get, NAME) == DATA
    assert blob_info(world.chain.state_get, NAME) == (REQ.public, 3, len(DATA))


@pytest.mark.parametrize(("payload", "code"), [
    (pack([b"short", 0, 1, b"x"]), "bad-blob-payload"),
    (pack([NAME, 0, 1, 7]), "bad-blob-payload"),
    (_part(0, count=0), "blob-bad-count"),
    (_part(0, count=MAX_PARTS + 1), "blob-bad-count"),
    (_part(3, count=3, data=b"x"), "blob-bad-index"),
    (_part(0, data=b"too short for a middle part"), "blob-part-size"),
    (_part(2, data=b""), "blob-part-size"),
])
def test_malformed_parts_are_refused(world, payload, code):
    assert world.code(world.tx(REQ, KIND, payload)) == code


def test_blob_complete_refuses_more_parts(world):
    world.upload(REQ, DATA)
    assert world.code(world.tx(OTHER, KIND, _part(0))) == "blob-complete"


def test_blob_count_mismatch(world):
    world.send(REQ, KIND, _part(0))
    assert world.code(world.tx(REQ, KIND, _part(1, count=4))) == "blob-count-mismatch"


def test_blob_duplicate_part(world):
    world.send(REQ, KIND, _part(0))
    assert world.code(world.tx(REQ, KIND, _part(0))) == "blob-duplicate-part"


def test_blob_hash_mismatch(world):
    assert world.code(world.tx(REQ, KIND, pack([NAME, 0, 1, b"not the blob"]))) \
        == "blob-hash-mismatch"


def test_junk_parts_from_someone_else_cannot_block_a_blob(world):
    """Squatting: OTHER posts a junk part 1 for REQ's hash first; REQ's blob still completes."""
    world.send(OTHER, KIND, _part(1, data=bytes(PART_BYTES)))
    world.upload(REQ, DATA)
    assert blob_bytes(world.chain.state_get, NAME) == DATA


def test_a_1_mib_model_fits_as_a_submission_and_as_a_blinded_bundle():
    chunks = chunks_needed(DEFAULT.group, 1 << 20)  # float32 parameters of a 1 MiB model
    submission = 21 + 2 * chunks * DEFAULT.group.element_bytes
    blinded = 21 + 3 * chunks * DEFAULT.group.element_bytes + 100
    assert chunks <= max_bundle_chunks("default")
    assert submission <= blinded <= MAX_BLOB_BYTES
    assert len(split_blob(bytes(submission))) <= MAX_PARTS // 3
    with pytest.raises(ValueError):
        split_blob(bytes(MAX_BLOB_BYTES + 1))
