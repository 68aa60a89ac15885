"""The fuzz loop: draw an input, run the target, classify the outcome, keep statistics.

Outcomes: the run's label or an allowed error's stable ``code`` count as *codes* (the evidence
of how deep inputs get); any other exception is *unexpected*, recorded with its first inputs
and traceback. A process crash or hang is detected one level up, by ``bench/fuzz.py``'s
watchdog, which reads the input in flight from :class:`Inflight`.

Inputs are deterministic: input ``i`` of surface ``s`` with seed ``k`` mutates a corpus entry
chosen by ``random.Random(f"{s}:{k}:{i}")``; the corpus starts from the surface's real seed
objects and gains each input that reached a code not seen before (bounded), so the campaign
replays exactly for a given seed and input count.
"""

from __future__ import annotations

import logging
import mmap
import random
import struct
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tests.fuzz.mutate import Mutator
from tests.fuzz.targets import SURFACES, Target
from tests.fuzz.world import World, build_world

__all__ = ["Inflight", "Stats", "run_surface"]

MAX_CORPUS = 512
MAX_SAMPLES = 3  # inputs kept per unexpected exception type
_HDR = struct.Struct("<QI")  # index, input length


@dataclass
class Stats:
    """One surface's result."""

    surface: str
    inputs: int = 0
    crashes: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    codes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "crashes": self.crashes,
                "unexpected": dict(self.unexpected), "codes": dict(sorted(self.codes.items())),
                "distinct_codes": len(self.codes), "seconds": round(self.seconds, 2),
                "inputs_per_s": round(self.rate, 1), "samples": self.samples}


class Inflight:
    """The input being run, in a shared file, so a watchdog can name what crashed or hung."""

    SIZE = 32 << 20

    def __init__(self, path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(self.SIZE)
        self._f = open(path, "r+b")  # noqa: SIM115 - lives as long as the run
        self.mm = mmap.mmap(self._f.fileno(), self.SIZE)

    def put(self, index: int, data: bytes) -> None:
        n = min(len(data), self.SIZE - _HDR.size)
        self.mm[_HDR.size:_HDR.size + n] = data[:n]
        self.mm[:_HDR.size] = _HDR.pack(index, n)

    @staticmethod
    def read(path: Path) -> tuple[int, bytes]:
        raw = path.read_bytes()
        index, n = _HDR.unpack_from(raw)
        return index, raw[_HDR.size:_HDR.size + n]


def _rng(name: str, seed: int, index: int) -> random.Random:
    return random.Random(f"{name}:{seed}:{index}")


class _Loop:
    def __init__(self, name: str, target: Target, seed: int, stats: Stats,
                 inflight: Inflight | None) -> None:
        self.name = name
        self.target = target
        self.seed = seed
        self.stats = stats
        self.inflight = inflight
        self.corpus = list(target.seeds)
        self.n_seeds = len(self.corpus)

    def draw(self, index: int) -> bytes:
        if index < self.n_seeds:
            data = self.corpus[index]  # every seed runs once unmutated
        else:
            rng = _rng(self.name, self.seed, index)
            m = Mutator(rng, self.corpus)
            data = rng.choice(self.corpus)
            for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 5)):
                data = self.target.mutate(m, data)
        if self.inflight is not None:
            self.inflight.put(index, data)
        return data

    def record(self, data: bytes, code: str | None, exc: BaseException | None) -> None:
        st = self.stats
        st.inputs += 1
        if exc is not None:
            kind = type(exc).__name__
            st.unexpected[kind] += 1
            samples = st.samples.setdefault(kind, [])
            if len(samples) < MAX_SAMPLES:
                samples.append({"input_hex": data.hex(), "traceback": "".join(
                    traceback.format_exception(exc))[-4000:]})
            return
        assert code is not None
        if code not in st.codes and len(self.corpus) < MAX_CORPUS:
            self.corpus.append(data)
        st.codes[code] += 1

    def classify(self, data: bytes, run: Callable[[], Any]) -> None:
        try:
            code = run()
        except self.target.allowed as err:
            code = self.label(err)
        except Exception as exc:
            self.record(data, None, exc)
            return
        self.record(data, code, None)

    def label(self, err: Any) -> str:
        fn = self.target.label
        return str(err.code) if fn is None else fn(err)


def _sync_loop(loop: _Loop, inputs: int, deadline: float) -> None:
    for i in range(inputs):
        data = loop.draw(i)
        loop.classify(data, lambda d=data: loop.target.run(d))  # type: ignore[misc]
        if time.monotonic() > deadline:
            break


async def _async_loop(loop: _Loop, inputs: int, deadline: float) -> None:
    for i in range(inputs):
        data = loop.draw(i)
        try:
            code = await loop.target.run(data)
        except loop.target.allowed as err:
            loop.record(data, loop.label(err), None)
        except Exception as exc:
            loop.record(data, None, exc)
        else:
            loop.record(data, code, None)
        if time.monotonic() > deadline:
            break


def _async_context(name: str, world: World) -> AbstractAsyncContextManager[Target]:
    if name == "control":
        from tests.fuzz.control_node import control_target

        return control_target(world)

    class _Plain:
        async def __aenter__(self) -> Target:
            return SURFACES[name].make(world)

        async def __aexit__(self, *exc: object) -> None:
            return None

    return _Plain()


def run_surface(name: str, inputs: int, seed: int = 0, inflight: Inflight | None = None,
                max_seconds: float = float("inf"), world: World | None = None) -> Stats:
    """Run ``inputs`` inputs (or until ``max_seconds``) of surface ``name``."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the node logs every reject; the stats count them
    try:
        return _run_surface(name, inputs, seed, inflight, max_seconds, world)
    finally:
        # why: in pytest this process goes on to other tests that read the logs
        logging.disable(previous)


def _run_surface(name: str, inputs: int, seed: int, inflight: Inflight | None,
                 max_seconds: float, world: World | None) -> Stats:
    world = world or build_world()
    stats = Stats(name)
    surface = SURFACES[name]
    start = time.monotonic()
    deadline = start + max_seconds
    if surface.is_async:
        async def main() -> None:
            async with _async_context(name, world) as target:
                await _async_loop(_Loop(name, target, seed, stats, inflight), inputs, deadline)

        trio.run(main)
    else:
        target = surface.make(world)
        try:
            _sync_loop(_Loop(name, target, seed, stats, inflight), inputs, deadline)
        finally:
            if target.close is not None:
                target.close()
    stats.seconds = time.monotonic() - start
    return stats
