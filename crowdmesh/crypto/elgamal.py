"""ElGamal over bundles of QR-subgroup elements: KeyGen, joint key, Enc, ReEnc, Blind, Dec.

Invariants:
- A ciphertext of m under h is (c1, c2) = (g^r, m·h^r) with a fresh secret r per chunk; a
  :class:`Bundle` holds the chunks of one model as two equal-length columns plus an id.
- Joint key PK = h_csp·h_req. ReEnc with sk_csp maps a ciphertext under PK to one under h_req
  (c2' = c2 / c1^sk_csp, c1 unchanged); Dec with sk strips h = g^sk.
- Blind re-randomises with a fresh r' per chunk under the key the ciphertext is currently
  under: (c1·g^r', c2·h^r'). Both components change.
- Which exponentiation is used follows the profile: fixed-base tables for g, PK and h_req in
  ``default``; plain powmods (list functions, GIL released) in ``paper``. Variable-base work
  (ReEnc, Dec) always runs in ``powmod_base_list``, which releases the GIL.
- Long bundle operations accept ``progress``, a callback told how many chunks were just done,
  and a ``mapper`` that runs their slices (serially by default, or on a process pool supplied
  by the daemon). Secret nonces are drawn by the caller before slicing, so the output does not
  depend on the mapper. A :class:`PublicKey` pickles as (profile, h) and is rebuilt, tables
  included, at most once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from crowdmesh.crypto import _gmp
from crowdmesh.crypto._fixedbase import Exponentiator, FixedBase, PlainBase
from crowdmesh.crypto._mapper import SERIAL, Mapper, split
from crowdmesh.crypto.encoding import (
    decode_buffer,
    elements_from_bytes,
    elements_to_bytes,
    encode_buffer,
    pad,
    unpad,
)
from crowdmesh.crypto.groups import (
    Group,
    Profile,
    batch_invert,
    is_element,
    pow_bases,
    validate_element,
)
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import DecodeError, UsageError, ValidationError

__all__ = [
    "Bundle",
    "KeyPair",
    "Progress",
    "PublicKey",
    "blind",
    "decrypt",
    "decrypt_elements",
    "encrypt",
    "encrypt_elements",
    "generator",
    "joint_key",
    "keygen",
    "pack_columns",
    "public_key",
    "reencrypt",
    "unpack_columns",
]

Progress = Callable[[int], None]
SLICE = 128  # chunks per progress report: ~0.1 s of work in the default profile


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An ElGamal secret exponent and its public key g^sk."""

    sk: int
    pk: int


@dataclass(frozen=True, slots=True)
class Bundle:
    """The ciphertext chunks of one model: columns c1, c2 of equal length, and an id."""

    bundle_id: bytes
    c1: tuple[int, ...]
    c2: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.c1) != len(self.c2):
            raise ValidationError("bad-bundle-shape", "c1 and c2 differ in length")

    def __len__(self) -> int:
        return len(self.c1)

    def to_bytes(self, group: Group) -> bytes:
        """Wire form: u8 id length ‖ id ‖ u32 chunk count ‖ c1 column ‖ c2 column."""
        return pack_columns(group, self.bundle_id, (self.c1, self.c2))

    @classmethod
    def from_bytes(cls, group: Group, data: bytes, max_chunks: int) -> Bundle:
        """Strict parse (``DecodeError``); the subgroup check is :meth:`validate`."""
        bundle_id, (c1, c2), rest = unpack_columns(group, data, 2, max_chunks)
        if rest:
            raise DecodeError("bad-bundle-encoding", "trailing bytes")
        return cls(bundle_id, c1, c2)

    def validate(self, group: Group, mapper: Mapper = SERIAL) -> None:
        """Raise ``ValidationError('bad-group-element')`` unless every component is in the
        QR subgroup (a non-residue would survive blinding and tag the bundle)."""
        values = (*self.c1, *self.c2)
        jobs = [(group, values[s]) for s in split(len(values), 2 * SLICE)]
        if not all(mapper.map(_all_elements_job, jobs)):
            raise ValidationError("bad-group-element", f"in bundle {self.bundle_id.hex()}")


def pack_columns(group: Group, bundle_id: bytes, columns: Sequence[Sequence[int]]) -> bytes:
    """u8 id length ‖ id ‖ u32 count ‖ each column's elements (all columns equally long)."""
    if len(bundle_id) > 255 or len({len(c) for c in columns}) != 1:
        raise UsageError("bad-bundle-shape", "id over 255 bytes or unequal columns")
    head = bytes([len(bundle_id)]) + bundle_id + len(columns[0]).to_bytes(4, "big")
    return head + b"".join(elements_to_bytes(group, c) for c in columns)


def unpack_columns(
    group: Group, data: bytes, ncolumns: int, max_chunks: int
) -> tuple[bytes, list[tuple[int, ...]], bytes]:
    """Inverse of :func:`pack_columns`; returns (id, columns, remaining bytes).

    Raises ``DecodeError('bad-bundle-encoding')`` on truncation or a count over ``max_chunks``
    (checked before any element is parsed), and ``bad-element-encoding`` on a value ∉ (0, p).
    """
    if not data or len(data) < 1 + data[0] + 4:
        raise DecodeError("bad-bundle-encoding", "truncated header")
    id_end = 1 + data[0]
    count = int.from_bytes(data[id_end : id_end + 4], "big")
    body = id_end + 4
    size = count * group.element_bytes
    if count > max_chunks or len(data) < body + ncolumns * size:
        raise DecodeError("bad-bundle-encoding", f"{count} chunks (cap {max_chunks}) or truncated")
    columns = [
        tuple(elements_from_bytes(group, data[body + i * size : body + (i + 1) * size]))
        for i in range(ncolumns)
    ]
    return data[1:id_end], columns, data[body + ncolumns * size :]


def _all_elements_job(job: tuple[Group, Sequence[int]]) -> bool:
    group, values = job
    return all(is_element(group, v) for v in values)


class PublicKey:
    """An encryption key h with its exponentiator (a fixed-base table in table profiles)."""

    __slots__ = ("exp", "h", "profile")

    def __init__(self, profile: Profile, h: int) -> None:
        validate_element(profile.group, h)
        self.profile = profile
        self.h = _gmp.mpz(h)
        self.exp: Exponentiator = _exponentiator(profile, self.h)

    def __reduce__(self) -> tuple[Callable[[Profile, int], PublicKey], tuple[Profile, int]]:
        # Ship (profile, h), not the 3.4 MB table; the receiving process builds it once.
        return _cached_public_key, (self.profile, self.h)


@lru_cache(maxsize=4)
def _cached_public_key(profile: Profile, h: int) -> PublicKey:
    return PublicKey(profile, h)


def _exponentiator(profile: Profile, base: int) -> Exponentiator:
    p = profile.group.p
    if profile.tables and profile.exponent_bits is not None:
        return FixedBase(base, p, profile.exponent_bits, profile.window_bits)
    return PlainBase(base, p)


@lru_cache(maxsize=8)
def generator(profile: Profile) -> Exponentiator:
    """g's exponentiator for a profile, built once per process (a pure, memoised function)."""
    return _exponentiator(profile, profile.group.g)


def public_key(profile: Profile, h: int) -> PublicKey:
    """Wrap and validate a public key (builds its table: ~0.04 s, 3.4 MB in ``default``)."""
    return PublicKey(profile, h)


def keygen(profile: Profile, rng: Rng) -> KeyPair:
    """A fresh key pair with a secret of the profile's exponent length."""
    sk = profile.random_exponent(rng)
    return KeyPair(sk, generator(profile).pow(sk))


def joint_key(group: Group, *keys: int) -> int:
    """PK = ∏ keys mod p, each checked to be a subgroup element.

    Only keys whose PoK has been verified may be combined (rogue-key attack, CRYPTO.md §4a).
    """
    acc = _gmp.mpz(1)
    for h in keys:
        validate_element(group, h)
        acc = acc * h % group.p
    return acc


def _report(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)


_MaskJob = tuple[PublicKey, Sequence[int] | None, Sequence[int], Sequence[int]]


def _mask_job(job: _MaskJob) -> tuple[list[int], list[int]]:
    """(left_i·g^r_i, right_i·h^r_i): Enc when left is None (all ones), Blind otherwise."""
    pk, left, right, rs = job
    p = pk.profile.group.p
    gs, hs = generator(pk.profile).pow_many(rs), pk.exp.pow_many(rs)
    c1 = gs if left is None else [a * b % p for a, b in zip(left, gs, strict=True)]
    return c1, [a * b % p for a, b in zip(right, hs, strict=True)]


def _collect(
    results: Iterable[tuple[list[int], list[int]]], progress: Progress | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    c1: list[int] = []
    c2: list[int] = []
    for a, b in results:
        c1 += a
        c2 += b
        _report(progress, len(a))
    return tuple(c1), tuple(c2)


def _mask_all(
    pk: PublicKey,
    left: Sequence[int] | None,
    right: Sequence[int],
    rng: Rng,
    progress: Progress | None,
    mapper: Mapper,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rs = [pk.profile.random_exponent(rng) for _ in right]  # drawn here: mapper-independent
    jobs = [(pk, None if left is None else left[s], right[s], rs[s]) for s in split(len(rs), SLICE)]
    return _collect(mapper.map(_mask_job, jobs), progress)


def _encrypt_job(job: tuple[PublicKey, bytes, Sequence[int]]) -> tuple[list[int], list[int]]:
    """Encode one slice of the padded buffer and encrypt it (encoding runs in the job too)."""
    pk, buf, rs = job
    return _mask_job((pk, None, encode_buffer(pk.profile.group, buf), rs))


def encrypt_elements(
    pk: PublicKey,
    ms: Sequence[int],
    rng: Rng,
    bundle_id: bytes = b"",
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> Bundle:
    """Encrypt group elements chunk by chunk, each with a fresh r."""
    return Bundle(bundle_id, *_mask_all(pk, None, ms, rng, progress, mapper))


def encrypt(
    pk: PublicKey,
    data: bytes,
    rng: Rng,
    chunks: int | None = None,
    bundle_id: bytes = b"",
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> Bundle:
    """Encode ``data`` (padded to ``chunks`` elements if given) and encrypt it under pk."""
    k = pk.profile.group.chunk_bytes
    buf = pad(pk.profile.group, data, chunks)
    rs = [pk.profile.random_exponent(rng) for _ in range(len(buf) // k)]
    jobs = [(pk, buf[s.start * k : s.stop * k], rs[s]) for s in split(len(rs), SLICE)]
    return Bundle(bundle_id, *_collect(mapper.map(_encrypt_job, jobs), progress))


def blind(
    pk: PublicKey,
    bundle: Bundle,
    rng: Rng,
    bundle_id: bytes | None = None,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> Bundle:
    """Re-randomise every chunk under pk (the key it is encrypted under) with a fresh r'."""
    c1, c2 = _mask_all(pk, bundle.c1, bundle.c2, rng, progress, mapper)
    return Bundle(bundle.bundle_id if bundle_id is None else bundle_id, c1, c2)


def _strip_job(job: tuple[Group, int, Sequence[int], Sequence[int]]) -> list[int]:
    """c2_i / c1_i^sk for one slice: powmods in C (GIL released), one batched inversion."""
    group, sk, c1, c2 = job
    p = group.p
    inverses = batch_invert(pow_bases(c1, sk, p), p)
    return [a * b % p for a, b in zip(c2, inverses, strict=True)]


def _strip_jobs(
    group: Group, sk: int, c1: Sequence[int], c2: Sequence[int]
) -> list[tuple[Group, int, Sequence[int], Sequence[int]]]:
    """One job per SLICE chunks (shared by ReEnc, Dec to elements and Dec to bytes)."""
    return [(group, sk, c1[s], c2[s]) for s in split(len(c1), SLICE)]


def _strip_key(
    group: Group,
    sk: int,
    c1: Sequence[int],
    c2: Sequence[int],
    progress: Progress | None,
    mapper: Mapper,
) -> list[int]:
    """c2_i / c1_i^sk for every chunk (shared by ReEnc and Dec)."""
    out: list[int] = []
    for part in mapper.map(_strip_job, _strip_jobs(group, sk, c1, c2)):
        out += part
        _report(progress, len(part))
    return out


def reencrypt(
    profile: Profile,
    sk_csp: int,
    bundle: Bundle,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> Bundle:
    """ReEnc: from PK = h_csp·h_req to h_req by stripping sk_csp; c1 stays as it is."""
    c2 = _strip_key(profile.group, sk_csp, bundle.c1, bundle.c2, progress, mapper)
    return Bundle(bundle.bundle_id, bundle.c1, tuple(c2))


def decrypt_elements(
    profile: Profile,
    sk: int,
    bundle: Bundle,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> list[int]:
    """Dec to group elements: m_i = c2_i / c1_i^sk."""
    return _strip_key(profile.group, sk, bundle.c1, bundle.c2, progress, mapper)


def decrypt(
    profile: Profile,
    sk: int,
    bundle: Bundle,
    progress: Progress | None = None,
    mapper: Mapper = SERIAL,
) -> bytes:
    """Dec and decode to the original bytes; raises ``DecodeError`` on a malformed plaintext."""
    group = profile.group
    parts: list[bytes] = []
    for part in mapper.map(_decrypt_job, _strip_jobs(group, sk, bundle.c1, bundle.c2)):
        if isinstance(part, tuple):
            raise DecodeError(*part)
        parts.append(part)
        _report(progress, len(part) // group.chunk_bytes)
    return unpad(b"".join(parts))


def _decrypt_job(job: tuple[Group, int, Sequence[int], Sequence[int]]) -> bytes | tuple[str, str]:
    """Dec and element decoding of one slice. A decoding failure comes back as (code, detail):
    crowdmesh errors do not survive pickling across a process pool with their code intact."""
    try:
        return decode_buffer(job[0], _strip_job(job))
    except DecodeError as exc:
        return exc.code, exc.detail
