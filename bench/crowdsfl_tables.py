"""Pure helpers of bench/crowdsfl.py: the paper's figures, metrics derived from a task's
transactions, and the rows of every printed table (no daemon, no clock, no I/O)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

# The seed paper (000_c9b34f7ff11b7dba): §6 wall time for BCWD, k = 3, t = 5 and its split;
# Table 1 accuracy (percent); Table 2 sizes per upload and gas per task.
PAPER_WALL_S = 36.2
PAPER_SPLIT = {"fl_s": 18.20, "crypto_s": 2.18, "wait_s": 15.82}
PAPER_TABLE1 = {
    "bcwd": {"CrowdSFL": 91.42, "BP-NN": 94.29},
    "hdd": {"CrowdSFL": 93.94, "BP-NN": 95.65},
}
PAPER_PLAINTEXT_B = 331
PAPER_CIPHERTEXT_B = 690
PAPER_GAS = 455_016
TARGET_WALL_S = 5.0
TARGET_SPEEDUP = 10.0
TARGET_BLOCKS_PER_ROUND = 6
TARGET_RSS_MB = 200.0
TASK_EXCLUDED_KINDS = frozenset({"register-key", "transfer"})


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell, or ``-`` when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (sd 0.0 for one value)."""
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The successful run with the median wall time (the lower middle one for an even count)."""
    ok = sorted((r for r in runs if r.get("status") == "ok"), key=lambda r: r["wall_s"])
    return ok[(len(ok) - 1) // 2] if ok else None


def split(wall_s: float, fl_s: float, crypto_s: float) -> dict[str, float]:
    """Wall time split: FL, crypto, and the rest as waiting for the chain and the network."""
    return {"fl_s": fl_s, "crypto_s": crypto_s, "wait_s": max(0.0, wall_s - fl_s - crypto_s)}


def ratio(slow: float | None, fast: float | None) -> float | None:
    """slow / fast, or None when either is missing."""
    if slow is None or fast is None or fast <= 0:
        return None
    return slow / fast


def paper_chain_bytes(k: int, t: int, s_model: int) -> int:
    """The paper's chain bytes per task: (4k + 1)·t·S_model."""
    return (4 * k + 1) * t * s_model


def task_txs(txs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transactions of a task run (everything but key registration and transfers)."""
    return [t for t in txs if t["kind"] not in TASK_EXCLUDED_KINDS]


def blocks_per_round(txs: Sequence[dict[str, Any]], rounds: int) -> list[int]:
    """Blocks from round r's global model to round r+1's, for r = 0..t-1."""
    heights: dict[int, int] = {}
    for t in txs:
        if t["kind"] == "sfl-model" and t["round"] is not None:
            heights.setdefault(int(t["round"]), int(t["height"]))
    return [heights[r + 1] - heights[r] for r in range(rounds)
            if r in heights and r + 1 in heights]


def task_metrics(txs: Sequence[dict[str, Any]], rounds: int,
                 workers: Sequence[str]) -> dict[str, Any]:
    """Chain bytes, gas, per-kind counts, ciphertext bytes per upload and blocks per round."""
    mine = task_txs(txs)
    kinds: dict[str, dict[str, int]] = {}
    for t in mine:
        row = kinds.setdefault(t["kind"], {"count": 0, "bytes": 0, "gas": 0})
        row["count"] += 1
        row["bytes"] += int(t["size"])
        row["gas"] += int(t["gas"])
    submits = sum(1 for t in mine if t["kind"] == "sfl-submit")
    worker_set = set(workers)
    bundle_bytes = sum(int(t.get("blob_bytes", 0)) for t in mine
                       if t["kind"] == "blob-part" and t["sender"] in worker_set)
    per_round = blocks_per_round(mine, rounds)
    chain_bytes = sum(int(t["size"]) for t in mine)
    return {
        "chain_bytes": chain_bytes,
        "chain_bytes_per_round": chain_bytes / rounds if rounds else None,
        "gas": sum(int(t["gas"]) for t in mine),
        "kinds": kinds,
        "submits": submits,
        "ciphertext_bytes": bundle_bytes // submits if submits else None,
        "blocks_per_round": per_round,
        "blocks_per_round_mean": statistics.fmean(per_round) if per_round else None,
    }


def rss_max(rss: dict[str, dict[str, float]]) -> float | None:
    """The largest daemon peak RSS (MB) of a run."""
    return max((v["daemon"] for v in rss.values()), default=None)


def e2e_rows(wall: float | None, sp: dict[str, float] | None, flower: dict[str, Any],
             setup_s: float | None = None) -> list[list[str]]:
    """Rows of the end-to-end table: ours, the paper's, Flower deployment. Both walls leave
    out process start-up (shown apart when known)."""
    setup = f" (+ {setup_s:.1f} s start-up, keys)" if setup_s is not None else ""
    sp = sp or {}
    flower_s = flower.get("wall_s")
    flower_cell = fmt(flower_s, 1, " s") if flower_s is not None else flower.get("status", "-")
    if flower.get("startup_s") is not None:
        flower_cell += f" (+ {flower['startup_s']:.1f} s start-up)"
    speed = ratio(flower_s, wall)
    return [
        ["crowdmesh (5 daemons, full crypto + proofs)", fmt(wall, 2, " s") + setup,
         fmt(sp.get("fl_s"), 2), fmt(sp.get("crypto_s"), 2), fmt(sp.get("wait_s"), 2),
         f"≤ {TARGET_WALL_S:g} s"],
        ["paper (Ethereum testnet)", fmt(PAPER_WALL_S, 2, " s"), fmt(PAPER_SPLIT["fl_s"]),
         fmt(PAPER_SPLIT["crypto_s"]), fmt(PAPER_SPLIT["wait_s"]), ""],
        ["Flower deployment (SuperLink + SuperNodes)", flower_cell, "", "", "",
         f"ratio {fmt(speed, 1, '×')} (target ≥ {TARGET_SPEEDUP:g}×)"],
    ]


def table1_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Table 1: per dataset, ours (mean ± sd %) beside the paper's figures."""
    rows = []
    for name, r in results.items():
        paper = PAPER_TABLE1.get(name, {})
        if r.get("status") != "ok":
            rows.append([name.upper(), r.get("status", "-"), "", "", "", "", ""])
            continue
        c, b = r["crowdsfl"], r["bpnn"]
        rows.append([name.upper(), str(r["splits"]),
                     f"{100 * c[0]:.2f} ± {100 * c[1]:.2f}", fmt(paper.get("CrowdSFL")),
                     f"{100 * b[0]:.2f} ± {100 * b[1]:.2f}", fmt(paper.get("BP-NN")),
                     r.get("source", "")])
    return rows


def table2_rows(t2: dict[str, Any]) -> list[list[str]]:
    """Table 2: sizes per upload, gas per task, chain bytes per task, each beside the paper."""
    return [
        ["plaintext bytes per upload", fmt(t2.get("plaintext_bytes"), 0),
         fmt(PAPER_PLAINTEXT_B, 0)],
        ["ciphertext bytes per upload", fmt(t2.get("ciphertext_bytes"), 0),
         fmt(PAPER_CIPHERTEXT_B, 0)],
        ["gas per task (Ethereum-equivalent)", fmt(t2.get("gas_per_task"), 0),
         fmt(PAPER_GAS, 0)],
        ["chain bytes per task", fmt(t2.get("chain_bytes"), 0),
         f"(4k+1)·t·S_model = {fmt(t2.get('paper_formula_paper_bytes'), 0)} "
         f"(with our S_model: {fmt(t2.get('paper_formula_bytes'), 0)})"],
    ]


def scale_rows(scale: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The scale table: one row per configuration, or its failure."""
    rows = []
    for name, s in scale.items():
        if s.get("status") != "ok":
            rows.append([name, s.get("status", "-").split(" | ")[0][:160], "", "", ""])
            continue
        late = ""
        if s.get("submits") is not None and s["submits"] < s.get("submits_expected", 0):
            late = f" ({s['submits']}/{s['submits_expected']} uploads landed)"
        rows.append([name, fmt(s.get("round_s"), 2, " s") + late,
                     fmt(s.get("chain_bytes_per_round"), 0),
                     fmt(s.get("blocks_per_round"), 1), fmt(s.get("peak_rss_mb"), 0, " MB")])
    return rows


def hidden_for_bytes(n_inputs: int, n_classes: int, target_bytes: int,
                     max_units: int = 4096) -> tuple[int, ...]:
    """Hidden widths that make a float32 model at least ``target_bytes`` long (by less than one
    unit's weights): one layer if it fits ``max_units`` (the contract's cap per layer), else
    ``max_units`` then a second one."""
    params = -(-target_bytes // 4)
    one = max(1, -(-(params - n_classes) // (n_inputs + 1 + n_classes)))
    if one <= max_units:
        return (one,)
    rest = params - (n_inputs + 1) * max_units - n_classes
    return (max_units, max(1, -(-rest // (max_units + 1 + n_classes))))


def n_params(layers: Sequence[int]) -> int:
    """Weights and biases of a dense network with these layer widths."""
    return sum((a + 1) * b for a, b in itertools.pairwise(layers))


def round_seconds(phases: Sequence[Sequence[Any]], rounds: int) -> float | None:
    """Mean time per round: first ``training`` phase seen → ``final`` seen, over t rounds."""
    start = next((p[0] for p in phases if p[1] == "training"), None)
    end = next((p[0] for p in phases if p[1] in ("final", "settled")), None)
    if start is None or end is None or rounds <= 0:
        return None
    return (float(end) - float(start)) / rounds


def phase_seconds(phases: Sequence[Sequence[Any]]) -> dict[str, float]:
    """Seconds the task spent in each phase (summed over rounds), from the polled timeline."""
    out: dict[str, float] = {}
    for here, nxt in itertools.pairwise(phases):
        out[str(here[1])] = out.get(str(here[1]), 0.0) + float(nxt[0]) - float(here[0])
    return out


def top_kinds(kinds: dict[str, dict[str, int]], key: str, n: int = 4) -> str:
    """The ``n`` transaction kinds with the most ``key`` (bytes or gas), as one cell."""
    total = sum(v[key] for v in kinds.values()) or 1
    best = sorted(kinds.items(), key=lambda kv: -kv[1][key])[:n]
    return ", ".join(f"{k} {100 * v[key] / total:.0f}%" for k, v in best)


def _trigger_heights(txs: Sequence[dict[str, Any]], rounds: int) -> dict[str, dict[int, int]]:
    """The block whose arrival starts each step, by step and round."""
    def last(kind: str, r: int | None) -> int | None:
        hs = [int(t["height"]) for t in txs if t["kind"] == kind and t["round"] == r]
        return max(hs) if hs else None

    out: dict[str, dict[int, int]] = {"train": {}, "blind": {}, "evaluate": {}, "model": {}}
    joins = [int(t["height"]) for t in txs if t["kind"] == "sfl-join"]
    if joins:
        out["model"][0] = max(joins)
    for r in range(rounds):
        for step, kind, at in (("train", "sfl-model", r), ("blind", "sfl-submit", r),
                               ("evaluate", "sfl-blinded", r), ("model", "sfl-select", r)):
            h = last(kind, at)
            if h is not None:
                out[step][r + 1 if step == "model" else r] = h
    return out


def log_spans(logs: dict[int, list[tuple[float, str, dict[str, str]]]],
              txs: Sequence[dict[str, Any]], rounds: int, req: int = 0, csp: int = 1
              ) -> dict[str, float]:
    """Seconds of each daemon step on the critical path, from the daemons' own log lines: the
    step's line (``sfl-submitting``, ``sfl-blinded``, ``sfl-scored``, ``sfl-model-posting``)
    minus that node's ``block-connected`` line for the block that triggered it. That is the
    job plus its dispatch (an upper bound on the job); workers: the slowest per round."""
    heights = _trigger_heights(txs, rounds)
    ends = {"sfl-submitting": "train", "sfl-blinded": "blind", "sfl-scored": "evaluate",
            "sfl-model-posting": "model"}
    per: dict[str, dict[int, float]] = {s: {} for s in ends.values()}
    for node, rows in logs.items():
        connected = {}
        for ts, event, f in rows:
            if event == "block-connected" and "height" in f:
                connected.setdefault(int(f["height"]), ts)
        for ts, event, f in rows:
            step = ends.get(event)
            if step is None or "round" not in f:
                continue
            if (step == "train") == (node in (req, csp)):
                continue  # a worker's line on the requester/CSP, or the reverse: not ours
            r = int(f["round"])
            h = heights[step].get(r)
            if h is None or h not in connected or ts < connected[h]:
                continue
            per[step][r] = max(per[step].get(r, 0.0), ts - connected[h])
    out = {f"{step}_s": sum(v.values()) for step, v in per.items()}
    out["total_s"] = sum(out.values())
    return out
