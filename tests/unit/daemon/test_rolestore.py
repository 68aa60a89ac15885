"""Role store: round trips, atomic apply, 0600 files, refusal codes, and SIGKILL safety."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.errors import UsageError


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _code(fn, *args):
    with pytest.raises(UsageError) as info:
        fn(*args)
    return info.value.code


@pytest.fixture
def path(tmp_path):
    return tmp_path / "roles.db"


@pytest.fixture
def store(path):
    s = RoleStore.open(path)
    yield s
    s.close()


def test_round_trip_namespaces_and_delete(store):
    store.apply([("elgamal", b"sk", b"secret"), ("csp", b"sk", b"other")])
    assert store.get("elgamal", b"sk") == b"secret"
    assert store.get("csp", b"sk") == b"other"
    assert store.get("worker", b"sk") is None
    store.apply([("elgamal", b"sk", None)])
    assert store.get("elgamal", b"sk") is None
    assert store.get("csp", b"sk") == b"other"


def test_items_are_key_ordered_and_prefix_filtered(store):
    keys = [b"\xff\xff", b"p/2", b"p/10", b"q", b"p/\xff", b""]
    store.apply([("ns", k, b"v" + k) for k in keys] + [("other", b"p/0", b"x")])
    assert store.items("ns") == [(k, b"v" + k) for k in sorted(keys)]
    assert [k for k, _ in store.items("ns", b"p/")] == [b"p/10", b"p/2", b"p/\xff"]
    assert [k for k, _ in store.items("ns", b"\xff")] == [b"\xff\xff"]
    assert store.items("ns", b"zz") == []


def test_later_write_in_one_apply_wins(store):
    store.apply([("ns", b"k", b"1"), ("ns", b"k", b"2"), ("ns", b"d", b"x"), ("ns", b"d", None)])
    assert store.items("ns") == [(b"k", b"2")]


def test_view_reads_one_namespace_only(store):
    store.apply([("a", b"k1", b"1"), ("a", b"k2", b"2"), ("b", b"k1", b"other")])
    view = store.view("a")
    assert view.get(b"k1") == b"1"
    assert view.get(b"nope") is None
    assert view.items() == [(b"k1", b"1"), (b"k2", b"2")]
    assert view.items(b"k2") == [(b"k2", b"2")]
    assert not hasattr(view, "apply")


def test_apply_is_atomic_when_a_write_fails_midway(path, store):
    store.apply([("ns", b"a", b"old")])
    # A trigger makes the third write fail inside the transaction, after two succeeded.
    with sqlite3.connect(path) as other:
        other.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON role_kv WHEN NEW.key = x'ff' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    other.close()
    with pytest.raises(sqlite3.IntegrityError):
        store.apply([("ns", b"a", b"new"), ("ns", b"b", b"new"), ("ns", b"\xff", b"x")])
    assert store.items("ns") == [(b"a", b"old")]
    store.apply([("ns", b"b", b"fine")])  # the connection is not left inside a transaction
    assert store.get("ns", b"b") == b"fine"


def test_bad_key_anywhere_rejects_the_whole_apply(store):
    code = _code(store.apply, [("ns", b"a", b"1"), ("ns", b"k" * 1025, b"2")])
    assert code == "role-store-key"
    assert store.items("ns") == []


@pytest.mark.parametrize(("ns", "key"), [("", b"k"), ("n" * 65, b"k"), ("ns", b"k" * 1025)])
def test_namespace_and_key_bounds(store, ns, key):
    assert _code(store.get, ns, key) == "role-store-key"
    assert _code(store.apply, [(ns, key, b"v")]) == "role-store-key"


def test_bounds_at_the_limit_are_accepted(store):
    store.apply([("n" * 64, b"k" * 1024, b"v")])
    assert store.get("n" * 64, b"k" * 1024) == b"v"


def test_reopen_keeps_everything(path):
    s = RoleStore.open(path)
    s.apply([("ns", b"k", b"v"), ("ns", b"gone", b"x")])
    s.apply([("ns", b"gone", None)])
    s.close()
    s.close()  # idempotent
    assert _code(s.get, "ns", b"k") == "role-store-closed"
    s2 = RoleStore.open(path)
    try:
        assert s2.items("ns") == [(b"k", b"v")]
    finally:
        s2.close()


def test_file_is_0600_from_creation_even_with_umask_0(path):
    old = os.umask(0)
    try:
        s = RoleStore.open(path)
        assert _mode(path) == 0o600
        s.apply([("ns", b"k", b"v")])
        for suffix in ("-wal", "-shm"):
            companion = f"{path}{suffix}"
            assert os.path.exists(companion), suffix  # WAL mode keeps both while open
            assert _mode(companion) == 0o600, suffix
        s.close()
    finally:
        os.umask(old)


def test_refuses_a_group_or_world_accessible_file(path):
    RoleStore.open(path).close()
    os.chmod(path, 0o644)
    assert _code(RoleStore.open, path) == "role-store-permissions"
    os.chmod(path, 0o620)
    assert _code(RoleStore.open, path) == "role-store-permissions"
    os.chmod(path, 0o600)
    RoleStore.open(path).close()


def test_refuses_a_permissive_wal_companion(path):
    path.touch(mode=0o600)
    wal = path.with_name(path.name + "-wal")
    wal.touch()
    os.chmod(wal, 0o644)
    assert _code(RoleStore.open, path) == "role-store-permissions"


def test_corrupt_file_is_unreadable(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(8192))
    os.close(fd)
    with pytest.raises(UsageError) as info:
        RoleStore.open(path)
    assert info.value.code == "role-store-unreadable"
    assert str(path) in info.value.detail


def test_other_sqlite_database_is_unreadable(path):
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE role_kv (x INTEGER)")
    other.close()
    os.chmod(path, 0o600)
    assert _code(RoleStore.open, path) == "role-store-unreadable"


def test_symlink_and_directory_are_unreadable(tmp_path, path):
    RoleStore.open(path).close()
    link = tmp_path / "link.db"
    link.symlink_to(path)
    assert _code(RoleStore.open, link) == "role-store-unreadable"
    directory = tmp_path / "dir.db"
    directory.mkdir(mode=0o700)
    assert _code(RoleStore.open, directory) == "role-store-unreadable"


def test_missing_parent_directory_is_unreadable(tmp_path):
    assert _code(RoleStore.open, tmp_path / "nope" / "roles.db") == "role-store-unreadable"


_WRITER = """
import sys
from pathlib import Path
from crowdmesh.daemon.rolestore import RoleStore
store = RoleStore.open(Path(sys.argv[1]))
i = 0
while True:
    i += 1
    v = str(i).encode() * 50
    store.apply([("c", b"a", v), ("c", b"mid/" + str(i % 7).encode(), v), ("c", b"b", v)])
    if i == 1:
        print("ready", flush=True)
"""


def test_sigkill_mid_writes_leaves_a_consistent_store(path):
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        readable, _, _ = select.select([child.stdout], [], [], 10)
        assert readable, "writer never committed its first apply"
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # let it commit many applies, then kill it inside one
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=5) == -signal.SIGKILL
    finally:
        child.kill()
        child.stdout.close()
    store = RoleStore.open(path)
    try:
        a, b = store.get("c", b"a"), store.get("c", b"b")
        assert a is not None
        assert a == b
        assert a in {v for _, v in store.items("c", b"mid/")}
    finally:
        store.close()
