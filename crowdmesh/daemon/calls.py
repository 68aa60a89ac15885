"""Daemon-owned signing: roles ask for contract calls, the daemon signs, sends and follows them.

A role returns ``SubmitCall(call_id, kind, payload)``; :class:`CallService` signs it with the
node's ``[account]`` key (pending nonce, minimum fee), keeps it until it is final, and answers
the role instance with ``CallIncluded`` / ``CallReverted`` / ``CallRejected``.

Invariants:
- Roles never see a secret key: only this module holds the :class:`AccountKey`.
- A call is written to the role store (namespace ``calls``) WITH its signed transaction before
  the transaction can leave the node. After a crash the same bytes are resubmitted, so a call
  is neither lost nor sent twice (the txid is the same); a known ``(role, instance, call_id)``
  is never signed again.
- :meth:`CallService.reconcile` runs after every head change and at start. For each call, in
  signing order: in a main-chain block → ``CallIncluded`` once per block that carries it;
  previously reported but no longer on the main chain (a reorg) → ``CallReverted``, then it is
  resubmitted; pooled or waiting for its predecessor → nothing; its nonce used by another
  transaction → signed again with the pending nonce; refused for good → ``CallRejected``.
- A new call's nonce is past the pending nonce AND past every call in flight: calls the pool
  cannot take yet (``mempool-sender-full``, a full gap buffer) stay in flight unpooled, and
  the pending nonce alone would hand their nonces out again (a CSP's blob upload of ~150
  parts collided with itself as ``mempool-conflict``).
- A refused call whose nonce later calls were signed after leaves a hole that would hold them
  all back; the service fills it with a self-transfer of 1 (a no-op that costs only its fee),
  tracked like a call, so the later calls keep their signed bytes (re-signing them could let
  both versions land).
- A call is final once its block is :data:`FINAL_DEPTH` deep: its signed bytes are dropped and
  a small :class:`FinalCall` (txid, nonce, block) stays under namespace ``calls-final``, so
  asking again with its id answers the final call instead of paying twice; the newest
  :data:`MAX_FINAL` are kept. A refused call is forgotten: asking again tries again.
- The daemon must be the only signer of its account: a transaction signed elsewhere with the
  same key takes nonces this service does not know about (it then re-signs, see above).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from crowdmesh.chain.codec import expect_array, pack, unpack
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.chain.tx import Transaction, make_transaction, minimum_fee
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.ledger import RETRY_LATER, Ledger
from crowdmesh.daemon.logs import log_event
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.errors import NotFound, UsageError, ValidationError
from crowdmesh.roles.events import CallIncluded, CallRejected, CallReverted, Event

__all__ = ["FINAL_DEPTH", "MAX_FINAL", "NS", "NS_FINAL", "OPERATOR", "AccountApi", "CallRecord",
           "CallService", "FinalCall"]

log = logging.getLogger("crowdmesh.calls")

NS = "calls"
NS_FINAL = "calls-final"
FINAL_DEPTH = 12
MAX_FINAL = 4096
KEEP_CODES = RETRY_LATER | {"mempool-duplicate"}  # the call stays; the next head retries it
OPERATOR = "operator"  # the role name of calls the operator asks for through the socket
_FILLER = ""  # the role name of the service's own hole-filling transfers (nobody to answer)

Submit = Callable[[Transaction], None]
Deliver = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call in flight, as stored (``raw`` is the signed transaction that stands for it)."""

    seq: int
    role: str
    instance: str
    call_id: str
    kind: str
    payload: bytes
    raw: bytes
    included_in: bytes = b""  # the block we last reported CallIncluded for

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity a role gives the call."""
        return (self.role, self.instance, self.call_id)

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.role, self.instance, self.call_id, self.kind, self.payload, self.raw,
                     self.included_in])

    @classmethod
    def decode(cls, seq: int, data: bytes) -> CallRecord:
        """Parse a stored record."""
        f = expect_array(unpack(data, 1 << 22), 7, "call")
        return cls(seq, f[0], f[1], f[2], f[3], f[4], f[5], f[6])

    def view(self) -> JsonObj:
        """The call as the control socket shows it."""
        tx = Transaction.decode(self.raw)
        return {"role": self.role or "-", "instance": self.instance, "call_id": self.call_id,
                "kind": self.kind, "txid": tx.txid.hex(), "nonce": tx.nonce,
                "included_in": self.included_in.hex() or None, "final": False}


@dataclass(frozen=True, slots=True)
class FinalCall:
    """What stays of a call once it is final (no payload, no signed bytes)."""

    seq: int
    role: str
    instance: str
    call_id: str
    kind: str
    txid: bytes
    nonce: int
    block_hash: bytes

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity a role gave the call."""
        return (self.role, self.instance, self.call_id)

    @classmethod
    def of(cls, record: CallRecord, block_hash: bytes) -> FinalCall:
        """The final form of ``record``, included in ``block_hash``."""
        tx = Transaction.decode(record.raw)
        return cls(record.seq, record.role, record.instance, record.call_id, record.kind,
                   tx.txid, tx.nonce, block_hash)

    def encode(self) -> bytes:
        """Stored form."""
        return pack([self.role, self.instance, self.call_id, self.kind, self.txid, self.nonce,
                     self.block_hash])

    @classmethod
    def decode(cls, seq: int, data: bytes) -> FinalCall:
        """Parse a stored final call."""
        f = expect_array(unpack(data, 4096), 7, "final call")
        return cls(seq, f[0], f[1], f[2], f[3], f[4], f[5], f[6])

    def view(self) -> JsonObj:
        """The call as the control socket shows it."""
        return {"role": self.role or "-", "instance": self.instance, "call_id": self.call_id,
                "kind": self.kind, "txid": self.txid.hex(), "nonce": self.nonce,
                "included_in": self.block_hash.hex(), "final": True}


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


class CallService:
    """Signs, sends and follows the contract calls of the node's roles."""

    def __init__(self, ledger: Ledger, store: RoleStore, key: AccountKey | None,
                 submit: Submit, deliver: Deliver) -> None:
        self._ledger = ledger
        self._store = store
        self._key = key
        self._submit = submit
        self._deliver = deliver
        self._calls: dict[int, CallRecord] = {
            int.from_bytes(k, "big"): CallRecord.decode(int.from_bytes(k, "big"), v)
            for k, v in store.items(NS)}
        # why kept apart: the next call's nonce needs every in-flight nonce, and decoding each
        # call's (up to 64 KiB) transaction per signature would be quadratic in a blob upload
        self._nonces = {seq: Transaction.decode(r.raw).nonce for seq, r in self._calls.items()}
        self._final: dict[tuple[str, str, str], FinalCall] = {}
        for k, v in store.items(NS_FINAL):
            final = FinalCall.decode(int.from_bytes(k, "big"), v)
            self._final[final.key] = final
        self._next = max([*self._calls, *(f.seq for f in self._final.values())], default=0) + 1
        self.sent = 0
        self.rejected = 0

    @property
    def account(self) -> bytes | None:
        """The node's signing account (public), or None without ``[account]``."""
        return None if self._key is None else self._key.public

    def in_flight(self) -> int:
        """Calls not yet final (including hole fillers)."""
        return len(self._calls)

    # -- requests ---------------------------------------------------------------------------

    def request(self, role: str, instance: str, call_id: str, kind: str, payload: bytes) -> None:
        """Sign and send a role's call (nothing if that call id is already known); a refusal
        comes back to the instance as ``CallRejected``."""
        if self._key is None:
            self._deliver(CallRejected(role, instance, call_id, "no-account",
                                       "configure [account] key to let roles send calls"))
            return
        self._request(role, instance, call_id, kind, payload)

    def request_now(self, role: str, call_id: str, kind: str, payload: bytes) -> JsonObj:
        """The operator's form of :meth:`request`: returns the call's view, raises a refusal.

        Raises:
            UsageError: ``no-account``. ValidationError: the call was refused (stable code).
        """
        if self._key is None:
            raise UsageError("no-account", "configure [account] key in the daemon's config")
        record, refusal = self._request(role, "", call_id, kind, payload)
        if refusal is not None:
            raise refusal
        return record.view()

    def _request(self, role: str, instance: str, call_id: str, kind: str,
                 payload: bytes) -> tuple[CallRecord | FinalCall, ValidationError | None]:
        final = self._final.get((role, instance, call_id))
        if final is not None:
            return final, None
        known = next((r for r in self._calls.values() if r.key == (role, instance, call_id)),
                     None)
        if known is not None:
            return known, None
        record = CallRecord(self._next, role, instance, call_id, kind, payload,
                            self._sign(kind, payload).encode())
        self._next += 1
        self._save(record)  # why first: a crash after the send must find the same bytes
        return record, self._send(record)

    def calls(self) -> list[CallRecord]:
        """The calls in flight, in signing order."""
        return [self._calls[seq] for seq in sorted(self._calls)]

    def final_calls(self) -> int:
        """Final calls whose ids are remembered."""
        return len(self._final)

    def _sign(self, kind: str, payload: bytes) -> Transaction:
        assert self._key is not None
        genesis = self._ledger.genesis
        nonce = max(self._ledger.pending_nonce(self._key.public),
                    max(self._nonces.values(), default=-1) + 1)
        return make_transaction(self._key, genesis.chain_id, nonce, kind, payload,
                                minimum_fee(payload, genesis.min_gas_price))

    def _save(self, record: CallRecord) -> None:
        self._calls[record.seq] = record
        self._nonces[record.seq] = Transaction.decode(record.raw).nonce
        self._store.apply([(NS, _seq_key(record.seq), record.encode())])

    def _forget(self, record: CallRecord) -> None:
        del self._calls[record.seq]
        del self._nonces[record.seq]
        self._store.apply([(NS, _seq_key(record.seq), None)])

    def _finalize(self, record: CallRecord, block_hash: bytes) -> None:
        """Keep only the final form of ``record``, in the same transaction that drops it."""
        del self._calls[record.seq]
        del self._nonces[record.seq]
        final = FinalCall.of(record, block_hash)
        self._final[final.key] = final
        writes: list[tuple[str, bytes, bytes | None]] = [
            (NS, _seq_key(record.seq), None), (NS_FINAL, _seq_key(final.seq), final.encode())]
        for old in sorted(self._final.values(), key=lambda f: f.seq)[:-MAX_FINAL]:
            del self._final[old.key]
            writes.append((NS_FINAL, _seq_key(old.seq), None))
        self._store.apply(writes)

    def _send(self, record: CallRecord) -> ValidationError | None:
        """Submit the call's transaction; the refusal if it was refused for good."""
        tx = Transaction.decode(record.raw)
        try:
            self._submit(tx)
        except ValidationError as exc:
            if exc.code in KEEP_CODES:
                return None
            self._reject(record, tx, exc)
            return exc
        self.sent += 1
        return None

    def _reject(self, record: CallRecord, tx: Transaction, exc: ValidationError) -> None:
        self.rejected += 1
        self._forget(record)
        log_event(log, "call-rejected", logging.WARNING, role=record.role or "-",
                  call=record.call_id, kind=record.kind, code=exc.code)
        if record.role != _FILLER:
            self._deliver(CallRejected(record.role, record.instance, record.call_id, exc.code,
                                       exc.detail))
        if tx.nonce >= self._ledger.chain.nonce(tx.sender) and self._waits_on(tx.nonce):
            self._fill_hole(tx.nonce)

    def _waits_on(self, nonce: int) -> bool:
        """True iff a call in flight was signed with a nonce above ``nonce``."""
        return any(n > nonce for n in self._nonces.values())

    def _fill_hole(self, nonce: int) -> None:
        assert self._key is not None
        genesis = self._ledger.genesis
        payload = transfer_payload(self._key.public, 1)
        tx = make_transaction(self._key, genesis.chain_id, nonce, TRANSFER, payload,
                              minimum_fee(payload, genesis.min_gas_price))
        record = CallRecord(self._next, _FILLER, "", f"fill-{nonce}", TRANSFER, payload,
                            tx.encode())
        self._next += 1
        self._save(record)
        self._send(record)

    # -- following --------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Bring every call in line with the main chain (after a head change, and at start)."""
        for seq in sorted(self._calls):
            record = self._calls.get(seq)
            if record is not None:  # an earlier one's hole filler may have changed the set
                self._reconcile_one(record)

    def _reconcile_one(self, record: CallRecord) -> None:
        tx = Transaction.decode(record.raw)
        try:
            _, block_hash, height = self._ledger.chain.get_transaction(tx.txid)
        except NotFound:
            self._not_on_chain(record, tx)
            return
        if record.included_in and record.included_in != block_hash:
            # a reorg moved it to another block within one import: it left the first one
            self._answer(record, CallReverted(record.role, record.instance, record.call_id,
                                              tx.txid))
        if record.included_in != block_hash:
            record = replace(record, included_in=block_hash)
            self._save(record)
            self._answer(record, CallIncluded(record.role, record.instance, record.call_id,
                                              tx.txid, block_hash, height))
        if self._ledger.chain.height - height + 1 >= FINAL_DEPTH:
            self._finalize(record, block_hash)

    def _not_on_chain(self, record: CallRecord, tx: Transaction) -> None:
        if record.included_in:
            record = replace(record, included_in=b"")
            self._save(record)
            self._answer(record, CallReverted(record.role, record.instance, record.call_id,
                                              tx.txid))
        if not self._ledger.unknown_txids((tx.txid,)):
            return  # pooled, or waiting for its predecessor in the gap buffer
        if tx.nonce < self._ledger.chain.nonce(tx.sender):
            # its nonce went to a transaction we did not sign: sign the call again
            record = replace(record, raw=self._sign(record.kind, record.payload).encode())
            self._save(record)
        self._send(record)

    def _answer(self, record: CallRecord, event: Event) -> None:
        if record.role != _FILLER:
            self._deliver(event)


class AccountApi:
    """The control socket's ``AccountService``: the operator's calls through the same path."""

    def __init__(self, calls: CallService, ledger: Ledger) -> None:
        self._calls = calls
        self._ledger = ledger

    def account(self) -> JsonObj:
        """The signing account, its balance and nonces, and every call in flight."""
        account = self._calls.account
        view: JsonObj = {"account": None if account is None else account.hex()}
        if account is not None:
            view.update(self._ledger.balance(account.hex()))
        view["calls"] = [r.view() for r in self._calls.calls()]
        view["final_calls"] = self._calls.final_calls()
        return view

    def call(self, kind: str, payload_hex: str, call_id: str) -> JsonObj:
        """Send contract call ``kind(payload)`` from the node's account (idempotent by id)."""
        return self._calls.request_now(OPERATOR, call_id, kind, bytes.fromhex(payload_hex))

    def pay(self, to_hex: str, amount: int, call_id: str) -> JsonObj:
        """Transfer ``amount`` to ``to_hex`` from the node's account (idempotent by id)."""
        to = bytes.fromhex(to_hex)
        if len(to) != 32:
            raise UsageError("bad-hex", "to must be a 32-byte account id (64 hex characters)")
        return self.call(TRANSFER, transfer_payload(to, amount).hex(), call_id)
