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


# ---- [spatial] ------------------------------------------------------------------------------

SPATIAL = """\
data_dir = "d"
roles = ["spatial-worker"]

[spatial]
location = [35.2271, -80.8431]
vote_policy = "oracle"
error_rate = 50
ground_truth = "truth.csv"
"""


def test_spatial_section_and_ground_truth(tmp_path):
    (tmp_path / "truth.csv").write_text(
        "type,lat,lon\n# the first storm\nflood,35.2271,-80.8431\n\nfire, -0.0000005 , 180\n")
    path = tmp_path / "node.toml"
    path.write_text(SPATIAL)
    cfg = load_config(path, env={})
    assert cfg.location == (35_227_100, -80_843_100)
    assert cfg.vote_policy == "oracle" and cfg.error_permille == 50
    assert cfg.ground_truth_path == tmp_path / "truth.csv"
    assert cfg.ground_truth == (("flood", 35_227_100, -80_843_100), ("fire", -1, 180_000_000))
    assert parse_config(render_config(cfg), env={}) == cfg


def test_spatial_defaults():
    cfg = parse_config('data_dir = "/d"', env={})
    assert cfg.location is None and cfg.vote_policy == "operator"
    assert cfg.error_permille == 0 and cfg.ground_truth_path is None and cfg.ground_truth == ()


@pytest.mark.parametrize(("degrees", "e6"), [
    ("[35.2271, -80.8431]", (35_227_100, -80_843_100)),
    ("[90, -180]", (90_000_000, -180_000_000)),
    ("[0.0000005, -0.0000005]", (1, -1)),  # half away from zero, exactly
    ("[0.00000049999999999999999, 1.23456749999999999999]", (0, 1_234_567)),
    ("[1e-6, 12.3456785]", (1, 12_345_679)),
])
def test_location_is_rounded_exactly(degrees, e6):
    cfg = parse_config(f'data_dir = "/d"\n[spatial]\nlocation = {degrees}\n', env={})
    assert cfg.location == e6
    assert parse_config(render_config(cfg), env={}).location == e6


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('data_dir = "d"\n[spatial]\nlocation = [91, 0]\n', 3, "spatial.location: latitude"),
        ('data_dir = "d"\n[spatial]\nlocation = [0, -180.0000005]\n', 3, "longitude"),
        ('data_dir = "d"\n[spatial]\nlocation = [1]\n', 3, "[latitude, longitude]"),
        ('data_dir = "d"\n[spatial]\nlocation = "35,-80"\n', 3, "[latitude, longitude]"),
        ('data_dir = "d"\n[spatial]\nlocation = [true, 1]\n', 3, "not a number"),
        ('data_dir = "d"\n[spatial]\nlocation = [nan, 1]\n', 3, "not a finite number"),
        ('data_dir = "d"\n[spatial]\nlocation = ["1", 1]\n', 3, "not a number"),
        ('data_dir = "d"\n[spatial]\nvote_policy = "random"\n', 3, "spatial.vote_policy"),
        ('data_dir = "d"\n\n[spatial]\nvote_policy = "oracle"\n', 4, "needs spatial.ground_truth"),
        ('data_dir = "d"\n[spatial]\nerror_rate = 1001\n', 3, "spatial.error_rate"),
        ('data_dir = "d"\n[spatial]\nerror_rate = 0.5\n', 3, "spatial.error_rate"),
        ('data_dir = "d"\n[spatial]\nground_truth = ""\n', 3, "spatial.ground_truth"),
        ('data_dir = "d"\n[spatial]\nground_truth = "absent.csv"\n', 3, "cannot read"),
        ('data_dir = "d"\n[spatial]\nradius = 5\n', 3, "unknown key 'spatial.radius'"),
    ],
)
def test_spatial_errors_name_file_line_and_key(tmp_path, text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="node.toml", base_dir=tmp_path, env={})
    assert info.value.line == line
    assert f"node.toml:{line}:" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize(
    ("csv", "line", "words"),
    [
        ("fire,1,2\nflood,1\n", 2, "want 3 columns"),
        ("type,lat,lon\nFire,1,2\n", 2, "type 'Fire'"),
        ("\n\nfire,north,2\n", 3, "want decimal degrees"),
        ("fire,1,2\nfire,1,nan\n", 2, "want decimal degrees"),
        ("fire,91,2\n", 1, "latitude must be"),
        ("fire,1,2,3\n", 1, "want 3 columns"),
        ("fire,1,2\n" * 4097, 4097, "more than 4096 rows"),
    ],
)
def test_ground_truth_errors_name_the_csv_line(tmp_path, csv, line, words):
    (tmp_path / "t.csv").write_text(csv)
    text = 'data_dir = "d"\n[spatial]\nground_truth = "t.csv"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="node.toml", base_dir=tmp_path, env={})
    assert info.value.source == str(tmp_path / "t.csv") and info.value.line == line
    assert f"t.csv:{line}:" in str(info.value) and words in str(info.value)


@given(lat=st.integers(-90_000_000, 90_000_000), lon=st.integers(-180_000_000, 180_000_000),
       policy=st.sampled_from(["operator", "honest", "always-confirm", "always-reject"]),
       rate=st.integers(0, 1000))
def test_spatial_render_round_trips(lat, lon, policy, rate):
    cfg = NodeConfig(data_dir=Path("/d"), genesis_path=Path("/g.json"),
                     control_socket=Path("/run/x.sock"), location=(lat, lon),
                     vote_policy=policy, error_permille=rate)
    assert parse_config(render_config(cfg), env={}) == cfg
