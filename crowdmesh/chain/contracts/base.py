"""What every native contract receives and returns.

Invariants:
- A contract is a pure function ``(state, tx, ctx) -> events``. It reads and writes only through
  the journaled :class:`~crowdmesh.chain.state.State`; the caller snapshots before the call and
  reverts on :class:`ValidationError`, so a contract that raises changes nothing.
- Contracts never see wall-clock time: ``ctx.timestamp`` is the block's timestamp and
  ``ctx.height`` its height.
- An :class:`Event` is a name plus a tuple of plain values (``int`` in [-2**63, 2**64 - 1],
  ``bytes``, ``str``), bounded in count and size, checked when it is constructed: an event a
  contract cannot store raises ``ValidationError("bad-event")`` inside the contract call, so the
  transaction is rejected (identically on every node) and every connected block's receipts
  encode. Stored form: canonical msgpack ``[name, [field, ...]]``; :meth:`Event.decode` is
  strict (size cap first, exact shape, exact types: no bool, float, list or extra item).
- Contract state keys start with the contract's own one-byte prefix (``a`` is accounts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crowdmesh.chain.codec import U64_MAX, BlockHash, TxId, expect_array, expect_list, pack, unpack
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import MAX_PAYLOAD_BYTES, Transaction
from crowdmesh.errors import DecodeError, ValidationError

if TYPE_CHECKING:
    from crowdmesh.chain.genesis import Genesis

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_EVENT_FIELDS",
    "MAX_EVENT_NAME_LEN",
    "MAX_EVENT_VALUE_LEN",
    "Contract",
    "Event",
    "EventValue",
    "TxContext",
    "decode_payload",
]

EventValue = int | bytes | str

# Events carry ids, hashes, keys and amounts, not payloads: these bounds keep one event (and so
# a receipt, see rules.MAX_RECEIPT_EVENTS) small however a transaction is crafted.
MAX_EVENT_NAME_LEN = 64  # characters
MAX_EVENT_FIELDS = 16
MAX_EVENT_VALUE_LEN = 4096  # bytes, or characters of text (an ffdhe3072 element is 384 bytes)
_INT_MIN = -(1 << 63)  # msgpack's int range: [-2**63, 2**64 - 1]
# Worst case: 4 UTF-8 bytes per character, 5 bytes of msgpack header per item, array headers.
MAX_EVENT_BYTES = 16 + 4 * MAX_EVENT_NAME_LEN + MAX_EVENT_FIELDS * (5 + 4 * MAX_EVENT_VALUE_LEN)


@dataclass(frozen=True, slots=True)
class Event:
    """Something a contract reports (past tense names: ``transferred``, ``key-registered``).

    Raises:
        ValidationError: ``bad-event`` if the name or a value is of the wrong type or too big.
    """

    name: str
    fields: tuple[EventValue, ...] = ()

    def __post_init__(self) -> None:
        if type(self.name) is not str or not 0 < len(self.name) <= MAX_EVENT_NAME_LEN:
            raise ValidationError("bad-event", "name")
        if type(self.fields) is not tuple or len(self.fields) > MAX_EVENT_FIELDS:
            raise ValidationError("bad-event", f"{self.name}: fields")
        for v in self.fields:  # exact types: a bool is not an int, a bytearray not bytes
            if type(v) is int:
                if not _INT_MIN <= v <= U64_MAX:
                    raise ValidationError("bad-event", f"{self.name}: int out of range")
            elif type(v) is bytes or type(v) is str:
                if len(v) > MAX_EVENT_VALUE_LEN:
                    raise ValidationError("bad-event", f"{self.name}: value too long")
            else:
                raise ValidationError("bad-event", f"{self.name}: a value is not int|bytes|str")

    def to_obj(self) -> list[Any]:
        """The msgpack object (``[name, [field, ...]]``), to nest in larger records."""
        return [self.name, list(self.fields)]

    @classmethod
    def from_obj(cls, obj: Any) -> Event:
        """Rebuild from an already-unpacked object.

        Raises:
            DecodeError: ``bad-shape`` or ``bad-field``.
        """
        name, fields = expect_array(obj, 2, "event")
        values = expect_list(fields, MAX_EVENT_FIELDS, "event fields")
        try:
            return cls(name, tuple(values))
        except ValidationError as exc:
            raise DecodeError("bad-field", exc.detail) from None

    def encode(self) -> bytes:
        """Canonical stored form."""
        return pack(self.to_obj())

    @classmethod
    def decode(cls, data: bytes) -> Event:
        """Parse one stored event strictly.

        Raises:
            DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
                ``bad-field``.
        """
        return cls.from_obj(unpack(data, MAX_EVENT_BYTES))


def _no_history(height: int) -> BlockHash | None:
    return None


@dataclass(frozen=True, slots=True)
class TxContext:
    """The block-level facts a contract may depend on.

    ``hash_at(h)`` is the hash of the ancestor at height ``h`` of the block the transaction is
    in (None at or above that block's height): the same answer on every node, whatever its
    head, so a contract may use a past block hash as an unpredictable beacon. ``genesis`` holds
    the network's parameters (a contract reads its own section).
    """

    chain_id: str
    height: int
    timestamp: int
    block_parent: BlockHash
    txid: TxId
    genesis: Genesis | None = None
    hash_at: Callable[[int], BlockHash | None] = _no_history


Contract = Callable[[State, Transaction, TxContext], tuple[Event, ...]]


def decode_payload(payload: bytes, code: str) -> Any:
    """Unpack a contract payload; malformed payloads raise ``ValidationError(code)``.

    A payload is inside an already-valid transaction, so its defects are rule violations of the
    contract (the transaction is rejected with ``code``), not wire decode errors.
    """
    try:
        return unpack(payload, MAX_PAYLOAD_BYTES)
    except DecodeError as exc:
        raise ValidationError(code, exc.code) from exc
