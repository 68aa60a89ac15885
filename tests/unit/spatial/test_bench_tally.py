"""Smoke test of bench/spatial.py's tally-rate measurement: the tallies it builds are valid
(every one is applied and confirmed through ``apply_tx``) and the parts it reports add up."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "spatial.py"


def _load() -> ModuleType:
    name = "crowdmesh_bench_spatial"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("extra", [0, 2])
def test_the_tally_rate_applies_every_built_tally_and_splits_its_time(extra: int) -> None:
    bench = _load()
    result = bench.tally_rate(4, extra=extra)
    assert result["n"] == 4 and result["commits"] == bench.K + extra
    assert result["tallies_per_s"] > 0 and result["tallies_per_cpu_s"] > 0
    parts = result["parts_ms"]
    assert any(name.startswith("VRF proofs") for name in parts)
    assert all(ms >= 0 for ms in parts.values())
    assert sum(parts.values()) >= result["per_tally_ms"] * 0.999


def test_the_built_tallies_use_distinct_committees_and_points() -> None:
    bench = _load()
    tallies = bench.build_tallies(6, extra=1)
    assert len({tx.txid for tx in tallies.txs}) == 6
    assert len({bench._point(i) for i in range(6)}) == 6
    wall, cpu = bench.apply_all(tallies)  # raises unless all six were confirmed
    assert wall > 0 and cpu > 0
