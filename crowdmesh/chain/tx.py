"""Signed transactions.

Invariants:
- Wire form: ``[chain_id, sender, nonce, kind, payload, fee, signature]`` (canonical msgpack).
- The signature covers ``TX_DOMAIN ‖ pack([chain_id, sender, nonce, kind, payload, fee])``, so
  a transaction cannot be replayed on another chain id (``chain_id``) or twice (``nonce``).
- ``txid`` is SHA-256 of the full wire encoding; both are computed once at construction.
- A constructed ``Transaction`` has well-formed fields; whether its signature, nonce, fee and
  kind are acceptable is decided by :mod:`crowdmesh.chain.rules` against a state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from crowdmesh.chain.codec import (
    U64_MAX,
    Address,
    TxId,
    expect_array,
    expect_bytes,
    expect_text,
    expect_uint,
    pack,
    unpack,
)
from crowdmesh.crypto.identity import AccountKey, verify_signature
from crowdmesh.errors import ValidationError

__all__ = [
    "MAX_CHAIN_ID_LEN",
    "MAX_KIND_LEN",
    "MAX_PAYLOAD_BYTES",
    "MAX_TX_BYTES",
    "TX_DOMAIN",
    "Transaction",
    "decode_tx_fields",
    "make_transaction",
    "minimum_fee",
    "payload_gas",
]

MAX_PAYLOAD_BYTES = 64 * 1024  # the paper's cap (DESIGN.md, Chain)
MAX_TX_BYTES = MAX_PAYLOAD_BYTES + 256  # fixed fields fit easily in 256 bytes
MAX_CHAIN_ID_LEN = 32
MAX_KIND_LEN = 32
TX_DOMAIN = b"crowdmesh/tx/1\x00"
GAS_BASE = 21000
GAS_NONZERO_BYTE = 16
GAS_ZERO_BYTE = 4
GAS_STORAGE_WORD = 20000


def payload_gas(payload: bytes) -> int:
    """Ethereum-equivalent calldata gas of ``payload`` (16 per non-zero byte, 4 per zero)."""
    zeros = payload.count(0)
    return GAS_NONZERO_BYTE * (len(payload) - zeros) + GAS_ZERO_BYTE * zeros


def _check_chain_id(chain_id: str) -> None:
    if not chain_id or len(chain_id) > MAX_CHAIN_ID_LEN or not chain_id.isascii():
        raise ValidationError("bad-chain-id", repr(chain_id))


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed call of native contract ``kind`` with msgpack ``payload``."""

    chain_id: str
    sender: Address
    nonce: int
    kind: str
    payload: bytes
    fee: int
    signature: bytes
    encoded: bytes = field(init=False, repr=False, compare=False)
    txid: TxId = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_chain_id(self.chain_id)
        if len(self.sender) != 32 or len(self.signature) != 64:
            raise ValidationError("bad-tx-field", "sender is 32 bytes, signature 64")
        if not (0 <= self.nonce <= U64_MAX and 0 <= self.fee <= U64_MAX):
            raise ValidationError("bad-tx-field", "nonce and fee are u64")
        if not self.kind or len(self.kind) > MAX_KIND_LEN:
            raise ValidationError("bad-tx-field", "kind")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValidationError("bad-tx-payload-size", f"{len(self.payload)} bytes")
        encoded = pack(self.to_list())
        object.__setattr__(self, "encoded", encoded)
        object.__setattr__(self, "txid", TxId(hashlib.sha256(encoded).digest()))

    def to_list(self) -> list[Any]:
        """The wire array."""
        return [self.chain_id, self.sender, self.nonce, self.kind, self.payload, self.fee,
                self.signature]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return self.encoded

    @classmethod
    def decode(cls, data: bytes) -> Transaction:
        """Strictly decode wire bytes.

        Raises:
            DecodeError: size cap, malformed or non-canonical bytes, wrong field types.
            ValidationError: well-typed but out-of-range fields (``bad-tx-payload-size``, ...).
        """
        return decode_tx_fields(unpack(data, MAX_TX_BYTES))

    def signing_bytes(self) -> bytes:
        """The message the sender signs."""
        return signing_message(self.chain_id, self.sender, self.nonce, self.kind, self.payload,
                               self.fee)

    def has_valid_signature(self) -> bool:
        """True iff ``signature`` is the sender's Ed25519 signature of ``signing_bytes()``."""
        return verify_signature(self.sender, self.signing_bytes(), self.signature)

    @property
    def intrinsic_gas(self) -> int:
        """Gas before storage: 21000 + calldata gas of the payload."""
        return GAS_BASE + payload_gas(self.payload)  # minimum_fee relies on this formula

    def gas(self, new_words: int = 0) -> int:
        """Ethereum-equivalent gas given ``new_words`` newly written 32-byte storage words."""
        return self.intrinsic_gas + GAS_STORAGE_WORD * new_words


def minimum_fee(payload: bytes, min_gas_price: int) -> int:
    """The lowest fee a transaction carrying ``payload`` may pay (``bad-tx-fee`` below it)."""
    return (GAS_BASE + payload_gas(payload)) * min_gas_price


def signing_message(chain_id: str, sender: bytes, nonce: int, kind: str, payload: bytes,
                    fee: int) -> bytes:
    """Domain-separated bytes covered by a transaction signature."""
    return TX_DOMAIN + pack([chain_id, sender, nonce, kind, payload, fee])


def decode_tx_fields(obj: Any) -> Transaction:
    """Build a transaction from an already-unpacked wire array (used inside block bodies)."""
    chain_id, sender, nonce, kind, payload, fee, sig = expect_array(obj, 7, "tx")
    return Transaction(
        chain_id=expect_text(chain_id, "tx.chain_id", MAX_CHAIN_ID_LEN),
        sender=Address(expect_bytes(sender, "tx.sender", 32)),
        nonce=expect_uint(nonce, "tx.nonce"),
        kind=expect_text(kind, "tx.kind", MAX_KIND_LEN),
        payload=expect_bytes(payload, "tx.payload"),
        fee=expect_uint(fee, "tx.fee"),
        signature=expect_bytes(sig, "tx.signature", 64),
    )


def make_transaction(key: AccountKey, chain_id: str, nonce: int, kind: str, payload: bytes,
                     fee: int) -> Transaction:
    """Sign and return a transaction from ``key``'s account."""
    sender = Address(key.public)
    sig = key.sign(signing_message(chain_id, sender, nonce, kind, payload, fee))
    return Transaction(chain_id, sender, nonce, kind, payload, fee, sig)
