"""The TOML config: defaults, systemd environment, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.daemon.config import (
    ConfigError,
    NodeConfig,
    load_config,
    parse_config,
    render_config,
)

GOOD = """\
data_dir = "data"
roles = ["miner", "worker"]

[p2p]
listen = "/ip4/127.0.0.1/tcp/7001"
bootstrap = ["/ip4/127.0.0.1/tcp/7002/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"]

[mining]
mode = "continuous"
account = "%s"
""" % ("ab" * 32)


def test_good_config_and_relative_paths(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(GOOD)
    cfg = load_config(path, env={})
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.genesis_path == tmp_path / "data" / "genesis.json"
    assert cfg.control_socket == tmp_path / "data" / "control.sock"
    assert cfg.chain_db == tmp_path / "data" / "chain.sqlite"
    assert cfg.roles == frozenset({"miner", "worker"}) and cfg.is_miner
    assert cfg.mining_mode == "continuous" and cfg.miner_account == "ab" * 32
    assert cfg.log_level == "info" and cfg.bootstrap[0].endswith("Ve2Xo")


def test_systemd_directories_are_the_defaults():
    env = {"STATE_DIRECTORY": "/var/lib/crowdmesh", "RUNTIME_DIRECTORY": "/run/crowdmesh"}
    cfg = parse_config("", env=env)
    assert cfg.data_dir == Path("/var/lib/crowdmesh")
    assert cfg.control_socket == Path("/run/crowdmesh/crowdmesh.sock")
    assert cfg.listen == "/ip4/0.0.0.0/tcp/7350" and cfg.mining_mode == "off"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('data_dir = "d"\nbogus = 1\n', 2, "unknown key 'bogus'"),
        ('data_dir = "d"\n\n[p2p]\nlisten = "tcp://x"\n', 4, "p2p.listen"),
        ('data_dir = "d"\n[p2p]\nlisten = "/ip4/1.2.3.4/tcp/70000"\n', 3, "port"),
        ('data_dir = "d"\n[p2p]\nbootstrap = ["/ip4/1.2.3.4/tcp/7"]\n', 3, "/p2p/"),
        ('data_dir = "d"\n[p2p]\nbootstrap = "/ip4/1.2.3.4/tcp/7/p2p/Qm"\n', 3, "list"),
        ('data_dir = "d"\n\n[p2p]\nbootstrap = ["/ip4/127.0.0.1/tcp/1/p2p/1"]\n', 4,
         "not a valid peer address (bad-peer-addr"),
        ('data_dir = "d"\nroles = ["miner", "king"]\n', 2, "king"),
        ('data_dir = "d"\nlog_level = "loud"\n', 2, "log_level"),
        ('data_dir = "d"\n[mining]\nmode = "turbo"\n', 3, "mining.mode"),
        ('data_dir = "d"\n[mining]\nmode = "continuous"\n', 3, "roles lacks 'miner'"),
        ('data_dir = "d"\n[mining]\naccount = "xyz"\n', 3, "account"),
        ('data_dir = "d"\n[control]\nmax_clients = 0\n', 3, "max_clients"),
        ('data_dir = "d"\n[control]\nrequest_timeout = true\n', 3, "request_timeout"),
        ('data_dir = "d"\n[control]\nsocket = "/%s"\n' % ("x" * 200), 3, "107 bytes"),
        ('data_dir = "d"\np2p = 5\n', 2, "[table]"),
        ('data_dir = "d"\n[p2p]\nlisten = \n', 3, "TOML syntax"),
        ('data_dir = "d"\n[p2p\n', 2, "TOML syntax"),
        ('data_dir = 7\n', 1, "data_dir"),
    ],
)
def test_errors_name_file_line_and_key(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="node.toml", env={})
    err = info.value
    assert err.code == "bad-config"
    assert err.line == line
    assert f"node.toml:{line}:" in str(err)
    assert words in str(err)


def test_missing_data_dir_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="data_dir is required"):
        parse_config("", env={})
    with pytest.raises(ConfigError, match="cannot read config") as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.code == "bad-config"


def test_config_is_frozen(tmp_path):
    cfg = parse_config('data_dir = "/d"', env={})
    with pytest.raises(AttributeError):
        cfg.log_level = "debug"  # type: ignore[misc]


names = st.sampled_from(["off", "continuous", "on-demand"])


@given(
    mode=names,
    level=st.sampled_from(["debug", "info", "warning", "error"]),
    port=st.integers(0, 65535),
    clients=st.integers(1, 10_000),
    timeout=st.floats(0.001, 3600, allow_nan=False),
    n_boot=st.integers(0, 3),
)
def test_render_round_trips(mode, level, port, clients, timeout, n_boot):
    cfg = NodeConfig(
        data_dir=Path("/srv/a b/\"q\""), genesis_path=Path("/g.json"),
        control_socket=Path("/run/x.sock"), listen=f"/ip4/127.0.0.1/tcp/{port}",
        bootstrap=tuple(f"/ip4/10.0.0.{i}/tcp/1/p2p/12D3KooWabc{'XYZ'[i]}" for i in range(n_boot)),
        roles=frozenset({"miner", "csp"}), mining_mode=mode, log_level=level,
        control_max_clients=clients, control_request_timeout_s=timeout,
    )
    assert parse_config(render_config(cfg), env={}) == cfg
