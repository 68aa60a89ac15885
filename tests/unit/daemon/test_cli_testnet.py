"""CLI parsing and output, key commands, and the testnet layout (no daemons started)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from crowdmesh.chain.genesis import Genesis
from crowdmesh.daemon import main as entry
from crowdmesh.daemon.client import cli
from crowdmesh.daemon.client.harness import _log_entries
from crowdmesh.daemon.client.testnet import (
    TestnetSpec,
    choose_ports,
    init_testnet,
    load_layout,
    topology_edges,
)
from crowdmesh.daemon.config import load_config
from crowdmesh.errors import UsageError


def test_common_options_work_before_and_after_the_command():
    a = cli.parse_args(["--json", "--socket", "/s", "status"])
    b = cli.parse_args(["status", "--json", "--socket", "/s"])
    assert (a.json, a.socket, a.timeout) == (b.json, b.socket, b.timeout) == (True, "/s", 30.0)
    assert cli.parse_args(["wait-ready"]).timeout == 60.0
    assert cli.parse_args(["--timeout", "5", "wait-ready"]).timeout == 5.0
    assert cli.parse_args(["block", "12"]).ref == 12
    assert cli.parse_args(["block", "ab" * 32]).ref == "ab" * 32


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["mine"])  # needs --mode or --generate
    assert info.value.code == 2


def test_socket_resolution_order(tmp_path, monkeypatch):
    cfg = tmp_path / "n.toml"
    cfg.write_text('data_dir = "d"\n[control]\nsocket = "/run/x.sock"\n')
    monkeypatch.setenv("CROWDMESH_SOCKET", "/env.sock")
    def where(*argv):
        return str(cli.socket_path(cli.parse_args([*argv, "peers"])))

    assert where("--socket", "/a", "--config", str(cfg)) == "/a"
    assert where("--config", str(cfg)) == "/run/x.sock"
    assert where() == "/env.sock"
    monkeypatch.delenv("CROWDMESH_SOCKET")
    assert where() == cli.DEFAULT_SOCKET


def test_unreachable_daemon_exits_3_with_one_line(tmp_path, capsys):
    assert cli.main(["--socket", str(tmp_path / "none.sock"), "status"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: daemon-not-running:") and err.count("\n") == 1


def test_render_tables_and_json(capsys):
    cli.render([{"a": 1, "b": {"x": 2}}, {"a": 3}], as_json=False, title="t")
    out = capsys.readouterr().out
    assert "a" in out and '{"x":2}' in out and "3" in out
    cli.render({"k": "v"}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"k": "v"}


def test_keys_new_list_show(tmp_path, capsys):
    d = str(tmp_path)
    assert cli.main(["--json", "keys", "new", "alice", "--data-dir", d]) == 0
    made = json.loads(capsys.readouterr().out)
    assert len(made["account"]) == 64 and made["encrypted"] is False
    key_file = tmp_path / "keys" / "alice.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert cli.main(["--json", "keys", "list", "--data-dir", d]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["alice"]
    assert cli.main(["--json", "keys", "show", "alice", "--data-dir", d]) == 0
    assert json.loads(capsys.readouterr().out)["account"] == made["account"]
    assert cli.main(["keys", "show", "bob", "--data-dir", d]) == 1
    assert "key-not-found" in capsys.readouterr().err
    assert cli.main(["keys", "new", "alice", "--data-dir", d]) == 1
    assert "key-exists" in capsys.readouterr().err


def test_keys_new_with_passphrase_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CM_PASS", "correct horse")
    assert cli.main(["--json", "keys", "new", "enc", "--data-dir", str(tmp_path),
                     "--passphrase-env", "CM_PASS"]) == 0
    assert json.loads(capsys.readouterr().out)["encrypted"] is True
    assert cli.main(["keys", "new", "x", "--data-dir", str(tmp_path),
                     "--passphrase-env", "CM_UNSET"]) == 1
    assert "no-passphrase" in capsys.readouterr().err


def test_check_db_without_database_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["check-db", "--data-dir", str(tmp_path)]) == 1
    assert "no-chain-db" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("topology", "edges"),
    [("line", [(1, 0), (2, 1), (3, 2)]), ("star", [(1, 0), (2, 0), (3, 0)]),
     ("mesh", [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])],
)
def test_topologies(topology, edges):
    assert topology_edges(topology, 4) == edges


def test_ports_are_deterministic_and_skip_busy_ones():
    first = choose_ports(42, 3)
    assert first == choose_ports(42, 3) and first == list(range(first[0], first[0] + 3))
    assert choose_ports(43, 3) != first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first[1]))
        busy.listen()
        moved = choose_ports(42, 3)
    assert first[1] not in moved


def test_init_testnet_layout(sock_dir):
    spec = TestnetSpec(n=3, seed=5, topology="star", accounts=2)
    nodes = init_testnet(sock_dir / "tn", spec)
    root = sock_dir / "tn"
    assert load_layout(root) == (spec, nodes)
    genesis = Genesis.from_json((root / "genesis.json").read_text())
    assert genesis.chain_id == "testnet-5" and len(genesis.alloc) == 2
    for info in nodes:
        cfg = load_config(root / f"node{info.index}" / "crowdmesh.toml", env={})
        assert cfg.listen.endswith(f"/tcp/{info.port}")
        assert cfg.miner_account == info.account and cfg.is_miner
        assert cfg.bootstrap == ((nodes[0].addr,) if info.index else ())
        key = root / f"node{info.index}" / "node_key"
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len({n.peer_id for n in nodes}) == 3
    with pytest.raises(UsageError) as info:
        init_testnet(root, spec)
    assert info.value.code == "testnet-exists"


def test_spec_is_validated():
    with pytest.raises(UsageError):
        TestnetSpec(n=0)
    with pytest.raises(UsageError):
        TestnetSpec(topology="ring")


def test_combined_log_keeps_tracebacks_with_their_event():
    a = _log_entries(0, "ts=2026-01-01T00:00:02Z event=b\nTraceback\n  File x\n")
    b = _log_entries(1, "ts=2026-01-01T00:00:01Z event=a\nts=2026-01-01T00:00:03Z event=c\n")
    merged = [t for _, _, t in sorted(a + b)]
    assert merged == [
        "node1 ts=2026-01-01T00:00:01Z event=a", "node0 ts=2026-01-01T00:00:02Z event=b",
        "node0 Traceback", "node0   File x", "node1 ts=2026-01-01T00:00:03Z event=c",
    ]


def test_daemon_config_errors_exit_78_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "n.toml"
    cfg.write_text('data_dir = "d"\n[mining]\nmode = "warp"\n')
    assert entry.main(["daemon", "--config", str(cfg)]) == 78 == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: bad-config:") and err.count("\n") == 1, err
