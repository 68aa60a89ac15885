"""One whole CrowdSFL task between real daemons started by the testnet launcher (the same set-up
as tests/functional/test_crowdsfl_task.py): node 0 is the requester and the one on-demand
miner, node 1 the CSP, nodes 2..k+1 workers that auto-join, each holding the i-th of k equal
shards of one training CSV; the requester scores on its own held-out CSV.

Measured: the wall time from the ``task_create`` call to the requester seeing ``settled``
(keys registered and daemons started before, reported apart as ``setup_s``); every phase
change as the requester's ``task_show`` shows it (polled every 0.1 s); afterwards every
transaction of the task (kind, encoded size, receipt gas, height, blob bytes) read back over
RPC; and the peak RSS (``VmHWM`` of /proc/<pid>/status) of every daemon and of its children.
"""

from __future__ import annotations

import csv
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import trio

from crowdmesh.chain.codec import unpack
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.client.sfl_layout import fund, lay_out_node
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet

FUNDS = 10**9
REQ, CSP = 0, 1
ROUND_KINDS = ("sfl-model", "sfl-submit", "sfl-blinded", "sfl-accuracy", "sfl-select")


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Model-ready rows as a CSV the daemon's loader reads (features, then ``label``)."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        for row, label in zip(x, y, strict=True):
            out.writerow([repr(float(v)) for v in row] + [int(label)])
    return path


def configure(net: Testnet, k: int, train_csv: Path | None, holdout_csv: Path | None) -> None:
    """Roles, shards, data and funds; only the requester mines (one miner: no forks)."""
    fund(net.root / "genesis.json", [n.info.account for n in net.nodes], FUNDS)
    for node in net.nodes:
        fields: dict[str, Any] = {}
        if node.index >= 2 and train_csv is not None:
            fields["sfl_dataset"] = train_csv
        if node.index == REQ and holdout_csv is not None:
            fields["sfl_holdout"] = holdout_csv
        roles = {REQ: ["requester"], CSP: ["csp"]}.get(node.index, ["worker"])
        shard = (node.index - 1, k) if node.index >= 2 else None
        lay_out_node(node.config, roles, node.index == REQ, shard, **fields)


def _hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of ``pid`` in MB (10^6 bytes); 0.0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def peak_rss(net: Testnet, k: int) -> dict[str, dict[str, float]]:
    """Per daemon: its own peak RSS and the largest peak among its child processes."""
    out = {}
    for node in net.nodes:
        if node.process is None:
            continue
        pid = node.process.pid
        try:
            kids = [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            kids = []
        name = "requester" if node.index == REQ else "csp" if node.index == CSP \
            else f"worker{node.index - 1}"
        out[name] = {"daemon": round(_hwm_mb(pid), 1),
                     "child_max": round(max((_hwm_mb(c) for c in kids), default=0.0), 1)}
    return out


async def _wait(pred: Any, timeout: float, what: str, poll: float = 0.2) -> None:
    with trio.move_on_after(timeout):
        while not await pred():
            await trio.sleep(poll)
        return
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


async def _register_keys(net: Testnet) -> None:
    req, csp = net.nodes[REQ], net.nodes[CSP]
    for node in (req, csp):
        await node.rpc("elgamal_register", [None])
    await net.mine(req, 1)
    for node in (req, csp):
        async def registered(n: NodeHandle = node) -> bool:
            return bool((await n.rpc("elgamal_key", [None]))["registered"])
        await _wait(registered, 60, f"{node} key registered")


def _round_of(kind: str, payload: bytes) -> int | None:
    if kind not in ROUND_KINDS:
        return None
    try:
        return int(unpack(payload, 1 << 26)[1])
    except Exception:
        return None


async def scan_chain(node: NodeHandle, from_height: int) -> tuple[list[dict], dict[int, dict]]:
    """Every transaction in blocks ``from_height``..head, and each block's time and size."""
    txs: list[dict] = []
    blocks: dict[int, dict] = {}
    head = int((await node.rpc("head"))["height"])
    for h in range(from_height, head + 1):
        block = await node.rpc("block", [h])
        blocks[h] = {"time": int(block["timestamp"]), "size": int(block["size"]),
                     "txs": int(block["tx_count"])}
        for txid in block["txids"]:
            tx = await node.rpc("tx", [txid])
            payload = bytes.fromhex(tx["payload"])
            row = {"kind": tx["kind"], "size": int(tx["size"]), "gas": int(tx.get("gas", 0)),
                   "height": h, "sender": tx["sender"], "payload_len": len(payload),
                   "round": _round_of(tx["kind"], payload)}
            if tx["kind"] == "blob-part":
                row["blob_bytes"] = len(unpack(payload, 1 << 26)[3])
            txs.append(row)
    return txs, blocks


LOGGED = ("block-connected", "sfl-submitting", "sfl-blinded", "sfl-scored", "sfl-model-posting")


def read_logs(net: Testnet) -> dict[int, list[tuple[float, str, dict[str, str]]]]:
    """Per node: (time, event, fields) of block connects and the CrowdSFL step lines."""
    out: dict[int, list[tuple[float, str, dict[str, str]]]] = {}
    for node in net.nodes:
        rows = []
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("event") in LOGGED and "ts" in fields:
                ts = datetime.fromisoformat(fields["ts"]).timestamp()
                rows.append((ts, fields["event"], {k: fields[k] for k in ("height", "round")
                                                   if k in fields}))
        out[node.index] = rows
    return out


async def _run(root: Path, k: int, rounds: int, layers: tuple[int, ...],
               train_csv: Path | None, holdout_csv: Path | None, seed: int, timeout: float,
               final_wait: float, t_wait: int, out: dict[str, Any]) -> None:
    init_testnet(root, TestnetSpec(n=k + 2, seed=seed, topology="mesh",
                                   mining_mode="on-demand"))
    async with trio.open_nursery() as nursery:
        net = Testnet(root, nursery)
        try:
            configure(net, k, train_csv, holdout_csv)
            t_setup = time.perf_counter()
            with trio.fail_after(240):
                await net.start_all()
                await _register_keys(net)
            out["setup_s"] = time.perf_counter() - t_setup
            req = net.nodes[REQ]
            csp_account = (await net.nodes[CSP].rpc("account"))["account"]
            workers = [(await n.rpc("account"))["account"] for n in net.nodes[2:]]
            out["workers"] = workers
            h0 = int((await req.rpc("head"))["height"]) + 1
            spec = {"csp": csp_account, "rounds": rounds, "layers": list(layers),
                    "min_workers": k, "max_workers": k, "t_wait": t_wait, "t_step": 2 * t_wait}
            t0 = time.perf_counter()
            created = await req.rpc("task_create", [spec, f"bench-{seed}"])
            task = str(created["task"])
            out["task"] = task
            phases: list[tuple[float, str, int]] = []
            with trio.move_on_after(timeout):
                while True:
                    try:
                        shown = await req.rpc("task_show", [task])
                    except RpcCallError as exc:  # not in a block yet
                        if exc.code != "sfl-unknown-task":
                            raise
                        shown = {"phase": "pending"}
                    mark = (shown["phase"], int(shown.get("round") or 0))
                    if not phases or phases[-1][1:] != mark:
                        phases.append((time.perf_counter() - t0, *mark))
                    if shown["phase"] in ("settled", "aborted"):
                        break
                    await trio.sleep(0.1)
            out["wall_s"] = time.perf_counter() - t0
            out["phases"] = phases
            out["phase"] = phases[-1][1] if phases else "unknown"
            out["peak_rss_mb"] = peak_rss(net, k)
            if out["phase"] != "settled":
                out["status"] = f"failed: task {out['phase']} after {out['wall_s']:.0f} s"
                return
            shown = await req.rpc("task_show", [task])
            selected = [r["round"] for r in shown["history"] if "selected" in r]
            if len(selected) != rounds:  # settled early: a round had no submission
                out["status"] = (f"failed: settled after {len(selected)} of {rounds} rounds "
                                 f"(no submission before T_wait = {t_wait} s in round "
                                 f"{len(selected)}); phases {[p[1] for p in phases]}")
                out["logs_tail"] = _problems(net)
                return

            async def final_model() -> bool:
                shown = await req.rpc("task_show", [task])
                return any(r["round"] == rounds and "model" in r for r in shown["history"])

            try:  # posted after settlement; its absence is noted, not a failed task
                await _wait(final_model, final_wait, "final model posted")
                out["final_s"] = time.perf_counter() - t0
            except TimeoutError as exc:
                out["final_note"] = str(exc)
            out["txs"], out["blocks"] = await scan_chain(req, h0)  # the requester's chain
            out["logs"] = read_logs(net)
            out["peak_rss_mb"] = peak_rss(net, k)
            out["status"] = "ok"
        finally:
            with trio.move_on_after(30):
                await net.stop_all()
            nursery.cancel_scope.cancel()


def _problems(net: Testnet, n: int = 6) -> list[str]:
    """The last warning, error or reject lines of every daemon (why a step did not happen)."""
    out = []
    for node in net.nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        bad = [ln for ln in text.splitlines()
               if "level=warn" in ln or "level=error" in ln or "rejected" in ln
               or "failed" in ln]
        out += [f"node{node.index}: {ln[:300]}" for ln in bad[-n:]]
    return out


def _leaf(exc: BaseException) -> str:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def run_task(root: Path, k: int, rounds: int, layers: tuple[int, ...],
             train_csv: Path | None, holdout_csv: Path | None, seed: int = 41,
             timeout: float = 600.0, final_wait: float = 60.0, t_wait: int = 60
             ) -> dict[str, Any]:
    """Run one task on a k + 2 daemon testnet under ``root``; never raises for a failed task
    (``status`` says what failed, with the requester's log tail)."""
    out: dict[str, Any] = {"k": k, "rounds": rounds, "layers": list(layers)}
    try:
        trio.run(_run, root, k, rounds, layers, train_csv, holdout_csv, seed, timeout,
                 final_wait, t_wait, out)
    except Exception as exc:
        log = root / "node0" / "daemon.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        out["status"] = f"failed: {_leaf(exc)} | " + " | ".join(tail)
    out.setdefault("status", "failed: unknown")
    return out
