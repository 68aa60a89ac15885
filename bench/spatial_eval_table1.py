"""Table 1 of [P] §6.2 replicated offline (SPATIAL.md §4), for bench/spatial_eval.py: the
scenario, the geometry (haversine × circuity, nearest facility, M1 and M2 review times), the
seeds' table with calibrated speeds, the figure 4 / 5 data, and their rendering.

numpy only; nothing here touches the chain.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdmesh.chain.contracts.spatial import geo

# -- the scenario of [P] §6.2 ---------------------------------------------------------------

LAT_E6 = (35_050_000, 35_400_000)
LON_E6 = (-81_000_000, -80_650_000)
STEPS = (1000, 900, 800, 700, 600)
PAPER_MIN = {1000: 1651.99, 900: 1573.74, 800: 1329.33, 700: 1238.65, 600: 1146.84}
PAPER_RATIO = {n: PAPER_MIN[n] / PAPER_MIN[1000] for n in STEPS}
CIRCUITIES = (1.2, 1.3, 1.4)
MAIN_CIRCUITY = 1.3
FIXED_KMH = 30.0  # the sensitivity column of the circuity sweep
N_FACILITIES = 100
TWO_OPT_PASSES = 30
PROTOTYPE = {  # SPATIAL.md §4, 10 seeds, circuity 1.3: (M1 ratio, M2 ratio)
    1000: (1.000, 1.000), 900: (0.901, 0.942), 800: (0.799, 0.881), 700: (0.702, 0.817),
    600: (0.602, 0.745)}
_E6 = 1_000_000


# -- geometry -------------------------------------------------------------------------------


def random_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points in the box, as int64 micro-degrees (the network's point type)."""
    lat = rng.integers(LAT_E6[0], LAT_E6[1], n, endpoint=True)
    lon = rng.integers(LON_E6[0], LON_E6[1], n, endpoint=True)
    return lat.astype(np.int64), lon.astype(np.int64)


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """``geo.distance_m`` vectorised (broadcasting): same radius, same formula, integer metres.

    Coordinate differences are taken in exact integers as in ``geo``; numpy's sin/cos may
    differ from libm in the last ulp, so a result can be 1 m off ``geo.distance_m`` (tested).
    """
    lat1, lon1, lat2, lon2 = (np.asarray(v, dtype=np.int64) for v in (lat1, lon1, lat2, lon2))
    rad = math.pi / 180_000_000
    half_dlat = (lat2 - lat1) * rad / 2
    half_dlon = (lon2 - lon1) * rad / 2
    a = np.sin(half_dlat) ** 2 + np.cos(lat1 * rad) * np.cos(lat2 * rad) * np.sin(half_dlon) ** 2
    angle = 2 * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return np.floor(geo.EARTH_RADIUS_M * angle + 0.5)


def nearest_neighbour_path(dist: np.ndarray) -> np.ndarray:
    """An open path from node 0 through every node, always to the nearest unvisited one."""
    n = dist.shape[0]
    path = [0]
    free = np.ones(n, dtype=bool)
    free[0] = False
    for _ in range(n - 1):
        row = np.where(free, dist[path[-1]], np.inf)
        nxt = int(np.argmin(row))
        path.append(nxt)
        free[nxt] = False
    return np.array(path)


def two_opt(path: np.ndarray, dist: np.ndarray, max_passes: int = TWO_OPT_PASSES) -> np.ndarray:
    """Improve an open path with a fixed start (node 0) by segment reversals (first gain
    per start position, at most ``max_passes`` sweeps)."""
    path = path.copy()
    n = len(path)
    for _ in range(max_passes):
        improved = False
        for i in range(1, n - 1):
            a, b = path[i - 1], path[i]
            js = np.arange(i + 1, n)
            c = path[js]
            gain = dist[a, c] - dist[a, b]
            inner = js < n - 1
            d = path[js[inner] + 1]
            gain[inner] += dist[b, d] - dist[c[inner], d]
            j = int(np.argmin(gain))
            if gain[j] < -1e-9:
                path[i:js[j] + 1] = path[i:js[j] + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return path


def path_length(path: np.ndarray, dist: np.ndarray) -> float:
    return float(dist[path[:-1], path[1:]].sum())


def open_route_m(lat: np.ndarray, lon: np.ndarray) -> float:
    """Length (m, great-circle) of an open route from point 0 (the facility) through the rest."""
    if len(lat) <= 1:
        return 0.0
    dist = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    return path_length(two_opt(nearest_neighbour_path(dist), dist), dist)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Facilities, reports and the allocation of each report to its nearest facility."""

    fac_lat: np.ndarray
    fac_lon: np.ndarray
    rep_lat: np.ndarray
    rep_lon: np.ndarray
    facility: np.ndarray  # index of each report's facility
    reach_m: np.ndarray  # great-circle distance report ↔ its facility (m)

    @classmethod
    def build(cls, fac: tuple[np.ndarray, np.ndarray],
              rep: tuple[np.ndarray, np.ndarray]) -> Geometry:
        d = haversine_m(fac[0][:, None], fac[1][:, None], rep[0][None, :], rep[1][None, :])
        facility = np.argmin(d, axis=0)  # a constant circuity keeps the nearest one nearest
        return cls(fac[0], fac[1], rep[0], rep[1], facility,
                   d[facility, np.arange(d.shape[1])])

    def review_m(self, keep: np.ndarray) -> tuple[float, float]:
        """(M1, M2) great-circle metres over the kept reports (× circuity for street metres)."""
        m1 = float(self.reach_m[keep].sum())
        m2 = 0.0
        for f in np.unique(self.facility[keep]):
            mine_ = keep & (self.facility == f)
            lat = np.concatenate(([self.fac_lat[f]], self.rep_lat[mine_]))
            lon = np.concatenate(([self.fac_lon[f]], self.rep_lon[mine_]))
            m2 += open_route_m(lat, lon)
        return m1, m2


def facilities_for(seed: int, n: int = N_FACILITIES) -> tuple[np.ndarray, np.ndarray]:
    return random_points(np.random.default_rng([17, seed]), n)


def table1_seed(seed: int, n_reports: int = 1000,
                steps: Sequence[int] = STEPS) -> dict[str, Any]:
    """One seed of the Table 1 replica: M1/M2 great-circle metres per step, and the
    facility→report distances of the kept reports per step (for Figures 4 and 5)."""
    rng = np.random.default_rng([29, seed])
    geom = Geometry.build(facilities_for(seed), random_points(rng, n_reports))
    removal = rng.permutation(n_reports)  # the first (1000 − N) are the incorrect ones
    out: dict[str, Any] = {"m1": {}, "m2": {}, "reach": {}}
    for n in steps:
        keep = np.zeros(n_reports, dtype=bool)
        keep[removal[n_reports - round(n * n_reports / steps[0]):]] = True
        out["m1"][n], out["m2"][n] = geom.review_m(keep)
        out["reach"][n] = geom.reach_m[keep]
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = list(values)
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def table1(seeds: int, n_reports: int = 1000, steps: Sequence[int] = STEPS,
           circuity: float = MAIN_CIRCUITY) -> dict[str, Any]:
    """The Table 1 replica over ``seeds`` seeds (calibrated to [P]'s 1000-report minutes)."""
    runs = [table1_seed(s, n_reports, steps) for s in range(seeds)]
    first = steps[0]
    rows: dict[str, Any] = {}
    meta: dict[str, Any] = {"seeds": seeds, "reports": n_reports, "facilities": N_FACILITIES,
                            "circuity": circuity, "kmh": {}, "circuity_sweep": {}}
    for metric in ("m1", "m2"):
        km_first = statistics.fmean(r[metric][first] for r in runs) / 1000
        for c in CIRCUITIES:  # speed that makes the mean first-step total 1651.99 min
            meta["circuity_sweep"].setdefault(str(c), {})[f"{metric}_kmh"] = (
                km_first * c / (PAPER_MIN[1000] / 60))
            meta["circuity_sweep"][str(c)][f"{metric}_min_at_{FIXED_KMH:g}kmh"] = _mean_sd(
                [r[metric][first] / 1000 * c / FIXED_KMH * 60 for r in runs])
        kmh = km_first * circuity / (PAPER_MIN[1000] / 60)
        meta["kmh"][metric] = kmh
        for n in steps:
            minutes = [r[metric][n] / 1000 * circuity / kmh * 60 for r in runs]
            ratios = [r[metric][n] / r[metric][first] for r in runs]
            row = rows.setdefault(str(n), {})
            row[f"{metric}_min"], row[f"{metric}_min_sd"] = _mean_sd(minutes)
            row[f"{metric}_ratio"], row[f"{metric}_ratio_sd"] = _mean_sd(ratios)
    for n in steps:
        if n in PAPER_MIN:
            rows[str(n)]["paper_min"] = PAPER_MIN[n]
            rows[str(n)]["paper_ratio"] = PAPER_RATIO[n]
    figures = figure_data(runs, steps, circuity, meta["kmh"]["m1"])
    return {"rows": rows, "meta": meta, "figures": figures}


def figure_data(runs: list[dict[str, Any]], steps: Sequence[int], circuity: float,
                kmh: float) -> dict[str, Any]:
    """Per step, mean over seeds of the reports and of the facility→report minutes (M1 speed)
    per 1 km street-distance interval, summed over all facilities (divide by the facility
    count for per-facility values, as the figures do)."""
    top = max(float(r["reach"][steps[0]].max()) for r in runs) * circuity / 1000
    edges = np.arange(0, math.ceil(top) + 1)
    out: dict[str, Any] = {"bin_km": edges[:-1].tolist(), "reports": {}, "minutes": {},
                           "facilities": N_FACILITIES}
    for n in steps:
        counts, minutes = [], []
        for r in runs:
            km = r["reach"][n] * circuity / 1000
            counts.append(np.histogram(km, edges)[0])
            minutes.append(np.histogram(km, edges, weights=km / kmh * 60)[0])
        out["reports"][str(n)] = np.mean(counts, axis=0).round(3).tolist()
        out["minutes"][str(n)] = np.mean(minutes, axis=0).round(3).tolist()
    return out



# -- output ---------------------------------------------------------------------------------

def pm(mean: float, sd: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def render_table1(console: Console, t1: dict[str, Any]) -> None:
    meta, rows = t1["meta"], t1["rows"]
    table = Table(title=(
        f"Table 1 replica — {meta['seeds']} seeds, {meta['facilities']} facilities, circuity "
        f"{meta['circuity']}; calibrated speeds M1 {meta['kmh']['m1']:.1f} km/h, M2 "
        f"{meta['kmh']['m2']:.1f} km/h"))
    for col in ("reports", "[P] min", "[P] ratio", "M1 min", "M1 ratio", "M2 min", "M2 ratio",
                "§4 proto M1/M2"):
        table.add_column(col, justify="right")
    for n, row in rows.items():
        proto = PROTOTYPE.get(int(n))
        table.add_row(
            n, f"{row.get('paper_min', math.nan):.2f}", f"{row.get('paper_ratio', math.nan):.3f}",
            pm(row["m1_min"], row["m1_min_sd"], 1), pm(row["m1_ratio"], row["m1_ratio_sd"]),
            pm(row["m2_min"], row["m2_min_sd"], 1), pm(row["m2_ratio"], row["m2_ratio_sd"]),
            f"{proto[0]:.3f} / {proto[1]:.3f}" if proto else "-")
    console.print(table)
    sweep = Table(title="Circuity sweep (ratios and calibrated minutes do not depend on it)")
    for col in ("circuity", "M1 km/h", "M2 km/h", f"M1 min @ {FIXED_KMH:g} km/h",
                f"M2 min @ {FIXED_KMH:g} km/h"):
        sweep.add_column(col, justify="right")
    for c, row in meta["circuity_sweep"].items():
        fixed = f"_min_at_{FIXED_KMH:g}kmh"
        sweep.add_row(c, f"{row['m1_kmh']:.1f}", f"{row['m2_kmh']:.1f}",
                      pm(*row[f"m1{fixed}"], 0), pm(*row[f"m2{fixed}"], 0))
    console.print(sweep)


def plots(t1: dict[str, Any], out_dir: Path) -> list[Path] | str:
    """Figures 4 and 5 analogues; the reason if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots skipped: matplotlib not installed"
    fig_data = t1["figures"]
    per = fig_data["facilities"]
    bins = np.array(fig_data["bin_km"])
    steps = list(fig_data["reports"])
    width = 0.8 / len(steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, key, ylabel in (
            ("spatial_fig4.png", "reports", "reports per facility"),
            ("spatial_fig5.png", "minutes", "review time per facility (min, M1 speed)")):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for j, n in enumerate(steps):
            ax.bar(bins + j * width, np.array(fig_data[key][n]) / per, width,
                   label=f"{n} reports")
        ax.set_xticks(bins + 0.4 - width / 2, [f"{b}-{b + 1}" for b in bins], rotation=45)
        ax.set_xlabel("street distance facility → report (km)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{'Fig. 4' if key == 'reports' else 'Fig. 5'} analogue: mean over "
                     f"{per} facilities and {t1['meta']['seeds']} seeds, circuity "
                     f"{t1['meta']['circuity']}")
        ax.legend()
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
