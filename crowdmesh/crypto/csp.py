"""The CSP's step between workers and the requester, in the paper's order and in ours.

Invariants (CRYPTO.md §4b, §4c; DESIGN.md "Order of CSP steps"):
- **Ours** (:func:`csp_process`): validate every input bundle (subgroup, equal chunk counts),
  blind each under PK with a fresh r' per chunk, apply a uniformly random permutation at bundle
  level, give each output a fresh random 16-byte id, then ReEnc to h_req and prove it with one
  batched DLEQ per bundle. The requester verifies every proof itself (:func:`requester_open`).
- What that check covers: only the ReEnc step (c2_out = c2 / c1^sk_csp on the blinded list the
  CSP published, with the registered h_csp). There is no shuffle proof: nothing shows that the
  blinded bundles are the workers' bundles, so a malicious CSP can drop, duplicate or replace
  whole models (e.g. with its own ciphertexts under PK) and every proof still verifies.
- The permutation is returned to the caller in :class:`CspResult` and is never part of an
  output bundle: the CSP keeps it locally (the paper's "backup for auditing").
- **Paper** (:func:`csp_process_paper`): ReEnc, then Blind under h_req, same order and ids, no
  proof. Kept for the side-by-side benchmark; its intermediate (c1 unchanged, under h_req) is
  decryptable by the requester and linked to the worker, which is why ours reorders the steps.
- The final ciphertexts (c1, c2_out) have the same form in both orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crowdmesh.crypto._mapper import SERIAL, Mapper
from crowdmesh.crypto.elgamal import (
    Bundle,
    Progress,
    PublicKey,
    blind,
    decrypt,
    joint_key,
    pack_columns,
    public_key,
    reencrypt,
    unpack_columns,
)
from crowdmesh.crypto.groups import Group, Profile
from crowdmesh.crypto.proofs import (
    DleqProof,
    ReencryptionStatement,
    prove_reencryption,
    verify_reencryption,
)
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import ValidationError

__all__ = [
    "BUNDLE_ID_BYTES",
    "CspResult",
    "ProvenBundle",
    "TaskKeys",
    "csp_process",
    "csp_process_paper",
    "random_permutation",
    "requester_open",
    "requester_verify",
    "task_keys",
]

BUNDLE_ID_BYTES = 16


@dataclass(frozen=True, slots=True)
class TaskKeys:
    """A task's public keys with their exponentiators: PK = h_csp·h_req, and h_req.

    Build it only from keys whose Schnorr PoK was verified (``verify_key_pok``).
    """

    profile: Profile
    h_csp: int
    joint: PublicKey
    requester: PublicKey


@dataclass(frozen=True, slots=True)
class ProvenBundle:
    """One CSP output: blinded ciphertext under PK (c1, c2), its ReEnc c2_out, and the proof."""

    bundle_id: bytes
    c1: tuple[int, ...]
    c2: tuple[int, ...]
    c2_out: tuple[int, ...]
    proof: DleqProof

    @property
    def final(self) -> Bundle:
        """The ciphertext under h_req, (c1, c2_out): what the requester decrypts."""
        return Bundle(self.bundle_id, self.c1, self.c2_out)

    def to_bytes(self, group: Group) -> bytes:
        """Wire form: the three columns as in ``Bundle.to_bytes``, then the proof bytes."""
        columns = (self.c1, self.c2, self.c2_out)
        return pack_columns(group, self.bundle_id, columns) + self.proof.to_bytes()

    @classmethod
    def from_bytes(cls, group: Group, data: bytes, max_chunks: int) -> ProvenBundle:
        """Strict parse (``DecodeError``); the proof is checked by ``requester_verify``."""
        bundle_id, (c1, c2, c2_out), rest = unpack_columns(group, data, 3, max_chunks)
        return cls(bundle_id, c1, c2, c2_out, DleqProof.from_bytes(rest))

    def statement(self, h_csp: int) -> ReencryptionStatement:
        """The batched DLEQ statement this bundle's proof claims."""
        return ReencryptionStatement(h_csp, self.bundle_id, self.c1, self.c2, self.c2_out)


@dataclass(frozen=True, slots=True)
class CspResult:
    """Outputs to publish, and the permutation the CSP keeps to itself.

    ``permutation[j]`` is the input index that became ``outputs[j]``.
    """

    outputs: tuple[ProvenBundle, ...]
    permutation: tuple[int, ...]


def task_keys(profile: Profile, h_csp: int, h_req: int) -> TaskKeys:
    """Build a task's keys (tables for PK and h_req in table profiles: ~0.1 s, ~7 MB)."""
    joint = joint_key(profile.group, h_csp, h_req)
    return TaskKeys(profile, h_csp, public_key(profile, joint), public_key(profile, h_req))


def random_permutation(n: int, rng: Rng) -> tuple[int, ...]:
    """Uniform permutation of range(n) (Fisher–Yates with the injected rng)."""
    items = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]
    return tuple(items)


def _validate_inputs(profile: Profile, bundles: Sequence[Bundle], mapper: Mapper) -> None:
    sizes = {len(b) for b in bundles}
    if len(sizes) > 1:
        raise ValidationError("bundle-size-mismatch", f"chunk counts {sorted(sizes)}")
    if 0 in sizes:
        raise ValidationError("bad-bundle-shape", "empty bundle")
    for bundle in bundles:
        bundle.validate(profile.group, mapper)


def _prove_one(
    keys: TaskKeys,
    sk_csp: int,
    bundle: Bundle,
    rng: Rng,
    progress: Progress | None,
    mapper: Mapper,
) -> ProvenBundle:
    """Blind under PK with a fresh id, ReEnc to h_req, prove the ReEnc."""
    fresh_id = rng.token_bytes(BUNDLE_ID_BYTES)
    blinded = blind(keys.joint, bundle, rng, fresh_id, progress, mapper)
    out = reencrypt(keys.profile, sk_csp, blinded, progress, mapper)
    statement = ReencryptionStatement(keys.h_csp, fresh_id, blinded.c1, blinded.c2, out.c2)
    proof = prove_reencryption(keys.profile, sk_csp, statement, rng, mapper)
    return ProvenBundle(fresh_id, blinded.c1, blinded.c2, out.c2, proof)


def csp_process(
    keys: TaskKeys,
    sk_csp: int,
    bundles: Sequence[Bundle],
    rng: Rng,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> CspResult:
    """Our order: validate, blind + shuffle under PK, fresh ids, ReEnc with batched DLEQ.

    Raises ``ValidationError`` (``bundle-size-mismatch``, ``bad-bundle-shape``,
    ``bad-group-element``) if any input bundle is malformed. ``progress`` hears of every chunk
    twice: once blinded, once re-encrypted.
    """
    _validate_inputs(keys.profile, bundles, mapper)
    permutation = random_permutation(len(bundles), rng)
    outputs = tuple(
        _prove_one(keys, sk_csp, bundles[i], rng, progress, mapper) for i in permutation
    )
    return CspResult(outputs, permutation)


def csp_process_paper(
    keys: TaskKeys,
    sk_csp: int,
    bundles: Sequence[Bundle],
    rng: Rng,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> tuple[Bundle, ...]:
    """The paper's order: ReEnc to h_req, then Blind under h_req; order and ids kept, no proof.

    ``progress`` hears of every chunk twice, as in :func:`csp_process`.
    """
    return tuple(
        blind(
            keys.requester,
            reencrypt(keys.profile, sk_csp, b, progress, mapper),
            rng,
            progress=progress,
            mapper=mapper,
        )
        for b in bundles
    )


def requester_verify(
    keys: TaskKeys, outputs: Sequence[ProvenBundle], mapper: Mapper = SERIAL
) -> None:
    """Check every output's batched DLEQ, distinct ids and equal sizes.

    This proves the ReEnc of each published blinded bundle, not that the blinded bundles are the
    workers' bundles (no shuffle proof): substituted or dropped models pass.

    Raises ``ValidationError``: ``bad-dleq``, ``bad-key`` (h_csp no generator),
    ``duplicate-bundle-id``, ``bundle-size-mismatch``.
    """
    if len({o.bundle_id for o in outputs}) != len(outputs):
        raise ValidationError("duplicate-bundle-id")
    if len({len(o.c1) for o in outputs}) > 1:
        raise ValidationError("bundle-size-mismatch")
    for out in outputs:
        verify_reencryption(keys.profile, out.statement(keys.h_csp), out.proof, mapper)


def requester_open(
    keys: TaskKeys,
    sk_req: int,
    output: ProvenBundle,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> bytes:
    """Verify one output's ReEnc proof, then decrypt and decode it to the model bytes.

    A pass says the ReEnc was honest, not that the model came from a worker (see the module
    docstring: no shuffle proof).
    """
    verify_reencryption(keys.profile, output.statement(keys.h_csp), output.proof, mapper)
    return decrypt(keys.profile, sk_req, output.final, progress, mapper)
