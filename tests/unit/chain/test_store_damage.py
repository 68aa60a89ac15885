"""A damaged, empty or read-only ``chain.sqlite`` is refused when it is opened, with a stable
code (``StoreError``), instead of a ``sqlite3`` traceback at start or at the first write; a new
file is created whole; ``check_db`` reports a row that no longer decodes instead of raising."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from crowdmesh.chain import Chain, MemoryStore, SqliteStore, check_db
from crowdmesh.chain.layout import P_INDEX
from crowdmesh.errors import CrowdmeshError, StoreError
from tests.unit.chain.helpers import NOW, make_genesis, next_block

PAGE = 4096
ROWS = 600  # about 150 pages of 4 KiB: room for 50 damaged pages mid-file


def _filled(tmp_path: Path) -> str:
    path = str(tmp_path / "chain.sqlite")
    store = SqliteStore.open(path)
    rng = random.Random(1)
    store.write_batch({rng.randbytes(32): rng.randbytes(900) for _ in range(ROWS)})
    store.close()  # the last connection checkpoints the WAL into the file
    assert not os.path.exists(path + "-wal")
    return path


def _scramble(path: str, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(random.Random(offset).randbytes(length))


def _fifty_pages_mid_file(path: str) -> None:
    pages = os.path.getsize(path) // PAGE
    start = (pages - 50) // 2
    for page in range(start, start + 50):
        _scramble(path, page * PAGE, PAGE)


DAMAGE: dict[str, Callable[[str], None]] = {
    "truncated-to-1000-bytes": lambda p: os.truncate(p, 1000),
    "truncated-to-half": lambda p: os.truncate(p, os.path.getsize(p) // 2),
    "header-damaged": lambda p: _scramble(p, 0, 100),
    "header-page-damaged": lambda p: _scramble(p, 100, PAGE - 100),
    "50-pages-mid-file": _fifty_pages_mid_file,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_file_is_refused_with_a_code_that_names_the_way_out(tmp_path, damage):
    path = _filled(tmp_path)
    DAMAGE[damage](path)
    with pytest.raises(StoreError) as info:
        SqliteStore.open(path)
    assert info.value.code == "chain-db-damaged"
    assert "resync" in info.value.detail and "\n" not in str(info.value)
    # the lock was released: a second try fails the same way, not with datadir-locked
    with pytest.raises(StoreError):
        SqliteStore.open(path)


def test_an_empty_file_is_damage_not_a_new_chain(tmp_path):
    path = tmp_path / "chain.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        SqliteStore.open(str(path))
    assert info.value.code == "chain-db-empty"
    assert "resync" in info.value.detail and "reindex" in info.value.detail
    assert path.stat().st_size == 0, "nothing was written into it"


def test_a_new_file_is_created_whole_and_reopens(tmp_path):
    path = tmp_path / "chain.sqlite"
    (tmp_path / "chain.sqlite.new").write_bytes(b"left by a crash during a first start")
    store = SqliteStore.open(str(path))
    Chain.open(store, make_genesis())
    store.close()
    assert path.stat().st_size > 0 and not (tmp_path / "chain.sqlite.new").exists()
    store = SqliteStore.open(str(path))
    assert Chain.open(store, make_genesis()).height == 0
    store.close()


def _read_only(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    # root writes through mode 0444; an immutable file is read-only even for root
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here")


def test_a_read_only_file_is_refused_at_open_not_at_the_first_write(tmp_path):
    path = Path(_filled(tmp_path))
    _read_only(path)
    try:
        with pytest.raises(StoreError) as info:
            SqliteStore.open(str(path))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    assert info.value.code == "chain-db-read-only"


def test_the_write_probe_refuses_a_read_only_connection(tmp_path):
    """Root-independent: the open-time probe on a connection SQLite opened read-only."""
    from crowdmesh.chain.store_sqlite import verify_store

    path = _filled(tmp_path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        with pytest.raises(StoreError) as info:
            verify_store(conn, path)
        assert info.value.code == "chain-db-read-only"
        assert not conn.in_transaction
    finally:
        conn.close()


def test_a_healthy_file_passes_and_keeps_its_rows(tmp_path):
    path = _filled(tmp_path)
    store = SqliteStore.open(path)
    assert sum(1 for _ in store.iterate(b"")) == ROWS
    store.close()


def test_check_db_reports_a_row_that_no_longer_decodes():
    store = MemoryStore()
    chain = Chain.open(store, make_genesis())
    chain.import_block(next_block(chain), NOW)
    key = next(k for k, _ in store.iterate(P_INDEX))
    store.write_batch({key: b"\x01garbage"})
    problems = check_db(store, make_genesis())
    assert problems and problems[0].startswith("row-damaged: ")


def test_store_error_is_a_crowdmesh_error():
    assert issubclass(StoreError, CrowdmeshError)
