"""The node key file: written atomically (temp 0600 + fsync + rename + dir fsync), and a corrupt
one is a one-line ``bad-node-key`` error rather than a traceback on every restart."""

from __future__ import annotations

import os
import stat

import pytest

from crowdmesh.errors import UsageError
from crowdmesh.p2p import host
from crowdmesh.p2p.host import NODE_KEY_FILE, load_or_create_node_key


def test_first_start_creates_a_0600_key_that_loads_back(tmp_path):
    first = load_or_create_node_key(tmp_path)
    path = tmp_path / NODE_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_node_key(tmp_path)
    assert again.public_key.serialize() == first.public_key.serialize()
    assert sorted(p.name for p in tmp_path.iterdir()) == [NODE_KEY_FILE]  # no temp left


def test_the_key_is_fsynced_before_the_rename_and_the_dir_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(src, dst):
        assert stat.S_IMODE(os.stat(src).st_mode) == 0o600
        calls.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    load_or_create_node_key(tmp_path)
    assert calls == [("fsync", False), ("replace", NODE_KEY_FILE), ("fsync", True)]


def test_a_crash_before_the_rename_leaves_no_partial_key(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        load_or_create_node_key(tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert load_or_create_node_key(tmp_path) is not None  # the next start just creates it


@pytest.mark.parametrize("content", [b"", b"\x08\x01\x12", b"not a key at all"])
def test_a_corrupt_key_is_a_usage_error_naming_the_file(tmp_path, content):
    (tmp_path / NODE_KEY_FILE).write_bytes(content)
    with pytest.raises(UsageError) as info:
        load_or_create_node_key(tmp_path)
    assert info.value.code == "bad-node-key"
    assert str(tmp_path / NODE_KEY_FILE) in str(info.value)
    assert "delete it" in str(info.value)


def test_a_truncated_real_key_is_reported_too(tmp_path):
    load_or_create_node_key(tmp_path)
    path = tmp_path / NODE_KEY_FILE
    path.write_bytes(path.read_bytes()[:20])  # what a crash mid-write used to leave
    with pytest.raises(UsageError) as info:
        host.load_or_create_node_key(tmp_path)
    assert info.value.code == "bad-node-key"
