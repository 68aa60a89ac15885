"""`make demo-transfer` keeps working: the 5-daemon transfer walk-through runs end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

pytestmark = pytest.mark.functional


async def test_make_demo_testnet_runs_and_every_node_agrees() -> None:
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, "-m", "crowdmesh.daemon.client.cli_demo_testnet", "--seed", "7"],
            capture_stdout=True, capture_stderr=True, stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "demo passed" in out
    assert "Traceback" not in out + err
