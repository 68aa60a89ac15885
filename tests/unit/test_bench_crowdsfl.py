"""Smoke test of bench/crowdsfl_tables.py: the pure table functions only (no daemon)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _tables():
    spec = importlib.util.spec_from_file_location("crowdsfl_tables", BENCH / "crowdsfl_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crowdsfl_tables", module)
    spec.loader.exec_module(module)
    return module


T = _tables()
WORKERS = ["aa", "bb", "cc"]


def _txs(rounds: int = 2) -> list[dict]:
    txs = [{"kind": "register-key", "size": 500, "gas": 9, "height": 1, "sender": "rq",
            "round": None},
           {"kind": "sfl-create", "size": 266, "gas": 900, "height": 2, "sender": "rq",
            "round": None}]
    for r in range(rounds + 1):
        base = 2 + 6 * r
        txs.append({"kind": "sfl-model", "size": 198, "gas": 42, "height": base + 1,
                    "sender": "rq", "round": r})
        if r == rounds:
            break
        for w in WORKERS:
            txs.append({"kind": "blob-part", "size": 1500, "gas": 60, "height": base + 2,
                        "sender": w, "round": None, "blob_bytes": 1400})
            txs.append({"kind": "sfl-submit", "size": 301, "gas": 63, "height": base + 3,
                        "sender": w, "round": r})
    return txs


def test_task_metrics_counts_the_task_and_not_the_key_registration():
    m = T.task_metrics(_txs(), 2, WORKERS)
    assert m["blocks_per_round"] == [6, 6] and m["blocks_per_round_mean"] == 6
    assert m["submits"] == 6 and m["ciphertext_bytes"] == 1400
    assert "register-key" not in m["kinds"]
    assert m["chain_bytes"] == 266 + 3 * 198 + 6 * (1500 + 301)
    assert m["gas"] == 900 + 3 * 42 + 6 * (60 + 63)
    assert m["chain_bytes_per_round"] == m["chain_bytes"] / 2


def test_split_median_ratio_and_formula():
    assert T.split(10.0, 3.0, 2.0) == {"fl_s": 3.0, "crypto_s": 2.0, "wait_s": 5.0}
    assert T.split(1.0, 3.0, 2.0)["wait_s"] == 0.0
    runs = [{"status": "ok", "wall_s": w} for w in (3.0, 1.0, 2.0)]
    runs.append({"status": "failed: x"})
    assert T.median_run(runs)["wall_s"] == 2.0
    assert T.median_run([{"status": "failed"}]) is None
    assert T.ratio(50.0, 5.0) == 10.0 and T.ratio(None, 5.0) is None
    assert T.paper_chain_bytes(3, 5, 690) == 13 * 5 * 690
    mean, sd = T.mean_sd([0.9, 0.92, 0.94])
    assert math.isclose(mean, 0.92) and math.isclose(sd, 0.02)
    assert T.mean_sd([0.5]) == (0.5, 0.0)


def test_rows_show_missing_flower_and_failures_honestly():
    rows = T.e2e_rows(4.0, {"fl_s": 1.0, "crypto_s": 1.0, "wait_s": 2.0},
                      {"status": "not installed"})
    assert rows[2][1] == "not installed" and "-" in rows[2][5]
    rows = T.e2e_rows(4.0, None, {"status": "ok", "wall_s": 60.0})
    assert rows[2][1] == "60.0 s" and "15.0×" in rows[2][5]
    rows = T.e2e_rows(4.0, None, {"status": "ok", "wall_s": 60.0, "startup_s": 7.0}, 20.0)
    assert rows[2][1] == "60.0 s (+ 7.0 s start-up)" and "20.0 s start-up" in rows[0][1]
    scale = T.scale_rows({"1 MiB": {"status": "failed: block too large"},
                          "k10": {"status": "ok", "round_s": 3.5, "chain_bytes_per_round": 9e4,
                                  "blocks_per_round": 6.0, "peak_rss_mb": 150.0}})
    assert scale[0][1].startswith("failed") and scale[1][1] == "3.50 s"
    t1 = T.table1_rows({"bcwd": {"status": "ok", "splits": 10, "crowdsfl": (0.95, 0.01),
                                 "bpnn": (0.96, 0.02)}, "hdd": {"status": "not found"}})
    assert t1[0][2] == "95.00 ± 1.00" and t1[0][3] == "91.42" and t1[1][1] == "not found"
    t2 = T.table2_rows({"plaintext_bytes": 296, "ciphertext_bytes": 1400,
                        "gas_per_task": 10**6, "chain_bytes": 5000,
                        "paper_formula_bytes": 4500})
    assert t2[0][1:] == ["296", "331"] and t2[2][2] == "455,016"


def test_round_seconds_and_model_width():
    phases = [(0.0, "pending", 0), (0.5, "joining", 0), (1.0, "training", 0),
              (5.0, "training", 1), (9.0, "final", 1), (9.5, "settled", 1)]
    assert T.round_seconds(phases, 2) == 4.0
    assert T.round_seconds([(0.0, "joining", 0)], 2) is None
    hidden = T.hidden_for_bytes(9, 2, 1 << 20)
    assert len(hidden) == 2 and max(hidden) <= 4096
    assert 0 <= 4 * T.n_params((9, *hidden, 2)) - (1 << 20) < 4 * 4100
    assert T.hidden_for_bytes(9, 2, 4000) == (84,) and T.n_params((9, 6, 2)) == 74


def test_phase_seconds_and_top_kinds():
    phases = [(0.0, "joining", 0), (1.0, "training", 0), (3.0, "blinded", 0),
              (4.0, "training", 1), (7.0, "settled", 1)]
    assert T.phase_seconds(phases) == {"joining": 1.0, "training": 5.0, "blinded": 1.0}
    kinds = {"a": {"gas": 30, "bytes": 1}, "b": {"gas": 70, "bytes": 3}}
    assert T.top_kinds(kinds, "gas") == "b 70%, a 30%"


def test_log_spans_time_each_step_from_its_trigger_block():
    txs = [{"kind": "sfl-join", "height": 2, "round": None},
           {"kind": "sfl-model", "height": 3, "round": 0},
           {"kind": "sfl-submit", "height": 4, "round": 0},
           {"kind": "sfl-blinded", "height": 5, "round": 0},
           {"kind": "sfl-select", "height": 6, "round": 0},
           {"kind": "sfl-model", "height": 7, "round": 1}]

    def node(blocks: dict[int, float], lines: list[tuple[float, str, int]]) -> list:
        rows = [(ts, "block-connected", {"height": str(h)}) for h, ts in blocks.items()]
        return rows + [(ts, event, {"round": str(r)}) for ts, event, r in lines]

    logs = {
        0: node({2: 10.0, 5: 20.0, 6: 30.0}, [(10.5, "sfl-model-posting", 0),
                                              (21.0, "sfl-scored", 0),
                                              (30.2, "sfl-model-posting", 1)]),
        1: node({4: 15.0}, [(17.0, "sfl-blinded", 0)]),
        2: node({3: 11.0}, [(12.0, "sfl-submitting", 0)]),
        3: node({3: 11.5}, [(14.0, "sfl-submitting", 0)]),
    }
    spans = T.log_spans(logs, txs, 1)
    assert math.isclose(spans["train_s"], 2.5) and math.isclose(spans["blind_s"], 2.0)
    assert math.isclose(spans["evaluate_s"], 1.0) and math.isclose(spans["model_s"], 0.7)
    assert math.isclose(spans["total_s"], 6.2)
