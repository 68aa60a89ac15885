"""The CrowdSFL task through Flower in deployment mode (FLOWER.md): one ``flower-superlink`` and
k ``flower-supernode`` processes on 127.0.0.1, and ``flwr run <app> <connection> --stream``.

The Flower app is written to a temporary directory at run time: a Message-API ``ClientApp``
that trains the same MLP with ``crowdmesh.fl.local_train`` (same layers, training plan and data
shards as the daemons, read from pre-made ``.npz`` files so the per-message import stays small)
and a ``ServerApp`` running ``flwr.serverapp.strategy.FedAvg`` with equal weights (the
CrowdSFL default aggregation) for t rounds, no federated evaluation. Timed: ``flwr run`` from
start to exit, the SuperLink and SuperNodes already up (their start-up is reported apart).

Flower comes from the optional group ``.[flower]``; when it is not importable the result says
``not installed`` and nothing is timed. Every process started here is stopped in a finally.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIENT_APP = '''
import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from crowdmesh.fl import local_train, model_from_vector, model_to_vector
from crowdmesh.fl.spec import ModelSpec, TrainSpec

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    with np.load(str(context.node_config["data-path"])) as data:
        x, y, layers = data["x"], data["y"], [int(v) for v in data["layers"]]
        plan = data["train"]
        seed = int(data["seed"])
        optimizer = str(data["optimizer"])
    spec = ModelSpec(layers[0], tuple(layers[1:-1]), layers[-1])
    vec = np.concatenate([a.ravel() for a in msg.content["arrays"].to_numpy_ndarrays()])
    model = model_from_vector(spec, vec.astype(np.float64))
    rnd = int(msg.content["config"]["server-round"])
    gen = np.random.default_rng(seed * 1000 + rnd)
    train_spec = TrainSpec(int(plan[0]), int(plan[1]), float(plan[2]), optimizer, float(plan[3]))
    local = local_train(model, x, y, train_spec, gen)
    out = ArrayRecord([model_to_vector(local).astype(np.float32)])
    reply = RecordDict({"arrays": out, "metrics": MetricRecord({"weight": 1})})
    return Message(content=reply, reply_to=msg)
'''

SERVER_APP = '''
import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    k = int(cfg["workers"])
    start = np.load(str(cfg["init-path"]))
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=k,
                      min_evaluate_nodes=0, min_available_nodes=k, weighted_by_key="weight")
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord([start]),
                            num_rounds=int(cfg["rounds"]))
    final = np.concatenate([a.ravel() for a in result.arrays.to_numpy_ndarrays()])
    np.save(str(cfg["out-path"]), final)
'''

PYPROJECT = '''
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "cmbenchflower"
version = "1.0.0"
description = "crowdmesh bench: the CrowdSFL task in Flower deployment mode"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "crowdmesh"

[tool.flwr.app.components]
serverapp = "cmbenchflower.server_app:app"
clientapp = "cmbenchflower.client_app:app"

[tool.flwr.app.config]
workers = {workers}
rounds = {rounds}
init-path = "{init}"
out-path = "{out}"
'''


def flower_version() -> str | None:
    """The installed ``flwr`` version, or None (then the row says "not installed")."""
    try:
        return importlib.metadata.version("flwr")
    except importlib.metadata.PackageNotFoundError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_app(root: Path, parts: list[tuple[np.ndarray, np.ndarray]], start: np.ndarray,
               layers: tuple[int, ...], train: tuple[int, int, float, float], rounds: int,
               optimizer: str) -> tuple[Path, list[Path]]:
    app = root / "app"
    pkg = app / "cmbenchflower"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "client_app.py").write_text(CLIENT_APP)
    (pkg / "server_app.py").write_text(SERVER_APP)
    np.save(root / "init.npy", start.astype(np.float32))
    (app / "pyproject.toml").write_text(PYPROJECT.format(
        workers=len(parts), rounds=rounds, init=root / "init.npy", out=root / "final.npy"))
    paths = []
    for i, (x, y) in enumerate(parts):
        path = root / f"part{i}.npz"
        np.savez(path, x=x, y=y, layers=np.array(layers), seed=np.array(i),
                 optimizer=np.array(optimizer),
                 train=np.array(train, dtype=np.float64))
        paths.append(path)
    return app, paths


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group each child leads (``start_new_session``): Flower's own
    children (``flower-superexec``, ``flwr-clientapp``) go with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
    time.sleep(0.5)
    for proc in procs:  # group members that outlived their leader
        _signal_group(proc, signal.SIGKILL)


def _tail(path: Path, n: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def run_flower(parts: list[tuple[np.ndarray, np.ndarray]], start: np.ndarray,
               layers: tuple[int, ...], train: tuple[int, int, float, float], rounds: int,
               optimizer: str = "adam", timeout: float = 600.0) -> dict[str, Any]:
    """Run the task in Flower deployment mode; ``{"status": "ok", "wall_s", ...}``, or
    ``{"status": "not installed"}`` / ``{"status": "failed: ..."}`` (never a made-up time)."""
    version = flower_version()
    if version is None:
        return {"status": "not installed"}
    root = Path(tempfile.mkdtemp(prefix="cmflwr-", dir="/tmp"))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
           "FLWR_HOME": str(root / "flwr_home"), "PYTHONPATH": str(Path(__file__).parents[1])}
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        app, paths = _write_app(root, parts, start, layers, train, rounds, optimizer)
        link_port = _free_port()
        (root / "flwr_home").mkdir()
        (root / "flwr_home" / "config.toml").write_text(
            f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
            f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
        t0 = time.perf_counter()
        log = root / "superlink.log"
        logs.append(log)
        procs.append(subprocess.Popen(
            [f"{bindir}/flower-superlink", "--insecure", "--port", str(link_port),
             "--disable-runtime-dependency-installation", "--database", str(root / "state.db")],
            env=env, cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True))
        _wait_port(link_port, procs[0], 60)
        for i, path in enumerate(paths):
            log = root / f"supernode{i}.log"
            logs.append(log)
            procs.append(subprocess.Popen(
                [f"{bindir}/flower-supernode", "--insecure",
                 "--superlink", f"127.0.0.1:{link_port}", "--port", str(_free_port()),
                 "--node-config", f'data-path="{path}"'],
                env=env, cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True))
        startup_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        run_log = root / "flwr_run.log"
        logs.append(run_log)
        done = subprocess.run([f"{bindir}/flwr", "run", str(app), "bench", "--stream"],
                              env=env, cwd=root, stdout=run_log.open("wb"),
                              stderr=subprocess.STDOUT, timeout=timeout)
        wall = time.perf_counter() - t1
        final = root / "final.npy"
        if done.returncode != 0 or not final.exists():
            return {"status": f"failed: flwr run exit {done.returncode}: {_tail(run_log)}",
                    "version": version}
        return {"status": "ok", "version": version, "wall_s": wall, "startup_s": startup_s,
                "final": np.load(final)}
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        tails = " || ".join(f"{p.name}: {_tail(p, 3)}" for p in logs)
        return {"status": f"failed: {type(exc).__name__}: {exc}; {tails}", "version": version}
    finally:
        _stop(procs)
        if os.environ.get("CROWDSFL_BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
