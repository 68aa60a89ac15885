"""What the node checks and loads before anything listens.

Invariant: every problem found here is an operator's to fix and raises a ``CrowdmeshError`` with
a stable code (the CLI prints one line and exits 78, which the systemd units do not restart);
nothing here binds a port or writes the chain.
"""

from __future__ import annotations

import os

from crowdmesh.chain.genesis import Genesis
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.errors import UsageError
from crowdmesh.roles.context import NodeIdentity
from crowdmesh.roles.dispatch import IMPLEMENTED_ROLES, Role

__all__ = ["check_roles", "load_genesis", "load_signer", "node_identity"]


def load_genesis(cfg: NodeConfig) -> Genesis:
    """The network's genesis file (``genesis-unreadable``, or its own parse codes)."""
    try:
        text = cfg.genesis_path.read_text()
    except OSError as exc:
        raise UsageError("genesis-unreadable", f"{cfg.genesis_path}: {exc}") from exc
    return Genesis.from_json(text)


def check_roles(cfg: NodeConfig) -> None:
    """Refuse configured roles that are not implemented yet (``role-not-implemented``)
    instead of dropping them silently."""
    missing = sorted(r for r in cfg.roles if Role(r) not in IMPLEMENTED_ROLES)
    if missing:
        raise UsageError("role-not-implemented",
                         f"roles {missing} are not implemented yet; remove them from roles "
                         f"(implemented: {sorted(r.value for r in IMPLEMENTED_ROLES)})")


def load_signer(cfg: NodeConfig) -> AccountKey | None:
    """The ``[account]`` key the daemon signs its roles' calls with (None if not configured)."""
    if cfg.account_key is None:
        return None
    env = cfg.account_passphrase_env
    passphrase = os.environ[env].encode() if env and env in os.environ else None
    return Keystore.in_data_dir(cfg.data_dir).load(cfg.account_key, passphrase)


def node_identity(cfg: NodeConfig, signer: AccountKey | None, node_key: bytes) -> NodeIdentity:
    """The node's public identities: signing account and block-reward address."""
    # why these defaults: block rewards go to the configured [mining] account, else the
    # signing account, else the node key the operator already holds, so they are never burned
    account = None if signer is None else signer.public
    miner = bytes.fromhex(cfg.miner_account) if cfg.miner_account else account or node_key
    return NodeIdentity(account, miner)
