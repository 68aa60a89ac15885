"""The chain: block import, fork choice, reorgs, head-state queries, block templates.

Invariants (py-evm style: a library over an injected :class:`Store`, no I/O of its own):
- The head is always the known, fully valid block with the most cumulative work; among equal
  work the current head stays, otherwise the first seen wins.
- Every head change (extend or reorg: blocks, index entries, undo records, tx index, receipts,
  state and the head pointer) is written in ONE ``store.write_batch``, so a crash leaves either
  the old or the new head, never a mix, and never a connected block without its receipts.
  Nothing is written before the new chain fully validated.
- Receipts stay stored when their block is disconnected (they are a function of the block and
  its parent state); reconnecting rewrites the same bytes. Read queries are in
  :class:`~crowdmesh.chain.queries.ChainQueries`, which ``Chain`` inherits.
- Blocks that lose fork choice are stored with status HEADER_VALID (header and stateless body
  checked); their transactions and state root are checked only if they ever become best.
- A block that fails is marked INVALID with its descendants; blocks whose parent is unknown go
  to an in-memory orphan pool bounded in count and bytes (FIFO eviction) and are retried when
  the parent arrives. Before pooling, an orphan passes every check that needs no parent (chain
  id, target no easier than the genesis target, PoW, size, Merkle root, tx chain ids), so its
  body is the one its header (hash) commits to: a pooled hash never stands for a fake body, and
  a pooled orphan that fails later leaves no trace (the same hash can be imported again).
- ``import_block`` raises :class:`ValidationError` (stable code) iff the imported block is
  invalid; anything else it reports in :class:`ImportResult`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.codec import BlockHash
from crowdmesh.chain.contracts import CONTRACTS, Contract
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.layout import (
    META_ACC,
    META_GENESIS,
    META_HEAD,
    P_BLOCK,
    P_INDEX,
    P_RECEIPTS,
    P_STATE,
    P_TX,
    P_UNDO,
    BlockStatus,
    IndexEntry,
    TxLocation,
    Undo,
    encode_receipts,
    height_key,
)
from crowdmesh.chain.queries import ChainQueries
from crowdmesh.chain.rules import (
    HashAt,
    HeaderInfo,
    Receipt,
    apply_block,
    next_target,
    validate_body,
    validate_detached,
    validate_header,
)
from crowdmesh.chain.state import State, muhash_of, muhash_update, state_root
from crowdmesh.chain.store import Store
from crowdmesh.chain.template import BlockTemplate, build_template
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import UsageError, ValidationError

__all__ = ["MAX_ORPHANS", "MAX_ORPHAN_BYTES", "BlockTemplate", "Chain", "ImportResult",
           "ImportStatus"]

MAX_ORPHANS = 256
MAX_ORPHAN_BYTES = 64 * 1024 * 1024  # ≥ 4 max-size (16 MiB) blocks, far below 256 of them


class ImportStatus(Enum):
    """What happened to an imported block."""

    CONNECTED = "connected"  # it is on the main chain now (extension or reorg)
    SIDE_CHAIN = "side-chain"  # valid header and body, stored, not the heaviest
    ORPHAN = "orphan"  # parent unknown: pooled; fetch ``missing_parent``
    DUPLICATE = "duplicate"  # already known (stored or pooled)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The net effect of one ``import_block`` call (including orphans it unlocked).

    ``connected`` is oldest first, ``disconnected`` newest first; ``receipts[i]`` belongs to
    ``connected[i]``; ``returned_txs`` are the disconnected blocks' transactions that the new
    chain does not contain (give them back to the mempool); ``rejected`` lists pooled orphans or
    side-chain blocks found invalid on the way, with their codes.
    """

    status: ImportStatus
    block_hash: BlockHash
    head: BlockHash
    connected: tuple[Block, ...] = ()
    disconnected: tuple[Block, ...] = ()
    receipts: tuple[tuple[Receipt, ...], ...] = ()
    returned_txs: tuple[Transaction, ...] = ()
    missing_parent: BlockHash | None = None
    rejected: tuple[tuple[BlockHash, str], ...] = ()

    @property
    def reorg(self) -> bool:
        """True iff main-chain blocks were disconnected."""
        return bool(self.disconnected)


class _ConnectFailed(Exception):
    """Internal: block ``block_hash`` failed full validation with ``code``."""

    def __init__(self, block_hash: BlockHash, code: str) -> None:
        super().__init__(code)
        self.block_hash = block_hash
        self.code = code


class _Overlay:
    """Pending writes over the store: the one batch a head change commits."""

    def __init__(self, store: Store, writes: dict[bytes, bytes | None]) -> None:
        self.store = store
        self.writes = writes

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.store.get(key)

    def state_get(self, key: bytes) -> bytes | None:
        return self.get(P_STATE + key)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A fully validated head change, ready to commit."""

    writes: dict[bytes, bytes | None]
    acc: int
    receipts: dict[BlockHash, tuple[Receipt, ...]]


def _ancestors_in(view: _Overlay, height: int) -> HashAt:
    """Ancestor hashes of a block at ``height`` being connected in ``view``: the plan has
    already moved the main-chain height index to this block's branch below it."""

    def hash_at(h: int) -> BlockHash | None:
        raw = view.get(height_key(h)) if 0 <= h < height else None
        return None if raw is None else BlockHash(raw)

    return hash_at


class Chain(ChainQueries):
    """A validated block tree with one main chain, over a :class:`Store`."""

    def __init__(self, store: Store, genesis: Genesis,
                 contracts: Mapping[str, Contract] = CONTRACTS) -> None:
        """Use :meth:`open`; this constructor assumes an initialised store."""
        self.store = store
        self.genesis = genesis
        self.contracts = contracts
        self._index: dict[BlockHash, IndexEntry] = {}
        self._orphans: OrderedDict[BlockHash, tuple[Block, int]] = OrderedDict()  # with size
        self._orphan_bytes = 0
        self._candidates: set[BlockHash] = set()
        self._head: IndexEntry
        self._head_header: BlockHeader
        self._acc = 0
        self._seq = 0

    # ----- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, store: Store, genesis: Genesis,
             contracts: Mapping[str, Contract] = CONTRACTS) -> Chain:
        """Open the chain in ``store``, writing the genesis block if the store is empty.

        Raises:
            UsageError: ``genesis-mismatch`` if the store holds another network's chain.
        """
        chain = cls(store, genesis, contracts)
        g = genesis.header()
        stored = store.get(META_GENESIS)
        if stored is None:
            chain._write_genesis(g)
        elif stored != g.hash:
            raise UsageError("genesis-mismatch", "the data dir belongs to another genesis")
        chain._load()
        return chain

    def _write_genesis(self, g: BlockHeader) -> None:
        items = self.genesis.state_items()
        acc = muhash_of(items)
        entry = IndexEntry(HeaderInfo.of(g), g.work, BlockStatus.VALID, 0)
        writes: dict[bytes, bytes | None] = {P_STATE + k: v for k, v in items}
        writes.update({
            P_BLOCK + g.hash: Block(g).encode(), P_INDEX + g.hash: entry.encode(),
            P_RECEIPTS + g.hash: encode_receipts(()),
            height_key(0): g.hash, META_HEAD: g.hash, META_ACC: acc.to_bytes(384, "big"),
            META_GENESIS: g.hash,
        })
        self.store.write_batch(writes)

    def _load(self) -> None:
        for key, value in self.store.iterate(P_INDEX):
            entry = IndexEntry.decode(key[1:], value)
            self._index[entry.hash] = entry
            self._seq = max(self._seq, entry.seq + 1)
        head = self.store.get(META_HEAD)
        acc = self.store.get(META_ACC)
        if head is None or acc is None or BlockHash(head) not in self._index:
            raise UsageError("corrupt-store", "missing head; run reindex")
        self._head = self._index[BlockHash(head)]
        self._head_header = self.get_block(self._head.hash).header
        self._acc = int.from_bytes(acc, "big")
        self._candidates = {h for h, e in self._index.items()
                            if e.status != BlockStatus.INVALID and e.work > self._head.work}

    # ----- queries (the rest are in ChainQueries) ----------------------------------------

    def orphan_count(self) -> int:
        """Blocks waiting for their parent."""
        return len(self._orphans)

    def orphan_bytes(self) -> int:
        """Encoded bytes of the blocks waiting for their parent."""
        return self._orphan_bytes

    def has_block(self, block_hash: bytes) -> bool:
        """True iff the block is stored (any status) or pooled as an orphan."""
        return block_hash in self._index or block_hash in self._orphans

    def next_target(self) -> int:
        """Target a block on the current head must carry."""
        return next_target(self.genesis, self._head.info, self._lookup)

    def _lookup(self, block_hash: BlockHash) -> HeaderInfo:
        return self._index[block_hash].info

    # ----- import ------------------------------------------------------------------------

    def import_block(self, block: Block, now: int) -> ImportResult:
        """Validate and store ``block``; switch to the heaviest valid chain.

        Args:
            block: a decoded block from any source.
            now: the local clock (unix seconds), for the 2-hour future rule.
        Returns:
            What happened, including blocks connected/disconnected and txs to re-pool.
        Raises:
            ValidationError: the block (or a stored ancestor it needed) breaks a rule.
        """
        h = block.hash
        known = self._index.get(h)
        if known is not None and known.status == BlockStatus.INVALID:
            raise ValidationError("bad-block-known-invalid")
        if known is not None or h in self._orphans:
            return ImportResult(ImportStatus.DUPLICATE, h, self.head_hash)
        if block.header.parent not in self._index:
            validate_detached(self.genesis, block)  # everything checkable without the parent
            return self._pool_orphan(block)
        old_head = self._head.hash
        rejected: list[tuple[BlockHash, str]] = []
        receipts: dict[BlockHash, tuple[Receipt, ...]] = {}
        self._accept(block, now, rejected, receipts)  # raises if this block is invalid
        self._adopt_orphans(h, now, rejected, receipts)
        for bad, code in rejected:
            if bad == h or self._descends(h, bad):
                raise ValidationError(code, "block or ancestor failed full validation")
        status = ImportStatus.CONNECTED if self.is_main_chain(h) else ImportStatus.SIDE_CHAIN
        return self._result(status, h, old_head, receipts, rejected)

    def _accept(self, block: Block, now: int, rejected: list[tuple[BlockHash, str]],
                receipts: dict[BlockHash, tuple[Receipt, ...]]) -> None:
        """Check a block with a known parent, store it, and activate the best chain."""
        parent = self._index[block.header.parent]
        if parent.status == BlockStatus.INVALID:
            raise ValidationError("bad-block-ancestor")
        validate_header(self.genesis, block.header, parent.info, self._lookup, now)
        validate_body(self.genesis, block)
        entry = IndexEntry(HeaderInfo.of(block.header), parent.work + block.header.work,
                           BlockStatus.HEADER_VALID, self._seq)
        self._seq += 1
        self._index[entry.hash] = entry
        if entry.work > self._head.work:
            self._candidates.add(entry.hash)
        writes: dict[bytes, bytes | None] = {
            P_BLOCK + entry.hash: block.encode(), P_INDEX + entry.hash: entry.encode()}
        self._activate_best_chain(writes, {entry.hash: block}, rejected, receipts)

    def _pool_orphan(self, block: Block) -> ImportResult:
        """Keep a block whose parent is unknown; report the first missing ancestor."""
        size = len(block.encode())
        self._orphans[block.hash] = (block, size)
        self._orphan_bytes += size
        while len(self._orphans) > MAX_ORPHANS or self._orphan_bytes > MAX_ORPHAN_BYTES:
            self._orphan_bytes -= self._orphans.popitem(last=False)[1][1]
        missing = block.header.parent
        while missing in self._orphans:
            missing = self._orphans[missing][0].header.parent
        return ImportResult(ImportStatus.ORPHAN, block.hash, self.head_hash,
                            missing_parent=missing)

    def _adopt_orphans(self, root: BlockHash, now: int, rejected: list[tuple[BlockHash, str]],
                       receipts: dict[BlockHash, tuple[Receipt, ...]]) -> None:
        """Import pooled orphans that descend from ``root`` (breadth first)."""
        queue = [root]
        while queue:
            parent = queue.pop(0)
            children = [b for b, _ in self._orphans.values() if b.header.parent == parent]
            for child in children:
                self._orphan_bytes -= self._orphans.pop(child.hash)[1]
                try:
                    self._accept(child, now, rejected, receipts)
                except ValidationError as exc:
                    rejected.append((child.hash, exc.code))
                    continue
                queue.append(child.hash)

    def _best_candidate(self) -> IndexEntry:
        """Heaviest non-invalid known block; the head on ties, else the first seen."""
        best = self._head
        for h in self._candidates:
            e = self._index[h]
            if e.work > best.work or (e.work == best.work and best is not self._head
                                      and e.seq < best.seq):
                best = e
        return best

    def _activate_best_chain(self, writes: dict[bytes, bytes | None],
                             fresh: dict[BlockHash, Block],
                             rejected: list[tuple[BlockHash, str]],
                             receipts: dict[BlockHash, tuple[Receipt, ...]]) -> None:
        """Reorganise to the best candidate, retrying after each block found invalid."""
        while True:
            best = self._best_candidate()
            if best is self._head:
                self.store.write_batch(writes)
                return
            try:
                plan = self._plan_switch(best, writes, fresh)
            except _ConnectFailed as fail:
                rejected.append((fail.block_hash, fail.code))
                self._mark_invalid(fail.block_hash, writes)
                continue
            self.store.write_batch(plan.writes)
            self._commit(best, plan)
            receipts.update(plan.receipts)
            return

    def _commit(self, best: IndexEntry, plan: _Plan) -> None:
        """Mirror a committed plan in memory."""
        for key, value in plan.writes.items():
            if key[:1] == P_INDEX and value is not None:
                entry = IndexEntry.decode(key[1:], value)
                self._index[entry.hash] = entry
        self._head = self._index[best.hash]
        self._head_header = self.get_block(best.hash).header
        self._acc = plan.acc
        self._candidates = {h for h in self._candidates
                            if self._index[h].work > self._head.work
                            and self._index[h].status != BlockStatus.INVALID}

    def _mark_invalid(self, bad: BlockHash, writes: dict[bytes, bytes | None]) -> None:
        """Mark ``bad`` and every known descendant INVALID (memory and pending writes)."""
        for h, e in list(self._index.items()):
            if h == bad or self._descends(h, bad):
                self._index[h] = e.with_status(BlockStatus.INVALID)
                writes[P_INDEX + h] = self._index[h].encode()
                self._candidates.discard(h)

    def _descends(self, h: BlockHash, ancestor: BlockHash) -> bool:
        """True iff ``ancestor`` is a strict ancestor of ``h``."""
        target = self._index.get(ancestor)
        e = self._index.get(h)
        if target is None or e is None:
            return False
        while e.info.height > target.info.height:
            e = self._index[e.info.parent]
        return e.hash == ancestor and h != ancestor

    def _fork_point(self, a: IndexEntry, b: IndexEntry) -> IndexEntry:
        """The last common ancestor of ``a`` and ``b``."""
        while a.info.height > b.info.height:
            a = self._index[a.info.parent]
        while b.info.height > a.info.height:
            b = self._index[b.info.parent]
        while a.hash != b.hash:
            a, b = self._index[a.info.parent], self._index[b.info.parent]
        return a

    def _path(self, tip: IndexEntry, stop: IndexEntry) -> list[IndexEntry]:
        """Blocks from ``tip`` down to (excluding) ``stop``, newest first."""
        out = []
        while tip.hash != stop.hash:
            out.append(tip)
            tip = self._index[tip.info.parent]
        return out

    def _plan_switch(self, best: IndexEntry, base: dict[bytes, bytes | None],
                     fresh: dict[BlockHash, Block]) -> _Plan:
        """Disconnect to the fork point and connect up to ``best``, all in one overlay."""
        view = _Overlay(self.store, dict(base))
        fork = self._fork_point(self._head, best)
        acc = self._acc
        for entry in self._path(self._head, fork):
            acc = self._disconnect(view, entry)
        receipts: dict[BlockHash, tuple[Receipt, ...]] = {}
        for entry in reversed(self._path(best, fork)):
            block = fresh.get(entry.hash) or self._read_block(view, entry.hash)
            acc, receipts[entry.hash] = self._connect(view, block, entry, acc)
        view.writes[META_HEAD] = best.hash
        view.writes[META_ACC] = acc.to_bytes(384, "big")
        return _Plan(view.writes, acc, receipts)

    @staticmethod
    def _read_block(view: _Overlay, block_hash: BlockHash) -> Block:
        raw = view.get(P_BLOCK + block_hash)
        if raw is None:
            raise UsageError("corrupt-store", f"block {block_hash.hex()} missing")
        return Block.decode(raw)

    def _disconnect(self, view: _Overlay, entry: IndexEntry) -> int:
        """Undo one main-chain block in ``view``; return the accumulator before it."""
        raw = view.get(P_UNDO + entry.hash)
        if raw is None:
            raise UsageError("corrupt-store", f"undo of {entry.hash.hex()} missing")
        undo = Undo.decode(raw)
        for key, value in undo.previous:
            view.writes[P_STATE + key] = value
        for tx in self._read_block(view, entry.hash).txs:
            view.writes[P_TX + tx.txid] = None
        view.writes[height_key(entry.info.height)] = None
        return undo.prev_acc

    def _connect(self, view: _Overlay, block: Block, entry: IndexEntry,
                 acc: int) -> tuple[int, tuple[Receipt, ...]]:
        """Fully validate and apply one block in ``view`` (state, undo, tx index, receipts);
        return the new accumulator and the block's receipts."""
        state = State(view.state_get)
        try:
            receipts = apply_block(state, block, self.genesis, self.contracts,
                                   hash_at=_ancestors_in(view, block.height))
        except ValidationError as exc:
            raise _ConnectFailed(entry.hash, exc.code) from exc
        changes, previous = state.diff()
        new_acc = muhash_update(acc, previous, changes)
        if state_root(new_acc) != block.header.state_root:
            raise _ConnectFailed(entry.hash, "bad-block-state-root")
        for key, value in changes.items():
            view.writes[P_STATE + key] = value
        view.writes[P_UNDO + entry.hash] = Undo(acc, tuple(sorted(previous.items()))).encode()
        for i, tx in enumerate(block.txs):
            view.writes[P_TX + tx.txid] = TxLocation(entry.hash, i).encode()
        view.writes[P_RECEIPTS + entry.hash] = encode_receipts(receipts)
        view.writes[height_key(entry.info.height)] = entry.hash
        if entry.status != BlockStatus.VALID:
            view.writes[P_INDEX + entry.hash] = entry.with_status(BlockStatus.VALID).encode()
        return new_acc, tuple(receipts)

    def _result(self, status: ImportStatus, h: BlockHash, old_head: BlockHash,
                receipts: dict[BlockHash, tuple[Receipt, ...]],
                rejected: list[tuple[BlockHash, str]]) -> ImportResult:
        """Summarise the net head change from ``old_head`` to the current head."""
        old = self._index[old_head]
        fork = self._fork_point(old, self._head)
        gone = [self.get_block(e.hash) for e in self._path(old, fork)]
        new = [self.get_block(e.hash) for e in reversed(self._path(self._head, fork))]
        kept = {tx.txid for b in new for tx in b.txs}
        returned = tuple(tx for b in reversed(gone) for tx in b.txs if tx.txid not in kept)
        return ImportResult(
            status, h, self.head_hash, tuple(new), tuple(gone),
            tuple(receipts.get(b.hash, ()) for b in new), returned, None, tuple(rejected))

    # ----- mining ------------------------------------------------------------------------

    def build_block_template(self, miner: bytes, txs: Iterable[Transaction],
                             now: int) -> BlockTemplate:
        """An unmined block on the head with as many of ``txs`` (in order) as apply.

        See :func:`crowdmesh.chain.template.build_template`.
        """
        return build_template(self, miner, txs, now)
