"""The CrowdSFL task spec: what ``sfl-create`` puts on chain, in integers only.

Invariants:
- A :class:`TaskSpec` is a frozen value, encoded as one fixed-order msgpack array of its fields
  (``to_obj``); ``from_obj`` checks exact types (no bool for int, text where text belongs) and
  every range in :data:`_RANGES`, raising ``ValidationError('sfl-bad-spec')`` with the field.
- No floats (DESIGN.md "No floats in consensus"): the learning rate and L2 decay are in millionths
  (``lr_micro``, ``l2_micro``), accuracies in basis points. Roles turn them into
  ``crowdmesh.fl.spec`` values off chain (this module does not import ``fl``, which pulls numpy).
- ``layers`` = (inputs, hidden…, classes) with classes ≥ 2: binary tasks are two-class softmax.
- ``bundle_chunks`` fixes every worker's ciphertext length (DESIGN.md "all bundles padded to the
  same chunk count"), and is bounded so the CSP's three-column bundle fits one blob.
- Deposit rule (seed §4: more data → more deposit, more reputation → less):
  ``max(deposit_min, deposit_base + n_k·deposit_per_ksample // 1000 − reputation·discount)``,
  with the signed reputation, so a negative reputation raises the deposit.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any

from crowdmesh.chain.codec import U64_MAX
from crowdmesh.chain.contracts.blob import MAX_BLOB_BYTES
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.errors import ValidationError

__all__ = [
    "ACTIVATIONS",
    "AGGREGATIONS",
    "BLINDED_HEADER_BYTES",
    "INITS",
    "MAX_LAYERS",
    "MAX_NK",
    "MAX_ROUNDS",
    "MAX_UNITS",
    "MAX_WORKERS",
    "OPTIMIZERS",
    "TaskSpec",
    "deposit_for",
    "max_bundle_chunks",
]

# Mirrors crowdmesh.fl.spec (kept here: the contract must not import numpy through fl).
ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("he", "xavier")
OPTIMIZERS = ("sgd", "adam")
AGGREGATIONS = ("equal", "nk", "median")  # equal weights by default (DESIGN.md, n_k weights leak)
MAX_LAYERS = 10
MAX_UNITS = 4096
MAX_ROUNDS = 100
MAX_WORKERS = 64  # settle pays each worker in one event; 64 keeps a receipt far under its cap
MAX_NK = 10**9
MAX_SECONDS = 30 * 86_400  # a T_wait or step timeout longer than 30 days is a typo
MAX_DEADLINE = 1 << 40
BLINDED_HEADER_BYTES = 1 + 16 + 4  # u8 id length ‖ 16-byte id ‖ u32 chunk count
_MAX_PROOF_BYTES = 16 + 512


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """Everything a task fixes at creation (DESIGN.md "CrowdSFL protocol", on chain per task)."""

    profile: str
    csp: bytes
    layers: tuple[int, ...]
    activation: str
    init: str
    epochs: int
    batch_size: int
    lr_micro: int
    l2_micro: int
    optimizer: str
    rounds: int
    min_workers: int
    max_workers: int
    join_deadline: int
    t_wait: int
    t_step: int
    pool: int
    deposit_base: int
    deposit_per_ksample: int
    deposit_rep_discount: int
    deposit_min: int
    rep_weight: int
    select_m: int
    min_accuracy_bps: int
    aggregation: str
    bundle_chunks: int
    schema_hash: bytes

    def to_obj(self) -> list[Any]:
        """The msgpack array (``layers`` as a list)."""
        return [list(v) if isinstance(v, tuple) else v for v in astuple(self)]

    @classmethod
    def from_obj(cls, obj: Any) -> TaskSpec:
        """Strictly rebuild and validate a spec; raises ``ValidationError('sfl-bad-spec')``."""
        names = [f.name for f in fields(cls)]
        if not isinstance(obj, list) or len(obj) != len(names):
            raise ValidationError("sfl-bad-spec", f"want an array of {len(names)}")
        values = dict(zip(names, obj, strict=True))
        for name, value in values.items():
            _check_type(name, value)
        values["layers"] = tuple(values["layers"])
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Range and consistency checks; raises ``ValidationError('sfl-bad-spec')``."""
        for name, (lo, hi) in _RANGES.items():
            if not lo <= getattr(self, name) <= hi:
                raise ValidationError("sfl-bad-spec", f"{name} not in [{lo}, {hi}]")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValidationError("sfl-bad-spec", f"{name} not one of {allowed}")
        _check_layers(self.layers)
        if self.min_workers > self.max_workers:
            raise ValidationError("sfl-bad-spec", "min_workers > max_workers")
        if self.bundle_chunks > max_bundle_chunks(self.profile):
            raise ValidationError("sfl-bad-spec", "bundle_chunks: blinded bundle over a blob")

    @property
    def element_bytes(self) -> int:
        """Bytes per group element of the task's profile."""
        return PROFILES[self.profile].group.element_bytes

    @property
    def chunk_bytes(self) -> int:
        """Plaintext bytes per chunk of the task's profile."""
        return PROFILES[self.profile].group.chunk_bytes


_BYTES_FIELDS = {"csp": 32, "schema_hash": 32}
_TEXT_FIELDS = {"profile", "activation", "init", "optimizer", "aggregation"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "profile": tuple(PROFILES), "activation": ACTIVATIONS, "init": INITS,
    "optimizer": OPTIMIZERS, "aggregation": AGGREGATIONS,
}
_RANGES: dict[str, tuple[int, int]] = {
    "epochs": (1, 10_000), "batch_size": (1, 1 << 20), "lr_micro": (1, 10_000_000),
    "l2_micro": (0, 1_000_000), "rounds": (1, MAX_ROUNDS), "min_workers": (1, MAX_WORKERS),
    "max_workers": (1, MAX_WORKERS), "join_deadline": (0, MAX_DEADLINE),
    "t_wait": (1, MAX_SECONDS), "t_step": (1, MAX_SECONDS), "pool": (1, U64_MAX),
    "deposit_base": (0, U64_MAX), "deposit_per_ksample": (0, U64_MAX),
    "deposit_rep_discount": (0, U64_MAX), "deposit_min": (0, U64_MAX),
    "rep_weight": (0, 1_000_000), "select_m": (1, MAX_WORKERS), "min_accuracy_bps": (0, 10_000),
    "bundle_chunks": (1, 1 << 20),
}


def _check_type(name: str, value: Any) -> None:
    if name in _BYTES_FIELDS:
        ok = type(value) is bytes and len(value) == _BYTES_FIELDS[name]
    elif name in _TEXT_FIELDS:
        ok = type(value) is str and len(value) <= 32
    elif name == "layers":
        ok = (type(value) is list and len(value) <= MAX_LAYERS
              and all(type(v) is int for v in value))
    else:
        ok = type(value) is int
    if not ok:
        raise ValidationError("sfl-bad-spec", f"{name}: wrong type")


def _check_layers(layers: tuple[int, ...]) -> None:
    if not 2 <= len(layers) <= MAX_LAYERS or not all(0 < u <= MAX_UNITS for u in layers):
        raise ValidationError("sfl-bad-spec", f"layers {layers}")
    if layers[-1] < 2:
        raise ValidationError("sfl-bad-spec", "at least two classes (binary = 2)")


def max_bundle_chunks(profile: str) -> int:
    """The most chunks whose blinded bundle (three columns + header + proof) fits one blob."""
    size = PROFILES[profile].group.element_bytes
    return (MAX_BLOB_BYTES - BLINDED_HEADER_BYTES - _MAX_PROOF_BYTES) // (3 * size)


def deposit_for(spec: TaskSpec, n_k: int, reputation: int) -> int:
    """The deposit a worker with ``n_k`` samples and ``reputation`` escrows when joining."""
    raw = (spec.deposit_base + n_k * spec.deposit_per_ksample // 1000
           - reputation * spec.deposit_rep_discount)
    return min(max(spec.deposit_min, raw), U64_MAX)
