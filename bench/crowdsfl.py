"""CrowdSFL end to end (issue 9, item 5), side by side in one run.

1. The paper's experiment: BCWD, k = 3 workers, t = 5 rounds, on a 5-daemon testnet started by
   the real launcher (requester = the one on-demand miner, CSP, three workers), full crypto and
   proofs; median of ``--runs`` runs (default 3). Wall time = ``task_create`` call → the
   requester sees ``settled``. Its split: FL and crypto seconds from an in-process replay of the
   jobs' work (the daemons report no job durations, see bench/crowdsfl_replay.py), waiting for
   the chain and the network = the rest. Beside the paper's 36.2 s (18.20 / 2.18 / 15.82).
   Also blocks per round and the peak RSS (VmHWM) of every daemon.
2. The same task through Flower in deployment mode (SuperLink + 3 SuperNodes on loopback,
   bench/crowdsfl_flower.py); Flower from ``pip install '.[flower]'``, else "not installed".
3. Table 1: final accuracy on BCWD and HDD over ``--splits`` 80/20 splits (mean ± sd), the FL
   engine in process under the task's selection rule (lossless encryption: bit-identical to the
   daemons, tests/unit/crowdsfl_roles/test_task.py), beside the paper and our central BP-NN.
   Table 2: plaintext and ciphertext bytes per upload, gas per task (receipts), chain bytes per
   task beside the paper's (4k+1)·t·S_model.
4. ``--scale``: k = 10 on a 12-daemon testnet, and a 1 MiB model with k = 3 (t = 2 each): time
   per round, chain bytes per round, blocks per round, peak RSS; a failure is reported as such.

Data: BCWD from ``load_named("bcwd")`` (CROWDMESH_DATA_DIR or ../shared/data); if it is missing
the built-in default (scikit-learn's WDBC) is used and the output says so. The requester holds a
fixed 20 % of the rows; the workers hold equal shards of the rest.

Usage: .venv/bin/python bench/crowdsfl.py [--runs N] [--splits N] [--scale] [--no-flower]
                                          [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crowdsfl_flower import flower_version, run_flower
from crowdsfl_net import run_task, write_csv
from crowdsfl_replay import crowdsfl_accuracy, plaintext_bytes, replay_split
from crowdsfl_tables import (
    PAPER_PLAINTEXT_B,
    e2e_rows,
    fmt,
    hidden_for_bytes,
    log_spans,
    mean_sd,
    median_run,
    paper_chain_bytes,
    phase_seconds,
    round_seconds,
    rss_max,
    scale_rows,
    split,
    table1_rows,
    table2_rows,
    task_metrics,
    top_kinds,
)

from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts.crowdsfl import TaskSpec
from crowdmesh.daemon.sflapi import SPEC_DEFAULTS, build_spec
from crowdmesh.errors import CrowdmeshError
from crowdmesh.fl import init_model, load_default, load_named, model_to_vector
from crowdmesh.roles.sfl_jobs import model_spec, train_spec

K, ROUNDS, SCALE_ROUNDS = 3, 5, 2
console = Console(width=140)


def load(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, source) of a named UCI dataset, or the built-in default when it is missing."""
    try:
        ds = load_named(name)
        return ds.encoded(), ds.y, f"{name} ({len(ds.y)} rows, UCI file)"
    except (CrowdmeshError, OSError) as exc:
        ds = load_default()
        return ds.encoded(), ds.y, (f"{name} NOT FOUND ({type(exc).__name__}): built-in "
                                    f"default {ds.name} ({len(ds.y)} rows) used instead")


def spec_for(layers: tuple[int, ...], rounds: int, k: int) -> TaskSpec:
    """The task spec the daemons build for these fields (``task create`` defaults)."""
    params = {"rounds": rounds, "layers": list(layers), "min_workers": k, "max_workers": k}
    return build_spec(params, bytes(32), layers[0], layers[-1], 0)


def holdout_split(x: np.ndarray, y: np.ndarray) -> tuple[tuple, tuple]:
    """(requester's held-out 20 %, the workers' 80 %), fixed by seed 7."""
    order = np.random.default_rng(7).permutation(len(y))
    cut = len(y) // 5
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def shards_of(rows: tuple, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The k equal shards the daemons' ``shard = i/k`` keeps."""
    return [(rows[0][p], rows[1][p]) for p in np.array_split(np.arange(len(rows[1])), k)]


def e2e(args: argparse.Namespace, work: Path, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    held, train = holdout_split(x, y)
    train_csv = write_csv(work / "train.csv", *train)
    held_csv = write_csv(work / "holdout.csv", *held)
    layers = (x.shape[1], *SPEC_DEFAULTS["hidden"], int(y.max()) + 1)
    runs = []
    for i in range(args.runs):
        console.print(f"[bold]e2e run {i + 1}/{args.runs}[/]: {K + 2} daemons, k = {K}, "
                      f"t = {ROUNDS}, layers {layers}")
        root = Path(tempfile.mkdtemp(prefix=f"cmb{i}-", dir="/tmp"))
        try:
            run = run_task(root, K, ROUNDS, layers, train_csv, held_csv, seed=41 + i,
                           timeout=args.timeout)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        console.print(f"  {run['status']}: wall {fmt(run.get('wall_s'), 2, ' s')} "
                      f"(setup {fmt(run.get('setup_s'), 1, ' s')})")
        runs.append(run)
    med = median_run(runs)
    spec = spec_for(layers, ROUNDS, K)
    out: dict[str, Any] = {"runs": [{k: v for k, v in r.items()
                                     if k not in ("txs", "blocks", "logs")}
                                    for r in runs], "layers": list(layers)}
    shards = shards_of(train, K)
    replay = replay_split(pack(spec.to_obj()), shards, held)
    out["replay"] = replay
    if med is not None:
        out["wall_s"] = med["wall_s"]
        out["setup_s"] = med.get("setup_s")
        out["split"] = split(med["wall_s"], replay["fl_s"], replay["crypto_s"])
        out["metrics"] = task_metrics(med["txs"], ROUNDS, med["workers"])
        out["round_s"] = round_seconds(med["phases"], ROUNDS)
        out["phases_s"] = phase_seconds(med["phases"])
        spans = log_spans(med.get("logs", {}), med["txs"], ROUNDS)
        out["split_logs"] = {**spans, "wait_s": max(0.0, med["wall_s"] - spans["total_s"])}
        out["peak_rss_mb"] = med["peak_rss_mb"]
        out["walls"] = sorted(r["wall_s"] for r in runs if r.get("status") == "ok")
    if args.no_flower:
        out["flower"] = {"status": "skipped (--no-flower)"}
    else:
        console.print(f"[bold]Flower deployment[/] (flwr {flower_version() or 'not installed'})")
        start = model_to_vector(init_model(model_spec(spec), np.random.default_rng(0)))
        ts = train_spec(spec)
        flower = run_flower(shards, start, layers, (ts.epochs, ts.batch_size, ts.learning_rate,
                                                    ts.l2), ROUNDS, ts.optimizer)
        flower.pop("final", None)
        console.print(f"  {flower['status'][:300]}")
        out["flower"] = flower
    out["table2"] = table2(spec, out.get("metrics", {}))
    return out


def table2(spec: TaskSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    plain = plaintext_bytes(spec)
    return {"plaintext_bytes": plain, "ciphertext_bytes": metrics.get("ciphertext_bytes"),
            "gas_per_task": metrics.get("gas"), "chain_bytes": metrics.get("chain_bytes"),
            "paper_formula_bytes": paper_chain_bytes(K, ROUNDS, plain),
            "paper_formula_paper_bytes": paper_chain_bytes(K, ROUNDS, PAPER_PLAINTEXT_B),
            "paper_formula_note": "(4k+1)·t·S_model with S_model = plaintext model bytes "
                                  "(ours, and the paper's 331 B)"}


def table1(splits: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in ("bcwd", "hdd"):
        try:
            ds = load_named(name)
        except (CrowdmeshError, OSError) as exc:
            out[name] = {"status": f"not found ({type(exc).__name__}: {exc})"[:120]}
            continue
        x, y = ds.encoded(), ds.y
        spec = spec_for((x.shape[1], *SPEC_DEFAULTS["hidden"], int(y.max()) + 1), ROUNDS, K)
        accs = [crowdsfl_accuracy(x, y, seed, K, ROUNDS, spec) for seed in range(splits)]
        out[name] = {"status": "ok", "splits": splits, "source": f"{len(y)} rows",
                     "crowdsfl": mean_sd([a["crowdsfl"] for a in accs]),
                     "bpnn": mean_sd([a["bpnn"] for a in accs])}
    return out


def scale(args: argparse.Namespace, work: Path, x: np.ndarray, y: np.ndarray
          ) -> dict[str, dict[str, Any]]:
    train_csv, held_csv = work / "train.csv", work / "holdout.csv"  # written by e2e()
    n_in, n_out = x.shape[1], int(y.max()) + 1
    configs = {
        "k = 10, 12 daemons": (10, (n_in, *SPEC_DEFAULTS["hidden"], n_out), 60),
        "1 MiB model, k = 3": (3, (n_in, *hidden_for_bytes(n_in, n_out, 1 << 20), n_out),
                               args.mb1_t_wait),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (k, layers, t_wait) in configs.items():
        console.print(f"[bold]scale[/] {name}: layers {layers}, t = {SCALE_ROUNDS}")
        root = Path(tempfile.mkdtemp(prefix="cmbs-", dir="/tmp"))
        try:
            run = run_task(root, k, SCALE_ROUNDS, layers, train_csv, held_csv, seed=77,
                           timeout=args.scale_timeout, final_wait=300.0, t_wait=t_wait)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        row: dict[str, Any] = {"status": run["status"], "k": k, "layers": list(layers),
                               "t_wait": t_wait, "logs_tail": run.get("logs_tail"),
                               "rounds": SCALE_ROUNDS, "wall_s": run.get("wall_s"),
                               "phases": run.get("phases"), "setup_s": run.get("setup_s"),
                               "final_note": run.get("final_note")}
        if run.get("peak_rss_mb"):
            row["peak_rss_mb"] = rss_max(run["peak_rss_mb"])
            row["peak_rss_per_daemon"] = run["peak_rss_mb"]
        if run["status"] == "ok":
            m = task_metrics(run["txs"], SCALE_ROUNDS, run["workers"])
            row.update(round_s=round_seconds(run["phases"], SCALE_ROUNDS),
                       chain_bytes_per_round=m["chain_bytes_per_round"],
                       blocks_per_round=m["blocks_per_round_mean"], submits=m["submits"],
                       submits_expected=k * SCALE_ROUNDS,
                       max_block_bytes=max(b["size"] for b in run["blocks"].values()))
        console.print(f"  {row['status'][:300]} {row.get('final_note') or ''}")
        for line in (row.get("logs_tail") or [])[:8]:
            console.print(f"    {line[:200]}", markup=False)
        out[name] = row
    return out


def show(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def report(res: dict[str, Any]) -> None:
    e = res["e2e"]
    console.print(f"\ndata: {res['data_source']}; load average {res['load_before']} → "
                  f"{tuple(round(v, 1) for v in os.getloadavg())}")
    show(f"CrowdSFL task, BCWD, k = {K}, t = {ROUNDS}: median of {len(e['runs'])} run(s) "
         f"(ok walls: {', '.join(f'{w:.2f}' for w in e.get('walls', []))})",
         ["system", "wall", "FL s", "crypto s", "waiting s", "target"],
         e2e_rows(e.get("wall_s"), e.get("split"), e["flower"], e.get("setup_s")))
    console.print("  split method: FL and crypto = the jobs' work replayed in the bench process "
                  "on the same spec, shards and held-out rows (the daemons report no job "
                  "durations), slowest worker per round; waiting = wall − FL − crypto. "
                  "Cross-check from the daemons' logs: each step's log line minus its node's "
                  "block-connected line for the triggering block (job + dispatch; worker and "
                  "requester jobs mix FL and crypto), in 'daemon steps from logs' below.")
    m = e.get("metrics", {})
    rss = e.get("peak_rss_mb", {})
    show("chain and memory (median run)", ["metric", "value", "target"], [
        ["blocks per round", f"{fmt(m.get('blocks_per_round_mean'), 1)} "
         f"{m.get('blocks_per_round', '')}", "≤ 6"],
        ["time per round", fmt(e.get("round_s"), 2, " s"), ""],
        ["seconds per phase (task_show)", ", ".join(
            f"{k} {v:.1f}" for k, v in e.get("phases_s", {}).items()), ""],
        ["daemon steps from logs (s)", ", ".join(
            f"{k[:-2]} {v:.2f}" for k, v in e.get("split_logs", {}).items()), ""],
        ["gas by kind", top_kinds(m.get("kinds", {}), "gas"), ""],
        ["chain bytes by kind", top_kinds(m.get("kinds", {}), "bytes"), ""],
        *[[f"peak RSS {name}", f"{v['daemon']:.0f} MB"
           + (f" (+ child {v['child_max']:.0f} MB)" if v["child_max"] else ""), "≤ 200 MB"]
          for name, v in rss.items()],
    ])
    show(f"Table 1: final accuracy %, {res['splits']} splits (in-process FL engine, same "
         "selection rule; bit-identical to the daemons)",
         ["data", "splits", "ours CrowdSFL", "paper CrowdSFL", "ours central BP-NN",
          "paper BP-NN", "rows"], table1_rows(res["table1"]))
    show("Table 2: sizes and gas (median run)", ["metric", "ours", "paper"],
         table2_rows(e["table2"]))
    if res.get("scale"):
        show(f"Scale (t = {SCALE_ROUNDS}, run once)",
             ["config", "time per round", "chain bytes / round", "blocks / round",
              "peak RSS (max daemon)"], scale_rows(res["scale"]))


def json_out(res: dict[str, Any]) -> dict[str, Any]:
    e, t1, t2 = res["e2e"], res["table1"], res["e2e"]["table2"]
    flower_s = e["flower"].get("wall_s")
    wall = e.get("wall_s")
    m = e.get("metrics", {})
    sc = res.get("scale") or {}
    k10 = sc.get("k = 10, 12 daemons", {})
    mb1 = sc.get("1 MiB model, k = 3", {})
    out = {
        "wall_s": wall, "split": e.get("split"), "flower_s": flower_s,
        "flower_status": e["flower"].get("status"),
        "ratio_vs_flower": flower_s / wall if flower_s and wall else None,
        "table1": t1, "table2": t2, "blocks_per_round": m.get("blocks_per_round_mean"),
        "peak_rss_mb": e.get("peak_rss_mb"), "scale": sc,
        # the target names, same figures
        "e2e_s": wall, "e2e_fl_s": (e.get("split") or {}).get("fl_s"),
        "e2e_crypto_s": (e.get("split") or {}).get("crypto_s"),
        "e2e_chain_s": (e.get("split") or {}).get("wait_s"),
        "split_logs": e.get("split_logs"),
        "flower_deploy_s": flower_s,
        "speedup_vs_flower": flower_s / wall if flower_s and wall else None,
        "bcwd_acc": t1.get("bcwd", {}).get("crowdsfl"),
        "hdd_acc": t1.get("hdd", {}).get("crowdsfl"),
        "plaintext_bytes": t2["plaintext_bytes"], "ciphertext_bytes": t2["ciphertext_bytes"],
        "gas_per_task": t2["gas_per_task"], "k10_round_s": k10.get("round_s"),
        "mb1_round_s": mb1.get("round_s"),
        "data_source": res["data_source"], "runs": e["runs"], "replay": e.get("replay"),
        "metrics": m, "load_before": res["load_before"], "runtime_s": res["runtime_s"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--scale", action="store_true", help="also k = 10 and a 1 MiB model")
    ap.add_argument("--no-flower", action="store_true")
    ap.add_argument("--timeout", type=float, default=300.0, help="per e2e task, seconds")
    ap.add_argument("--scale-timeout", type=float, default=900.0)
    ap.add_argument("--mb1-t-wait", type=int, default=300,
                    help="T_wait of the 1 MiB task (the CSP steps once all submitted)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"load_before": tuple(round(v, 1) for v in os.getloadavg()),
                           "splits": args.splits}
    x, y, res["data_source"] = load("bcwd")
    work = Path(tempfile.mkdtemp(prefix="cmbd-", dir="/tmp"))
    try:
        res["e2e"] = e2e(args, work, x, y)
        res["table1"] = table1(args.splits)
        if args.scale:
            res["scale"] = scale(args, work, x, y)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["runtime_s"] = time.perf_counter() - t0
    if args.json:  # before the tables: a printing bug must not lose a long run
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_out(res), indent=2, default=str))
    report(res)
    console.print(f"total {res['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
