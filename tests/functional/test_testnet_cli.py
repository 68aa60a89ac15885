"""``crowdmesh testnet up | status | down`` with detached daemons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional


def cm(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "crowdmesh.daemon.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_testnet_up_status_down():
    root = Path(tempfile.mkdtemp(prefix="cmtn-", dir="/tmp")) / "tn"
    pids = []
    try:
        up = cm("--json", "testnet", "up", "--dir", str(root), "-n", "3", "--seed",
                str(os.getpid()), "--topology", "star")
        assert up.returncode == 0, up.stderr + up.stdout
        rows = json.loads(up.stdout[up.stdout.index("["):])
        assert [r["node"] for r in rows] == [0, 1, 2]
        assert len({r["head"] for r in rows}) == 1 and all(r["pid"] for r in rows)
        assert rows[0]["peers"] == 2  # the star's hub
        pids = [r["pid"] for r in rows]

        sock = root / "node1" / "control.sock"
        mined = cm("--socket", str(sock), "--json", "mine", "--generate", "2")
        assert mined.returncode == 0, mined.stderr
        status = cm("testnet", "status", "--dir", str(root))
        assert status.returncode == 0 and "node" in status.stdout
    finally:
        down = cm("testnet", "down", "--dir", str(root))
        shutil.rmtree(root.parent, ignore_errors=True)
    assert down.returncode == 0 and "stopped 3 daemon(s)" in down.stdout, down.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
