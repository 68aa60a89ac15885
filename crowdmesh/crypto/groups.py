"""RFC 7919 finite-field groups, their quadratic-residue subgroups, and the crypto profiles.

Invariants:
- Every :class:`Group` has a safe prime p = 2q + 1 with q prime (RFC 7919 ffdhe groups), and
  g = 2, which generates the subgroup of quadratic residues (order q) because p ≡ 7 (mod 8).
- A *group element* is an integer y with 1 ≤ y < p and Legendre(y, p) = +1; nothing else is
  accepted from outside (:func:`validate_element` raises ``bad-group-element``).
- A :class:`Profile` fixes the group, the exponent length and whether fixed-base tables are used.
  Short exponents (``exponent_bits``) are drawn uniformly from [1, 2^bits); full-length ones
  from [1, q). ``default`` = ffdhe3072 with 280-bit exponents and tables; ``paper`` = ffdhe2048
  with full-length exponents in Z_q and no tables (CRYPTO.md §2).
- Long exponentiations go through :func:`pow_bases` / :func:`pow_exps` (gmpy2's list functions,
  which always release the GIL) or run under :func:`released_gil`, so a daemon thread doing them
  never freezes the node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import gmpy2

from crowdmesh.crypto import _gmp
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import UsageError, ValidationError

__all__ = [
    "DEFAULT",
    "FFDHE2048",
    "FFDHE3072",
    "PAPER",
    "PROFILES",
    "Group",
    "Profile",
    "batch_invert",
    "get_profile",
    "is_element",
    "pow_bases",
    "pow_exps",
    "released_gil",
    "validate_element",
]

# RFC 7919 Appendix A.1 (ffdhe2048) and A.2 (ffdhe3072), p in hex as in the RFC. Both primes
# start with the same 448 hex digits (the binary expansion of e); the test suite recomputes both
# from the RFC's formula p = 2^b − 2^(b−64) + {[2^(b−130) e] + X}·2^64 − 1.
_RFC7919_COMMON_HEX = (
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
)
_FFDHE2048_P = int(
    _RFC7919_COMMON_HEX + "C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF", 16
)
_FFDHE3072_P = int(
    _RFC7919_COMMON_HEX + "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B"
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C"
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF"
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E"
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B66C62E37FFFFFFFFFFFFFFFF",
    16,
)


@dataclass(frozen=True, slots=True)
class Group:
    """A safe-prime group Z_p^* restricted to its quadratic residues (prime order q)."""

    name: str
    p: int
    g: int = 2

    @property
    def q(self) -> int:
        """The prime order of the QR subgroup, (p − 1) / 2."""
        return (self.p - 1) // 2

    @property
    def element_bytes(self) -> int:
        """Fixed length of an element's big-endian encoding (384 for ffdhe3072)."""
        return (self.p.bit_length() + 7) // 8

    @property
    def chunk_bytes(self) -> int:
        """Message bytes per element, k = ⌊(|q| − 1)/8⌋ (CRYPTO.md §3): 383 for ffdhe3072."""
        return (self.q.bit_length() - 1) // 8


FFDHE2048 = Group("ffdhe2048", _gmp.mpz(_FFDHE2048_P))
FFDHE3072 = Group("ffdhe3072", _gmp.mpz(_FFDHE3072_P))


@dataclass(frozen=True, slots=True)
class Profile:
    """Group plus exponent policy; ``exponent_bits=None`` means full-length exponents in Z_q."""

    name: str
    group: Group
    exponent_bits: int | None
    tables: bool
    window_bits: int = 8

    @property
    def secret_bits(self) -> int:
        """Bit length bound of every secret exponent (keys, encryption and blinding nonces)."""
        return self.exponent_bits or self.group.q.bit_length()

    def random_exponent(self, rng: Rng) -> int:
        """A fresh non-zero secret exponent: [1, 2^bits) for short, [1, q) for full-length."""
        if self.exponent_bits is None:
            return _gmp.mpz(1 + rng.randbelow(self.group.q - 1))
        while True:  # rejects only 0: probability 2^-bits
            r = rng.randbits(self.exponent_bits)
            if r:
                return _gmp.mpz(r)


DEFAULT = Profile("default", FFDHE3072, exponent_bits=280, tables=True)
PAPER = Profile("paper", FFDHE2048, exponent_bits=None, tables=False)
PROFILES: dict[str, Profile] = {DEFAULT.name: DEFAULT, PAPER.name: PAPER}


def get_profile(name: str) -> Profile:
    """Look a profile up by name; raises ``UsageError('unknown-profile')``."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError("unknown-profile", name) from None


def is_element(group: Group, y: int) -> bool:
    """True iff y is in the QR subgroup: 1 ≤ y < p and Legendre(y, p) = +1."""
    return 0 < y < group.p and _gmp.legendre(y, group.p) == 1


def validate_element(group: Group, y: int) -> None:
    """Raise ``ValidationError('bad-group-element')`` unless y is in the QR subgroup."""
    if not is_element(group, y):
        raise ValidationError("bad-group-element", f"not in the QR subgroup of {group.name}")


@contextmanager
def released_gil() -> Iterator[None]:
    """Run gmpy2 arithmetic in a context that releases the GIL during long operations.

    gmpy2's default context holds the GIL for a whole powmod (CRYPTO.md §2, "Threads").
    """
    with gmpy2.context(gmpy2.get_context(), allow_release_gil=True):
        yield


def pow_bases(bases: Sequence[int], exp: int, p: int) -> list[int]:
    """[b^exp mod p for b in bases], in C and with the GIL released (gmpy2.powmod_base_list)."""
    return _gmp.powmod_base_list(bases, exp, p)


def pow_exps(base: int, exps: Sequence[int], p: int) -> list[int]:
    """[base^e mod p for e in exps], in C and with the GIL released (gmpy2.powmod_exp_list)."""
    return _gmp.powmod_exp_list(base, exps, p)


def batch_invert(values: Sequence[int], p: int) -> list[int]:
    """Inverses of non-zero residues mod p with one inversion (Montgomery's trick).

    Three multiplications per value instead of one ~30 µs inversion each.
    """
    n = len(values)
    if n == 0:
        return []
    prefix = [_gmp.mpz(1)] * n
    acc = _gmp.mpz(1)
    for i, v in enumerate(values):
        prefix[i] = acc
        acc = acc * v % p
    inv = _gmp.invert(acc, p)
    out = [_gmp.mpz(0)] * n
    for i in range(n - 1, -1, -1):
        out[i] = inv * prefix[i] % p
        inv = inv * values[i] % p
    return out
