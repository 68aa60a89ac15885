"""The systemd units: hardened as documented, and clean under ``systemd-analyze verify``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[3] / "systemd"
SERVICE_FILES = ["crowdmesh.service", "crowdmesh@.service"]
REQUIRED = {
    "Type": "notify", "User": "crowdmesh", "UMask": "0077", "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
    "Restart": "on-failure", "KillSignal": "SIGTERM", "RuntimeDirectoryMode": "0700",
    "StateDirectoryMode": "0700",
    # the daemon's exit status for startup errors: without it a bad config restarts forever
    "RestartPreventExitStatus": "78",
}
ANALYZE = shutil.which("systemd-analyze")


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            found.setdefault(m.group(1), m.group(2))
    return found


@pytest.mark.parametrize("name", SERVICE_FILES)
def test_unit_is_hardened(name):
    d = directives((UNITS / name).read_text())
    assert {k: d.get(k) for k in REQUIRED} == REQUIRED
    assert d["StateDirectory"].startswith("crowdmesh")
    assert d["RuntimeDirectory"].startswith("crowdmesh")
    assert "--config" in d["ExecStart"]


def test_instance_unit_separates_instances():
    d = directives((UNITS / "crowdmesh@.service").read_text())
    assert "%i" in d["ExecStart"] and "%i" in d["StateDirectory"] and "%i" in d["RuntimeDirectory"]


def test_example_config_parses_with_systemd_defaults():
    from crowdmesh.daemon.config import load_config

    env = {"STATE_DIRECTORY": "/var/lib/crowdmesh", "RUNTIME_DIRECTORY": "/run/crowdmesh"}
    cfg = load_config(UNITS / "crowdmesh.toml.example", env=env)
    assert cfg.data_dir == Path("/var/lib/crowdmesh")
    assert cfg.control_socket == Path("/run/crowdmesh/crowdmesh.sock")
    assert cfg.mining_mode == "on-demand" and cfg.is_miner


def test_sysusers_and_tmpfiles_snippets_name_the_service_user():
    assert re.search(r"^u\s+crowdmesh\s", (UNITS / "crowdmesh.sysusers").read_text(), re.M)
    assert re.search(r"^d\s+/var/lib/crowdmesh\s+0700\s+crowdmesh",
                     (UNITS / "crowdmesh.tmpfiles").read_text(), re.M)


def _verify(tmp_path: Path, name: str, text: str) -> str:
    # ExecStart must exist for verify to pass: point it at this interpreter's entry point.
    exe = Path(sys.executable).parent / "crowdmesh"
    unit = tmp_path / name
    unit.write_text(text.replace("/usr/bin/crowdmesh", str(exe)))
    proc = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60)
    return (proc.stdout + proc.stderr).strip()


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", SERVICE_FILES)
def test_systemd_analyze_verify_is_clean(tmp_path, name):
    assert _verify(tmp_path, name, (UNITS / name).read_text()) == ""


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    # the check above can fail: a typo in a directive is reported
    broken = (UNITS / "crowdmesh.service").read_text().replace("Type=notify", "Type=notifyy")
    assert "Failed to parse service type" in _verify(tmp_path, "crowdmesh.service", broken)
