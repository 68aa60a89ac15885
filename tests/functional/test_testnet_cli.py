"""``crowdmesh testnet up | status | down`` with detached daemons, and ``send`` against them.

Mining is ``off`` so blocks come only from ``mine --generate``: two ``send``s in a row are both
pooled before any block, which is what the pending nonce must get right.
"""

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
    return subprocess.run([sys.executable, "-m", "crowdmesh", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_testnet_up_status_down():
    root = Path(tempfile.mkdtemp(prefix="cmtn-", dir="/tmp")) / "tn"
    pids = []
    try:
        up = cm("--json", "testnet", "up", "--dir", str(root), "-n", "3", "--seed",
                str(os.getpid()), "--topology", "star", "--mining", "off")
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
        two_sends_without_nonce_both_land(sock, root)
    finally:
        down = cm("testnet", "down", "--dir", str(root))
        shutil.rmtree(root.parent, ignore_errors=True)
    assert down.returncode == 0 and "stopped 3 daemon(s)" in down.stdout, down.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def two_sends_without_nonce_both_land(sock: Path, root: Path) -> None:
    """Consecutive ``send``s from one account before a block take nonces 0 and 1 from the
    daemon's ``pending_nonce``; one mined block then confirms both."""
    client = ("--socket", str(sock), "--json")
    sent = []
    for amount in (5, 7):
        out = cm(*client, "send", "--from", "user0", "--to", "user1", "--amount", str(amount),
                 "--data-dir", str(root))
        assert out.returncode == 0, out.stderr + out.stdout
        sent.append(json.loads(out.stdout))
    assert [s["nonce"] for s in sent] == [0, 1]
    bal = json.loads(cm(*client, "balance", "user0", "--data-dir", str(root)).stdout)
    assert (bal["nonce"], bal["pending_nonce"]) == (0, 2)
    assert cm(*client, "mine", "--generate", "1").returncode == 0
    for s in sent:
        view = json.loads(cm(*client, "tx", s["txid"]).stdout)
        assert view["status"] == "confirmed", view
    bal = json.loads(cm(*client, "balance", "user0", "--data-dir", str(root)).stdout)
    assert (bal["nonce"], bal["pending_nonce"]) == (2, 2)
