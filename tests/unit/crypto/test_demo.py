"""``make demo-crypto`` (crowdmesh.daemon.client.cli_demo) runs end to end on a small model and
reports success."""

from __future__ import annotations

import pytest

from crowdmesh.daemon.client import cli_demo as demo


@pytest.mark.parametrize("profile", ["default", "paper"])
def test_demo_walk_through_returns_the_model(
    profile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--kib", "1", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "bad-key-pok" in out and "DIFFERENT" not in out
