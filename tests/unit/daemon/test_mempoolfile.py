"""The mempool file: round trip, atomic group-committed saves, revalidation on load, and a
damaged file that is logged and ignored, never fatal."""

from __future__ import annotations

import logging

import pytest
import trio

from crowdmesh.chain import Chain, Genesis, MemoryStore, make_transaction
from crowdmesh.chain import transfer_payload as pay
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.mempoolfile import (
    MEMPOOL_FILE,
    MempoolFile,
    decode_pool,
    encode_pool,
    open_ledger,
)
from crowdmesh.errors import DecodeError

_RNG = DeterministicRng(12)
ALICE, BOB = AccountKey.generate(_RNG), AccountKey.generate(_RNG)
GENESIS = Genesis(chain_id="poolfile", timestamp=1_700_000_000, target=1 << 250,
                  block_interval=1, retarget_interval=0,
                  alloc=tuple(sorted((k.public, 10**12) for k in (ALICE, BOB))))


def tx(nonce: int, key: AccountKey = ALICE, chain_id: str = "poolfile"):
    return make_transaction(key, chain_id, nonce, "transfer", pay(BOB.public, 5), 100_000)


def chain() -> Chain:
    return Chain.open(MemoryStore(), GENESIS)


def held(led) -> tuple[list[int], list[int]]:
    pending, queued = led.pool_snapshot()
    return [t.nonce for t in pending], [t.nonce for t in queued]


def test_encode_decode_round_trip_keeps_pending_then_queued() -> None:
    a, b, c = tx(0), tx(1), tx(5)
    assert decode_pool(encode_pool([a, b], [c])) == [a.encode(), b.encode(), c.encode()]
    assert decode_pool(encode_pool([], [])) == []


@pytest.mark.parametrize(("damage", "code"), [
    (lambda d: b"", "mempool-file-short"),
    (lambda d: d[:20], "mempool-file-short"),
    (lambda d: bytes([9]) + d[1:], "mempool-file-version"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "mempool-file-checksum"),
    (lambda d: d[:len(d) // 2], "mempool-file-checksum"),
])
def test_damage_is_detected_with_a_code(damage, code) -> None:
    data = encode_pool([tx(0)], [tx(3)])
    with pytest.raises(DecodeError) as exc:
        decode_pool(damage(data))
    assert exc.value.code == code


def test_a_well_checksummed_body_of_the_wrong_shape_is_damage_too() -> None:
    import hashlib

    from crowdmesh.chain.codec import pack

    body = pack([["not bytes"], []])
    with pytest.raises(DecodeError) as exc:
        decode_pool(bytes([1]) + hashlib.sha256(body).digest() + body)
    assert exc.value.code == "bad-field"


def test_the_pool_survives_a_restart_and_is_revalidated(tmp_path) -> None:
    c = chain()
    with open_ledger(c, tmp_path) as led:
        led.add_tx(tx(0))
        led.add_tx(tx(1))
        with pytest.raises(Exception, match="mempool-nonce-gap"):
            led.add_tx(tx(3))  # queued
    assert (tmp_path / MEMPOOL_FILE).exists() and not (tmp_path / "mempool.dat.tmp").exists()
    with open_ledger(c, tmp_path) as again:
        assert held(again) == ([0, 1], [3])
    # a file written for another chain state: invalid entries are dropped, the rest kept
    (tmp_path / MEMPOOL_FILE).write_bytes(encode_pool([tx(0, chain_id="other"), tx(0)], [tx(2)]))
    with open_ledger(chain(), tmp_path) as led:
        assert held(led) == ([0], [2])


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x01" + bytes(32) + b"\x92"])
def test_a_damaged_file_is_logged_and_ignored(tmp_path, caplog, content) -> None:
    (tmp_path / MEMPOOL_FILE).write_bytes(content)
    with (caplog.at_level(logging.WARNING, logger="crowdmesh.node"),
          open_ledger(chain(), tmp_path) as led):
        assert held(led) == ([], [])
        led.add_tx(tx(0))
    assert "mempool-file-ignored" in caplog.text
    with open_ledger(chain(), tmp_path) as led:  # the next save replaced the damaged file
        assert held(led) == ([0], [])


def test_an_unreadable_file_is_not_fatal(tmp_path, caplog) -> None:
    (tmp_path / MEMPOOL_FILE).mkdir()  # reading a directory fails with an OSError
    with (caplog.at_level(logging.WARNING, logger="crowdmesh.node"),
          open_ledger(chain(), tmp_path) as led):
        assert held(led) == ([], [])
    assert "mempool-file-ignored" in caplog.text and "mempool-save-failed" in caplog.text


async def test_concurrent_saves_share_writes_and_each_sees_its_tx(tmp_path) -> None:
    pool: list = []
    pf = MempoolFile(tmp_path / MEMPOOL_FILE, lambda: (list(pool), []))

    async def submit(n: int) -> None:
        pool.append(tx(n))
        await pf.save()
        assert tx(n).encode() in decode_pool((tmp_path / MEMPOOL_FILE).read_bytes())

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(submit, n)
    assert 1 <= pf.writes < 20  # group commit: callers waiting on one write share the next
    assert len(decode_pool((tmp_path / MEMPOOL_FILE).read_bytes())) == 20
