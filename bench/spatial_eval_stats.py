"""Vote mixes, the formula models and the aggregation and rendering of the protocol sweep of
bench/spatial_eval.py (SPATIAL.md §4 precision/recall, §5 A2(iv)).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from spatial_eval_table1 import _mean_sd, pm

# -- the protocol ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mix:
    """Shares of honest, newbie and malicious (always-confirm) users, and error rates."""

    name: str
    honest: float
    newbie: float
    malicious: float
    honest_err: float = 0.05
    newbie_err: float = 0.30

    def p_confirm(self, true_report: bool) -> float:
        """Probability that one random user's vote confirms (the formula's per-vote model)."""
        wrong = self.honest * self.honest_err + self.newbie * self.newbie_err
        right = self.honest + self.newbie - wrong
        return (right if true_report else wrong) + self.malicious


MIXES = (Mix("100/0/0", 1.0, 0.0, 0.0), Mix("70/20/10", 0.7, 0.2, 0.1),
         Mix("50/30/20", 0.5, 0.3, 0.2), Mix("40/20/40", 0.4, 0.2, 0.4))
KS = (3, 5, 7, 9)
FRACS = (0.10, 0.40)
A2_MIXES = (Mix("80/0/20 exact", 0.8, 0.0, 0.2, honest_err=0.0), Mix("80/0/20", 0.8, 0.0, 0.2))
A2_K = 5
SECTION4 = {  # SPATIAL.md §4 "realistic filter" rows: P(rec|T), P(rec|F), prec@10, prec@40
    ("100/0/0", 3): (0.9928, 0.0073, 0.999, 0.995),
    ("70/20/10", 3): (0.9746, 0.0992, 0.989, 0.936),
    ("70/20/10", 7): (0.9977, 0.0306, 0.997, 0.980),
    ("50/30/20", 5): (0.9873, 0.1835, 0.980, 0.890),
    ("40/20/40", 9): (0.9997, 0.4509, 0.952, 0.769),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One protocol configuration within a (seed, K) family: a mix and an incorrect share."""

    mix: Mix
    frac_false: float

    @property
    def key(self) -> str:
        return f"{self.mix.name}@{round(self.frac_false * 100)}"


def binom_tail(p: float, k: int) -> float:
    """P(strictly more than k/2 of k independent votes confirm), each with probability p."""
    return sum(math.comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(k // 2 + 1, k + 1))


def formula(mix: Mix, k: int, frac: float) -> dict[str, float]:
    """SPATIAL.md §4's formula: independent per-vote draws, majority of K."""
    pt, pf = binom_tail(mix.p_confirm(True), k), binom_tail(mix.p_confirm(False), k)
    rec_t, rec_f = (1 - frac) * pt, frac * pf
    return {"p_rec_true": pt, "p_rec_false": pf, "precision": rec_t / (rec_t + rec_f),
            "recall": pt}


@functools.lru_cache(maxsize=1 << 16)
def pool_confirm(n_mal: int, n_new: int, n_hon: int, k: int, p_new: float,
                 p_hon: float) -> float:
    """P(majority of K confirms) when the K members are a uniformly random K-subset of a pool
    of n_mal always-confirm, n_new newbie (confirm w.p. p_new) and n_hon honest (p_hon) users.

    This is what the VRF lottery does (the lowest K tickets are a uniform K-subset of the
    eligible users), so it is the exact expectation for the measured committee decisions; the
    binomial formula instead assumes an infinite pool with the global shares.
    """
    total, need_all = n_mal + n_new + n_hon, k // 2 + 1
    out = 0.0
    for a in range(min(k, n_mal) + 1):
        for b in range(min(k - a, n_new) + 1):
            c = k - a - b
            if c > n_hon:
                continue
            weight = math.comb(n_mal, a) * math.comb(n_new, b) * math.comb(n_hon, c)
            need = need_all - a
            if need <= 0:
                out += weight
                continue
            tail = sum(math.comb(b, x) * p_new**x * (1 - p_new) ** (b - x)
                       * math.comb(c, y) * p_hon**y * (1 - p_hon) ** (c - y)
                       for x in range(b + 1) for y in range(c + 1) if x + y >= need)
            out += weight * tail
    return out / math.comb(total, k)


# -- aggregation ----------------------------------------------------------------------------


def rates(entry: dict[str, Any]) -> dict[str, float]:
    """Per-seed rates of one configuration."""
    false, rec, conf, few = entry["false"], entry["recorded"], entry["confirmed"], entry["too_few"]
    true = ~false
    n_t, n_f = int(true.sum()), int(false.sum())
    rec_t, rec_f = int((rec & true).sum()), int((rec & false).sum())
    decided = ~few
    out = {
        "p_rec_true": rec_t / n_t if n_t else math.nan,
        "p_rec_false": rec_f / n_f if n_f else math.nan,
        "precision": rec_t / (rec_t + rec_f) if rec_t + rec_f else math.nan,
        "recall": rec_t / n_t if n_t else math.nan,
        "committee_true": _ratio(conf & true, decided & true),
        "committee_false": _ratio(conf & false, decided & false),
        "too_few": float(few.mean()),
        "pool_true": entry["pool_model"]["committee_true"],
        "pool_false": entry["pool_model"]["committee_false"],
        "chain_lost": float((conf & ~rec).sum() / max(1, conf.sum())),
        "n_false": n_f, "rec_false": rec_f,
        "committee_false_n": int((decided & false).sum()),
        "committee_false_yes": int((conf & false).sum()),
    }
    if "review" in entry:
        rv = entry["review"]
        for i, metric in enumerate(("m1", "m2")):
            out[f"{metric}_recorded_ratio"] = rv["recorded"][i] / rv["all"][i]
            out[f"{metric}_perfect_ratio"] = rv["perfect"][i] / rv["all"][i]
    return out


def _ratio(hits: np.ndarray, among: np.ndarray) -> float:
    n = int(among.sum())
    return int(hits.sum()) / n if n else math.nan


def aggregate(families: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(config key, K) → mean and sd over seeds of every rate, pooled counts, codes."""
    per: dict[tuple[str, int], list[dict[str, float]]] = {}
    codes: dict[tuple[str, int], Counter[str]] = {}
    for fam in families:
        for entry in fam["configs"]:
            key = (entry["config"], fam["k"])
            per.setdefault(key, []).append(rates(entry))
            codes.setdefault(key, Counter()).update(entry["codes"])
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for key, rows in per.items():
        agg: dict[str, Any] = {"seeds": len(rows), "codes": dict(codes[key])}
        for name in rows[0]:
            vals = [r[name] for r in rows if not math.isnan(r[name])]
            if name in ("n_false", "rec_false", "committee_false_n", "committee_false_yes"):
                agg[name] = sum(int(v) for v in vals)
            elif vals:
                agg[name], agg[f"{name}_sd"] = _mean_sd(vals)
        out[key] = agg
    return out


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# -- output ---------------------------------------------------------------------------------



def _three(*values: float, digits: int = 4) -> str:
    return " / ".join("-" if math.isnan(v) else f"{v:.{digits}f}" for v in values)


def render_protocol(console: Console, agg: dict[tuple[str, int], dict[str, Any]],
                    run: dict[str, Any]) -> None:
    for frac in FRACS:
        pct = round(frac * 100)
        table = Table(title=(
            f"Real protocol, {pct} % incorrect — {run['seeds']} seeds × {run['reports']} "
            f"reports, {run['users']} users, R = {run['radius_m']} m (mean {run['eligible']:.1f}"
            f" eligible/report), pair cap {run['pair_cap']}. formula = SPATIAL.md §4 binomial; "
            "pool = the same vote model over each report's actual eligible pool; committee = "
            "committee.decide over reports with ≥ K commits; recorded = on chain (mean ± sd "
            "over seeds)"))
        for col in ("mix", "K", "P(rec|T) formula / pool / committee", "P(rec|T) recorded",
                    "P(rec|F) formula / pool / committee", "P(rec|F) recorded",
                    "precision formula", "precision recorded", "recall recorded", "too few",
                    "lost on chain"):
            table.add_column(col, justify="right")
        for mix in MIXES:
            for k in KS:
                a = agg.get((f"{mix.name}@{pct}", k))
                if a is None:
                    continue
                f = formula(mix, k, frac)
                table.add_row(
                    mix.name, str(k),
                    _three(f["p_rec_true"], a["pool_true"], a["committee_true"]),
                    pm(a["p_rec_true"], a["p_rec_true_sd"], 4),
                    _three(f["p_rec_false"], a["pool_false"], a["committee_false"]),
                    pm(a["p_rec_false"], a["p_rec_false_sd"], 4),
                    f"{f['precision']:.3f}", pm(a["precision"], a["precision_sd"]),
                    pm(a["recall"], a["recall_sd"]), f"{a['too_few']:.3f}",
                    f"{a['chain_lost']:.3f}")
        console.print(table)
    s4 = Table(title="SPATIAL.md §4 formula rows beside the measured ones (prec@10 / prec@40)")
    for col in ("mix", "K", "§4 P(rec|T)", "meas P(rec|T)@10", "§4 P(rec|F)",
                "meas P(rec|F)@40", "§4 precision", "measured precision"):
        s4.add_column(col, justify="right")
    for (name, k), (pt, pf, p10, p40) in SECTION4.items():
        a10, a40 = agg.get((f"{name}@10", k)), agg.get((f"{name}@40", k))
        if a10 is None or a40 is None:
            continue
        s4.add_row(name, str(k), f"{pt:.4f}", f"{a10['p_rec_true']:.4f}", f"{pf:.4f}",
                   f"{a40['p_rec_false']:.4f}", f"{p10:.3f} / {p40:.3f}",
                   f"{a10['precision']:.3f} / {a40['precision']:.3f}")
    console.print(s4)


def claims(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """[P]'s "accuracy +40 %" and "review time −30 %" at 40 % incorrect, as measured."""
    out: dict[str, Any] = {}
    for mix in MIXES:
        for k in KS:
            a = agg.get((f"{mix.name}@40", k))
            if a is None or "m1_recorded_ratio" not in a:
                continue
            out[f"{mix.name}/K={k}"] = {
                "accuracy_points": 100 * (a["precision"] - 0.60),
                "incorrect_kept_out": 1 - a["p_rec_false"],
                "m1_time_change": a["m1_recorded_ratio"] - 1,
                "m2_time_change": a["m2_recorded_ratio"] - 1,
                "m1_perfect_change": a["m1_perfect_ratio"] - 1,
                "m2_perfect_change": a["m2_perfect_ratio"] - 1,
            }
    return out


def render_claims(console: Console, cl: dict[str, Any]) -> None:
    table = Table(title=(
        "[P]'s claims at 40 % incorrect, measured: accuracy of the recorded set vs the 60 % "
        "submitted ([P]: +40 points), review time vs all 1000 submitted ([P]: −30.6 %)"))
    for col in ("mix / K", "accuracy (points)", "incorrect kept out", "M1 time", "M2 time",
                "perfect filter M1 / M2"):
        table.add_column(col, justify="right")
    for name, c in cl.items():
        table.add_row(name, f"{c['accuracy_points']:+.1f}", f"{c['incorrect_kept_out']:.3f}",
                      f"{100 * c['m1_time_change']:+.1f} %", f"{100 * c['m2_time_change']:+.1f} %",
                      f"{100 * c['m1_perfect_change']:+.1f} % / "
                      f"{100 * c['m2_perfect_change']:+.1f} %")
    console.print(table)


def a2_check(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """A2(iv): colluder share 0.2, K = 5, every report false → rate recorded vs binomial."""
    out: dict[str, Any] = {}
    for mix in A2_MIXES:
        a = agg.get((f"{mix.name}@100", A2_K))
        if a is None:
            continue
        lo, hi = wilson(a["rec_false"], a["n_false"])
        clo, chi = wilson(a["committee_false_yes"], a["committee_false_n"])
        out[mix.name] = {
            "binomial": binom_tail(mix.p_confirm(False), A2_K),
            "recorded": a["rec_false"] / a["n_false"], "recorded_ci95": [lo, hi],
            "recorded_sd_over_seeds": a["p_rec_false_sd"],
            "committee": a["committee_false_yes"] / max(1, a["committee_false_n"]),
            "committee_ci95": [clo, chi], "reports": a["n_false"], "too_few": a["too_few"],
            "pool_model": a["pool_false"],
            "codes": a["codes"],
        }
    return out


def render_a2(console: Console, a2: dict[str, Any]) -> None:
    table = Table(title="A2(iv): colluders c = 0.2 always confirm, K = 5, all reports false")
    for col in ("honest users", "binomial tail", "pool model", "committee confirms (95 % CI)",
                "recorded on chain (95 % CI)", "sd over seeds", "reports", "chain rejects"):
        table.add_column(col, justify="right")
    for name, r in a2.items():
        err = "error 0" if "exact" in name else "error 5 %"
        table.add_row(err, f"{r['binomial']:.4f}", f"{r['pool_model']:.4f}",
                      f"{r['committee']:.4f} [{r['committee_ci95'][0]:.4f}, "
                      f"{r['committee_ci95'][1]:.4f}]",
                      f"{r['recorded']:.4f} [{r['recorded_ci95'][0]:.4f}, "
                      f"{r['recorded_ci95'][1]:.4f}]",
                      f"{r['recorded_sd_over_seeds']:.4f}", str(r["reports"]),
                      ", ".join(f"{c} {n}" for c, n in sorted(r["codes"].items())) or "-")
    console.print(table)


def render_codes(console: Console, agg: dict[tuple[str, int], dict[str, Any]]) -> None:
    totals: dict[int, Counter[str]] = {}
    for (_, k), a in agg.items():
        totals.setdefault(k, Counter()).update(a["codes"])
    table = Table(title="Confirmed tallies the chain refused, all configurations (reject codes)")
    table.add_column("K", justify="right")
    table.add_column("codes")
    for k in sorted(totals):
        table.add_row(str(k), ", ".join(f"{c} {n}" for c, n in totals[k].most_common()) or "-")
    console.print(table)


def _jsonable(agg: dict[tuple[str, int], dict[str, Any]], field: str,
              fracs: Sequence[float] = FRACS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mix in MIXES:
        for k in KS:
            row = {}
            for frac in fracs:
                a = agg.get((f"{mix.name}@{round(frac * 100)}", k))
                if a is not None and field in a:
                    row[f"incorrect_{round(frac * 100)}"] = a[field]
                    row[f"incorrect_{round(frac * 100)}_sd"] = a[f"{field}_sd"]
            if row:
                out.setdefault(mix.name, {})[f"K={k}"] = row
    return out


def _protocol_json(agg: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (key, k), a in sorted(agg.items()):
        name, pct = key.split("@")
        mix = next((m for m in (*MIXES, *A2_MIXES) if m.name == name), None)
        entry = {n: v for n, v in a.items()}
        if mix is not None:
            entry["formula"] = formula(mix, k, int(pct) / 100) if int(pct) < 100 else {
                "p_rec_false": binom_tail(mix.p_confirm(False), k)}
        out.setdefault(name, {}).setdefault(f"K={k}", {})[f"incorrect_{pct}"] = entry
    return out
