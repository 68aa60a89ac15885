"""Command group ``task``: CrowdSFL tasks (``task create|list|show|join|timeout|watch|model``).

Commands: ``task create [--spec FILE] [--csp ACCOUNT] [--rounds N] …`` (flags override the spec
file, a TOML or JSON object of spec fields; ``--csp`` is required one way or the other),
``task list``, ``task show ID``, ``task join ID``, ``task timeout ID`` (abort a task whose
deadline passed: every coin goes back), ``task watch ID [--for S]`` (prints each
phase or round change until the task is settled or aborted, bounded by ``--for``),
``task model ID [--round N] --out FILE.npz``.

Rule: ``task create`` is idempotent by ``--id`` (default: a fresh random id per run); every
error is the daemon's stable code (``sfl-unknown-task``, ``sfl-key-missing``, ``sfl-bad-spec``…).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tomllib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import trio

from crowdmesh.daemon.client.cli_command import Command, CommandGroup, Invocation
from crowdmesh.daemon.client.exits import EXIT_ERROR, EXIT_OK
from crowdmesh.daemon.client.render import render
from crowdmesh.errors import UsageError

__all__ = ["GROUP", "read_spec_file", "write_model"]

# flag -> (spec field, type); "hidden" is a comma list of hidden layer sizes
_FLAGS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "csp": ("csp", str), "layers": ("layers", lambda v: [int(x) for x in v.split(",")]),
    "hidden": ("hidden", lambda v: [int(x) for x in v.split(",") if x]),
    "rounds": ("rounds", int), "min_workers": ("min_workers", int),
    "max_workers": ("max_workers", int), "join_window": ("join_window", int),
    "t_wait": ("t_wait", int), "t_step": ("t_step", int), "pool": ("pool", int),
    "deposit": ("deposit_base", int), "rep_weight": ("rep_weight", int),
    "select": ("select_m", int), "min_accuracy": ("min_accuracy_bps", int),
    "aggregation": ("aggregation", str), "epochs": ("epochs", int),
}
_TERMINAL: Final = ("settled", "aborted")
WATCH_POLL_S: Final = 0.5


def read_spec_file(path: Path) -> dict[str, Any]:
    """A spec file: a TOML or JSON object of spec fields (``UsageError('bad-spec-file')``)."""
    try:
        text = path.read_text(encoding="utf-8")
        obj = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError("bad-spec-file", f"{path}: {exc}") from None
    if not isinstance(obj, dict):
        raise UsageError("bad-spec-file", f"{path}: want an object of spec fields")
    return obj


def write_model(reply: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write a ``task_model`` reply as ``.npz`` (``w0, b0, w1, b1, …`` float32 + ``layers``)."""
    flat = np.frombuffer(bytes.fromhex(reply["model"]), dtype="<f4")
    layers = [int(v) for v in reply["layers"]]
    arrays: dict[str, Any] = {"layers": np.asarray(layers, dtype=np.int64)}
    offset = 0
    for i, (a, b) in enumerate(itertools.pairwise(layers)):
        arrays[f"w{i}"] = flat[offset:offset + a * b].reshape(a, b)
        offset += a * b
        arrays[f"b{i}"] = flat[offset:offset + b]
        offset += b
    if offset != len(flat):
        raise UsageError("bad-fl-shape", f"{len(flat)} parameters for layers {layers}")
    with out.open("wb") as f:
        np.savez(f, **arrays)
    return {"task": reply["task"], "round": reply["round"], "layers": layers,
            "parameters": len(flat), "out": str(out)}


def _setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a task as requester")
    create.add_argument("--spec", type=Path, help="TOML or JSON file of spec fields")
    for flag in _FLAGS:
        create.add_argument("--" + flag.replace("_", "-"), dest=flag)
    create.add_argument("--id", dest="request_id", default=uuid.uuid4().hex)
    sub.add_parser("list", help="every task on chain")
    for name, help_ in (("show", "one task"), ("join", "join as worker"),
                        ("timeout", "abort a task whose deadline passed (refunds every coin)")):
        sub.add_parser(name, help=help_).add_argument("task_id")
    watch = sub.add_parser("watch", help="print progress until settled or aborted")
    watch.add_argument("task_id")
    watch.add_argument("--for", dest="watch_for", type=float, default=600.0, metavar="S")
    model = sub.add_parser("model", help="a round's global model as .npz")
    model.add_argument("task_id")
    model.add_argument("--round", type=int)
    model.add_argument("--out", type=Path, required=True)


def _create_params(args: argparse.Namespace) -> dict[str, Any]:
    spec = read_spec_file(args.spec) if args.spec else {}
    for flag, (name, convert) in _FLAGS.items():
        raw = getattr(args, flag)
        if raw is not None:
            try:
                spec[name] = convert(raw)
            except ValueError:
                raise UsageError("bad-spec", f"--{flag}: {raw!r}") from None
    if "csp" not in spec:
        raise UsageError("bad-spec", "name the CSP: --csp ACCOUNT (or csp in --spec)")
    return spec


async def _create(inv: Invocation) -> Any:
    return await inv.call("task_create", [_create_params(inv.args), inv.args.request_id])


async def _model(inv: Invocation) -> Any:
    reply = await inv.call("task_model", [inv.args.task_id, inv.args.round])
    return write_model(reply, inv.args.out)


def _line(view: dict[str, Any]) -> str:
    history = view.get("history") or [{}]
    acc = history[-1].get("accuracy_bps")
    tail = f" accuracy_bps={acc}" if acc else ""
    return (f"{view['task'][:16]} phase={view['phase']} round={view['round']}/{view['rounds']}"
            f" workers={len(view['workers'])}{tail}")


async def _watch(inv: Invocation) -> Any:
    last = None
    view: dict[str, Any] = {}
    with trio.move_on_after(inv.args.watch_for):
        while True:
            view = await inv.call("task_show", [inv.args.task_id])
            key = (view["phase"], view["round"])
            if key != last and not inv.options.json:
                print(_line(view), flush=True)
            last = key
            if view["phase"] in _TERMINAL:
                return view
            await trio.sleep(WATCH_POLL_S)
    raise UsageError("watch-timeout", f"not settled within {inv.args.watch_for} s "
                     f"(phase {view.get('phase')})")


_ACTIONS: Final[dict[str, Callable[[Invocation], Awaitable[Any]]]] = {
    "create": _create,
    "list": lambda inv: inv.call("task_list"),
    "show": lambda inv: inv.call("task_show", [inv.args.task_id]),
    "join": lambda inv: inv.call("task_join", [inv.args.task_id]),
    "timeout": lambda inv: inv.call("task_timeout", [inv.args.task_id]),
    "watch": _watch,
    "model": _model,
}


def _run(inv: Invocation) -> int:
    result = trio.run(_ACTIONS[inv.args.action], inv)
    if inv.args.action != "watch":
        render(result, inv.options.json, title=f"task {inv.args.action}")
        return EXIT_OK
    if inv.options.json:
        render(result, True)
    else:
        print(f"task {result['phase']}", file=sys.stdout)
    return EXIT_OK if result["phase"] == "settled" else EXIT_ERROR


_SUMMARY: Final = "CrowdSFL tasks: create, list, show, join, timeout, watch, model"
GROUP: Final = CommandGroup("task", _SUMMARY, {"task": Command(_SUMMARY, _run, _setup)})
