"""Start-up checks an operator's mistakes must hit with a stable code (issue 11, faults 3, 4, 7):
the data dir (created 0700, a regular file, not writable), the chain store of the data dir
(empty, damaged) and the listen address (port in use); ``check-db`` reports a damaged store
with its code and exit 1 instead of a traceback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from crowdmesh.chain import Chain, SqliteStore
from crowdmesh.daemon.client import cli_db
from crowdmesh.daemon.client.cli import main as cli_main
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.startup import check_listening, open_chain_store, prepare_data_dir
from crowdmesh.errors import CrowdmeshError
from tests.unit.chain.helpers import make_genesis

IS_ROOT = os.geteuid() == 0


def _code(fn, *args) -> str:
    with pytest.raises(CrowdmeshError) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return info.value.code


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---- the data dir ------------------------------------------------------------------------


def test_a_data_dir_the_daemon_creates_is_private(tmp_path, umask_022):
    data = tmp_path / "a" / "data"
    prepare_data_dir(data)
    assert data.stat().st_mode & 0o777 == 0o700


def test_an_existing_data_dir_keeps_the_operators_mode(tmp_path, umask_022):
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    prepare_data_dir(data)
    assert data.stat().st_mode & 0o777 == 0o750
    assert sorted(data.iterdir()) == [], "the write probe leaves nothing behind"


def test_a_data_dir_that_is_a_regular_file_is_refused(tmp_path):
    afile = tmp_path / "data"
    afile.write_text("x")
    assert _code(prepare_data_dir, afile) == "datadir-not-a-directory"
    assert _code(prepare_data_dir, afile / "below") == "datadir-create-failed"


@pytest.mark.skipif(IS_ROOT, reason="root writes into a 0555 directory anyway")
def test_a_data_dir_that_is_not_writable_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    try:
        assert _code(prepare_data_dir, data) == "datadir-not-writable"
    finally:
        data.chmod(0o755)


# ---- the chain store of the data dir -------------------------------------------------------


def _cfg(data_dir: Path) -> NodeConfig:
    return NodeConfig(data_dir=data_dir, genesis_path=data_dir / "genesis.json",
                      control_socket=data_dir / "c.sock")


def test_a_new_data_dir_gets_a_new_store(tmp_path, umask_022):
    store = open_chain_store(_cfg(tmp_path / "data"))
    try:
        assert Chain.open(store, make_genesis()).height == 0
    finally:
        store.close()
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_an_empty_store_is_refused_not_reset_to_genesis(tmp_path):
    (tmp_path / "chain.sqlite").write_bytes(b"")
    assert _code(open_chain_store, _cfg(tmp_path)) == "chain-db-empty"


# ---- the listen address ------------------------------------------------------------------


def test_listening_somewhere_passes():
    check_listening("/ip4/127.0.0.1/tcp/0", ["/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo"])


def test_a_listen_port_in_use_is_named():
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CrowdmeshError) as info:
            check_listening(f"/ip4/127.0.0.1/tcp/{port}", [])
    assert info.value.code == "listen-port-in-use" and str(port) in info.value.detail


def test_not_listening_for_another_reason_is_still_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert _code(check_listening, f"/ip4/127.0.0.1/tcp/{free}", []) == "listen-failed"
    assert _code(check_listening, "/dns4/example.invalid/tcp/1", []) == "listen-failed"


# ---- check-db ----------------------------------------------------------------------------


def _data_dir_with_chain(tmp_path: Path) -> Path:
    genesis = make_genesis()
    (tmp_path / "genesis.json").write_text(genesis.to_json())
    store = SqliteStore.open(str(tmp_path / "chain.sqlite"))
    Chain.open(store, genesis)
    store.close()
    return tmp_path


def _check_db(data_dir: Path, capsys) -> tuple[int, str]:
    status = cli_main(["--json", "check-db", "--data-dir", str(data_dir)], (cli_db.GROUP,))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return status, out.out


def test_check_db_passes_a_healthy_store(tmp_path, capsys):
    status, out = _check_db(_data_dir_with_chain(tmp_path), capsys)
    assert status == 0 and '"ok": true' in out


@pytest.mark.parametrize(("size", "code"), [(1000, "chain-db-damaged"), (0, "chain-db-empty")])
def test_check_db_reports_a_damaged_or_empty_store_with_its_code(tmp_path, capsys, size, code):
    data = _data_dir_with_chain(tmp_path)
    os.truncate(data / "chain.sqlite", size)
    status, out = _check_db(data, capsys)
    assert status == 1 and code in out and '"ok": false' in out
