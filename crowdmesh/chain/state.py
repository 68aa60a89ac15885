"""Journaled key-value state, accounts, and the MuHash state commitment.

Invariants:
- :class:`State` is an overlay over a read function. ``snapshot()`` returns a journal position;
  ``revert(pos)`` undoes every write after it, so a failing transaction changes nothing.
- ``diff()`` returns the net overlay (``None`` = deleted) and the committed value of every key
  it changes: a block's state diff and its undo record.
- The state root commits to the whole key-value set with MuHash3072 (the multiset hash Bitcoin
  Core uses for its UTXO set): each entry maps to an element of Z_p*, p = 2**3072 - 1103717,
  and the accumulator is their product. A block updates it in O(keys touched): multiply in the
  new entries, divide out the old ones (one inversion per block). Root = SHA-256(accumulator).
- Account value: ``pack([balance, nonce, reputation])``; balance and nonce are u64, reputation a
  signed 64-bit integer. A missing account reads as all zeros and is never stored as zeros.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gmpy2

from crowdmesh.chain.codec import U64_MAX, Address, expect_array, expect_uint, pack, unpack
from crowdmesh.errors import ValidationError

__all__ = [
    "ACCOUNT_PREFIX",
    "MUHASH_ONE",
    "Account",
    "State",
    "account_key",
    "muhash_of",
    "muhash_update",
    "state_root",
]

MUHASH_P = (1 << 3072) - 1103717
MUHASH_ONE = 1
ACCOUNT_PREFIX = b"a"
_MISSING = object()
_P = gmpy2.mpz(MUHASH_P)
I64 = 1 << 63


def _element(key: bytes, value: bytes) -> Any:
    """Map one (key, value) entry to an element of Z_p* (length-prefixed: unambiguous)."""
    data = len(key).to_bytes(2, "big") + key + value
    x = int.from_bytes(hashlib.shake_256(b"crowdmesh/state/1" + data).digest(384), "little")
    return gmpy2.mpz(x % MUHASH_P or 1)


def muhash_update(acc: int, old: Mapping[bytes, bytes | None],
                  new: Mapping[bytes, bytes | None]) -> int:
    """Return ``acc`` with the ``old`` entries removed and the ``new`` entries added."""
    num = gmpy2.mpz(acc)
    for k, v in new.items():
        if v is not None:
            num = num * _element(k, v) % _P
    den = gmpy2.mpz(1)
    for k, v in old.items():
        if v is not None:
            den = den * _element(k, v) % _P
    return int(num * gmpy2.invert(den, _P) % _P)


def muhash_of(items: Iterable[tuple[bytes, bytes]]) -> int:
    """The accumulator of a whole key-value set (reference and ``check_db``)."""
    acc = gmpy2.mpz(1)
    for k, v in items:
        acc = acc * _element(k, v) % _P
    return int(acc)


def state_root(acc: int) -> bytes:
    """The 32-byte state root committed in block headers."""
    return hashlib.sha256(acc.to_bytes(384, "big")).digest()


def account_key(addr: bytes) -> bytes:
    """State key of an account."""
    return ACCOUNT_PREFIX + addr


@dataclass(frozen=True, slots=True)
class Account:
    """An account's balance, next nonce and reputation."""

    balance: int = 0
    nonce: int = 0
    reputation: int = 0

    def encode(self) -> bytes | None:
        """State value, or None for the all-zero account (never stored)."""
        if self == _ZERO:
            return None
        return pack([self.balance, self.nonce, self.reputation])

    @classmethod
    def decode(cls, data: bytes) -> Account:
        """Decode a stored account value."""
        bal, nonce, rep = expect_array(unpack(data, 64), 3, "account")
        if type(rep) is not int or not -I64 <= rep < I64:
            raise ValidationError("bad-account")
        return cls(expect_uint(bal, "balance"), expect_uint(nonce, "nonce"), rep)


_ZERO = Account()


class State:
    """A journaled overlay over ``reader`` (the committed state)."""

    __slots__ = ("_journal", "_reader", "_writes")

    def __init__(self, reader: Callable[[bytes], bytes | None]) -> None:
        self._reader = reader
        self._writes: dict[bytes, bytes | None] = {}
        self._journal: list[tuple[bytes, object]] = []

    def get(self, key: bytes) -> bytes | None:
        """Current value of ``key`` (None if absent)."""
        if key in self._writes:
            return self._writes[key]
        return self._reader(key)

    def set(self, key: bytes, value: bytes | None) -> None:
        """Write ``value`` (None deletes)."""
        self._journal.append((key, self._writes.get(key, _MISSING)))
        self._writes[key] = value

    def snapshot(self) -> int:
        """A journal position to ``revert`` to."""
        return len(self._journal)

    def revert(self, snap: int) -> None:
        """Undo every write made after ``snapshot()`` returned ``snap``."""
        while len(self._journal) > snap:
            key, prev = self._journal.pop()
            if prev is _MISSING:
                del self._writes[key]
            else:
                self._writes[key] = prev  # type: ignore[assignment]

    def diff(self) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes | None]]:
        """(net writes that differ from the committed state, their committed values).

        The second map is the undo record of the first.
        """
        new: dict[bytes, bytes | None] = {}
        old: dict[bytes, bytes | None] = {}
        for key, value in self._writes.items():
            before = self._reader(key)
            if before != value:
                new[key] = value
                old[key] = before
        return new, old

    def new_words_since(self, snap: int) -> int:
        """32-byte storage words in keys created after ``snap`` (for the gas report)."""
        before: dict[bytes, object] = {}
        for key, prev in self._journal[snap:]:
            before.setdefault(key, prev)
        words = 0
        for key, prev in before.items():
            old = self._reader(key) if prev is _MISSING else prev
            new = self.get(key)
            if old is None and new is not None:
                words += (len(new) + 31) // 32
        return words

    def account(self, addr: bytes) -> Account:
        """The account at ``addr`` (zeros if absent)."""
        raw = self.get(account_key(addr))
        return Account() if raw is None else Account.decode(raw)

    def put_account(self, addr: bytes, acct: Account) -> None:
        """Store ``acct`` at ``addr``."""
        self.set(account_key(addr), acct.encode())

    def credit(self, addr: Address | bytes, amount: int) -> None:
        """Add ``amount`` to ``addr``'s balance or raise ``bad-balance-overflow`` (u64).

        The genesis issuance bound makes this unreachable for valid chains; it is checked so a
        bad block is refused with a code instead of crashing the encoder.
        """
        a = self.account(addr)
        if a.balance + amount > U64_MAX:
            raise ValidationError("bad-balance-overflow", f"{a.balance} + {amount}")
        self.put_account(addr, Account(a.balance + amount, a.nonce, a.reputation))

    def debit(self, addr: Address | bytes, amount: int, code: str = "bad-tx-overspend") -> None:
        """Subtract ``amount`` from ``addr``'s balance or raise ``code``."""
        a = self.account(addr)
        if a.balance < amount:
            raise ValidationError(code, f"balance {a.balance} < {amount}")
        self.put_account(addr, Account(a.balance - amount, a.nonce, a.reputation))
