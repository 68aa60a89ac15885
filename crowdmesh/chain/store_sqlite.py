"""SQLite storage backend: the only chain module that touches files.

Invariants:
- One table ``kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID``; WAL journal,
  ``synchronous=FULL``. Each ``write_batch`` is one SQLite transaction, so a block connect or a
  reorg (blocks, indexes, undo rows and head pointer together) is atomic across crashes. A
  batch that fails (COMMIT included) is rolled back, so the connection is never left inside
  an open transaction.
- An exclusive ``flock`` on ``<path>.lock`` is held while the store is open; a second opener (in
  this or another process) gets ``UsageError("datadir-locked")``. The kernel drops the lock when
  the process dies, so a crashed node can restart.
- One writer: callers serialise access (the daemon's single chain task).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Mapping

from crowdmesh.chain.store import prefix_end
from crowdmesh.errors import UsageError

__all__ = ["SqliteStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"


class SqliteStore:
    """A crash-safe file-backed :class:`~crowdmesh.chain.store.Store`."""

    def __init__(self, conn: sqlite3.Connection, lock_fd: int, path: str) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> SqliteStore:
        """Open (creating if needed) the database file ``path`` and take its lock.

        Raises:
            UsageError: ``datadir-locked`` if another process (or handle) holds the lock.
        """
        lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(lock_fd)
            raise UsageError("datadir-locked", path) from exc
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
        except sqlite3.Error:
            os.close(lock_fd)
            raise
        return cls(conn, lock_fd, path)

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` or None."""
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def write_batch(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Apply ``writes`` in one transaction."""
        puts = [(k, v) for k, v in writes.items() if v is not None]
        dels = [(k,) for k, v in writes.items() if v is None]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
            conn.executemany("DELETE FROM kv WHERE k = ?", dels)
            conn.execute("COMMIT")  # inside: a failed COMMIT must not leave the tx open
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Pairs under ``prefix`` in key order (materialised, safe against later writes)."""
        end = prefix_end(prefix)
        if end is None:
            rows = self._conn.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k", (prefix,))
        else:
            rows = self._conn.execute(
                "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, end))
        return iter([(bytes(k), bytes(v)) for k, v in rows.fetchall()])

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        if self._lock_fd < 0:
            return
        self._conn.close()
        os.close(self._lock_fd)
        self._lock_fd = -1
