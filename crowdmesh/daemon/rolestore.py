"""The role store: private facts roles keep across restarts, in one SQLite file.

Roles keep secrets here (ElGamal secret keys, a CSP's permutations, a worker's dataset
binding, contract calls in flight), so the file system rules matter as much as atomicity.

Invariants:
- Crash safety: one table ``role_kv(ns TEXT, key BLOB, value BLOB, PRIMARY KEY (ns, key))``,
  WAL journal and ``synchronous=FULL``. Each :meth:`RoleStore.apply` is ONE SQLite
  transaction, so after a SIGKILL (or power loss) at any point the store opens with either
  the old or the new state of every ``apply``, never a mix. A failed ``apply`` is rolled back
  and leaves the connection outside any transaction.
- Privacy: the file is created by this module with ``O_CREAT | O_EXCL`` and mode 0600, so it
  is never group/world readable, not even for an instant; SQLite is then opened with
  ``mode=rw`` so it can never create the file itself with its default 0644. SQLite gives its
  ``-wal``/``-shm`` companions the database file's mode. An existing file (or companion)
  that the group or others can read or write is refused (``role-store-permissions``).
- Nothing stored is ever logged or put in an exception: error details name the path only.
- Bounds: a namespace is 1-64 characters and a key (or prefix) at most 1 KiB
  (``role-store-key``); every write is checked before the transaction begins.
- One user: the daemon's trio thread serialises access (the data-dir lock already keeps a
  second daemon out). Each ``apply`` fsyncs, so callers batch what belongs together.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

from crowdmesh.chain.store import prefix_end
from crowdmesh.errors import UsageError

__all__ = ["FILE_MODE", "MAX_KEY_BYTES", "MAX_NS_CHARS", "RoleStore", "RoleStoreView"]

MAX_NS_CHARS = 64
MAX_KEY_BYTES = 1024
FILE_MODE = 0o600
_COMPANIONS = ("", "-wal", "-shm", "-journal")
_OPEN_RW = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS role_kv ("
    "ns TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, "
    "PRIMARY KEY (ns, key)) WITHOUT ROWID"
)


def _check_ns(ns: str) -> None:
    if not 1 <= len(ns) <= MAX_NS_CHARS:
        raise UsageError("role-store-key", f"namespace must be 1-{MAX_NS_CHARS} characters")


def _check_key(key: bytes) -> None:
    if len(key) > MAX_KEY_BYTES:
        raise UsageError("role-store-key", f"key is {len(key)} bytes (max {MAX_KEY_BYTES})")


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then leave it to the checks)."""
    try:
        fd = os.open(path, _OPEN_NEW, FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise UsageError("role-store-unreadable", f"{path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, FILE_MODE)  # why: the umask may have removed bits; never added any
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_private(path: Path) -> None:
    """Refuse a store file (or SQLite companion) that is not a regular file only we can use."""
    for suffix in _COMPANIONS:
        part = Path(f"{path}{suffix}")
        try:
            st = os.lstat(part)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):  # a symlink or directory could redirect the secrets
            raise UsageError("role-store-unreadable", f"{part} is not a regular file")
        if st.st_mode & 0o066:
            raise UsageError(
                "role-store-permissions",
                f"{part} has mode {stat.S_IMODE(st.st_mode):04o}; run chmod 600 on it",
            )


def _probe_writable(path: Path) -> None:
    """Fail now, not at the first ``apply``: SQLite would quietly open a read-only file."""
    try:
        fd = os.open(path, _OPEN_RW)
    except OSError as exc:
        raise UsageError("role-store-unreadable", f"{path}: {exc.strerror}") from exc
    os.close(fd)  # why: before SQLite opens it, so no POSIX lock of SQLite's can be dropped


def _connect(path: Path) -> sqlite3.Connection:
    """Open the existing file read-write (never create), set durability, check the schema."""
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")  # why: deleted secrets must not linger in pages
        conn.execute(_SCHEMA)
        conn.execute("SELECT ns, key, value FROM role_kv LIMIT 0")
        (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(str(verdict))
    except BaseException:
        conn.close()
        raise
    return conn


class RoleStoreView:
    """A read-only view of one namespace of a :class:`RoleStore` (what pure role code reads)."""

    __slots__ = ("_ns", "_store")

    def __init__(self, store: RoleStore, ns: str) -> None:
        _check_ns(ns)
        self._store = store
        self._ns = ns

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` in this namespace, or None."""
        return self._store.get(self._ns, key)

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """(key, value) pairs under ``prefix`` in this namespace, in key order."""
        return self._store.items(self._ns, prefix)


class RoleStore:
    """Namespaced, crash-safe, owner-only key-value storage for role secrets."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> RoleStore:
        """Open the store at ``path``, creating it (mode 0600) if missing.

        Raises:
            UsageError: ``role-store-permissions`` if the file (or a ``-wal``/``-shm``
                companion) is readable or writable by group or others;
                ``role-store-unreadable`` if it is not a regular file, not a role store,
                corrupt, or cannot be opened for writing.
        """
        path = Path(path)
        _create_private(path)
        _check_private(path)
        _probe_writable(path)
        try:
            conn = _connect(path)
        except sqlite3.Error as exc:
            raise UsageError("role-store-unreadable", f"{path}: {exc}") from exc
        return cls(conn, path)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UsageError("role-store-closed", str(self.path))
        return self._conn

    def get(self, ns: str, key: bytes) -> bytes | None:
        """The value stored under (``ns``, ``key``), or None."""
        _check_ns(ns)
        _check_key(key)
        sql = "SELECT value FROM role_kv WHERE ns = ? AND key = ?"
        row = self._db().execute(sql, (ns, key)).fetchone()
        return None if row is None else bytes(row[0])

    def items(self, ns: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """(key, value) pairs of ``ns`` whose key starts with ``prefix``, in key order."""
        _check_ns(ns)
        _check_key(prefix)
        # why: SQLite orders BLOBs by memcmp, the same order as Python bytes
        sql = "SELECT key, value FROM role_kv WHERE ns = ? AND key >= ?"
        params: tuple[object, ...] = (ns, prefix)
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            params += (end,)
        rows = self._db().execute(sql + " ORDER BY key", params).fetchall()
        return [(bytes(k), bytes(v)) for k, v in rows]

    def apply(self, writes: Sequence[tuple[str, bytes, bytes | None]]) -> None:
        """Apply ``(ns, key, value)`` writes in order as ONE transaction; None deletes.

        Raises:
            UsageError: ``role-store-key`` (nothing is written), ``role-store-closed``.
        """
        for ns, key, _ in writes:
            _check_ns(ns)
            _check_key(key)
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ns, key, value in writes:
                self._write_one(conn, ns, key, value)
            conn.execute("COMMIT")  # inside: a failed COMMIT must not leave the tx open
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _write_one(conn: sqlite3.Connection, ns: str, key: bytes, value: bytes | None) -> None:
        if value is None:
            conn.execute("DELETE FROM role_kv WHERE ns = ? AND key = ?", (ns, key))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO role_kv (ns, key, value) VALUES (?, ?, ?)",
                (ns, key, bytes(value)),
            )

    def view(self, ns: str) -> RoleStoreView:
        """A read-only view of namespace ``ns``."""
        return RoleStoreView(self, ns)

    def close(self) -> None:
        """Close the database (idempotent); later calls raise ``role-store-closed``."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
