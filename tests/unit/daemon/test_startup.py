"""Start-up checks: configured roles that are not implemented yet and the [account] key."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.startup import check_roles, load_signer, node_identity
from crowdmesh.errors import CrowdmeshError


def _cfg(tmp_path: Path, **kw) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path, genesis_path=tmp_path / "g.json",
                      control_socket=tmp_path / "c.sock", **kw)


def test_a_role_that_is_not_implemented_is_refused_not_dropped(tmp_path, monkeypatch):
    # every configurable role is implemented today: pretend the worker is not
    from crowdmesh.daemon import startup
    from crowdmesh.roles.dispatch import IMPLEMENTED_ROLES, Role
    monkeypatch.setattr(startup, "IMPLEMENTED_ROLES", IMPLEMENTED_ROLES - {Role.WORKER})
    check_roles(_cfg(tmp_path, roles=frozenset({"miner"})))
    with pytest.raises(CrowdmeshError) as info:
        check_roles(_cfg(tmp_path, roles=frozenset({"miner", "worker"})))
    assert info.value.code == "role-not-implemented" and "worker" in info.value.detail


def test_the_account_key_loads_with_its_passphrase_from_the_environment(tmp_path, monkeypatch):
    key = AccountKey.generate(DeterministicRng(7))
    Keystore.in_data_dir(tmp_path).save("node", key, b"s3cret", DeterministicRng(8))
    cfg = _cfg(tmp_path, account_key="node", account_passphrase_env="CM_TEST_PASS")
    monkeypatch.delenv("CM_TEST_PASS", raising=False)
    with pytest.raises(CrowdmeshError) as info:
        load_signer(cfg)
    assert info.value.code == "passphrase-required"
    monkeypatch.setenv("CM_TEST_PASS", "wrong")
    with pytest.raises(CrowdmeshError):
        load_signer(cfg)
    monkeypatch.setenv("CM_TEST_PASS", "s3cret")
    signer = load_signer(cfg)
    assert signer is not None and signer.public == key.public
    assert load_signer(_cfg(tmp_path)) is None
    with pytest.raises(CrowdmeshError) as info:
        load_signer(_cfg(tmp_path, account_key="missing"))
    assert info.value.code == "key-not-found"


def test_block_rewards_go_to_the_mining_account_then_the_signer_then_the_node_key(tmp_path):
    key = AccountKey.generate(DeterministicRng(9))
    node_key = b"\x07" * 32
    assert node_identity(_cfg(tmp_path), None, node_key).miner == node_key
    assert node_identity(_cfg(tmp_path), key, node_key).miner == key.public
    chosen = _cfg(tmp_path, miner_account="ab" * 32)
    assert node_identity(chosen, key, node_key).miner == bytes.fromhex("ab" * 32)
    assert node_identity(chosen, key, node_key).account == key.public
