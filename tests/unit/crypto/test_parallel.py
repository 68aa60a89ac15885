"""The core's mapper contract: a process pool gives bit-identical results to serial runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crowdmesh.crypto import (
    DEFAULT,
    csp_process,
    decrypt,
    encrypt,
    keygen,
    requester_open,
    requester_verify,
    task_keys,
)
from crowdmesh.crypto._mapper import SERIAL
from crowdmesh.crypto.proofs import _combine
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.jobs import ProcessMapper
from crowdmesh.errors import DecodeError


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessMapper]:
    with ProcessMapper(2) as mapper:
        yield mapper


def test_process_pool_matches_serial_bit_for_bit(pool: ProcessMapper) -> None:
    rng = DeterministicRng(1)
    csp, req = keygen(DEFAULT, rng), keygen(DEFAULT, rng)
    keys = task_keys(DEFAULT, csp.pk, req.pk)
    data = bytes(range(256)) * 194  # 130 chunks: two slices of at most 128
    runs = []
    for mapper in (None, pool):
        extra = {} if mapper is None else {"mapper": mapper}
        r = DeterministicRng(2)
        bundle = encrypt(keys.joint, data, r, **extra)
        result = csp_process(keys, csp.sk, [bundle], r, **extra)
        requester_verify(keys, result.outputs, **extra)
        assert requester_open(keys, req.sk, result.outputs[0], **extra) == data
        runs.append((bundle, result))
    assert runs[0] == runs[1]


def test_pool_splits_large_multiexp(pool: ProcessMapper) -> None:
    group = DEFAULT.group
    rng = DeterministicRng(3)
    bases = [rng.randbelow(group.p - 2) + 2 for _ in range(2100)]
    weights = [rng.token_bytes(16) for _ in bases]
    assert _combine(group, bases, weights, pool) == _combine(group, bases, weights, SERIAL)


def test_mapper_rejects_zero_processes() -> None:
    with pytest.raises(ValueError):
        ProcessMapper(0)


def test_decoding_errors_cross_the_pool_with_their_code(pool: ProcessMapper) -> None:
    rng = DeterministicRng(4)
    right, wrong = keygen(DEFAULT, rng), keygen(DEFAULT, rng)
    bundle = encrypt(task_keys(DEFAULT, right.pk, right.pk).requester, b"secret", rng)
    for extra in ({}, {"mapper": pool}):
        with pytest.raises(DecodeError) as exc:
            decrypt(DEFAULT, wrong.sk, bundle, **extra)
        assert exc.value.code == "bad-chunk-value"
        assert decrypt(DEFAULT, right.sk, bundle, **extra) == b"secret"
