"""Offline maintenance of a stopped node's data dir: check the database, or rebuild it.

Rule 1: both open the chain database through ``SqliteStore.open``, which takes the data dir's
lock, so they refuse (``datadir-locked``) while a daemon runs on the same data dir.
Rule 2: :func:`check_database` only reads and returns every problem found (empty: consistent);
:func:`reindex_database` rebuilds state and indexes from the stored blocks.
Rule 3: a store that cannot be opened because it is damaged, empty or read-only is a problem
``check_database`` reports (``chain-db-damaged: …``), not an error it raises: that is what the
command is for. ``reindex_database`` raises it (reindex cannot repair the file itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.maintenance import check_db, reindex
from crowdmesh.chain.store_sqlite import SqliteStore
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.config import CHAIN_DB, load_config
from crowdmesh.errors import StoreError, UsageError

__all__ = ["ChainFiles", "chain_files", "check_database", "reindex_database"]


@dataclass(frozen=True, slots=True)
class ChainFiles:
    """Where a node's chain database and its genesis file are."""

    database: Path
    genesis: Path


def chain_files(data_dir: Path | None, config: Path | str | None) -> ChainFiles:
    """The files of ``data_dir`` (genesis in it), or of the config's data dir and genesis.

    A ``data_dir`` given with ``config`` overrides the config's data dir but keeps its genesis.

    Raises:
        UsageError: ``no-data-dir`` if neither is given.
        ConfigError: the config file cannot be read or parsed.
    """
    if config:
        cfg = load_config(config)
        return ChainFiles(Path(data_dir or cfg.data_dir) / CHAIN_DB, cfg.genesis_path)
    if not data_dir:
        raise UsageError("no-data-dir", "give --data-dir DIR or --config FILE")
    return ChainFiles(Path(data_dir) / CHAIN_DB, Path(data_dir) / "genesis.json")


def _open(files: ChainFiles) -> tuple[SqliteStore, Genesis]:
    if not files.database.exists():
        raise UsageError("no-chain-db", f"{files.database} does not exist")
    try:
        genesis = Genesis.from_json(files.genesis.read_text())
    except OSError as exc:
        raise UsageError("no-genesis", f"cannot read {files.genesis}: {exc.strerror}") from None
    return SqliteStore.open(str(files.database)), genesis


def check_database(files: ChainFiles) -> list[str]:
    """Every inconsistency found in the database (empty if it is consistent).

    Raises:
        UsageError: ``no-chain-db``, ``no-genesis``, ``datadir-locked`` (a daemon runs on it).
    """
    try:
        store, genesis = _open(files)
    except StoreError as exc:  # Rule 3
        return [str(exc)]
    try:
        return check_db(store, genesis)
    finally:
        store.close()


def reindex_database(files: ChainFiles, now: int) -> JsonObj:
    """Rebuild derived data from the stored blocks; return the new ``{"height", "head"}``.

    Raises:
        UsageError: as :func:`check_database`.
        StoreError: ``chain-db-damaged``, ``chain-db-empty``, ``chain-db-read-only``, …
    """
    store, genesis = _open(files)
    try:
        chain = reindex(store, genesis, now)
        return {"height": chain.height, "head": chain.head_hash.hex()}
    finally:
        store.close()
