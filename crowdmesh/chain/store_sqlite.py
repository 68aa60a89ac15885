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
- A store that cannot be used is refused when it is opened, never at the first read or write
  (``StoreError`` with a stable code whose detail names the way out): a file SQLite calls
  damaged, or that fails ``PRAGMA quick_check``, is ``chain-db-damaged``; a 0-byte file is
  ``chain-db-empty``; one that a write probe (a rolled-back insert) cannot change is
  ``chain-db-read-only``. A 0-byte file is never ours: a new file is built as ``<path>.new``
  (WAL mode, schema, closed so the WAL is folded in) and renamed into place, so a crash during
  a first start leaves no file or a whole one.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Final

from crowdmesh.chain.store import prefix_end
from crowdmesh.errors import StoreError, UsageError

__all__ = ["SqliteStore", "verify_store"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
_PROBE_KEY: Final = b"\x00write-probe"  # inserted and rolled back at open, never committed

_RESYNC: Final = ("stop the node, move the data dir aside (keep node_key and keys/) and start "
                  "on a new one to resync from peers")
_ADVICE: Final = {  # the way out, by code; each detail is one line (the CLI prints one line)
    "chain-db-damaged": f"the file is damaged and reindex cannot repair it: {_RESYNC}",
    "chain-db-empty": ("the file is 0 bytes, so the chain it held is lost (a new data dir has "
                       f"no chain.sqlite at all); reindex cannot help: {_RESYNC}"),
    "chain-db-read-only": ("the daemon's user cannot write it or its -wal/-shm files: fix "
                           "their owner or mode"),
    "chain-db-unreadable": "check the owner and mode of the data dir and its files, and the disk",
    "chain-db-unusable": "see the SQLite message; if it persists, " + _RESYNC,
}
_SQLITE_CODES: Final = {  # SQLite's primary result code -> ours
    sqlite3.SQLITE_CORRUPT: "chain-db-damaged",
    sqlite3.SQLITE_NOTADB: "chain-db-damaged",
    sqlite3.SQLITE_READONLY: "chain-db-read-only",
    sqlite3.SQLITE_PERM: "chain-db-read-only",
    sqlite3.SQLITE_CANTOPEN: "chain-db-unreadable",
    sqlite3.SQLITE_IOERR: "chain-db-unreadable",
}


class SqliteStore:
    """A crash-safe file-backed :class:`~crowdmesh.chain.store.Store`."""

    def __init__(self, conn: sqlite3.Connection, lock_fd: int, path: str) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> SqliteStore:
        """Open the database file ``path`` (creating it if absent) and take its lock.

        Raises:
            UsageError: ``datadir-locked`` if another process (or handle) holds the lock,
                ``datadir-not-writable`` if its lock file cannot be created.
            StoreError: ``chain-db-damaged``, ``chain-db-empty``, ``chain-db-read-only``,
                ``chain-db-unreadable`` or ``chain-db-unusable`` (see the module rules).
        """
        lock_fd = _lock(path)
        try:
            conn = _connect(path)
        except BaseException:
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


def _lock(path: str) -> int:
    """Take the exclusive lock of ``path`` (see the module rules); return its descriptor."""
    try:
        lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsageError("datadir-not-writable",
                         f"cannot create {path}.lock: {exc.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(lock_fd)
        raise UsageError("datadir-locked", path) from exc
    return lock_fd


def _connect(path: str) -> sqlite3.Connection:
    """A checked connection to ``path``, created whole if the file is absent."""
    if not os.path.lexists(path):
        _create(path)
    elif os.path.isfile(path) and os.path.getsize(path) == 0:
        raise _error("chain-db-empty", path, "0 bytes")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        verify_store(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _sqlite_error(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _create(path: str) -> None:
    """Build a new empty store beside ``path`` and rename it into place (see the rules)."""
    tmp = path + ".new"
    for stale in (tmp, tmp + "-wal", tmp + "-shm"):
        with suppress(FileNotFoundError):
            os.unlink(stale)  # left by a crash during an earlier first start
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
        finally:
            conn.close()  # why: the last close checkpoints the WAL into tmp and removes it
        os.replace(tmp, path)
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power loss
        finally:
            os.close(dir_fd)
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    except OSError as exc:
        raise _error("chain-db-unreadable", path, f"cannot create it: {exc.strerror}") from None


def verify_store(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a store SQLite finds damaged, or that cannot be written.

    Raises:
        StoreError: ``chain-db-damaged`` or ``chain-db-read-only``.
        sqlite3.Error: the check itself failed (``SqliteStore.open`` turns it into a code).
    """
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    if rows != [("ok",)]:
        report = " ".join(" ".join(str(r[0]) for r in rows).split())  # one line
        raise _error("chain-db-damaged", path, f"quick_check: {report}")
    # why a real write: a read-only file opens and reads fine, and SQLite says so only at
    # the first write, which for a node is its first block, long after it reported ready
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (_PROBE_KEY, b""))
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _sqlite_error(path: str, exc: sqlite3.Error) -> StoreError:
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF  # extended codes keep it low
    return _error(_SQLITE_CODES.get(primary, "chain-db-unusable"), path, str(exc))


def _error(code: str, path: str, what: str) -> StoreError:
    return StoreError(code, f"{path}: {what}; {_ADVICE[code]}")
