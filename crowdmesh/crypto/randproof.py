"""Proof of knowledge of the encryption randomness of a bundle, bound to sender, task and round.

Why (DESIGN.md CrowdSFL decisions, "Copying another worker's ciphertext"): anyone can
re-randomise an ElGamal ciphertext, (c1·g^s, c2·PK^s), so without this proof a worker could
submit a fresh-looking copy of another worker's model as its own. A copier knows s but not the
original r_i, so it cannot prove knowledge of log_g of the copied c1_i.

Invariants:
- Statement: the group (p, g), the sender's account id, the task id, the round, and the bundle's
  canonical bytes (its id, both columns). T = H(CTX_RAND, statement). Changing any chunk, the
  sender, the task or the round changes T and so every check below.
- Batching (like the batched DLEQ, CRYPTO.md §4b): weights z_i = ``batch_weights(T, n)``
  (128 bits each), C = (∏ c1_i^{z_i})², which lies in the QR subgroup whatever the inputs are.
  The prover knows R = 2·Σ z_i·r_i with C = g^R and proves it with one Schnorr proof (e, s),
  e = H(CTX_RAND, T, C, A) truncated to 128 bits, s = k + e·R not reduced mod q (short
  exponents, as in :mod:`crowdmesh.crypto.proofs`), k with |R| + 256 bits.
- Soundness (random oracle): the weights are fixed by T, which hashes every c1_i, so a prover
  cannot pick the c1_i after seeing the weights; forking on T extracts each r_i.
- The verifier computes C itself with one Pippenger multi-exponentiation over c1 (the c2 column
  is only hashed), one variable-base and one fixed-base powmod: a few hundred ms for a 1 MiB
  model. It does not check subgroup membership (the caller does: ``Bundle.validate``).
- :func:`verify_randomness` raises ``ValidationError('bad-randproof')``; :func:`is_valid_randomness`
  is its bool twin.
- A node checks one submission up to three times (gossip admission, its block template, the
  block's import), so passed checks are remembered, like Bitcoin Core's signature cache: the
  key is H(profile, T, e, s), which fixes every input of the check, so a hit answers exactly
  what the arithmetic would. Only passes are kept, at most :data:`VERIFIED_CACHE` of them
  (oldest dropped first). Job threads and the trio thread both verify; each cache step is one
  ``OrderedDict`` call, atomic under the GIL, and a lost race only costs a recomputation.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from crowdmesh.crypto import _gmp
from crowdmesh.crypto._multiexp import multiexp
from crowdmesh.crypto.elgamal import Bundle, PublicKey, generator
from crowdmesh.crypto.encoding import encode
from crowdmesh.crypto.groups import Group, Profile, released_gil
from crowdmesh.crypto.proofs import CHALLENGE_BITS, ZK_SLACK_BITS, batch_weights
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import DecodeError, ValidationError

__all__ = [
    "CTX_RAND",
    "RandProof",
    "RandStatement",
    "encrypt_proven",
    "is_valid_randomness",
    "prove_randomness",
    "verify_randomness",
]

CTX_RAND = b"crowdmesh/encryption-randomness-batch/v1"
_E_BYTES = CHALLENGE_BITS // 8
_MAX_S_BYTES = 512  # far above any profile's response: rejects junk before arithmetic
VERIFIED_CACHE = 4096  # passed checks remembered (32-byte keys: about 0.5 MB)
_verified: OrderedDict[bytes, None] = OrderedDict()


@dataclass(frozen=True, slots=True)
class RandStatement:
    """Who claims the bundle, for which task and round, and the bundle itself."""

    sender: bytes
    task_id: bytes
    round: int
    bundle: Bundle


@dataclass(frozen=True, slots=True)
class RandProof:
    """(e, s): 128-bit challenge and integer response."""

    e: int
    s: int

    def to_bytes(self) -> bytes:
        """16-byte e ‖ s big-endian, minimal length (≥ 1 byte)."""
        s_len = max(1, (int(self.s).bit_length() + 7) // 8)
        return int(self.e).to_bytes(_E_BYTES, "big") + int(self.s).to_bytes(s_len, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> RandProof:
        """Strict decode; raises ``DecodeError('bad-proof-encoding')``."""
        body = data[_E_BYTES:]
        if not 1 <= len(body) <= _MAX_S_BYTES or (len(body) > 1 and body[0] == 0):
            raise DecodeError("bad-proof-encoding", f"length {len(data)} or non-minimal")
        return cls(_gmp.mpz(int.from_bytes(data[:_E_BYTES], "big")),
                   _gmp.mpz(int.from_bytes(body, "big")))


def _witness_bits(profile: Profile, n: int) -> int:
    """Bit bound of R = 2·Σ z_i·r_i for n chunks."""
    return profile.secret_bits + CHALLENGE_BITS + 1 + max(1, n).bit_length()


def _statement_hash(group: Group, st: RandStatement) -> bytes:
    h = hashlib.sha256()
    size = group.element_bytes
    for part in (CTX_RAND, int(group.p).to_bytes(size, "big"), int(group.g).to_bytes(size, "big"),
                 st.sender, st.task_id, st.round.to_bytes(8, "big"), st.bundle.to_bytes(group)):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def _challenge(group: Group, t: bytes, cc: int, a: int) -> int:
    size = group.element_bytes
    digest = hashlib.sha256(CTX_RAND + b"/challenge" + t + int(cc).to_bytes(size, "big")
                            + int(a).to_bytes(size, "big")).digest()
    return _gmp.mpz(int.from_bytes(digest[:_E_BYTES], "big"))


def _weights(t: bytes, n: int) -> list[int]:
    return [int.from_bytes(w, "big") for w in batch_weights(t, n)]


def prove_randomness(profile: Profile, st: RandStatement, rs: Sequence[int],
                     rng: Rng) -> RandProof:
    """Prove knowledge of every r_i with c1_i = g^{r_i} (``rs`` in chunk order)."""
    group = profile.group
    if len(rs) != len(st.bundle):
        raise ValueError("one nonce per chunk")
    t = _statement_hash(group, st)
    big_r = 2 * sum(z * int(r) for z, r in zip(_weights(t, len(rs)), rs, strict=True))
    k = _gmp.mpz(rng.randbits(_witness_bits(profile, len(rs)) + CHALLENGE_BITS + ZK_SLACK_BITS))
    with released_gil():
        cc = _gmp.powmod(group.g, big_r, group.p)
        a = _gmp.powmod(group.g, k, group.p)
    e = _challenge(group, t, cc, a)
    return RandProof(e, k + e * big_r)


def _combined_c1(group: Group, st: RandStatement, t: bytes) -> int:
    combined = multiexp(st.bundle.c1, batch_weights(t, len(st.bundle)), group.p)
    return combined * combined % group.p


def verify_randomness(profile: Profile, st: RandStatement, proof: RandProof | bytes) -> None:
    """Check a randomness proof; raises ``ValidationError('bad-randproof')``.

    Also refuses an empty bundle, components outside (0, p) and a response out of range.
    """
    group = profile.group
    if isinstance(proof, bytes):
        try:
            proof = RandProof.from_bytes(proof)
        except DecodeError as exc:
            raise ValidationError("bad-randproof", exc.code) from None
    n = len(st.bundle)
    bound = 1 << (_witness_bits(profile, n) + CHALLENGE_BITS + ZK_SLACK_BITS + 1)
    if n == 0 or not 0 <= proof.s < bound or not 0 <= proof.e < 1 << CHALLENGE_BITS:
        raise ValidationError("bad-randproof", "empty bundle or response out of range")
    if any(not 0 < v < group.p for v in st.bundle.c1):
        raise ValidationError("bad-randproof", "c1 component out of range")
    t = _statement_hash(group, st)
    key = _cache_key(profile, t, proof)
    if _remembered(key):
        return
    cc = _combined_c1(group, st, t)
    with released_gil():
        a = generator(profile).pow(proof.s) * _gmp.invert(
            _gmp.powmod(cc, proof.e, group.p), group.p) % group.p
    if _challenge(group, t, cc, a) != proof.e:
        raise ValidationError("bad-randproof", "challenge mismatch")
    _remember(key)


def _cache_key(profile: Profile, t: bytes, proof: RandProof) -> bytes:
    s_bytes = int(proof.s).to_bytes((int(proof.s).bit_length() + 7) // 8 or 1, "big")
    parts = (profile.name.encode(), t, int(proof.e).to_bytes(_E_BYTES, "big"), s_bytes)
    return hashlib.sha256(b"".join(len(x).to_bytes(4, "big") + x for x in parts)).digest()


def _remembered(key: bytes) -> bool:
    try:
        _verified.move_to_end(key)
    except KeyError:
        return False
    return True


def _remember(key: bytes) -> None:
    _verified[key] = None
    while len(_verified) > VERIFIED_CACHE:
        try:
            _verified.popitem(last=False)
        except KeyError:  # another thread emptied it first
            break


def is_valid_randomness(profile: Profile, st: RandStatement, proof: RandProof | bytes) -> bool:
    """Bool form of :func:`verify_randomness`."""
    try:
        verify_randomness(profile, st, proof)
    except ValidationError:
        return False
    return True


def encrypt_proven(pk: PublicKey, data: bytes, rng: Rng, sender: bytes, task_id: bytes,
                   round_: int, chunks: int | None = None,
                   bundle_id: bytes = b"") -> tuple[Bundle, RandProof]:
    """Encrypt ``data`` under pk (padded to ``chunks`` elements) and prove its randomness.

    The same ciphertexts as ``elgamal.encrypt``, but the nonces stay here long enough to
    prove knowledge of them; they are dropped on return.
    """
    profile = pk.profile
    p = profile.group.p
    ms = encode(profile.group, data, chunks)
    rs = [profile.random_exponent(rng) for _ in ms]
    c1 = generator(profile).pow_many(rs)
    c2 = [m * h % p for m, h in zip(ms, pk.exp.pow_many(rs), strict=True)]
    bundle = Bundle(bundle_id, tuple(c1), tuple(c2))
    proof = prove_randomness(profile, RandStatement(sender, task_id, round_, bundle), rs, rng)
    return bundle, proof
