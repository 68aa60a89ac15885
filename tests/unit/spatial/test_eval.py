"""Smoke tests of bench/spatial_eval.py (SPATIAL.md §4): tiny sizes, a few seconds in all."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.protocol import Commit, commit_salt
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng

_PATH = Path(__file__).resolve().parents[3] / "bench" / "spatial_eval.py"


def _load():
    if "spatial_eval" in sys.modules:
        return sys.modules["spatial_eval"]
    spec = importlib.util.spec_from_file_location("spatial_eval", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["spatial_eval"] = module  # dataclasses and pickling look the module up
    spec.loader.exec_module(module)
    return module


se = _load()


def test_vectorised_haversine_is_geo_distance_to_the_metre():
    rng = np.random.default_rng(3)
    lat1, lon1 = se.random_points(rng, 400)
    lat2, lon2 = se.random_points(rng, 400)
    fast = se.haversine_m(lat1, lon1, lat2, lon2)
    exact = np.array([geo.distance_m(int(a), int(b), int(c), int(d))
                      for a, b, c, d in zip(lat1, lon1, lat2, lon2, strict=True)])
    assert np.abs(fast - exact).max() <= 1
    assert (fast == exact).mean() >= 0.99
    assert se.haversine_m(lat1[0], lon1[0], lat1[0], lon1[0]) == 0


def test_two_opt_never_lengthens_and_solves_points_on_a_line():
    rng = np.random.default_rng(5)
    lat, lon = se.random_points(rng, 14)
    dist = se.haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    nn = se.nearest_neighbour_path(dist)
    assert sorted(nn.tolist()) == list(range(14)) and nn[0] == 0
    better = se.two_opt(nn, dist)
    assert better[0] == 0 and sorted(better.tolist()) == list(range(14))
    assert se.path_length(better, dist) <= se.path_length(nn, dist)
    # the facility at one end of a line of reports: the best open route is the line itself
    line_lat = np.array([35_100_000, 35_300_000, 35_150_000, 35_250_000, 35_200_000])
    line_lon = np.full(5, -80_800_000)
    span = geo.distance_m(35_100_000, -80_800_000, 35_300_000, -80_800_000)
    assert se.open_route_m(line_lat, line_lon) == pytest.approx(span, abs=2)


def test_table1_calibrates_the_first_step_and_removal_lowers_both_metrics():
    steps = (200, 180, 160, 140, 120)
    t1 = se.table1(2, n_reports=200, steps=steps)
    rows = t1["rows"]
    for metric in ("m1", "m2"):
        assert rows["200"][f"{metric}_min"] == pytest.approx(1651.99)
        assert rows["200"][f"{metric}_ratio"] == 1.0
        ratios = [rows[str(n)][f"{metric}_ratio"] for n in steps]
        assert ratios == sorted(ratios, reverse=True)
    # M1 is linear in the reports kept; a route per facility shrinks more slowly
    assert rows["120"]["m1_ratio"] == pytest.approx(0.6, abs=0.06)
    assert rows["120"]["m2_ratio"] > rows["120"]["m1_ratio"]
    sweep = t1["meta"]["circuity_sweep"]
    assert sweep["1.4"]["m1_kmh"] / sweep["1.2"]["m1_kmh"] == pytest.approx(1.4 / 1.2)
    assert sum(t1["figures"]["reports"]["200"]) == pytest.approx(200)


def test_formula_matches_spatial_md_section_4():
    for (name, k), (pt, pf, p10, p40) in se.SECTION4.items():
        mix = next(m for m in se.MIXES if m.name == name)
        assert se.formula(mix, k, 0.1)["p_rec_true"] == pytest.approx(pt, abs=6e-5)
        assert se.formula(mix, k, 0.1)["p_rec_false"] == pytest.approx(pf, abs=6e-5)
        assert se.formula(mix, k, 0.1)["precision"] == pytest.approx(p10, abs=6e-4)
        assert se.formula(mix, k, 0.4)["precision"] == pytest.approx(p40, abs=6e-4)
    assert se.binom_tail(0.2, 5) == pytest.approx(0.058, abs=5e-4)  # A2(iv)
    # a pool as large as the committee has no choice: the tail is certain or impossible
    assert se.pool_confirm(3, 0, 2, 5, 0.3, 0.0) == 1.0
    assert se.pool_confirm(2, 0, 3, 5, 0.3, 0.0) == 0.0


def test_a_commit_reusing_the_proof_is_the_one_commit_create_makes():
    key = AccountKey.generate(DeterministicRng(b"eval-commit"))
    rid, beacon = bytes(range(32)), bytes(32)
    salt = commit_salt(key, rid)
    first = Commit.create(key, rid, beacon, 0, salt)
    assert se.same_ticket_commit(key, first, 1, salt) == Commit.create(key, rid, beacon, 1, salt)


def test_the_real_protocol_records_exactly_what_the_committees_confirm():
    exact = se.Mix("exact", 1.0, 0.0, 0.0, honest_err=0.0)
    bad = se.Mix("bad", 0.0, 0.0, 1.0)
    task = se.Task(0, 3, (se.Config(exact, 0.5), se.Config(bad, 0.5)), n_reports=8,
                   n_users=16, radius_m=60_000, memo=True, review=True)
    fam = se.simulate_family(task)
    honest, malicious = fam["configs"]
    assert not honest["too_few"].any()
    assert (honest["confirmed"] == ~honest["false"]).all()  # error-free voters
    assert malicious["confirmed"].all()  # always-confirm voters pass every report
    for entry in fam["configs"]:
        assert not (entry["recorded"] & ~entry["confirmed"]).any()
        lost = int((entry["confirmed"] & ~entry["recorded"]).sum())
        assert lost == sum(entry["codes"].values())
    r = se.rates(honest)
    assert r["p_rec_false"] == 0 and r["precision"] == 1.0
    assert r["pool_true"] == 1.0 and r["pool_false"] == 0.0
    assert se.rates(malicious)["committee_false"] == 1.0
    assert 0 < r["m1_perfect_ratio"] < 1


def test_main_writes_the_json_keys_and_skips_plots_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    out = tmp_path / "eval.json"
    argv = ["--quick", "--seeds", "1", "--t1-seeds", "2", "--reports", "6", "--sim-reports",
            "6", "--users", "14", "--radius-m", "60000", "--workers", "1", "--json", str(out),
            "--out", str(tmp_path)]
    assert se.main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["table1"]) == {"1000", "900", "800", "700", "600"}
    row = result["table1"]["600"]
    for key in ("m1_ratio", "m1_ratio_sd", "m2_ratio", "m2_ratio_sd", "m1_min", "m1_min_sd",
                "m2_min", "m2_min_sd"):
        assert math.isfinite(row[key])
    assert set(result["precision"]) == {m.name for m in se.MIXES}
    assert set(result["recall"]["70/20/10"]) == {"K=3", "K=5", "K=7", "K=9"}
    assert result["sim_s"] > 0
    assert not list(tmp_path.glob("*.png"))
    assert se.plots({"figures": {}}, tmp_path) == "plots skipped: matplotlib not installed"
