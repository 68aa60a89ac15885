"""Start-up faults with real daemon processes (issue 11, faults 3 and 4).

Each fault must stop ``crowdmesh daemon`` before it serves, with exit 78 (EX_CONFIG, which the
systemd units list in ``RestartPreventExitStatus=``), exactly one ``error: <code>: …`` line on
stderr (the last one; the lines before it are the daemon's log) and no traceback. ``check-db``
on a damaged store reports the damage with its code and exits 1.

One daemon run builds a 300-block store once per module; every case starts from a copy of it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from crowdmesh.daemon.client.cli import main as cli_main
from crowdmesh.daemon.client.testnet import TestnetSpec, daemon_command, init_testnet
from crowdmesh.daemon.config import load_config, render_config

pytestmark = pytest.mark.functional

BLOCKS = 300  # about 90 pages of 4 KiB: room for 50 damaged pages mid-file
RUN_TIMEOUT_S = 60
IS_ROOT = os.geteuid() == 0


def _cli(config: Path, *args: str) -> int:
    """The ``crowdmesh`` client in this process (a process per call would cost ~2 s of imports)."""
    return cli_main(["--config", str(config), "--timeout", str(RUN_TIMEOUT_S), *args])


@pytest.fixture(scope="module")
def built() -> Iterator[Path]:
    """A one-node testnet whose node0 holds a stopped 300-block chain; a copy in ``pristine``."""
    root = Path(tempfile.mkdtemp(prefix="cmsf-", dir="/tmp"))  # short: socket path limit
    try:
        init_testnet(root, TestnetSpec(n=1, seed=random.SystemRandom().randrange(1, 2**31),
                                       accounts=1))
        _build_chain(root / "node0" / "crowdmesh.toml")
        shutil.copytree(root / "node0", root / "pristine")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_chain(config: Path) -> None:
    proc = subprocess.Popen(daemon_command(config), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _cli(config, "wait-ready") == 0
        assert _cli(config, "generate", str(BLOCKS)) == 0
        assert _cli(config, "stop") == 0
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def node(built: Path) -> Iterator[Path]:
    """node0's config, its data dir restored from the pristine copy."""
    data = built / "node0"
    shutil.rmtree(data)
    shutil.copytree(built / "pristine", data)
    yield data / "crowdmesh.toml"
    _clear_immutable(data / "chain.sqlite")


def run_daemon(config: Path) -> tuple[int, str]:
    proc = subprocess.run(daemon_command(config), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr


def assert_init_error(config: Path, code: str, *words: str) -> str:
    """The daemon exits 78 with one ``error: <code>:`` line (its last) and no traceback."""
    status, err = run_daemon(config)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 78, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err[-3000:]
    assert errors[0].startswith(f"error: {code}: "), errors
    for word in words:
        assert word in errors[0], errors
    return errors[0]


def assert_check_db_reports(config: Path, code: str, capsys) -> None:
    capsys.readouterr()
    status = _cli(config, "--json", "check-db")
    out = capsys.readouterr()
    assert status == 1 and code in out.out and '"ok": false' in out.out, out


# ---- damage to chain.sqlite ---------------------------------------------------------------


def _scramble(path: Path, offset: int, length: int) -> None:
    rng = random.Random(offset)
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(rng.randbytes(length))


def _fifty_pages_mid_file(path: Path) -> None:
    pages = path.stat().st_size // 4096
    assert pages >= 70, pages
    start = (pages - 50) // 2
    for page in range(start, start + 50):
        _scramble(path, page * 4096, 4096)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated-to-1000-bytes": lambda p: os.truncate(p, 1000),
    "truncated-to-half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "header-damaged": lambda p: _scramble(p, 0, 100),
    "header-page-damaged": lambda p: _scramble(p, 100, 4096 - 100),
    "50-pages-mid-file": _fifty_pages_mid_file,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_store_is_a_one_line_error_and_check_db_reports_it(node, damage, capsys):
    DAMAGE[damage](node.parent / "chain.sqlite")
    assert_init_error(node, "chain-db-damaged", "resync")
    assert_check_db_reports(node, "chain-db-damaged", capsys)


def test_an_empty_store_in_a_used_data_dir_is_refused_not_reset_to_genesis(node, capsys):
    os.truncate(node.parent / "chain.sqlite", 0)
    assert_init_error(node, "chain-db-empty", "resync")
    assert (node.parent / "chain.sqlite").stat().st_size == 0, "nothing was written"
    assert_check_db_reports(node, "chain-db-empty", capsys)


def _make_read_only(path: Path) -> None:
    if not IS_ROOT:
        path.chmod(0o444)
        return
    # root writes through 0444; an immutable file is what read-only means to root
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here")


def _clear_immutable(path: Path) -> None:
    if IS_ROOT and shutil.which("chattr") and path.exists():
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def test_a_read_only_store_is_refused_at_start_not_at_the_first_write(node):
    _make_read_only(node.parent / "chain.sqlite")
    assert_init_error(node, "chain-db-read-only")


# ---- the data dir ------------------------------------------------------------------------


def _config_with(node: Path, name: str, **changes) -> Path:
    cfg = replace(load_config(node), control_socket=node.parent.parent / f"{name}.sock",
                  **changes)
    path = node.parent.parent / f"{name}.toml"
    path.write_text(render_config(cfg))
    return path


def test_a_data_dir_that_is_a_regular_file_is_a_one_line_error(node):
    afile = node.parent.parent / "afile"
    afile.write_text("not a directory\n")
    assert_init_error(_config_with(node, "file", data_dir=afile), "datadir-not-a-directory")


@pytest.mark.skipif(IS_ROOT, reason="root writes into a 0555 directory anyway")
def test_a_data_dir_that_is_not_writable_is_a_one_line_error(node):
    locked = node.parent.parent / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert_init_error(_config_with(node, "locked", data_dir=locked), "datadir-not-writable")
    finally:
        locked.chmod(0o755)


def test_a_new_data_dir_is_created_private_and_initialised(node):
    fresh = node.parent.parent / "fresh" / "data"
    config = _config_with(node, "fresh", data_dir=fresh, account_key=None)
    log = node.parent.parent / "fresh.log"
    with log.open("w") as err:
        proc = subprocess.Popen(daemon_command(config), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert _cli(config, "wait-ready") == 0, log.read_text()
        assert _cli(config, "stop") == 0
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert "Traceback" not in log.read_text()
    assert fresh.stat().st_mode & 0o777 == 0o700
    assert (fresh / "chain.sqlite").stat().st_size > 0


# ---- the listen port --------------------------------------------------------------------


def test_a_listen_port_in_use_is_a_one_line_error_not_ready_without_addresses(node):
    port = int(load_config(node).listen.rsplit("/", 1)[1])
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert_init_error(node, "listen-port-in-use", str(port))
