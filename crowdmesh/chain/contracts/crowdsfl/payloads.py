"""CrowdSFL transaction kinds, their payload shapes, encoders for senders, strict decoders.

Invariants:
- Every payload is one canonical msgpack array; after ``sfl-create`` (whose payload is the
  :class:`TaskSpec` array) the first item is the 32-byte task id.
- :data:`SCHEMAS` is the one table of shapes: a payload that does not match its kind's schema
  exactly (count, types, byte lengths, list bounds) is refused with ``bad-sfl-payload``.
- The score commitment is SHA-256 over a domain tag, a salt and the canonical table, so the CSP
  can open it on demand (DESIGN.md: per-round scores stay off chain).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from crowdmesh.chain.codec import U64_MAX, pack
from crowdmesh.chain.contracts.base import decode_payload
from crowdmesh.chain.contracts.crowdsfl.spec import MAX_WORKERS, TaskSpec
from crowdmesh.errors import ValidationError

__all__ = [
    "BLINDED_ID_BYTES",
    "KIND_ACCURACY",
    "KIND_BLINDED",
    "KIND_CREATE",
    "KIND_JOIN",
    "KIND_MODEL",
    "KIND_SELECT",
    "KIND_SETTLE",
    "KIND_SUBMIT",
    "KIND_TIMEOUT",
    "SCHEMAS",
    "accuracy_payload",
    "blinded_payload",
    "create_payload",
    "decode_call",
    "join_payload",
    "model_payload",
    "score_commitment",
    "select_payload",
    "settle_payload",
    "submit_payload",
    "timeout_payload",
]

KIND_CREATE = "sfl-create"
KIND_JOIN = "sfl-join"
KIND_MODEL = "sfl-model"
KIND_SUBMIT = "sfl-submit"
KIND_BLINDED = "sfl-blinded"
KIND_ACCURACY = "sfl-accuracy"
KIND_SELECT = "sfl-select"
KIND_SETTLE = "sfl-settle"
KIND_TIMEOUT = "sfl-timeout"
BLINDED_ID_BYTES = 16  # crowdmesh.crypto.csp.BUNDLE_ID_BYTES
_MAX_PROOF = 16 + 512
_DOMAIN_SCORES = b"crowdmesh/sfl-score-table/1\x00"

# Schema tokens: "u" = u64 int, "b32"/"b16" = bytes of that length, "proof" = 17..528 bytes,
# ("*", item) = a list of at most MAX_WORKERS items, a tuple = an array of exactly those items.
Schema = Any
SCHEMAS: dict[str, Schema] = {
    KIND_JOIN: ("b32", "u", "b32"),
    KIND_MODEL: ("b32", "u", "b32"),
    KIND_SUBMIT: ("b32", "u", "b32", "proof"),
    KIND_BLINDED: ("b32", "u", ("*", ("b16", "b32"))),
    KIND_ACCURACY: ("b32", "u", ("*", ("b16", "u", "u"))),
    KIND_SELECT: ("b32", "u", ("*", "b16"), "b32", ("*", "u")),
    KIND_SETTLE: ("b32", ("*", ("b32", "u", "u"))),
    KIND_TIMEOUT: ("b32",),
}


def _matches(obj: Any, schema: Schema) -> bool:
    if schema == "u":
        return type(obj) is int and 0 <= obj <= U64_MAX
    if schema in ("b32", "b16"):
        return type(obj) is bytes and len(obj) == int(schema[1:])
    if schema == "proof":
        return type(obj) is bytes and 17 <= len(obj) <= _MAX_PROOF
    if schema[0] == "*":
        return (isinstance(obj, list) and len(obj) <= MAX_WORKERS
                and all(_matches(item, schema[1]) for item in obj))
    return (isinstance(obj, list) and len(obj) == len(schema)
            and all(_matches(o, s) for o, s in zip(obj, schema, strict=True)))


def decode_call(kind: str, payload: bytes) -> tuple[bytes, list[Any]]:
    """(task id, remaining items) of a call payload; raises ``bad-sfl-payload``."""
    obj = decode_payload(payload, "bad-sfl-payload")
    if not _matches(obj, SCHEMAS[kind]):
        raise ValidationError("bad-sfl-payload", f"{kind}: want {SCHEMAS[kind]}")
    return obj[0], obj[1:]


def create_payload(spec: TaskSpec) -> bytes:
    """``sfl-create``: the spec array."""
    return pack(spec.to_obj())


def join_payload(task_id: bytes, n_k: int, dataset_hash: bytes) -> bytes:
    """``sfl-join``: metadata n_k and the dataset hash (seed §4)."""
    return pack([task_id, n_k, dataset_hash])


def model_payload(task_id: bytes, round_: int, blob: bytes) -> bytes:
    """``sfl-model``: the global model for ``round_`` by blob hash."""
    return pack([task_id, round_, blob])


def submit_payload(task_id: bytes, round_: int, blob: bytes, proof: bytes) -> bytes:
    """``sfl-submit``: the encrypted bundle's blob hash and its randomness proof."""
    return pack([task_id, round_, blob, proof])


def blinded_payload(task_id: bytes, round_: int,
                    entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``sfl-blinded``: ``(fresh id, blob hash of the proven bundle)`` per output."""
    return pack([task_id, round_, [[i, b] for i, b in entries]])


def accuracy_payload(task_id: bytes, round_: int,
                     entries: Sequence[tuple[bytes, int, int]]) -> bytes:
    """``sfl-accuracy``: ``(blinded id, accuracy bps, free-rider flag)`` in blinded order."""
    return pack([task_id, round_, [[i, a, f] for i, a, f in entries]])


def select_payload(task_id: bytes, round_: int, ids: Sequence[bytes], commitment: bytes,
                   weights: Sequence[int] = ()) -> bytes:
    """``sfl-select``: the selected blinded ids, the score-table commitment and, in a task
    aggregating by ``nk``, each selected model's n_k (empty otherwise)."""
    return pack([task_id, round_, list(ids), commitment, list(weights)])


def settle_payload(task_id: bytes, split: Sequence[tuple[bytes, int, int]]) -> bytes:
    """``sfl-settle``: ``(worker, reward, flagged)`` for every joined worker in join order."""
    return pack([task_id, [[w, r, f] for w, r, f in split]])


def timeout_payload(task_id: bytes) -> bytes:
    """``sfl-timeout``."""
    return pack([task_id])


def score_commitment(salt: bytes, table: Sequence[tuple[bytes, int]]) -> bytes:
    """Commitment to the CSP's per-worker score table ``[(worker, score), …]`` of one round."""
    body = pack([[w, s] for w, s in table])
    return hashlib.sha256(_DOMAIN_SCORES + len(salt).to_bytes(2, "big") + salt + body).digest()
