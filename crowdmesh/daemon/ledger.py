"""The node's chain and mempool, as one synchronous service: ingress, templates, sync, queries.

Invariants:
- Only the trio thread calls a :class:`Ledger` (the store has one writer), and no method awaits,
  so a block import or a mempool change is atomic with respect to other tasks.
- :meth:`Ledger.check_gossip` is the cheap check the gossip validator runs before a message is
  forwarded: strict decode, chain id, transaction signature, header PoW and target bound, and
  one head-state read per transaction so that what no node would keep is not forwarded either
  (a nonce too far ahead, a sender who cannot pay it even alone). Full validation happens in
  :meth:`import_block` / :meth:`add_tx`. A spatial message (``SpatialGossip``) must decode as
  its kind; a report must also name this chain, a genesis report type and a point, and carry a
  ``ts`` within ±(T_c + T_r) of the ledger's clock. Spatial signatures are the roles' to verify.
- After every head change the mempool follows it (confirmed txs leave, the transactions of
  disconnected blocks come back if still valid), see ``Mempool.update``.
- Transactions that arrive ahead of a missing nonce (gossip reorders) wait in the gap buffer, a
  :class:`FutureQueue` bounded per sender (see ``chain/mempool.py``), and are retried when the
  missing nonce is pooled, instead of being lost. A transaction the queue refuses raises the
  queue's code instead of ``mempool-nonce-gap``, so callers neither answer ``queued`` nor
  relay it.
- ``pending_nonce`` never goes below the head nonce and only skips nonces that are pooled or
  gap-buffered without a hole from the head nonce (a buffered tx past a hole does not count).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.chain import Chain, ImportResult
from crowdmesh.chain.contracts.spatial.geo import check_point
from crowdmesh.chain.contracts.spatial.protocol import Commit, Report, Reveal
from crowdmesh.chain.layout import P_TX
from crowdmesh.chain.mempool import MAX_NONCE_AHEAD, FutureQueue, Mempool, tx_cost
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.views import block_view, header_view, parse_hex, receipt_view, tx_view
from crowdmesh.errors import DecodeError, NotFound, ValidationError
from crowdmesh.p2p.messages import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_TXIDS_PER_MESSAGE,
    BlockAnnounce,
    Blocks,
    Headers,
    Message,
    NewBlock,
    SpatialGossip,
    Status,
    TxAnnounce,
    TxBatch,
    TxGossip,
    Txs,
)

if TYPE_CHECKING:
    from crowdmesh.daemon.mempoolfile import MempoolFile

__all__ = ["RETRY_LATER", "Ledger", "check_spatial_report", "decode_tx_hex"]

# Refusals for lack of room, which a later head change can lift: a buffered transaction refused
# with one stays buffered, and the call service keeps (and later resends) a call refused with one.
RETRY_LATER: Final = frozenset({"mempool-nonce-gap", "mempool-sender-full", "mempool-full",
                                "mempool-account-queue-full", "mempool-queue-full"})
MAX_SYNC_REPLY_BYTES = 8 * 1024 * 1024
MAX_TEMPLATE_TXS = 5000


class Ledger:
    """Chain + mempool behind the operations the node needs."""

    def __init__(self, chain: Chain, mempool: Mempool,
                 clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.mempool = mempool
        self.genesis = chain.genesis
        self._clock = clock  # the spatial ts check's "now" (injected so tests set it)
        self._gap = FutureQueue()
        self._promoted: list[Transaction] = []  # see take_promoted
        self.pool_file: MempoolFile | None = None  # set by ``mempoolfile.open_ledger``
        # Cheap checks per gossip message type (one table, as the dispatch rules ask).
        self._checks: dict[type[Message], Callable[[Message], None]] = {
            TxGossip: self._check_tx_gossip,
            TxBatch: self._check_tx_batch,
            NewBlock: self._check_new_block,
            BlockAnnounce: self._check_announce,
            TxAnnounce: self._check_tx_announce,
            SpatialGossip: self._check_spatial,
        }
        # One decoder (and check) per spatial kind.
        self._spatial: dict[str, Callable[[bytes], object]] = {
            "report": self._check_report_raw,
            "commit": Commit.decode,
            "reveal": Reveal.decode,
        }

    # -- cheap checks (gossip validator) ----------------------------------------------------

    def check_gossip(self, msg: Message) -> None:
        """Stateless checks of one gossip message.

        Raises:
            DecodeError, ValidationError: with the stable reject code.
        """
        self._checks[type(msg)](msg)

    def _check_tx_gossip(self, msg: Message) -> None:
        assert isinstance(msg, TxGossip)
        self.check_tx(msg.tx)

    def _check_tx_batch(self, msg: Message) -> None:
        assert isinstance(msg, TxBatch)
        for raw in msg.txs:
            self.check_tx(raw)

    def _check_tx_announce(self, msg: Message) -> None:
        """Nothing beyond the codec (32-byte, distinct txids, bounded count): txids are opaque
        until the bodies arrive, and those get :meth:`check_tx` like gossiped ones."""

    def check_tx(self, raw: bytes) -> Transaction:
        """The gossip validator's checks of one transaction (decode, chain id, signature).

        Raises:
            DecodeError, ValidationError: with the stable reject code.
        """
        tx = Transaction.decode(raw)
        if tx.chain_id != self.genesis.chain_id:
            raise ValidationError("bad-tx-chain-id", tx.chain_id)
        self._check_hopeless(tx)  # one state read, before the costly signature check
        if not tx.has_valid_signature():
            raise ValidationError("bad-tx-sig")
        return tx

    def _check_hopeless(self, tx: Transaction) -> None:
        """Refuse what no pool would keep on our head, whatever else it holds: a nonce too far
        ahead, or a cost above the sender's whole balance (a flood costs its sender nothing
        otherwise, and every node would forward it).

        Raises:
            ValidationError: ``mempool-gap-too-far``, ``mempool-sender-cannot-pay``.
        """
        acct = self.chain.account(tx.sender)
        if tx.nonce - acct.nonce > MAX_NONCE_AHEAD:
            raise ValidationError("mempool-gap-too-far", f"head nonce is {acct.nonce}")
        if tx_cost(tx) > acct.balance:
            raise ValidationError("mempool-sender-cannot-pay", f"balance {acct.balance}")

    def _check_header(self, header: BlockHeader) -> None:
        if header.chain_id != self.genesis.chain_id:
            raise ValidationError("bad-block-chain-id", header.chain_id)
        if header.target > self.genesis.target:
            raise ValidationError("bad-block-target", "easier than the genesis target")
        if not header.meets_target():
            raise ValidationError("bad-block-pow")

    def _check_spatial(self, msg: Message) -> None:
        assert isinstance(msg, SpatialGossip)
        self._spatial[msg.kind](msg.raw)

    def _check_report_raw(self, raw: bytes) -> Report:
        report = Report.decode(raw)
        check_spatial_report(report, self.genesis.chain_id, self.genesis.spatial.report_types,
                             self._report_skew_s(), int(self._clock()))
        return report

    def _report_skew_s(self) -> int:
        params = self.genesis.spatial
        return params.commit_window_s + params.reveal_window_s

    def _check_new_block(self, msg: Message) -> None:
        assert isinstance(msg, NewBlock)
        self._check_header(Block.decode(msg.block).header)

    def _check_announce(self, msg: Message) -> None:
        assert isinstance(msg, BlockAnnounce)
        self._check_header(BlockHeader.decode(msg.header))

    # -- ingress ----------------------------------------------------------------------------

    def import_block(self, block: Block, now: int) -> ImportResult:
        """Import ``block``; on a head change the mempool follows.

        Raises:
            ValidationError: the block is invalid (stable code).
        """
        result = self.chain.import_block(block, now)
        if result.connected or result.disconnected:
            before = [*result.returned_txs, *self.mempool.transactions()]
            self.mempool.update(result)
            self._keep_dropped(before)
            self._retry_gap()
        return result

    def _keep_dropped(self, before: list[Transaction]) -> None:
        """Buffer what ``Mempool.update`` dropped only for a nonce gap (a predecessor that the
        new chain lacks may still arrive), so a reorg never loses a still-valid transaction."""
        for tx in before:
            if tx.txid not in self.mempool and tx.nonce > self.chain.nonce(tx.sender):
                with contextlib.suppress(ValidationError):  # the queue's bounds still hold
                    self._buffer(tx)

    def is_confirmed(self, txid: bytes) -> bool:
        """True iff ``txid`` is in a main-chain block (one index lookup, no block decode)."""
        return self.chain.store.get(P_TX + txid) is not None

    def unknown_txids(self, txids: tuple[bytes, ...]) -> list[bytes]:
        """The ``txids`` that are neither pooled, gap-buffered nor confirmed (worth fetching)."""
        return [t for t in txids
                if t not in self.mempool and t not in self._gap and not self.is_confirmed(t)]

    def add_tx(self, tx: Transaction) -> list[Transaction]:
        """Pool ``tx`` (and any buffered successors it unblocks); return what was pooled.

        Raises:
            ValidationError: ``tx`` is not acceptable now: ``mempool-nonce-gap`` if it waits in
                the gap buffer, else the pool's or the gap buffer's code.
        """
        try:
            self.mempool.add(tx)
        except ValidationError as exc:
            if exc.code == "mempool-nonce-gap":
                self._buffer(tx)  # raises the queue's code if it refuses
            raise
        return [tx, *self._release(tx.sender, tx.nonce + 1)]

    def _buffer(self, tx: Transaction) -> None:
        self._gap.add(tx, self.chain.nonce(tx.sender), self._funds(tx.sender))

    def _funds(self, sender: bytes) -> int:
        """What ``sender`` has left for queued transactions: head balance minus pooled spends."""
        return self.chain.account(sender).balance - self.mempool.sender_spend(sender)

    def _release(self, sender: bytes, nonce: int) -> list[Transaction]:
        released = []
        while (tx := self._gap.peek(sender, nonce)) is not None:
            try:
                self.mempool.add(tx)
            except ValidationError as exc:
                if exc.code not in RETRY_LATER:  # else still waiting: keep it
                    self._gap.discard(tx)
                break
            self._gap.discard(tx)
            released.append(tx)
            nonce += 1
        return released

    def _retry_gap(self) -> None:
        """After a head change: drop stale or unfunded buffered txs, pool those that follow."""
        for sender in self._gap.senders():
            base = self.chain.nonce(sender)
            self._gap.prune(sender, base, self._funds(sender))
            self._promoted.extend(self._release(sender, base + self.mempool.sender_count(sender)))

    def take_promoted(self) -> list[Transaction]:
        """The buffered transactions the last head changes moved into the pool (once each).

        Why: peers refused them when they were first relayed for the very reason we buffered
        them (a full pool or a missing predecessor), so they must be relayed again now, as geth
        broadcasts promoted transactions; otherwise a sender's later nonces never reach the
        miners and its blob upload stalls."""
        promoted, self._promoted = self._promoted, []
        return promoted

    def pool_snapshot(self) -> tuple[list[Transaction], list[Transaction]]:
        """The pooled and the gap-buffered transactions (what the mempool file holds)."""
        return self.mempool.transactions(), self._gap.transactions()

    def template(self, parent: bytes, miner: bytes, now: int) -> Block | None:
        """A nonce-0 block on ``parent`` with pooled transactions, or None if ``parent`` is no
        longer the head or our miner is over its cap (``ValidationError`` is logged upstream).
        """
        if self.chain.head_hash != parent:
            return None
        txs = self.mempool.select(MAX_TEMPLATE_TXS)
        return self.chain.build_block_template(miner, txs, now).block

    # -- SyncProvider -----------------------------------------------------------------------

    def sync_status(self) -> Status:
        """Our chain id, head and cumulative work."""
        c = self.chain
        return Status(self.genesis.chain_id, c.height, bytes(c.head_hash), str(c.total_work))

    def sync_headers(self, start: int, count: int) -> Headers:
        """Main-chain headers from ``start``."""
        return Headers(start, tuple(h.encode() for h in self.chain.headers_range(start, count)))

    def sync_blocks(self, hashes: tuple[bytes, ...]) -> Blocks:
        """Stored blocks by hash, in request order, stopping at the reply size cap."""
        out: list[bytes] = []
        size = 0
        for h in hashes[:MAX_BLOCKS_PER_REQUEST]:
            try:
                raw = self.chain.get_block(h).encode()
            except NotFound:
                continue
            if out and size + len(raw) > MAX_SYNC_REPLY_BYTES:
                break
            out.append(raw)
            size += len(raw)
        return Blocks(tuple(out))

    def sync_txs(self, txids: tuple[bytes, ...]) -> Txs:
        """Pooled or gap-buffered transactions by txid, in request order (unknown skipped)."""
        found = [self.mempool.get(t) or self._gap.get(t) for t in txids[:MAX_TXIDS_PER_MESSAGE]]
        return Txs(tuple(tx.encode() for tx in found if tx is not None))

    # -- queries ----------------------------------------------------------------------------

    def head_view(self) -> JsonObj:
        """The head header as JSON plus cumulative work."""
        view = header_view(self.chain.head)
        view["total_work"] = str(self.chain.total_work)
        return view

    def block_by_ref(self, ref: str | int) -> JsonObj:
        """A main-chain block by height, or any stored block by hash (hex).

        Raises:
            NotFound: ``block-not-found``. UsageError: ``bad-hex``.
        """
        if isinstance(ref, int):
            block = self.chain.get_block_by_height(ref)
        else:
            block = self.chain.get_block(parse_hex(ref, 32, "block hash"))
        view = block_view(block)
        view["main_chain"] = self.chain.is_main_chain(block.hash)
        return view

    def tx_lookup(self, txid_hex: str) -> JsonObj:
        """A pooled or confirmed transaction; a confirmed one adds its receipt's ``gas`` and
        ``events`` (see ``views.receipt_view``), unless its block was connected before receipts
        were stored (then both are absent until ``reindex``).

        Raises:
            NotFound: ``tx-not-found``. UsageError: ``bad-hex``, ``corrupt-store``.
        """
        txid = parse_hex(txid_hex, 32, "txid")
        pooled = self.mempool.get(txid)
        if pooled is not None:
            return {**tx_view(pooled), "status": "pending"}
        tx, block_hash, height = self.chain.get_transaction(txid)
        view = {**tx_view(tx), "status": "confirmed", "block": block_hash.hex(),
                "height": height, "confirmations": self.chain.height - height + 1}
        with contextlib.suppress(NotFound):  # an old store's block without receipts
            view.update(receipt_view(self.chain.tx_receipt(txid)))
        return view

    def balance(self, account_hex: str) -> JsonObj:
        """Head-state balance and next nonce of an account, plus ``pending_nonce``."""
        addr = parse_hex(account_hex, 32, "account")
        acct = self.chain.account(addr)
        return {"account": addr.hex(), "balance": acct.balance, "nonce": acct.nonce,
                "pending_nonce": self.pending_nonce(addr), "height": self.chain.height}

    def pending_nonce(self, sender: bytes) -> int:
        """The nonce a new transaction from ``sender`` should use: the head nonce advanced past
        the sender's pooled and gap-buffered transactions that are contiguous from it (like
        geth's "pending" count), so consecutive sends before a block get distinct nonces."""
        nonce = self.chain.nonce(sender)
        taken = {tx.nonce for tx in self.mempool.transactions() if tx.sender == sender}
        while nonce in taken or self._gap.peek(sender, nonce) is not None:
            nonce += 1
        return nonce

    def mempool_view(self) -> JsonObj:
        """Mempool size, bytes and (up to 1000) txids."""
        txs = self.mempool.transactions()
        return {"size": len(txs), "bytes": self.mempool.size_bytes, "gap_buffered": len(self._gap),
                "txids": [tx.txid.hex() for tx in txs[:1000]]}


def check_spatial_report(report: Report, chain_id: str, report_types: tuple[str, ...],
                         max_skew_s: int, now: int) -> None:
    """The gossip validator's checks of a decoded report (pure; the signature is the roles').

    Args:
        report: the decoded report.
        chain_id: this network's chain id.
        report_types: the genesis's ``spatial.report_types``.
        max_skew_s: the largest |ts - now| accepted (T_c + T_r: older reports are past their
            windows, newer ones from a clock far ahead).
        now: local unix time.
    Raises:
        ValidationError: ``bad-spatial-chain-id``, ``bad-spatial-type``, ``bad-spatial-point``
            or ``bad-spatial-ts``.
    """
    if report.chain_id != chain_id:
        raise ValidationError("bad-spatial-chain-id", report.chain_id)
    if report.type not in report_types:
        raise ValidationError("bad-spatial-type", report.type)
    check_point(report.lat_e6, report.lon_e6)
    if abs(report.ts - now) > max_skew_s:
        raise ValidationError("bad-spatial-ts", f"ts {report.ts}, now {now}")


def decode_tx_hex(raw_hex: str) -> Transaction:
    """Decode a hex-encoded transaction from the control socket.

    Raises:
        UsageError: ``bad-hex``. DecodeError / ValidationError: from the strict decoder.
    """
    raw = parse_hex(raw_hex, None, "transaction")
    if not raw:
        raise DecodeError("bad-tx-encoding", "empty")
    return Transaction.decode(raw)
