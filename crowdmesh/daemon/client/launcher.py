"""The testnet launcher behind ``crowdmesh testnet up | status | down``: detached daemons
managed through pid files.

Rule 1: ``up`` starts each daemon in its own session (so it outlives the launcher and a Ctrl-C
in the terminal does not reach it), records ``nodeI/daemon.pid``, then waits, bounded and with
a progress display, until every node is ready, has its topology's peers, and all share one
head. If that fails it stops only the daemons this invocation started (nodes that were
already running stay up, and keep their pid files) and exits 1, keeping the logs.
Rule 2: ``down`` asks each daemon to stop (SIGTERM), waits up to :data:`DOWN_TIMEOUT_S`, then
SIGKILLs stragglers and removes the pid files. It is idempotent, and it only signals a pid whose
command line still names that node's config (pids get recycled).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crowdmesh.daemon.client.rpc import ControlClient, DaemonUnavailable
from crowdmesh.daemon.client.testnet import (
    NodeInfo,
    daemon_command,
    degrees,
    load_layout,
    topology_edges,
)

__all__ = ["down", "show_status", "up"]

UP_TIMEOUT_S: Final = 90.0
DOWN_TIMEOUT_S: Final = 10.0


def _pid_file(root: Path, info: NodeInfo) -> Path:
    return root / f"node{info.index}" / "daemon.pid"


def _reaped(pid: int) -> bool:
    """True if ``pid`` is a child of ours that has exited (and is now reaped).

    Why: a daemon this process spawned stays a zombie until waited for, and ``kill(pid, 0)``
    succeeds on a zombie, so a failed ``up`` would wait out :data:`DOWN_TIMEOUT_S` for it.
    """
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child: kill(pid, 0) decides
    return done == pid


def _alive(pid: int) -> bool:
    if _reaped(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_daemon(pid: int, config: Path) -> bool:
    """True if ``pid`` still runs a daemon on ``config`` (a recycled pid is left alone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc: trust the pid file
    return os.fsencode(config) in argv


def _read_pid(root: Path, info: NodeInfo) -> int | None:
    try:
        pid = int(_pid_file(root, info).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    config = root / f"node{info.index}" / "crowdmesh.toml"
    return pid if _alive(pid) and _is_our_daemon(pid, config) else None


def _spawn(root: Path, info: NodeInfo) -> int:
    node_dir = root / f"node{info.index}"
    with (node_dir / "daemon.log").open("ab") as out:
        proc = subprocess.Popen(
            daemon_command(node_dir / "crowdmesh.toml"), stdin=subprocess.DEVNULL,
            stdout=out, stderr=out, start_new_session=True, cwd=node_dir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _pid_file(root, info).write_text(f"{proc.pid}\n")
    return proc.pid


async def _call(root: Path, info: NodeInfo, method: str) -> Any:
    sock = root / f"node{info.index}" / "control.sock"
    with trio.fail_after(5):
        async with await ControlClient.connect(sock) as client:
            return await client.call(method)


async def _wait_ready(root: Path, info: NodeInfo, pid: int) -> None:
    while True:
        if not _alive(pid):
            raise RuntimeError(f"node{info.index} exited; see {root}/node{info.index}/daemon.log")
        try:
            if (await _call(root, info, "ready"))["ready"]:
                return
        except DaemonUnavailable:
            pass
        await trio.sleep(0.1)


async def _heads(root: Path, nodes: list[NodeInfo]) -> list[str | None]:
    heads: list[str | None] = []
    for info in nodes:
        try:
            heads.append((await _call(root, info, "head")).get("hash"))
        except Exception:  # a node that cannot answer counts as not synced
            heads.append(None)
    return heads


async def up(root: Path, as_json: bool) -> int:
    """Start every node not already running; wait until all are ready and synced.

    Returns:
        The exit status: 0 when all are up (the status table is printed), else 1 (the nodes
        started are stopped again; their logs stay in ``root``).
    """
    spec, nodes = load_layout(root)
    console = Console(stderr=True)
    running = {n.index: _read_pid(root, n) for n in nodes}
    pids = {n.index: running[n.index] or _spawn(root, n) for n in nodes}
    started = [n for n in nodes if running[n.index] is None]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, disable=as_json) as progress:
            ready = progress.add_task("daemons ready", total=len(nodes))
            linked = progress.add_task("connected", total=len(nodes))
            synced = progress.add_task("on one head", total=len(nodes))
            with trio.fail_after(UP_TIMEOUT_S):
                async with trio.open_nursery() as nursery:
                    for n in nodes:
                        nursery.start_soon(_ready_then_tick, root, n, pids[n.index],
                                           progress, ready)
                want = degrees(topology_edges(spec.topology, spec.n), spec.n)
                await _wait_connected(root, nodes, want, progress, linked)
                await _wait_synced(root, nodes, progress, synced)
    except (RuntimeError, trio.TooSlowError) as exc:
        why = str(exc) or f"not up within {UP_TIMEOUT_S:g} s"
        console.print(f"[red]testnet up failed:[/red] {why}; stopping the "
                      f"{len(started)} daemon(s) it started (logs kept in {root})")
        await _stop(root, started)
        return 1
    return await show_status(root, as_json)


async def _ready_then_tick(root: Path, info: NodeInfo, pid: int, progress: Progress,
                           task: Any) -> None:
    await _wait_ready(root, info, pid)
    progress.advance(task)


async def _wait_connected(root: Path, nodes: list[NodeInfo], want: list[int],
                          progress: Progress, task: Any) -> None:
    while True:
        have = [len(await _call(root, n, "peers")) for n in nodes]
        progress.update(task, completed=sum(h >= w for h, w in zip(have, want, strict=True)))
        if all(h >= w for h, w in zip(have, want, strict=True)):
            return
        await trio.sleep(0.1)


async def _wait_synced(root: Path, nodes: list[NodeInfo], progress: Progress, task: Any) -> None:
    while True:
        heads = await _heads(root, nodes)
        best = max(set(heads) - {None}, key=heads.count, default=None)
        progress.update(task, completed=heads.count(best) if best else 0)
        if best is not None and heads.count(best) == len(nodes):
            return
        await trio.sleep(0.2)


async def show_status(root: Path, as_json: bool) -> int:
    """Print one row per node: pid, height, head, peers, mempool size.

    Returns:
        The exit status: 0 if every node answered, else 1.
    """
    _, nodes = load_layout(root)
    rows = [await _status_row(root, n) for n in nodes]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table("node", "pid", "port", "height", "head", "peers", "mempool",
                      title=f"testnet {root}")
        for r in rows:
            table.add_row(*(str(r.get(c, "-")) for c in
                            ("node", "pid", "port", "height", "head", "peers", "mempool")))
        Console().print(table)
    return 0 if all(r.get("height") is not None for r in rows) else 1


async def _status_row(root: Path, info: NodeInfo) -> dict[str, Any]:
    row: dict[str, Any] = {"node": info.index, "port": info.port}
    pid = _read_pid(root, info)
    if pid is None:
        row["head"] = "not running"
        return row
    row["pid"] = pid
    try:
        head = await _call(root, info, "head")
        row["height"], row["head"] = head.get("height"), str(head.get("hash", ""))[:16]
        row["peers"] = len(await _call(root, info, "peers"))
        pool = await _call(root, info, "mempool")
        row["mempool"] = pool.get("size", len(pool.get("txids", []))) if isinstance(
            pool, dict) else "?"
    except Exception as exc:  # shown in the table, e.g. "warming up"
        row["head"] = f"unavailable: {exc}"
    return row


async def down(root: Path, as_json: bool) -> int:
    """SIGTERM every node, wait, SIGKILL stragglers, remove pid files; return 0."""
    _, nodes = load_layout(root)
    pids, killed = await _stop(root, nodes)
    stopped = sum(p is not None for p in pids.values())
    if not as_json:
        extra = f", SIGKILLed {killed}" if killed else ""
        Console().print(f"stopped {stopped} daemon(s){extra}")
    return 0


async def _stop(root: Path, nodes: list[NodeInfo]) -> tuple[dict[int, int | None], list[int]]:
    """Stop ``nodes`` (and only them): SIGTERM, wait, SIGKILL stragglers, remove their pid
    files. Returns the pids found (None: not running) and the indexes SIGKILLed."""
    pids = {n.index: _read_pid(root, n) for n in nodes}
    for pid in pids.values():
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while time.monotonic() < deadline and any(p and _alive(p) for p in pids.values()):
        await trio.sleep(0.1)
    killed = [i for i, p in pids.items() if p and _alive(p)]
    for i in killed:
        os.kill(pids[i] or 0, signal.SIGKILL)
    for n in nodes:
        _pid_file(root, n).unlink(missing_ok=True)
    return pids, killed
