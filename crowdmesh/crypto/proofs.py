"""Zero-knowledge proofs over the QR subgroup: Schnorr key PoK and batched Chaum–Pedersen DLEQ.

Invariants (CRYPTO.md §4a, §4b):
- Every proof is non-interactive (Fiat–Shamir). The hash covers a context string naming the
  proof type, the group (p, g) and the whole statement, so a proof never verifies for another
  identity, key, group or ciphertext list.
- Challenges are 128 bits. Responses are integers s = k + e·x, *not* reduced mod q, because
  keys may be short exponents; the nonce k has |x| + 256 bits so the proof stays statistically
  zero-knowledge, and verifiers bound s accordingly.
- Verifiers raise :class:`~crowdmesh.errors.ValidationError` with a stable code
  (``bad-key-pok``, ``bad-dleq``, and ``bad-key`` for a DLEQ whose h_csp is no generator); each
  has an ``is_*`` twin returning a bool.
- The key PoK also refuses keys outside the QR subgroup and the identity element 1, so a
  registered key is always a generator of the prime-order subgroup.
- The DLEQ proves the ReEnc of the ciphertexts named in the statement, nothing about where they
  came from: it is no shuffle proof (see :mod:`crowdmesh.crypto.csp`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from crowdmesh.crypto import _gmp
from crowdmesh.crypto._mapper import SERIAL, Mapper, split
from crowdmesh.crypto._multiexp import multiexp
from crowdmesh.crypto.groups import Group, Profile, batch_invert, is_element, released_gil
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import DecodeError, ValidationError

__all__ = [
    "CHALLENGE_BITS",
    "DleqProof",
    "ReencryptionStatement",
    "SchnorrProof",
    "batch_weights",
    "is_valid_key_pok",
    "is_valid_reencryption",
    "prove_key",
    "prove_reencryption",
    "verify_key_pok",
    "verify_reencryption",
]

CHALLENGE_BITS = 128
ZK_SLACK_BITS = 128  # statistical ZK margin of the integer response s = k + e·x
_CHALLENGE_BYTES = CHALLENGE_BITS // 8
_MAX_RESPONSE_BYTES = 512  # above any profile's bound: rejects oversize input before parsing
CTX_KEY_POK = b"crowdmesh/schnorr-key-pok/v1"
CTX_DLEQ = b"crowdmesh/dleq-reencryption-batch/v1"
CTX_WEIGHTS = b"crowdmesh/dleq-batch-weights/v1"

GroupOrProfile = Group | Profile


@dataclass(frozen=True, slots=True)
class _ChallengeResponse:
    """A Fiat–Shamir proof (e, s): 128-bit challenge and integer response."""

    e: int
    s: int

    def to_bytes(self) -> bytes:
        """Compact canonical encoding: 16-byte e ‖ s big-endian, minimal length (≥ 1 byte)."""
        s_len = max(1, (int(self.s).bit_length() + 7) // 8)
        return int(self.e).to_bytes(_CHALLENGE_BYTES, "big") + int(self.s).to_bytes(s_len, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Strict decode of :meth:`to_bytes`; raises ``DecodeError('bad-proof-encoding')``."""
        body = data[_CHALLENGE_BYTES:]
        if not 1 <= len(body) <= _MAX_RESPONSE_BYTES:
            raise DecodeError("bad-proof-encoding", f"length {len(data)}")
        if len(body) > 1 and body[0] == 0:
            raise DecodeError("bad-proof-encoding", "non-minimal response")
        e = int.from_bytes(data[:_CHALLENGE_BYTES], "big")
        return cls(_gmp.mpz(e), _gmp.mpz(int.from_bytes(body, "big")))


class SchnorrProof(_ChallengeResponse):
    """Proof of knowledge of x with key = g^x, bound to an identity."""

    __slots__ = ()


class DleqProof(_ChallengeResponse):
    """Proof that log_g h_csp = log_C D for the batched re-encryption statement."""

    __slots__ = ()


def _group(gp: GroupOrProfile) -> Group:
    return gp.group if isinstance(gp, Profile) else gp


def _secret_bits(gp: GroupOrProfile) -> int:
    # Given only a group, allow any exponent below q: the bound is a sanity check, not soundness.
    return gp.secret_bits if isinstance(gp, Profile) else gp.q.bit_length()


def _response_bound(gp: GroupOrProfile) -> int:
    return 1 << (_secret_bits(gp) + CHALLENGE_BITS + ZK_SLACK_BITS + 1)


def _int_bytes(v: int, length: int) -> bytes:
    return int(v).to_bytes(length, "big")


def _transcript(*parts: bytes) -> hashlib._Hash:
    """SHA-256 over length-prefixed fields, so no two field lists hash alike."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h


def _group_fields(group: Group) -> tuple[bytes, bytes]:
    n = group.element_bytes
    return _int_bytes(group.p, n), _int_bytes(group.g, n)


def _challenge(h: hashlib._Hash) -> int:
    return _gmp.mpz(int.from_bytes(h.digest()[:_CHALLENGE_BYTES], "big"))


def _nonce(gp: GroupOrProfile, rng: Rng) -> int:
    return _gmp.mpz(rng.randbits(_secret_bits(gp) + CHALLENGE_BITS + ZK_SLACK_BITS))


def _is_key(group: Group, key: int) -> bool:
    """A usable public key: in the QR subgroup (so in range and invertible) and not 1."""
    return is_element(group, key) and key != 1


def _div_pow(base: int, s: int, other: int, e: int, p: int) -> int:
    """base^s · other^(−e) mod p, the verifier's commitment recomputation."""
    with released_gil():
        return _gmp.powmod(base, s, p) * _gmp.invert(_gmp.powmod(other, e, p), p) % p


# --- Schnorr proof of knowledge of a secret key (CRYPTO.md §4a) ---------------------------------


def _key_challenge(group: Group, identity: bytes, key: int, commitment: int) -> int:
    p_b, g_b = _group_fields(group)
    n = group.element_bytes
    return _challenge(
        _transcript(CTX_KEY_POK, identity, p_b, g_b, _int_bytes(key, n), _int_bytes(commitment, n))
    )


def prove_key(gp: GroupOrProfile, identity: bytes, sk: int, rng: Rng) -> SchnorrProof:
    """Prove knowledge of sk for key = g^sk, bound to ``identity`` (e.g. the account id)."""
    group = _group(gp)
    k = _nonce(gp, rng)
    with released_gil():
        key = _gmp.powmod(group.g, sk, group.p)
        commitment = _gmp.powmod(group.g, k, group.p)
    e = _key_challenge(group, identity, key, commitment)
    return SchnorrProof(e, k + e * sk)


def verify_key_pok(
    gp: GroupOrProfile, identity: bytes, key: int, proof: SchnorrProof | bytes
) -> None:
    """Check a key-registration proof; raises ``ValidationError('bad-key-pok')``.

    Refuses keys outside the QR subgroup or equal to 1 (same code, the detail says why), and
    malformed proof bytes. This is what stops the rogue-key attack h_req = g^x / h_csp.
    """
    group = _group(gp)
    if not _is_key(group, key):
        raise ValidationError("bad-key-pok", "key is not a generator of the QR subgroup")
    if isinstance(proof, bytes):
        try:
            proof = SchnorrProof.from_bytes(proof)
        except DecodeError as exc:
            raise ValidationError("bad-key-pok", exc.code) from None
    if not (0 <= proof.s < _response_bound(gp) and 0 <= proof.e < 1 << CHALLENGE_BITS):
        raise ValidationError("bad-key-pok", "response out of range")
    commitment = _div_pow(group.g, proof.s, key, proof.e, group.p)
    if _key_challenge(group, identity, key, commitment) != proof.e:
        raise ValidationError("bad-key-pok", "challenge mismatch")


def is_valid_key_pok(
    gp: GroupOrProfile, identity: bytes, key: int, proof: SchnorrProof | bytes
) -> bool:
    """Bool form of :func:`verify_key_pok`."""
    try:
        verify_key_pok(gp, identity, key, proof)
    except ValidationError:
        return False
    return True


# --- Batched Chaum–Pedersen DLEQ for ReEnc (CRYPTO.md §4b) --------------------------------------


@dataclass(frozen=True, slots=True)
class ReencryptionStatement:
    """The batched claim: c2_out[i] = c2[i] / c1[i]^x for all i, where h_csp = g^x."""

    h_csp: int
    bundle_id: bytes
    c1: Sequence[int]
    c2: Sequence[int]
    c2_out: Sequence[int]


def _statement_hash(group: Group, st: ReencryptionStatement) -> bytes:
    """T: hash of the whole batched statement (group, CSP key, bundle id, every ciphertext)."""
    n = group.element_bytes
    h = _transcript(CTX_DLEQ, *_group_fields(group), _int_bytes(st.h_csp, n), st.bundle_id)
    h.update(len(st.c1).to_bytes(8, "big"))
    for column in (st.c1, st.c2, st.c2_out):
        h.update(b"".join(_int_bytes(v, n) for v in column))
    return h.digest()


def batch_weights(statement_hash: bytes, count: int) -> list[bytes]:
    """The random-linear-combination weights z_i (16 bytes each, big-endian) from T."""
    stream = hashlib.shake_256(CTX_WEIGHTS + statement_hash).digest(_CHALLENGE_BYTES * count)
    return [stream[i : i + _CHALLENGE_BYTES] for i in range(0, len(stream), _CHALLENGE_BYTES)]


def _multiexp_job(job: tuple[Sequence[int], Sequence[bytes], int]) -> int:
    return multiexp(*job)


def _combine(group: Group, bases: Sequence[int], weights: Sequence[bytes], mapper: Mapper) -> int:
    """∏ b_i^{z_i}, squared so the result lies in the QR subgroup whatever the inputs were.

    With a parallel mapper the product is split into one partial multi-exponentiation per
    worker (each pays the bucket overhead once, so only large batches are split).
    """
    p = group.p
    parts = mapper.parallelism if len(bases) >= 1024 * mapper.parallelism else 1
    jobs = [(bases[s], weights[s], p) for s in split(len(bases), -(-len(bases) // parts))]
    combined = _gmp.mpz(1)
    for partial in mapper.map(_multiexp_job, jobs):
        combined = combined * partial % p
    return combined * combined % p


def _dleq_challenge(group: Group, statement_hash: bytes, h_csp: int, *points: int) -> int:
    n = group.element_bytes
    fields = [_int_bytes(v, n) for v in (h_csp, *points)]
    return _challenge(_transcript(CTX_DLEQ, *_group_fields(group), statement_hash, *fields))


def _shares(group: Group, c2: Sequence[int], c2_out: Sequence[int]) -> list[int]:
    """d_i = c2_i / c2'_i, which is c1_i^x for an honest ReEnc (one batched inversion)."""
    p = group.p
    return [a * b % p for a, b in zip(c2, batch_invert(c2_out, p), strict=True)]


def prove_reencryption(
    gp: GroupOrProfile,
    sk_csp: int,
    st: ReencryptionStatement,
    rng: Rng,
    mapper: Mapper = SERIAL,
) -> DleqProof:
    """Prove every c2'_i = c2_i / c1_i^sk_csp with one DLEQ on a random linear combination.

    The prover's D is simply C^sk, so proving costs one multi-exponentiation, not two.
    """
    group = _group(gp)
    p = group.p
    t = _statement_hash(group, st)
    cc = _combine(group, st.c1, batch_weights(t, len(st.c1)), mapper)
    k = _nonce(gp, rng)
    with released_gil():
        dd = _gmp.powmod(cc, sk_csp, p)
        a, b = _gmp.powmod(group.g, k, p), _gmp.powmod(cc, k, p)
    e = _dleq_challenge(group, t, st.h_csp, cc, dd, a, b)
    return DleqProof(e, k + e * sk_csp)


def _check_shape(group: Group, st: ReencryptionStatement, proof: DleqProof) -> None:
    if not (len(st.c1) == len(st.c2) == len(st.c2_out)) or not st.c1:
        raise ValidationError("bad-dleq", "ciphertext columns differ in length or are empty")
    if not (0 <= proof.e < 1 << CHALLENGE_BITS):
        raise ValidationError("bad-dleq", "challenge out of range")
    if any(not 0 < v < group.p for column in (st.c1, st.c2, st.c2_out) for v in column):
        raise ValidationError("bad-dleq", "ciphertext component out of range")


def verify_reencryption(
    gp: GroupOrProfile, st: ReencryptionStatement, proof: DleqProof, mapper: Mapper = SERIAL
) -> None:
    """Check a batched ReEnc proof; raises ``ValidationError('bad-dleq')``.

    ``ValidationError('bad-key')`` if ``st.h_csp`` is outside the QR subgroup or is 1: 0 and p
    have no inverse, a non-residue lies outside the prime-order group the proof reasons in, and
    h_csp = 1 = g^0 would "prove" a ReEnc that strips nothing.

    C and D are squared, which maps them into the prime-order subgroup without a per-element
    membership test: a valid proof shows c2_out_i = ±c2_i / c1_i^x for every i, except with
    probability about 2^-128. A sign flip turns the plaintext into a non-residue, which
    decoding rejects (``bad-group-element``). ``st.h_csp`` must be the registered
    (PoK-checked) CSP key.
    """
    group = _group(gp)
    if not _is_key(group, st.h_csp):
        raise ValidationError("bad-key", "h_csp is not a generator of the QR subgroup")
    _check_shape(group, st, proof)
    if not 0 <= proof.s < _response_bound(gp):
        raise ValidationError("bad-dleq", "response out of range")
    t = _statement_hash(group, st)
    weights = batch_weights(t, len(st.c1))
    cc = _combine(group, st.c1, weights, mapper)
    dd = _combine(group, _shares(group, st.c2, st.c2_out), weights, mapper)
    a = _div_pow(group.g, proof.s, st.h_csp, proof.e, group.p)
    b = _div_pow(cc, proof.s, dd, proof.e, group.p)
    if _dleq_challenge(group, t, st.h_csp, cc, dd, a, b) != proof.e:
        raise ValidationError("bad-dleq", "challenge mismatch")


def is_valid_reencryption(gp: GroupOrProfile, st: ReencryptionStatement, proof: DleqProof) -> bool:
    """Bool form of :func:`verify_reencryption`."""
    try:
        verify_reencryption(gp, st, proof)
    except ValidationError:
        return False
    return True
