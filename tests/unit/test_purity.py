"""The pure packages (crypto, chain, fl, roles) stay free of I/O.

Walks every module's AST, as trio's ``test_exports.py`` polices its namespace: no concurrency,
clock, randomness, socket or process imports, no I/O layers, and file access (os, pathlib, open)
only in the few modules allowed to touch files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "crowdmesh"
PURE_PACKAGES = ("crypto", "chain", "fl", "roles")
FORBIDDEN = {
    "trio", "asyncio", "anyio", "socket", "subprocess", "threading", "multiprocessing",
    "time", "random", "secrets", "selectors", "signal",
}
FILE_ACCESS = {"os", "pathlib", "shutil", "tempfile", "io", "sqlite3", "glob"}
FORBIDDEN_INTERNAL = ("crowdmesh.p2p", "crowdmesh.daemon")
# The chain's SQLite storage backend and the dataset file loaders may touch files.
FILE_ALLOWED = {"chain/store_sqlite.py", "fl/datasets.py"}


def violations(source: str, relpath: str) -> list[str]:
    """Return human-readable purity violations of one module's source."""
    found: list[str] = []
    allowed_files = relpath in FILE_ALLOWED
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
            and not allowed_files
        ):
            found.append(f"{relpath}:{node.lineno} calls open()")
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN:
                found.append(f"{relpath}:{node.lineno} imports {name}")
            elif top in FILE_ACCESS and not allowed_files:
                found.append(f"{relpath}:{node.lineno} imports {name} (file access)")
            elif name.startswith(FORBIDDEN_INTERNAL):
                found.append(f"{relpath}:{node.lineno} imports the I/O layer {name}")
    return found


def pure_modules() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_pure_packages_exist() -> None:
    assert len(pure_modules()) >= len(PURE_PACKAGES)


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_pure(path: Path) -> None:
    relpath = str(path.relative_to(ROOT))
    assert violations(path.read_text(), relpath) == []


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import time",
        "from random import randint",
        "import secrets",
        "from socket import socket",
        "import subprocess",
        "import threading",
        "import asyncio",
        "import os",
        "from pathlib import Path",
        "x = open('f')",
        "from crowdmesh.daemon import rng",
    ],
)
def test_checker_catches_violations(source: str) -> None:
    assert violations(source, "crypto/example.py")


def test_checker_allows_file_access_in_loaders() -> None:
    assert violations("import os\nx = open('f')", "fl/datasets.py") == []
    assert violations("import sqlite3", "chain/store_sqlite.py") == []
    assert violations("import time", "chain/store_sqlite.py")
