"""``make demo-crypto``: the CrowdSFL crypto walk-through, one worker, the CSP and the requester.

Run as ``python -m crowdmesh.daemon.client.cli_demo [--kib K] [--profile default|paper]
[--processes P]`` (the arguments are parsed there; this module is the walk-through itself):
1. registers the CSP's and the requester's ElGamal keys with Schnorr proofs of knowledge (and
   shows a rogue requester key h_req = g^x / h_csp being refused), then forms PK = h_csp·h_req;
2. has a worker encrypt a float32 numpy model (1 MiB by default) under PK;
3. has the CSP validate, blind and shuffle under PK, renumber with a fresh random id, re-encrypt
   to h_req and prove it with one batched Chaum–Pedersen DLEQ (our order);
4. has the requester verify the proof, decrypt, decode, and compare the model bit for bit.
Randomness comes from the OS CSPRNG (:class:`~crowdmesh.daemon.rng.SystemRng`). Sizes and
timings are printed as tables; long steps show progress bars. ``--processes 2`` runs the chunk
slices on the daemon's process pool (:mod:`crowdmesh.daemon.jobs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from crowdmesh.crypto import (
    Bundle,
    KeyPair,
    Profile,
    ProvenBundle,
    TaskKeys,
    _gmp,
    chunks_needed,
    csp_process,
    encrypt,
    get_profile,
    keygen,
    prove_key,
    task_keys,
    verify_key_pok,
)
from crowdmesh.crypto._mapper import SERIAL, Mapper
from crowdmesh.crypto.csp import BUNDLE_ID_BYTES
from crowdmesh.crypto.elgamal import decrypt
from crowdmesh.crypto.proofs import verify_reencryption
from crowdmesh.daemon.jobs import ProcessMapper
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.errors import ValidationError

__all__ = ["run_walk_through", "walk_through"]

console = Console()
CSP_ACCOUNT = b"csp-account-id".ljust(32, b"\0")
REQ_ACCOUNT = b"requester-account-id".ljust(32, b"\0")


@dataclass
class Timings:
    """Seconds per step, in the order they ran."""

    steps: dict[str, float]
    per_model: set[str]

    @contextmanager
    def step(self, name: str, per_model: bool = True) -> Iterator[None]:
        """Time a step; ``per_model`` steps also get a KB/s-of-model figure."""
        start = time.perf_counter()
        yield
        self.steps[name] = time.perf_counter() - start
        if per_model:
            self.per_model.add(name)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields the ``advance(n)`` callback the crypto core calls."""
    columns = (
        TextColumn(f"{label:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def register_keys(profile: Profile, rng: SystemRng, timings: Timings) -> tuple[KeyPair, KeyPair]:
    """Key generation and PoK-checked registration of the CSP's and requester's keys."""
    with timings.step("keygen + PoK (2 parties)", per_model=False):
        csp, req = keygen(profile, rng), keygen(profile, rng)
        csp_proof = prove_key(profile, CSP_ACCOUNT, csp.sk, rng)
        req_proof = prove_key(profile, REQ_ACCOUNT, req.sk, rng)
    with timings.step("registry: verify 2 PoKs", per_model=False):
        verify_key_pok(profile, CSP_ACCOUNT, csp.pk, csp_proof.to_bytes())
        verify_key_pok(profile, REQ_ACCOUNT, req.pk, req_proof.to_bytes())
    console.print(
        f"registered CSP and requester keys with Schnorr PoKs "
        f"({len(csp_proof.to_bytes())} B and {len(req_proof.to_bytes())} B)"
    )
    show_rogue_key_refused(profile, csp, rng)
    return csp, req


def show_rogue_key_refused(profile: Profile, csp: KeyPair, rng: SystemRng) -> None:
    """A requester key g^x / h_csp would make PK = g^x; its PoK cannot verify."""
    g, p = profile.group.g, profile.group.p
    x = profile.random_exponent(rng)
    rogue = _gmp.powmod(g, x, p) * _gmp.invert(csp.pk, p) % p
    try:
        verify_key_pok(profile, REQ_ACCOUNT, rogue, prove_key(profile, REQ_ACCOUNT, x, rng))
    except ValidationError as exc:
        console.print(f"rogue requester key h_req = g^x / h_csp refused: [bold]{exc.code}[/]")
    else:
        raise AssertionError("a rogue key passed registration")


def make_model(kib: int, rng: SystemRng) -> npt.NDArray[np.float32]:
    """A float32 'model' of ``kib`` KiB with weights from a CSPRNG-seeded generator."""
    seed = int.from_bytes(rng.token_bytes(16), "big")
    return np.random.default_rng(seed).standard_normal(kib * 256, dtype=np.float32)


def run_csp(
    keys: TaskKeys, csp: KeyPair, upload: Bundle, rng: SystemRng, mapper: Mapper
) -> ProvenBundle:
    """The CSP's step in our order; the permutation stays here, only the output leaves."""
    with progress_bar("CSP blind + ReEnc", 2 * len(upload)) as advance:
        result = csp_process(keys, csp.sk, [upload], rng, advance, mapper)
    (out,) = result.outputs
    console.print(
        f"CSP output id {out.bundle_id.hex()} ({BUNDLE_ID_BYTES} fresh random bytes; "
        f"worker id was {upload.bundle_id!r}); permutation kept locally"
    )
    return out


def size_table(profile: Profile, model_bytes: int, chunks: int, proof_bytes: int) -> Table:
    n = profile.group.element_bytes
    table = Table(title=f"sizes ({profile.name}: {profile.group.name}, {n} B per element)")
    table.add_column("item")
    table.add_column("bytes", justify="right")
    table.add_column("× model", justify="right")
    rows = [
        ("model (float32)", model_bytes),
        (f"worker upload: {chunks} chunks × (c1, c2)", 2 * n * chunks),
        ("CSP output: (c1, c2, c2_out) + proof", 3 * n * chunks + proof_bytes),
        ("final ciphertext under h_req: (c1, c2_out)", 2 * n * chunks),
    ]
    for name, size in rows:
        table.add_row(name, f"{size:,}", f"{size / model_bytes:.3f}")
    return table


def timing_table(timings: Timings, model_bytes: int, processes: int) -> Table:
    where = "one process" if processes == 1 else f"{processes} worker processes"
    table = Table(title=f"timings ({where})")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("KB/s of model", justify="right")
    for name, seconds in timings.steps.items():
        rate = f"{model_bytes / 1000 / seconds:,.1f}" if name in timings.per_model else ""
        table.add_row(name, f"{seconds:.3f}", rate)
    return table


def walk_through(profile: Profile, kib: int, mapper: Mapper) -> bool:
    """Keys, worker, CSP, requester; prints the tables and returns whether the model is exact."""
    rng, timings = SystemRng(), Timings({}, set())
    csp, req = register_keys(profile, rng, timings)
    with timings.step("task keys (PK, tables)", per_model=False):
        keys = task_keys(profile, csp.pk, req.pk)
    model = make_model(kib, rng)
    data = model.tobytes()
    chunks = chunks_needed(profile.group, len(data))
    console.print(f"worker model: {model.size:,} float32 = {len(data):,} B → {chunks} chunks")
    with timings.step("worker Enc"), progress_bar("worker Enc", chunks) as advance:
        upload = encrypt(keys.joint, data, rng, None, b"worker-1", advance, mapper)
    with timings.step("CSP blind+shuffle+ReEnc+proof"):
        out = run_csp(keys, csp, upload, rng, mapper)
    with timings.step("requester verify DLEQ"):
        verify_reencryption(profile, out.statement(keys.h_csp), out.proof, mapper)
    with timings.step("requester Dec + decode"), progress_bar("requester Dec", chunks) as advance:
        plain = decrypt(profile, req.sk, out.final, advance, mapper)
    back = np.frombuffer(plain, dtype=np.float32)
    exact = plain == data and np.array_equal(back.view(np.uint32), model.view(np.uint32))
    console.print(size_table(profile, len(data), chunks, len(out.proof.to_bytes())))
    console.print(timing_table(timings, len(data), mapper.parallelism))
    verdict = "[bold green]bit-exact[/]" if exact else "[bold red]DIFFERENT[/]"
    console.print(f"model came back {verdict} ({back.size:,} float32 values compared)")
    return bool(exact)


def run_walk_through(kib: int = 1024, profile_name: str = "default", processes: int = 1) -> int:
    """Run :func:`walk_through` on a ``kib`` KiB model, serially or on ``processes`` processes.

    Returns:
        The exit status: 0 when the model came back bit-exact, else 1.
    """
    profile = get_profile(profile_name)
    console.rule(f"crowdmesh crypto demo — profile {profile.name}")
    if processes <= 1:
        return 0 if walk_through(profile, kib, SERIAL) else 1
    with ProcessMapper(processes) as pool:
        pool.warm_up()
        return 0 if walk_through(profile, kib, pool) else 1
