"""The import graph of ``crowdmesh/``: no cycles, a client that never imports the server, and
argparse only in the CLI layer.

Walks every module's AST (as ``test_purity.py`` and trio's ``test_exports.py`` do), resolving
relative imports and including imports inside functions. Imports under ``if TYPE_CHECKING:``
are left out of the graph (they never run); the argparse and client-boundary rules count them
anyway, since a type-only ``Namespace`` parameter or server type is the coupling they forbid.
An edge goes to the exact module imported: ``from pkg import name`` points at ``pkg.name`` when
that is a module, else at ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "crowdmesh"
CLIENT = "crowdmesh.daemon.client"
# Daemon modules both sides use; anything else in crowdmesh.daemon is the server.
SHARED_DAEMON = frozenset(
    f"crowdmesh.daemon.{m}"
    for m in ("api", "config", "keystore", "rng", "views", "jobs", "logs")
)
# The CLI layer: the only modules that may import argparse.
CLI_LAYER_PREFIX = f"{CLIENT}.cli"

# Import cycles that exist today outside the client, each named by its modules. Allowed so the
# suite passes while they are decided on; remove an entry once its cycle is gone (the test
# below fails on a stale entry, so the list only shrinks).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as seen from ``source``."""

    source: str
    target: str  # absolute dotted name (a crowdmesh module, or an external one)
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


# ---- reading modules ----------------------------------------------------------------------


def module_name(path: Path, root: Path = ROOT) -> str:
    """``crowdmesh/a/b.py`` -> ``crowdmesh.a.b``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """Every module under ``root``: name -> (source, is_package)."""
    return {module_name(p, root): (p.read_text(), p.name == "__init__.py")
            for p in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node`` with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _base_package(name: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots in module ``name`` starts from."""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    if level - 1 > len(parts):
        raise ValueError(f"relative import beyond the top package in {name}")
    return ".".join(parts[: len(parts) - (level - 1)])


def imports_of(name: str, source: str, is_package: bool, modules: Iterable[str]) -> list[Import]:
    """Every import in one module's source, resolved to absolute names (see the docstring)."""
    known = set(modules)
    found: list[Import] = []
    for node, type_only in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(name, a.name, node.lineno, type_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _base_package(name, is_package, node.level)
                base = f"{pkg}.{base}" if node.module else pkg
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else base
                found.append(Import(name, target, node.lineno, type_only))
    return found


def all_imports(sources: Mapping[str, tuple[str, bool]]) -> list[Import]:
    """The imports of every module in ``sources``."""
    return [imp for name, (src, is_pkg) in sources.items()
            for imp in imports_of(name, src, is_pkg, sources)]


def build_graph(imports: Iterable[Import], modules: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the crowdmesh modules it imports at run time (type-only imports left out)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if not imp.type_only and imp.target in graph and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


# ---- the checks ---------------------------------------------------------------------------


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def one_cycle(graph: Mapping[str, Iterable[str]], component: frozenset[str]) -> list[str]:
    """A concrete cycle inside ``component``, as ``[a, b, …, a]`` (for the failure message)."""
    start = min(component)
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest cycle back to start
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                return [*paths[v], start]
            if w in component and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"{sorted(component)} is not a cycle")


def cycle_report(graph: Mapping[str, Iterable[str]],
                 allowed: frozenset[frozenset[str]] = frozenset()) -> list[str]:
    """One line per import cycle not in ``allowed``: its modules and one concrete cycle."""
    return [f"{' -> '.join(one_cycle(graph, c))}  (component: {', '.join(sorted(c))})"
            for c in strongly_connected(graph) if c not in allowed]


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def client_violations(imports: Iterable[Import]) -> list[str]:
    """Imports of server-side daemon modules by the client package."""
    return [f"{i.source}:{i.line} imports the server-side module {i.target}"
            for i in imports
            if _in(i.source, CLIENT) and _in(i.target, "crowdmesh.daemon")
            and not _in(i.target, CLIENT)
            and not any(_in(i.target, shared) for shared in SHARED_DAEMON)]


def argparse_violations(imports: Iterable[Import]) -> list[str]:
    """Imports of argparse outside the CLI layer (``crowdmesh.daemon.client.cli*``)."""
    return [f"{i.source}:{i.line} imports argparse outside the CLI layer"
            for i in imports
            if _in(i.target, "argparse") and not i.source.startswith(CLI_LAYER_PREFIX)]


# ---- the tree -----------------------------------------------------------------------------

SOURCES = read_sources()
IMPORTS = all_imports(SOURCES)
GRAPH = build_graph(IMPORTS, SOURCES)


def test_the_walk_sees_the_tree() -> None:
    assert {CLIENT, f"{CLIENT}.cli", "crowdmesh.daemon.main", "crowdmesh"} <= set(SOURCES)
    # ``from crowdmesh.daemon.client import cli_chain`` is an edge to the submodule
    assert {f"{CLIENT}.cli_chain", f"{CLIENT}.exits"} <= GRAPH[f"{CLIENT}.cli"]


def test_no_import_cycles() -> None:
    report = cycle_report(GRAPH, KNOWN_CYCLES)
    assert not report, "import cycles:\n  " + "\n  ".join(report)


def test_known_cycles_still_exist() -> None:
    stale = KNOWN_CYCLES - set(strongly_connected(GRAPH))
    assert not stale, f"these cycles are gone or changed; update KNOWN_CYCLES: {stale}"


def test_known_cycles_are_outside_the_client() -> None:
    assert not [c for c in KNOWN_CYCLES if any(_in(m, CLIENT) for m in c)]


def test_client_imports_no_server_module() -> None:
    assert client_violations(IMPORTS) == []


def test_argparse_only_in_the_cli_layer() -> None:
    assert argparse_violations(IMPORTS) == []


# ---- the checks can fail ------------------------------------------------------------------


def _imports(modules: Mapping[str, str], packages: Iterable[str] = ()) -> list[Import]:
    pkgs = set(packages)
    return all_imports({m: (src, m in pkgs) for m, src in modules.items()})


def test_cycle_finder_finds_a_hand_made_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [frozenset("abc")]
    assert one_cycle(graph, frozenset("abc")) == ["a", "b", "c", "a"]
    assert cycle_report(graph) == ["a -> b -> c -> a  (component: a, b, c)"]
    assert cycle_report(graph, frozenset({frozenset("abc")})) == []
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_graph_resolves_relative_lazy_and_submodule_imports() -> None:
    modules = {
        "crowdmesh.p": "from . import q\n",  # package: . is crowdmesh.p
        "crowdmesh.p.q": "def f():\n    from .r import x\n",  # lazy and relative
        "crowdmesh.p.r": "from crowdmesh.p import q\nfrom crowdmesh import p\n",
        "crowdmesh": "",
    }
    imports = _imports(modules, packages={"crowdmesh.p", "crowdmesh"})
    graph = build_graph(imports, modules)
    assert graph["crowdmesh.p"] == {"crowdmesh.p.q"}
    assert graph["crowdmesh.p.q"] == {"crowdmesh.p.r"}
    assert graph["crowdmesh.p.r"] == {"crowdmesh.p.q", "crowdmesh.p"}
    assert cycle_report(graph)  # q -> r -> q, through a function-level import


def test_type_checking_imports_make_no_edge() -> None:
    modules = {
        "crowdmesh.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from crowdmesh import b\nelse:\n    import json\n",
        "crowdmesh.b": "import crowdmesh.a\n",
    }
    imports = _imports(modules)
    assert build_graph(imports, modules) == {"crowdmesh.a": set(), "crowdmesh.b": {"crowdmesh.a"}}
    assert [(i.target, i.type_only) for i in imports if i.source == "crowdmesh.a"] == [
        ("typing", False), ("crowdmesh.b", True), ("json", False)]


def test_client_check_catches_a_server_import() -> None:
    bad = _imports({f"{CLIENT}.wallet": "def f():\n    from crowdmesh.daemon.node import Node\n",
                    f"{CLIENT}.cli": "from crowdmesh.daemon import control\n",
                    "crowdmesh.daemon.node": "", "crowdmesh.daemon.control": ""})
    assert len(client_violations(bad)) == 2
    fine = _imports({f"{CLIENT}.rpc": "from crowdmesh.daemon.config import load_config\n"
                                      "from crowdmesh.daemon.client import exits\n"
                                      "import crowdmesh.chain.tx\n",
                     "crowdmesh.daemon.main": "from crowdmesh.daemon import runner\n"})
    assert client_violations(fine) == []


def test_argparse_check_catches_a_library_import() -> None:
    bad = _imports({f"{CLIENT}.wallet": "if TYPE_CHECKING:\n    import argparse\n",
                    "crowdmesh.daemon.main": "from argparse import Namespace\n"})
    assert len(argparse_violations(bad)) == 2
    fine = _imports({f"{CLIENT}.cli": "import argparse\n",
                     f"{CLIENT}.cli_chain": "import argparse\n"})
    assert argparse_violations(fine) == []

