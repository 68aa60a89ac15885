"""The transaction pool: valid-against-head transactions waiting for a block.

Invariants:
- Every pooled transaction passed ``check_tx`` and applies (dry run) on the head state after the
  same sender's lower-nonce pooled transactions. A fee bump re-runs the sender's whole queue
  and drops the tail from the first transaction that no longer applies.
- Per sender the pooled nonces are contiguous from the head nonce (no gaps), so any prefix in
  nonce order can go into a block.
- The pool is bounded in count, bytes and per-sender depth. When full, a new transaction may
  evict the lowest-fee transaction that is last in its sender's queue, if it pays more. The
  refill after a head change shares one scratch state across senders, so it never evicts (an
  evicted tx's effects would stay in that state) and a refused tx is reverted out of it.
- ``select`` orders by fee (highest first) while keeping each sender's nonce order; ties break
  by txid, so the order is deterministic.

:class:`FutureQueue` holds transactions ahead of a nonce gap (geth's "queue"), bounded so that
no sender can crowd out the others:
- per sender at most ``per_sender`` transactions, each at most ``max_ahead`` nonces past the
  sender's head nonce (``mempool-gap-too-far``); a full sender keeps its lowest nonces, the
  ones nearest to becoming valid (``mempool-account-queue-full``);
- a sender's queued spends (``tx_cost``: fee plus the value the transaction moves) in nonce
  order never exceed the funds it has left after its pooled spends
  (``mempool-sender-cannot-pay``), so an unfunded account queues nothing;
- over the global count or byte cap, the sender holding the most queued transactions loses its
  highest nonce first (``mempool-queue-full`` if that is the newcomer).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from crowdmesh.chain.chain import Chain, ImportResult
from crowdmesh.chain.codec import Address, TxId
from crowdmesh.chain.contracts import TRANSFER, TxContext, decode_payload
from crowdmesh.chain.rules import apply_tx, check_tx
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = ["FutureQueue", "Mempool", "tx_cost"]

# Why these bounds: geth's AccountQueue (64) and GlobalQueue (1024, ours is larger because a
# burst of gossip reorders many senders at once). A nonce more than MAX_NONCE_AHEAD past the
# head nonce cannot become valid before the sender's pooled and queued slots (64 + 64) are
# mined several times over, so holding it only helps a flood.
MAX_QUEUED_PER_SENDER = 64
MAX_QUEUED = 4096
MAX_QUEUED_BYTES = 16 * 1024 * 1024
MAX_NONCE_AHEAD = 256


def _transfer_value(payload: bytes) -> int:
    """The amount a transfer moves (0 if the payload is malformed: the contract rejects it)."""
    try:
        obj = decode_payload(payload, "bad-transfer-payload")
    except ValidationError:
        return 0
    ok = isinstance(obj, list) and len(obj) == 2 and type(obj[1]) is int and obj[1] > 0
    return obj[1] if ok else 0


# The value each kind can move out of its sender's balance, on top of the fee (one entry per
# contract that debits its sender; the others spend only the fee).
VALUE_OF: dict[str, Callable[[bytes], int]] = {TRANSFER: _transfer_value}


def tx_cost(tx: Transaction) -> int:
    """The most ``tx`` can take from its sender: the fee plus the value it moves."""
    value = VALUE_OF.get(tx.kind)
    return tx.fee + (value(tx.payload) if value is not None else 0)


class Mempool:
    """Pending transactions against ``chain``'s head."""

    def __init__(self, chain: Chain, max_txs: int = 5000, max_bytes: int = 16 * 1024 * 1024,
                 max_per_sender: int = 64) -> None:
        self.chain = chain
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self._by_id: dict[TxId, Transaction] = {}
        self._by_sender: dict[Address, list[Transaction]] = {}  # nonce order, contiguous
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, txid: object) -> bool:
        return txid in self._by_id

    @property
    def size_bytes(self) -> int:
        """Encoded bytes of all pooled transactions."""
        return self._bytes

    def get(self, txid: bytes) -> Transaction | None:
        """A pooled transaction by id."""
        return self._by_id.get(TxId(txid))

    def transactions(self) -> list[Transaction]:
        """All pooled transactions (sender order, then nonce order)."""
        return [tx for q in self._by_sender.values() for tx in q]

    @property
    def senders(self) -> int:
        """How many senders have pooled transactions."""
        return len(self._by_sender)

    def sender_count(self, sender: bytes) -> int:
        """How many transactions of ``sender`` are pooled."""
        return len(self._by_sender.get(Address(sender), ()))

    def sender_spend(self, sender: bytes) -> int:
        """The most ``sender``'s pooled transactions can take from its balance."""
        return sum(tx_cost(tx) for tx in self._by_sender.get(Address(sender), ()))

    def add(self, tx: Transaction) -> None:
        """Validate ``tx`` against the head and pool it.

        Raises:
            ValidationError: ``mempool-duplicate``, ``bad-tx-chain-id``, ``bad-tx-kind``,
                ``bad-tx-fee``, ``bad-tx-sig``, ``bad-tx-nonce`` (already used),
                ``mempool-nonce-gap``, ``mempool-conflict`` (same nonce, fee not higher),
                ``mempool-sender-full``, ``mempool-full``, or the contract's code
                (e.g. ``bad-tx-overspend``) from the dry run.
        """
        self._admit(tx, verify_sig=True, scratch=None)

    def _admit(self, tx: Transaction, verify_sig: bool, scratch: State | None) -> None:
        """Admit ``tx``; dry-run it on ``scratch`` (a state with every pooled tx applied, used
        when refilling after a head change) or, if None, on the head plus its sender's queue."""
        if tx.txid in self._by_id:
            raise ValidationError("mempool-duplicate")
        check_tx(tx, self.chain.genesis, self.chain.contracts, verify_sig)
        queue = self._by_sender.get(tx.sender, [])
        replaced = self._check_nonce(tx, queue)
        if scratch is None:
            self._dry_run(tx, queue)
        else:
            snap = scratch.snapshot()
            apply_tx(scratch, tx, self._context(tx), self.chain.contracts)
        if replaced is not None:
            self._drop(replaced)
            self._insert(tx)
            self._recheck_sender(tx.sender)
            return
        try:
            self._make_room(tx, evict=scratch is None)
        except ValidationError:
            if scratch is not None:
                scratch.revert(snap)  # a refused tx must not fund later ones in the refill
            raise
        self._insert(tx)

    def _check_nonce(self, tx: Transaction, queue: list[Transaction]) -> Transaction | None:
        """Return the transaction ``tx`` replaces, if any; raise if its nonce is unusable."""
        base = self.chain.nonce(tx.sender)
        if tx.nonce < base:
            raise ValidationError("bad-tx-nonce", f"head nonce is {base}")
        if tx.nonce < base + len(queue):
            old = queue[tx.nonce - base]
            if tx.fee <= old.fee:
                raise ValidationError("mempool-conflict", "replacement must pay a higher fee")
            return old
        if tx.nonce > base + len(queue):
            raise ValidationError("mempool-nonce-gap")
        if len(queue) >= self.max_per_sender:
            raise ValidationError("mempool-sender-full")
        return None

    def _dry_run(self, tx: Transaction, queue: list[Transaction]) -> None:
        """Apply the sender's earlier pooled txs and then ``tx`` to a scratch head state."""
        state = State(self.chain.state_get)
        for t in [q for q in queue if q.nonce < tx.nonce] + [tx]:
            apply_tx(state, t, self._context(t), self.chain.contracts)

    def _recheck_sender(self, sender: Address) -> None:
        """Re-run ``sender``'s queue on the head; drop it from the first tx that fails."""
        state = State(self.chain.state_get)
        queue = self._by_sender[sender]
        for i, t in enumerate(queue):
            try:
                apply_tx(state, t, self._context(t), self.chain.contracts)
            except ValidationError:
                for later in queue[i:]:
                    self._drop(later)
                return

    def _context(self, tx: Transaction) -> TxContext:
        """The context of a dry run: as if in the next block, at the head's time."""
        chain = self.chain
        return TxContext(chain.genesis.chain_id, chain.height + 1, chain.head.timestamp,
                         chain.head_hash, tx.txid, chain.genesis, chain.main_hash_at)

    def _make_room(self, tx: Transaction, evict: bool = True) -> None:
        """Evict cheaper queue tails (if ``evict``) until ``tx`` fits, or raise ``mempool-full``."""
        while (len(self._by_id) + 1 > self.max_txs
               or self._bytes + len(tx.encoded) > self.max_bytes):
            tails = [q[-1] for s, q in self._by_sender.items() if s != tx.sender and evict]
            victim = min(tails, key=lambda t: (t.fee, t.txid), default=None)
            if victim is None or victim.fee >= tx.fee:
                raise ValidationError("mempool-full")
            self._drop(victim)

    def _insert(self, tx: Transaction) -> None:
        queue = self._by_sender.setdefault(tx.sender, [])
        queue.append(tx)
        queue.sort(key=lambda t: t.nonce)
        self._by_id[tx.txid] = tx
        self._bytes += len(tx.encoded)

    def _drop(self, tx: Transaction) -> None:
        """Remove one transaction (callers keep the queue contiguous)."""
        del self._by_id[tx.txid]
        self._bytes -= len(tx.encoded)
        queue = self._by_sender[tx.sender]
        queue.remove(tx)
        if not queue:
            del self._by_sender[tx.sender]

    def remove(self, txids: Iterable[bytes]) -> None:
        """Drop ``txids`` and every later-nonce transaction of the same senders."""
        for txid in txids:
            tx = self._by_id.get(TxId(txid))
            if tx is None:
                continue
            for later in [t for t in self._by_sender[tx.sender] if t.nonce >= tx.nonce]:
                self._drop(later)

    def select(self, max_txs: int | None = None) -> list[Transaction]:
        """Up to ``max_txs`` transactions, highest fee first, each sender in nonce order."""
        limit = len(self._by_id) if max_txs is None else max_txs
        heap = [(-q[0].fee, q[0].txid, s, 0) for s, q in self._by_sender.items()]
        heapq.heapify(heap)
        out: list[Transaction] = []
        while heap and len(out) < limit:
            _, _, sender, i = heapq.heappop(heap)
            queue = self._by_sender[sender]
            out.append(queue[i])
            if i + 1 < len(queue):
                nxt = queue[i + 1]
                heapq.heappush(heap, (-nxt.fee, nxt.txid, sender, i + 1))
        return out

    def update(self, result: ImportResult) -> None:
        """Follow a head change: drop confirmed txs, re-pool returned ones, revalidate."""
        if not result.connected and not result.disconnected:
            return
        pending = [tx for q in self._by_sender.values() for tx in q]
        confirmed = {tx.txid for b in result.connected for tx in b.txs}
        self._by_id.clear()
        self._by_sender.clear()
        self._bytes = 0
        scratch = State(self.chain.state_get)  # one pass: O(pool), not O(pool × queue)
        for tx in list(result.returned_txs) + sorted(pending, key=lambda t: t.nonce):
            if tx.txid in confirmed or tx.txid in self._by_id:
                continue
            try:
                self._admit(tx, verify_sig=False, scratch=scratch)  # verified before
            except ValidationError:
                continue  # no longer valid on the new head: dropped, as Bitcoin does


class FutureQueue:
    """Transactions waiting for a missing lower nonce, bounded per sender and in total.

    The caller passes what the queue needs of the chain (``base``: the sender's head nonce,
    ``funds``: its head balance minus its pooled spends), so the queue is pure bookkeeping.
    """

    def __init__(self, per_sender: int = MAX_QUEUED_PER_SENDER, max_txs: int = MAX_QUEUED,
                 max_bytes: int = MAX_QUEUED_BYTES, max_ahead: int = MAX_NONCE_AHEAD) -> None:
        self.per_sender = per_sender
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_ahead = max_ahead
        self._by_sender: dict[Address, dict[int, Transaction]] = {}
        self._by_id: dict[TxId, Transaction] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, txid: object) -> bool:
        return txid in self._by_id

    def get(self, txid: bytes) -> Transaction | None:
        """A queued transaction by id."""
        return self._by_id.get(TxId(txid))

    def peek(self, sender: bytes, nonce: int) -> Transaction | None:
        """The queued transaction of ``sender`` at ``nonce``, if any."""
        return self._by_sender.get(Address(sender), {}).get(nonce)

    def senders(self) -> list[Address]:
        """Senders with queued transactions."""
        return list(self._by_sender)

    def transactions(self) -> list[Transaction]:
        """All queued transactions (sender order, then nonce order)."""
        return [q[n] for q in self._by_sender.values() for n in sorted(q)]

    def add(self, tx: Transaction, base: int, funds: int) -> None:
        """Queue ``tx`` (already checked as a transaction, and ahead of a nonce gap).

        Args:
            tx: the transaction.
            base: its sender's head nonce.
            funds: its sender's head balance minus what its pooled transactions can spend.
        Raises:
            ValidationError: ``mempool-duplicate``, ``mempool-gap-too-far``,
                ``mempool-conflict`` (same nonce queued, fee not higher),
                ``mempool-sender-cannot-pay``, ``mempool-account-queue-full`` or
                ``mempool-queue-full``.
        """
        if tx.txid in self._by_id:
            raise ValidationError("mempool-duplicate")
        if tx.nonce - base > self.max_ahead:
            raise ValidationError("mempool-gap-too-far", f"head nonce is {base}")
        slots = self._by_sender.get(tx.sender, {})
        old = slots.get(tx.nonce)
        if old is not None and tx.fee <= old.fee:
            raise ValidationError("mempool-conflict", "replacement must pay a higher fee")
        if self._spend_below(slots, tx.nonce) + tx_cost(tx) > funds:
            raise ValidationError("mempool-sender-cannot-pay", f"funds {funds}")
        if old is not None:
            self.discard(old)
        elif len(slots) >= self.per_sender:
            top = max(slots)
            if tx.nonce > top:
                raise ValidationError("mempool-account-queue-full")
            self.discard(slots[top])  # keep the nonces nearest to becoming valid (geth's Cap)
        self._insert(tx)
        self._trim(tx)

    @staticmethod
    def _spend_below(slots: dict[int, Transaction], nonce: int) -> int:
        return sum(tx_cost(t) for n, t in slots.items() if n < nonce)

    def _trim(self, newcomer: Transaction) -> None:
        """Evict from the sender holding the most until under the caps."""
        while len(self._by_id) > self.max_txs or self._bytes > self.max_bytes:
            # ties go to the larger address: deterministic, and no sender can aim at a victim
            sender = max(self._by_sender, key=lambda s: (len(self._by_sender[s]), s))
            slots = self._by_sender[sender]
            victim = slots[max(slots)]
            self.discard(victim)
            if victim is newcomer:
                raise ValidationError("mempool-queue-full")

    def prune(self, sender: bytes, base: int, funds: int) -> None:
        """After a head change: drop ``sender``'s stale nonces (below ``base``) and every
        transaction from the first one its ``funds`` no longer cover."""
        slots = self._by_sender.get(Address(sender), {})
        spent = 0
        broke = False
        for nonce in sorted(slots):
            tx = slots[nonce]
            spent += tx_cost(tx) if nonce >= base else 0
            broke = broke or spent > funds
            if nonce < base or broke:
                self.discard(tx)

    def _insert(self, tx: Transaction) -> None:
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx
        self._by_id[tx.txid] = tx
        self._bytes += len(tx.encoded)

    def discard(self, tx: Transaction) -> None:
        """Remove ``tx`` if queued."""
        if self._by_id.pop(tx.txid, None) is None:
            return
        self._bytes -= len(tx.encoded)
        slots = self._by_sender[tx.sender]
        del slots[tx.nonce]
        if not slots:
            del self._by_sender[tx.sender]
