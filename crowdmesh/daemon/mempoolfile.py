"""The mempool file (bitcoind's ``mempool.dat``): pooled and queued transactions survive a restart.

Invariants:
- Format: ``VERSION`` (1 byte) ‖ SHA-256(body) (32 bytes) ‖ body, where body is canonical
  msgpack ``[[pending tx, ...], [queued tx, ...]]`` of encoded transactions. Anything else
  (short, unknown version, checksum mismatch, bad msgpack, wrong shape) is damage: it is logged
  and ignored, never fatal; the node starts with an empty pool.
- Writes are atomic: write ``mempool.dat.tmp``, rename it over ``mempool.dat``, so a crash at
  any moment leaves the old file or the new one. Saves after a submission skip fsync: a file in
  the page cache survives SIGKILL of the daemon (what ``pending`` promises), and two fsyncs per
  submission would cap one client at about 100 submissions a second. Only the shutdown save is
  fsynced; a power loss can lose what was submitted since the last clean stop.
- :meth:`MempoolFile.save` is a group commit: it returns once a snapshot taken after the call
  is written, and callers that arrive while a write runs share the next one. The disk work runs
  in a worker thread, so the trio thread never blocks on the disk.
- Loading revalidates every transaction through :meth:`Ledger.add_tx` as if it had just arrived
  (signature, nonce, funds, the gap buffer's bounds); what no longer fits (mined meanwhile,
  overspent, from another chain) is dropped, with one summary log line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from crowdmesh.chain.chain import Chain
from crowdmesh.chain.codec import expect_array, expect_bytes, expect_list, pack, unpack
from crowdmesh.chain.mempool import Mempool
from crowdmesh.chain.tx import MAX_TX_BYTES, Transaction
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.logs import log_event
from crowdmesh.errors import DecodeError, ValidationError

__all__ = ["MEMPOOL_FILE", "VERSION", "MempoolFile", "decode_pool", "encode_pool",
           "open_ledger"]

log = logging.getLogger("crowdmesh.node")

MEMPOOL_FILE = "mempool.dat"
VERSION = 1
_HEAD = 1 + 32  # version byte + SHA-256
MAX_FILE_BYTES = 64 * 1024 * 1024  # pool (16 MiB) + gap buffer (16 MiB) with room to spare
MAX_FILE_TXS = 64 * 1024

Snapshot = Callable[[], tuple[list[Transaction], list[Transaction]]]


def encode_pool(pending: list[Transaction], queued: list[Transaction]) -> bytes:
    """The file's bytes for a pool (pure)."""
    body = pack([[tx.encoded for tx in pending], [tx.encoded for tx in queued]])
    return bytes([VERSION]) + hashlib.sha256(body).digest() + body


def decode_pool(data: bytes) -> list[bytes]:
    """The encoded transactions in a file's bytes, pending first (pure).

    Raises:
        DecodeError: ``mempool-file-short``, ``mempool-file-version``,
            ``mempool-file-checksum``, or the codec's ``oversize``, ``bad-msgpack``,
            ``non-canonical``, ``bad-shape``, ``bad-field``.
    """
    if len(data) < _HEAD:
        raise DecodeError("mempool-file-short", f"{len(data)} bytes")
    if data[0] != VERSION:
        raise DecodeError("mempool-file-version", str(data[0]))
    body = data[_HEAD:]
    if hashlib.sha256(body).digest() != data[1:_HEAD]:
        raise DecodeError("mempool-file-checksum")
    pending, queued = expect_array(unpack(body, MAX_FILE_BYTES), 2, "mempool file")
    return [expect_bytes(raw, "mempool tx", max_len=MAX_TX_BYTES)
            for part in (pending, queued) for raw in expect_list(part, MAX_FILE_TXS, "txs")]


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` by ``data`` (tmp, rename; with ``durable`` fsync both file and dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # why: the rename itself is only durable once the directory is
    finally:
        os.close(dir_fd)


class MempoolFile:
    """One pool file and its group-committed saves."""

    def __init__(self, path: Path, snapshot: Snapshot) -> None:
        self.path = path
        self._snapshot = snapshot
        self._lock = trio.Lock()
        self._requested = 0
        self._written = 0
        self.writes = 0

    async def save(self) -> None:
        """Return once the pool as it is now (or later) is on disk; a failure is logged."""
        self._requested += 1
        mine = self._requested
        async with self._lock:
            if self._written >= mine:
                return  # a write that started after our request already covered it
            target = self._requested
            data = encode_pool(*self._snapshot())
            try:
                await trio.to_thread.run_sync(write_atomic, self.path, data, False)
            except OSError as exc:  # why not raise: the pool itself is fine, only not durable
                log_event(log, "mempool-save-failed", logging.WARNING, error=str(exc))
                return
            self._written = target
            self.writes += 1

    def save_now(self) -> None:
        """Write the pool synchronously (clean shutdown); a failure is logged."""
        try:
            write_atomic(self.path, encode_pool(*self._snapshot()))
        except OSError as exc:
            log_event(log, "mempool-save-failed", logging.WARNING, error=str(exc))
            return
        self.writes += 1

    def read(self) -> list[bytes]:
        """The file's transactions; ``[]`` (logged) if it is missing, unreadable or damaged."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + _HEAD + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log_event(log, "mempool-file-ignored", logging.WARNING, code="mempool-file-unreadable",
                      error=str(exc))
            return []
        try:
            return decode_pool(data)
        except DecodeError as exc:
            log_event(log, "mempool-file-ignored", logging.WARNING, code=exc.code,
                      detail=exc.detail)
            return []


def restore(ledger: Ledger, raws: list[bytes]) -> int:
    """Offer ``raws`` to ``ledger`` in nonce order; return how many it now holds."""
    txs = []
    for raw in raws:
        try:
            txs.append(Transaction.decode(raw))
        except (DecodeError, ValidationError):
            continue
    for tx in sorted(txs, key=lambda t: t.nonce):  # predecessors first, so fewer wait
        try:
            ledger.add_tx(tx)
        except ValidationError:
            continue  # queued (nonce gap) or no longer valid: either way nothing to do
    pending, queued = ledger.pool_snapshot()
    held = {tx.txid for tx in pending + queued}
    return sum(1 for tx in txs if tx.txid in held)


@contextmanager
def open_ledger(chain: Chain, data_dir: Path) -> Iterator[Ledger]:
    """A ledger whose pool is loaded from ``data_dir/mempool.dat`` and saved there on exit."""
    ledger = Ledger(chain, Mempool(chain))
    pool_file = MempoolFile(data_dir / MEMPOOL_FILE, ledger.pool_snapshot)
    raws = pool_file.read()
    if raws:
        kept = restore(ledger, raws)
        log_event(log, "mempool-loaded", kept=kept, dropped=len(raws) - kept)
    ledger.pool_file = pool_file
    try:
        yield ledger
    finally:
        pool_file.save_now()
