"""What the node checks and loads at start, before it serves.

Invariants:
- Every problem found here is an operator's to fix and raises a ``CrowdmeshError`` with a stable
  code (the CLI prints one line and exits 78, which the systemd units do not restart). Nothing
  here writes the chain; the only socket bound is a probe, after the host failed to listen, that
  names the reason.
- The data dir is created 0700 when the daemon creates it (it holds the node key, account keys
  and the chain); a directory the operator made keeps its mode. It must be a directory the
  daemon's user can create files in (``datadir-not-a-directory``, ``datadir-not-writable``,
  ``datadir-create-failed``).
- A data dir without ``chain.sqlite`` is new and gets a new chain; an empty, damaged or
  read-only one is refused (``chain-db-*``, see ``crowdmesh.chain.store_sqlite``), never reset.
- The node serves only if the host listens: no listen address after start is
  ``listen-port-in-use`` (or ``listen-address-unavailable``, ``listen-permission-denied``,
  ``listen-failed``), not a node that reports ready and cannot be reached.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.store_sqlite import SqliteStore
from crowdmesh.crypto.elgamal import keygen
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.errors import CrowdmeshError, UsageError
from crowdmesh.fl.datasets import DatasetSpec, load_default, parse_csv
from crowdmesh.fl.features import Feature, encode
from crowdmesh.roles.context import NodeIdentity
from crowdmesh.roles.dispatch import IMPLEMENTED_ROLES, Role
from crowdmesh.roles.sfl_events import SflConfigured
from crowdmesh.roles.sfl_jobs import dataset_bytes

__all__ = [
    "builtin_split",
    "check_listening",
    "check_roles",
    "elgamal_secret",
    "load_genesis",
    "load_signer",
    "node_identity",
    "open_chain_store",
    "prepare_data_dir",
    "sfl_configs",
]

DATA_DIR_MODE: Final = 0o700
SFL_ROLES: Final = (Role.REQUESTER, Role.WORKER, Role.CSP)
SFL_PROFILE: Final = "default"
HELD_OUT: Final = 142  # rows of the built-in data kept for the requester (a quarter)
Rows = tuple[NDArray[np.float64], NDArray[np.int64]]
_TCP_ADDR: Final = re.compile(r"/ip([46])/([^/]+)/tcp/(\d+)")
_BIND_CODES: Final = {  # why the bind failed -> our code
    errno.EADDRINUSE: "listen-port-in-use",
    errno.EADDRNOTAVAIL: "listen-address-unavailable",
    errno.EACCES: "listen-permission-denied",
}


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


def prepare_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` (0700) if absent; refuse one the daemon cannot create files in.

    Raises:
        UsageError: ``datadir-create-failed``, ``datadir-not-a-directory``,
            ``datadir-not-writable``.
    """
    try:
        data_dir.mkdir(parents=True, mode=DATA_DIR_MODE)
    except FileExistsError:
        pass  # the operator's (or an earlier run's): keep its mode
    except OSError as exc:
        raise UsageError("datadir-create-failed",
                         f"cannot create {data_dir}: {exc.strerror}") from None
    else:
        os.chmod(data_dir, DATA_DIR_MODE)  # why: mkdir's mode is filtered through the umask
    if not data_dir.is_dir():
        raise UsageError("datadir-not-a-directory",
                         f"{data_dir} exists and is not a directory; point data_dir elsewhere")
    _probe_writable(data_dir)


def _probe_writable(data_dir: Path) -> None:
    # why a real file: os.access says yes to root, and no to nothing an ACL or a read-only
    # mount refuses; the stores and the node key are created here next
    try:
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=data_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UsageError("datadir-not-writable",
                         f"{data_dir}: cannot create files in it ({exc.strerror}); make it "
                         "owned and writable by the daemon's user") from None


def open_chain_store(cfg: NodeConfig) -> SqliteStore:
    """The data dir's chain store, checked (see the module rules).

    Raises:
        UsageError: as :func:`prepare_data_dir`; ``datadir-locked``.
        StoreError: ``chain-db-empty``, ``chain-db-damaged``, ``chain-db-read-only``, …
    """
    prepare_data_dir(cfg.data_dir)
    return SqliteStore.open(str(cfg.chain_db))


def check_listening(listen: str, addrs: Sequence[str]) -> None:
    """Refuse to serve when the host listens nowhere (py-libp2p only logs a failed listen).

    Raises:
        UsageError: ``listen-port-in-use``, ``listen-address-unavailable``,
            ``listen-permission-denied`` or ``listen-failed``.
    """
    if addrs:
        return
    code, why = _diagnose_listen(listen)
    raise UsageError(code, f"cannot listen on {listen}: {why}; free the port or change "
                     "[p2p] listen")


def _diagnose_listen(listen: str) -> tuple[str, str]:
    """Why ``listen`` cannot be bound, found by binding it ourselves (the way trio does)."""
    m = _TCP_ADDR.fullmatch(listen)
    if m is None:
        return "listen-failed", "not an /ip4 or /ip6 TCP address the host could bind"
    family = socket.AF_INET if m[1] == "4" else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # why SO_REUSEADDR: so a port left in TIME_WAIT by our last run is not called in use
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((m[2], int(m[3])))
            probe.listen()
        except OSError as exc:
            return _BIND_CODES.get(exc.errno or 0, "listen-failed"), str(exc.strerror)
    return "listen-failed", "the host did not listen (see its log)"


# ---- CrowdSFL: keys and datasets, read before the node serves ------------------------------


def elgamal_secret(data_dir: Path, profile: str = SFL_PROFILE) -> int:
    """The node's ElGamal secret for ``profile`` (``<data_dir>/keys/<profile>.elgamal``, made
    on first use, mode 0600)."""
    return Keystore.in_data_dir(data_dir).elgamal_secret(
        profile, lambda: keygen(PROFILES[profile], SystemRng()).sk)


def builtin_split(shard: tuple[int, int] | None) -> tuple[Rows, Rows]:
    """The built-in data as (held-out rows, training rows): a fixed quarter is held out for
    the requester; the rest, or its ``shard = (i, n)``-th of n equal parts, is a worker's."""
    data = load_default()
    x, y = data.encoded(), data.y
    order = np.random.default_rng(7).permutation(len(y))
    held, rest = order[:HELD_OUT], order[HELD_OUT:]
    return (x[held], y[held]), _shard((x[rest], y[rest]), shard)


def _shard(rows: Rows, shard: tuple[int, int] | None) -> Rows:
    if shard is None:
        return rows
    part = np.array_split(np.arange(len(rows[1])), shard[1])[shard[0] - 1]
    return rows[0][part], rows[1][part]


def load_rows(path: Path, label: str | None) -> Rows:
    """A CSV of numeric features plus one label column (``label``, default the last column),
    ``?`` or empty = missing. Integer labels keep their value, others are numbered in sorted
    order; each feature is scaled by the file's own min..max.

    Raises:
        UsageError: ``bad-dataset`` (unreadable, no such label column, one label only).
        DecodeError: the CSV parser's codes with the line number.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("bad-dataset", f"{path}: cannot read: {exc}") from None
    table = [r for r in csv.reader(text.splitlines()) if r]
    names = [h.strip() for h in table[0]] if table else []
    label = label or (names[-1] if names else "")
    if label not in names:
        raise UsageError("bad-dataset", f"{path}: no label column {label!r} in {names}")
    at = names.index(label)
    values = sorted({r[at].strip() for r in table[1:] if len(r) > at})
    label_map = ({v: int(v) for v in values} if all(v.isdigit() for v in values)
                 else {v: i for i, v in enumerate(values)})
    if len(values) < 2:
        raise UsageError("bad-dataset", f"{path}: the label column needs two classes or more")
    features = tuple(Feature(n, 0.0, 1.0) for n in names if n != label)
    ds = parse_csv(text, DatasetSpec(path.name, path.name, label, label_map, features))
    low, high = np.nanmin(ds.raw, axis=0), np.nanmax(ds.raw, axis=0)
    scaled = tuple(Feature(f.name, float(lo), float(hi) if hi > lo else float(lo) + 1.0)
                   for f, lo, hi in zip(features, np.nan_to_num(low), np.nan_to_num(high),
                                        strict=True))
    return encode(ds.raw, scaled), ds.y


def sfl_configs(cfg: NodeConfig) -> list[SflConfigured]:
    """One ``SflConfigured`` per CrowdSFL role of ``cfg`` (delivered after ``RolesStarted``).

    Raises:
        CrowdmeshError: an unreadable dataset or ElGamal key file (the node does not start).
    """
    roles = [r for r in SFL_ROLES if r.value in cfg.roles]
    if not roles:
        return []
    try:
        return [_sfl_config(cfg, role) for role in roles]
    except CrowdmeshError as exc:
        raise UsageError(exc.code, f"[crowdsfl]: {exc.detail}") from None


def _sfl_config(cfg: NodeConfig, role: Role) -> SflConfigured:
    secret = b""
    if role is not Role.WORKER:
        sk = elgamal_secret(cfg.data_dir)
        secret = sk.to_bytes(max(1, (sk.bit_length() + 7) // 8), "big")
    rows: Rows | None = None
    if role is Role.WORKER:
        rows = (_shard(load_rows(cfg.sfl_dataset, cfg.sfl_label), cfg.sfl_shard)
                if cfg.sfl_dataset is not None else builtin_split(cfg.sfl_shard)[1])
    elif role is Role.REQUESTER:
        rows = (load_rows(cfg.sfl_holdout, cfg.sfl_label) if cfg.sfl_holdout is not None
                else builtin_split(None)[0])
    dataset = b"" if rows is None else dataset_bytes(*rows)
    return SflConfigured(role.value, "", seed=secrets.token_bytes(32), profile=SFL_PROFILE,
                         secret_key=secret, dataset=dataset, auto_join=cfg.sfl_auto_join,
                         behaviour=cfg.sfl_behaviour)  # type: ignore[arg-type]
