"""The CrowdSFL demo (``make demo``) runs end to end as users run it: 5 daemons, a whole task
(2 rounds here to keep it short; the demo's default is 5), the per-round table and the
settlement checked on every node, exit 0, and every daemon stopped."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

pytestmark = pytest.mark.functional


async def test_make_demo_crowdsfl_runs_a_task_to_settlement() -> None:
    with trio.fail_after(240):
        proc = await trio.run_process(
            [sys.executable, "-m", "crowdmesh.daemon.client.cli_demo_crowdsfl",
             "--rounds", "2", "--seed", "11"],
            capture_stdout=True, capture_stderr=True, stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out[-4000:] + err[-3000:]
    for line in ("both keys registered", "global model 2:", "rounds: step times",
                 "the same on all 5 nodes", "every deposit returned", "supply exact",
                 "stopped:", "demo passed", "s wall"):
        assert line in out, (line, out[-4000:])
    assert "FAILED" not in out
    assert "Traceback" not in out + err
