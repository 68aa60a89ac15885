"""Command group ``db``: offline maintenance of a stopped node's database.

Rule: ``check-db`` exits 1 when it finds a problem (each one printed), 0 when the database is
consistent; a file that cannot be opened because it is damaged, empty or read-only is such a
problem, printed with its code (``chain-db-damaged: …``). Both commands refuse
(``datadir-locked``) while a daemon runs on the data dir.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Final

from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation
from crowdmesh.daemon.client.exits import EXIT_ERROR, EXIT_OK
from crowdmesh.daemon.client.offline import chain_files, check_database, reindex_database
from crowdmesh.daemon.client.render import render

__all__ = ["GROUP"]


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="default: data_dir of --config")


def _check_db(inv: Invocation) -> int:
    problems = check_database(chain_files(inv.args.data_dir, inv.options.config))
    render({"ok": not problems, "problems": problems}, inv.options.json, "check-db")
    return EXIT_ERROR if problems else EXIT_OK


def _reindex(inv: Invocation) -> int:
    files = chain_files(inv.args.data_dir, inv.options.config)
    render(reindex_database(files, int(time.time())), inv.options.json, "reindex")
    return EXIT_OK


GROUP: Final = CommandGroup("db", "offline database maintenance, daemon stopped", {
    "check-db": Command("verify a stopped node's database", _check_db, _setup),
    "reindex": Command("rebuild a stopped node's indexes and state", _reindex, _setup),
})
