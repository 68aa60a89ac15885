"""The fuzz campaign over every input surface (docs/fuzzing.md, issue 11).

Usage: .venv/bin/python bench/fuzz.py [--inputs N] [--surface NAME ...] [--seed S]
                                      [--json FILE] [--max-seconds T] [--engine mutate|atheris]

Each surface runs in its own child process, watched by this one: a child that dies (signal,
abort, a non-zero exit without a result) is a *crash*, and one whose input counter stops for
``--hang-s`` seconds is a *hang*, counted as a crash too; either way the input in flight is
read from a shared file and reported. Inside the child, ``tests.fuzz.engine`` classifies every
input: success, an allowed stable error (its ``code``), or an *unexpected* exception.

The table shows per surface: inputs, crashes, unexpected exception types, distinct reject codes
reached (evidence of depth: how many different rules the inputs got to), and inputs per second.
``--json`` writes per surface ``inputs``, ``crashes``, ``unexpected``, ``codes`` (code → count)
and samples of any unexpected input (hex) with its traceback.

Engines: ``mutate`` (default) is the deterministic structure-aware mutation loop, used for the
≥ 10^6-input campaign; ``atheris`` runs libFuzzer's coverage-guided search over the same
targets and seed corpora (sync surfaces only; needs ``pip install atheris``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# why no crowdmesh import up here: the atheris child must instrument crowdmesh's modules as
# they are imported (``atheris.instrument_imports``), so each path imports what it needs.

DEFAULT_INPUTS = 2000
HANG_S = 60.0


def _surface_names() -> list[str]:
    from tests.fuzz.targets import SURFACES

    return list(SURFACES)


def _child(args: argparse.Namespace) -> int:
    name = args.surface[0]
    if args.engine == "atheris":
        return _atheris(name, args)
    from tests.fuzz.engine import Inflight, run_surface

    inflight = Inflight(Path(args.inflight)) if args.inflight else None
    stats = run_surface(name, args.inputs, args.seed, inflight, args.max_seconds)
    Path(args.out).write_text(json.dumps(stats.to_json()))
    return 0


def _atheris(name: str, args: argparse.Namespace) -> int:
    """libFuzzer over the surface's run; an unexpected exception is a libFuzzer crash."""
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports(include=["crowdmesh"]):  # coverage feedback from crowdmesh
        from tests.fuzz.engine import Inflight
        from tests.fuzz.targets import SURFACES
        from tests.fuzz.world import build_world

    surface = SURFACES[name]
    if surface.is_async:
        print(f"{name}: atheris drives sync targets only", file=sys.stderr)
        return 2
    target = surface.make(build_world())
    corpus = Path(tempfile.mkdtemp(prefix=f"cmfz-{name}-"))
    for i, seed in enumerate(target.seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    codes: dict[str, int] = {}
    count = [0]
    inflight = Inflight(Path(args.inflight)) if args.inflight else None
    start = time.monotonic()

    def dump() -> None:
        seconds = time.monotonic() - start
        Path(args.out).write_text(json.dumps({
            "inputs": count[0], "crashes": 0, "unexpected": {}, "codes": codes,
            "distinct_codes": len(codes), "seconds": round(seconds, 2),
            "inputs_per_s": round(count[0] / seconds, 1) if seconds else 0.0}))

    def one(data: bytes) -> None:
        count[0] += 1
        if inflight is not None:
            inflight.put(count[0], data)
        try:
            code = target.run(data)
        except target.allowed as err:  # anything else propagates: libFuzzer's crash report
            code = err.code  # type: ignore[attr-defined]
        codes[code] = codes.get(code, 0) + 1
        if count[0] % 1000 == 0 or count[0] >= args.inputs:
            dump()  # why here: libFuzzer leaves through _exit, so atexit hooks never run

    atheris.Setup([sys.argv[0], str(corpus), f"-runs={args.inputs}",
                   f"-max_total_time={int(min(args.max_seconds, 10**7))}",
                   f"-artifact_prefix={corpus}/", "-print_final_stats=1"], one)
    atheris.Fuzz()  # never returns: libFuzzer exits the process (its corpus dir stays in /tmp)
    return 0


def _spawn(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.fuzz.engine import Inflight

    out, inflight = work / f"{name}.json", work / f"{name}.inflight"
    cmd = [sys.executable, __file__, "--child", "--surface", name, "--inputs", str(args.inputs),
           "--seed", str(args.seed), "--out", str(out), "--inflight", str(inflight),
           "--max-seconds", str(args.max_seconds), "--engine", args.engine]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last, last_change = (-1, b""), time.monotonic()
    hung = False
    while proc.poll() is None:
        time.sleep(0.5)
        if not inflight.exists() or inflight.stat().st_size < 12:
            continue
        now = Inflight.read(inflight)
        if now[0] != last[0]:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > args.hang_s:
            hung = True
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if out.exists() and not hung and proc.returncode == 0:
        return dict(json.loads(out.read_text()))
    index, data = Inflight.read(inflight) if inflight.exists() else (-1, b"")
    what = "hang" if hung else f"exit {proc.returncode}"
    seconds = time.monotonic() - start
    return {"inputs": max(index, 0) + 1, "crashes": 1, "unexpected": {}, "codes": {},
            "distinct_codes": 0, "seconds": round(seconds, 2), "inputs_per_s": 0.0,
            "crash": {"what": what, "index": index, "input_hex": data.hex()[:20000],
                      "stderr": stderr[-4000:]}}


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    head = f"{'surface':26} {'inputs':>9} {'crashes':>7} {'codes':>5} {'inputs/s':>9}  unexpected"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        unexpected = ", ".join(f"{k}×{v}" for k, v in r["unexpected"].items()) or "-"
        print(f"{name:26} {r['inputs']:>9} {r['crashes']:>7} {r['distinct_codes']:>5} "
              f"{r['inputs_per_s']:>9.0f}  {unexpected}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--inputs", type=int, default=DEFAULT_INPUTS)
    p.add_argument("--surface", action="append", metavar="NAME",
                   help="repeatable; default every surface (see tests/fuzz/targets.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--max-seconds", type=float, default=float("inf"),
                   help="stop each surface after this long (the table shows what ran)")
    p.add_argument("--hang-s", type=float, default=HANG_S)
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--inflight", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    known = _surface_names()
    unknown = sorted(set(args.surface or ()) - set(known))
    if unknown:
        p.error(f"unknown surface(s) {unknown}; known: {', '.join(known)}")
    names = args.surface or known
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cmfuzz-") as tmp:
        for name in names:
            results[name] = _spawn(name, args, Path(tmp))
            r = results[name]
            print(f"{name}: {r['inputs']} inputs, {r['crashes']} crashes, "
                  f"{sum(r['unexpected'].values())} unexpected, {r['distinct_codes']} codes, "
                  f"{r['inputs_per_s']:.0f}/s", flush=True)
    print(f"\nseed {args.seed}, engine {args.engine}, load {os.getloadavg()[0]:.2f}")
    _print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": args.seed, "engine": args.engine,
                                         "surfaces": results}, indent=1) + "\n")
    bad = any(r["crashes"] or r["unexpected"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
