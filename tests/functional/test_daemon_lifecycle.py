"""Daemon lifecycle with real processes: SIGTERM, restart where it was, stop RPC, SIGHUP,
sd_notify readiness, and a second daemon refused on the same data dir."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from tests.functional.framework import CrowdmeshTestFramework

pytestmark = pytest.mark.functional


class SigtermRestart(CrowdmeshTestFramework):
    """SIGTERM stops a daemon within 5 s with exit 0 and no traceback; it restarts where it was."""

    def set_test_params(self):
        self.num_nodes = 2

    async def run_test(self):
        a, b = self.nodes
        await self.net.mine(a, 5)
        before = await b.rpc("head")
        assert before["height"] == 5
        elapsed = await b.stop_node(timeout=5)
        assert elapsed < 5, f"SIGTERM took {elapsed:.2f} s"
        assert not b.socket.exists(), "the control socket is removed on a clean stop"
        await b.start(self.net.nursery)
        await b.wait_ready()
        after = await b.rpc("head")
        assert (after["height"], after["hash"]) == (before["height"], before["hash"])
        # and it keeps following the network after the restart
        await self.net.mine(a, 2)
        assert (await b.rpc("head"))["height"] == 7


async def test_sigterm_stops_cleanly_and_restarts_where_it_was():
    await SigtermRestart().main()


class StopRpcReloadNotify(CrowdmeshTestFramework):
    """The stop RPC, SIGHUP reload (applied, and refused without dying), READY=1 once via
    NOTIFY_SOCKET, and one daemon per socket and per data dir."""

    def set_test_params(self):
        self.num_nodes = 1
        self.start_nodes = False

    async def run_test(self):
        (node,) = self.nodes
        notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await notify.bind(str(self.root / "notify.sock"))
        await node.start(self.net.nursery, {"NOTIFY_SOCKET": str(self.root / "notify.sock")})
        with trio.fail_after(30 * self.timeout_factor):
            first = (await notify.recv(4096)).decode()
        assert first.startswith("READY=1")
        assert (await node.rpc("ready"))["ready"] is True, "READY=1 only once serving"

        # a second daemon on the same socket fails cleanly (exit 78, no traceback)...
        await self.assert_start_raises_init_error(node.config, "error: control-socket-in-use:")
        # ...and so does one on the same data dir with a socket of its own: the store's lock
        other = self.config_with_socket(node, "second")
        await self.assert_start_raises_init_error(other, "error: datadir-locked:")
        assert not (self.root / "second.sock").exists(), "the loser removes its socket"
        assert (await node.rpc("ready"))["ready"] is True, "the first daemon is unharmed"

        # SIGHUP reloads the log level and the mining mode
        text = node.config.read_text()
        node.config.write_text(text.replace('log_level = "info"', 'log_level = "debug"')
                               .replace('mode = "on-demand"', 'mode = "off"'))
        node.process.send_signal(1)  # SIGHUP
        await node.wait_for_log(["event=config-reloaded", "log_level"])
        with trio.fail_after(10):
            msgs = [(await notify.recv(4096)).decode() for _ in range(2)]
        assert msgs == ["RELOADING=1", "READY=1"]
        assert (await node.rpc("status"))["mining"] == "off"

        # a reload the daemon cannot apply is logged and the old config kept: it never dies
        good = node.config.read_text()
        bad_peer = "/ip4/127.0.0.1/tcp/1/p2p/1"  # passes a regex, not the network's parser
        node.config.write_text(re.sub(r"(?m)^bootstrap = .*$", f'bootstrap = ["{bad_peer}"]',
                                      good.replace('mode = "off"', 'mode = "continuous"')))
        assert bad_peer in node.config.read_text()
        node.process.send_signal(1)
        await node.wait_for_log(["event=reload-failed", "code=bad-config",
                                 "not a valid peer address"])
        with trio.fail_after(10):
            msgs = [(await notify.recv(4096)).decode() for _ in range(2)]
        assert msgs == ["RELOADING=1", "READY=1"]
        assert (await node.rpc("status"))["mining"] == "off", "the old config is kept"
        node.config.write_text(good)

        # the stop RPC is a graceful stop too
        assert await node.rpc("stop") == {"stopping": True}
        with trio.fail_after(5 * self.timeout_factor):
            await node.process.wait()
        assert node.process.returncode == 0
        assert "Traceback" not in node.stderr_text()
        with trio.fail_after(5):
            assert (await notify.recv(4096)).decode() == "STOPPING=1"
        notify.close()


async def test_stop_rpc_sighup_reload_and_sd_notify():
    await StopRpcReloadNotify().main()


def test_cli_reports_a_missing_daemon(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crowdmesh", "--socket", str(tmp_path / "x.sock"),
         "status"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: daemon-not-running:")
    assert "Traceback" not in proc.stderr


def test_bad_config_is_a_one_line_error_with_file_and_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('data_dir = "d"\n[mining]\nmode = "warp"\n')
    proc = subprocess.run([sys.executable, "-m", "crowdmesh", "daemon", "--config",
                           str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78
    assert proc.stderr == f"error: bad-config: {cfg}:3: mining.mode: must be one of " \
                          "['off', 'continuous', 'on-demand']\n"


def test_a_startup_error_inside_the_running_daemon_exits_78(tmp_path):
    """Errors raised once the nursery runs (here: genesis) arrive grouped; still one line, 78."""
    d = tempfile.mkdtemp(prefix="cmg-", dir="/tmp")  # short: the control socket lives there
    try:
        cfg = Path(d) / "n.toml"
        cfg.write_text('data_dir = "data"\ngenesis = "absent.json"\n')
        proc = subprocess.run([sys.executable, "-m", "crowdmesh", "daemon",
                               "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert proc.returncode == 78, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: genesis-unreadable:") and "Traceback" not in proc.stderr
