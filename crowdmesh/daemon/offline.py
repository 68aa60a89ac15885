"""Offline maintenance of a stopped node's data dir: ``check-db`` and ``reindex``.

Rule 1: both open the chain database through ``SqliteStore.open``, which takes the data dir's
lock, so they refuse (``datadir-locked``) while a daemon runs on the same data dir.
Rule 2: ``check-db`` only reads and exits 1 if any problem is found, printing each one;
``reindex`` rebuilds state and indexes from the stored blocks and prints the new head.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.maintenance import check_db, reindex
from crowdmesh.chain.store_sqlite import SqliteStore
from crowdmesh.daemon.config import CHAIN_DB, load_config
from crowdmesh.errors import UsageError

__all__ = ["check_db_command", "reindex_command"]


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(database, genesis file) from ``--data-dir`` or ``--config``."""
    if args.config:
        cfg = load_config(args.config)
        data_dir = Path(args.data_dir) if args.data_dir else cfg.data_dir
        return data_dir / CHAIN_DB, cfg.genesis_path
    if not args.data_dir:
        raise UsageError("no-data-dir", "give --data-dir DIR or --config FILE")
    data_dir = Path(args.data_dir)
    return data_dir / CHAIN_DB, data_dir / "genesis.json"


def _open(args: argparse.Namespace) -> tuple[SqliteStore, Genesis]:
    db, genesis_path = _paths(args)
    if not db.exists():
        raise UsageError("no-chain-db", f"{db} does not exist")
    try:
        genesis = Genesis.from_json(genesis_path.read_text())
    except OSError as exc:
        raise UsageError("no-genesis", f"cannot read {genesis_path}: {exc.strerror}") from None
    return SqliteStore.open(str(db)), genesis


def check_db_command(args: argparse.Namespace) -> int:
    """``crowdmesh check-db``: 0 if the database is consistent, else 1."""
    from crowdmesh.daemon.cli import render

    store, genesis = _open(args)
    try:
        problems = check_db(store, genesis)
    finally:
        store.close()
    render({"ok": not problems, "problems": problems}, args.json, "check-db")
    return 1 if problems else 0


def reindex_command(args: argparse.Namespace) -> int:
    """``crowdmesh reindex``: rebuild derived data from the stored blocks."""
    from crowdmesh.daemon.cli import render

    store, genesis = _open(args)
    try:
        chain = reindex(store, genesis, int(time.time()))
        result = {"height": chain.height, "head": chain.head_hash.hex()}
    finally:
        store.close()
    render(result, args.json, "reindex")
    return 0
