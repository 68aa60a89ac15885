"""`make demo-spatial` keeps working: the 9-daemon spatial crowdsourcing demo runs end to end
(its library function, in a fresh short directory) and every expectation it checks holds."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from crowdmesh.daemon.client.demo_spatial import FAR, NEAR, run_demo

pytestmark = pytest.mark.functional


async def test_demo_spatial_confirms_rejects_refuses_and_every_node_agrees() -> None:
    root = Path(tempfile.mkdtemp(prefix="cmds-", dir="/tmp"))  # Unix socket paths are short
    passed = False
    try:
        # seed 10: ports 22316-22324, below the ephemeral range (see DEFAULT_SEED)
        result = await run_demo(root / "tn", seed=10)
        assert result.passed, result.failures
        reports = result.reports
        assert reports["fire"]["outcome"] == "rejected"
        assert reports["flood"]["outcome"] == "confirmed"
        assert reports["duplicate"]["outcome"] == "refused (spatial-duplicate)"
        for report in reports.values():  # the workers outside R never held a report
            assert not report["held"] & FAR and report["held"] <= NEAR, report
        assert result.height > 0
        passed = True
    finally:
        if passed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"demo data kept in {root}")
