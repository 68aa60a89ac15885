"""``check_db`` (verify a store) and ``reindex`` (rebuild it from its blocks).

Invariants:
- ``check_db`` only reads. It returns a list of problems; an empty list means the store is
  empty (fresh: no metadata and no block, index or state rows; metadata gone while such rows
  remain is the trace of an interrupted reindex and is a problem) or: the head, the
  main-chain height index and the block index agree; every main block decodes, links to its
  parent, has an undo record, indexed transactions and a receipt list that decodes and holds
  one receipt per transaction with the block's txids in order; and the stored state hashes
  (MuHash) to the head accumulator and to the head header's state root. Damage is reported, never
  raised; receipt problems start with a stable code (``receipts-missing``, ``receipts-damaged``,
  ``receipts-mismatch``), and a row that no longer decodes with ``row-damaged``. (Damage to the
  SQLite file itself is refused earlier, when the store opens: ``chain-db-damaged``.)
- ``reindex`` keeps the stored blocks, deletes everything derived from them (state, indexes,
  undo, receipts, head) and re-imports the blocks in height order, so fork choice and full
  validation run again and every main-chain block gets its receipts written anew. It is safe to
  rerun after a crash part-way.
- Upgrading: a store written before receipts were stored (no ``r‖hash`` rows) opens and works,
  but ``check_db`` reports ``receipts-missing`` for its main-chain blocks and
  ``Chain.block_receipts`` / ``tx_receipt`` raise ``NotFound("receipts-not-found")`` for them.
  Running ``reindex`` once fills the receipts in (receipts of blocks connected later are
  written as they connect).
"""

from __future__ import annotations

from collections.abc import Mapping

from crowdmesh.chain.block import Block
from crowdmesh.chain.chain import Chain
from crowdmesh.chain.contracts import CONTRACTS, Contract
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.layout import (
    META_ACC,
    META_GENESIS,
    META_HEAD,
    P_BLOCK,
    P_HEIGHT,
    P_INDEX,
    P_RECEIPTS,
    P_STATE,
    P_TX,
    P_UNDO,
    BlockStatus,
    IndexEntry,
    TxLocation,
    decode_receipts,
    height_key,
)
from crowdmesh.chain.state import muhash_of, state_root
from crowdmesh.chain.store import Store
from crowdmesh.errors import CrowdmeshError, ValidationError

__all__ = ["check_db", "reindex"]


def check_db(store: Store, genesis: Genesis) -> list[str]:
    """Verify ``store`` against ``genesis``; return the problems found (empty = healthy).

    A row that no longer decodes ends the check with ``row-damaged: <its decode code>``.
    """
    try:
        return _check(store, genesis)
    except CrowdmeshError as exc:  # why: damage is reported, never raised (module rules)
        return [f"row-damaged: {exc}"]


def _check(store: Store, genesis: Genesis) -> list[str]:
    problems: list[str] = []
    if all(store.get(k) is None for k in (META_GENESIS, META_HEAD, META_ACC)):
        # the first batch writes all three with block 0, so rows without them mean a wipe
        # (reindex) was interrupted, not a fresh store
        if any(next(iter(store.iterate(p)), None) for p in (P_BLOCK, P_INDEX, P_STATE)):
            return ["metadata missing but blocks or state remain (interrupted reindex?); "
                    "run reindex"]
        return []
    if store.get(META_GENESIS) != genesis.header().hash:
        return ["genesis hash missing or different"]
    head, acc = store.get(META_HEAD), store.get(META_ACC)
    if head is None or acc is None:
        return ["head pointer or accumulator missing"]
    index = {k[1:]: IndexEntry.decode(k[1:], v) for k, v in store.iterate(P_INDEX)}
    if head not in index:
        return ["head block not in the block index"]
    height = index[head].info.height
    problems += _check_main_chain(store, index, head)
    heights = sum(1 for _ in store.iterate(P_HEIGHT))
    if heights != height + 1:
        problems.append(f"{heights} height entries for a chain of height {height}")
    items = [(k[1:], v) for k, v in store.iterate(P_STATE)]
    stored_acc = int.from_bytes(acc, "big")
    if muhash_of(items) != stored_acc:
        problems.append("state does not hash to the stored accumulator")
    raw_head = store.get(P_BLOCK + head)
    if raw_head is not None and Block.decode(raw_head).header.state_root != state_root(
            stored_acc):
        problems.append("head state root does not match the accumulator")
    return problems


def _check_receipts(store: Store, block: Block) -> str | None:
    """The problem with a main-chain block's stored receipts, if any."""
    raw = store.get(P_RECEIPTS + block.hash)
    if raw is None:
        return f"receipts-missing: block {block.hash.hex()} (run reindex)"
    try:
        receipts = decode_receipts(raw)
    except CrowdmeshError as exc:
        return f"receipts-damaged: block {block.hash.hex()}: {exc.code}"
    if [r.txid for r in receipts] != [tx.txid for tx in block.txs]:
        return (f"receipts-mismatch: block {block.hash.hex()} has {len(block.txs)} txs, "
                f"{len(receipts)} receipts (or other txids)")
    return None


def _check_main_chain(store: Store, index: Mapping[bytes, IndexEntry], head: bytes) -> list[str]:
    """Walk from the head to genesis checking links, heights, undo, tx index and receipt rows."""
    problems: list[str] = []
    h: bytes = head
    tx_rows = 0
    while True:
        entry = index.get(h)
        raw = store.get(P_BLOCK + h)
        if entry is None or raw is None:
            return [*problems, f"block {h.hex()} missing"]
        try:
            block = Block.decode(raw)
        except CrowdmeshError as exc:
            return [*problems, f"block {h.hex()} does not decode: {exc.code}"]
        height = entry.info.height
        if block.hash != h or block.height != height or entry.status != BlockStatus.VALID:
            problems.append(f"block {h.hex()} index entry disagrees")
        if store.get(height_key(height)) != h:
            problems.append(f"height {height} does not point to the main chain")
        for i, tx in enumerate(block.txs):
            loc = store.get(P_TX + tx.txid)
            if loc is None or TxLocation.decode(loc) != TxLocation(block.hash, i):
                problems.append(f"tx {tx.txid.hex()} not indexed")
        tx_rows += len(block.txs)
        if (receipt_problem := _check_receipts(store, block)) is not None:
            problems.append(receipt_problem)
        if height == 0:
            break
        if store.get(P_UNDO + h) is None:
            problems.append(f"undo record of {h.hex()} missing")
        h = block.header.parent
    if sum(1 for _ in store.iterate(P_TX)) != tx_rows:
        problems.append("transaction index has rows for blocks off the main chain")
    return problems


def _decodable_blocks(store: Store) -> list[Block]:
    """Every stored block that still decodes to its key (damaged rows are skipped)."""
    out = []
    for key, value in store.iterate(P_BLOCK):
        try:
            block = Block.decode(value)
        except CrowdmeshError:
            continue
        if block.hash == key[1:]:
            out.append(block)
    return out


def reindex(store: Store, genesis: Genesis, now: int,
            contracts: Mapping[str, Contract] = CONTRACTS) -> Chain:
    """Rebuild state and indexes from the stored blocks; return the reopened chain.

    Blocks that fail validation on the way, or no longer decode, are dropped. ``now`` bounds
    timestamps as usual.
    """
    # Re-import in the original arrival order where the old index still knows it, so the
    # first-seen tie break between equal-work tips picks the same head as before.
    seen: dict[bytes, int] = {}
    for key, value in store.iterate(P_INDEX):
        try:
            seen[key[1:]] = IndexEntry.decode(key[1:], value).seq
        except CrowdmeshError:
            continue  # a damaged index row: that block sorts last at its height
    blocks = sorted(_decodable_blocks(store),
                    key=lambda b: (b.height, seen.get(b.hash, 1 << 64)))
    wipe: dict[bytes, bytes | None] = {}
    for prefix in (P_INDEX, P_HEIGHT, P_UNDO, P_STATE, P_TX, P_RECEIPTS, META_HEAD, META_ACC,
                   META_GENESIS):
        wipe.update((k, None) for k, _ in store.iterate(prefix))
    store.write_batch(wipe)
    chain = Chain.open(store, genesis, contracts)
    for block in blocks:
        if block.height == 0:
            continue
        try:
            chain.import_block(block, now)
        except ValidationError:
            continue
    return chain
