"""A naive reference chain for differential tests (py-evm's JournalComparison idea).

It keeps every block it is given and answers every question by replaying from genesis into a
plain dict: no undo records, no incremental accumulator, no store, no candidate set. The head is
the valid block with the most work; among equal work the first block to join the tree wins.
The consensus rule functions themselves (validate_header, apply_block) are shared with the real
chain; their individual codes are pinned by test_rejects.py.
"""

from __future__ import annotations

import dataclasses

from crowdmesh.chain import CONTRACTS, MAX_TARGET, Block, BlockHeader, Genesis, merkle_root
from crowdmesh.chain.rules import (
    HeaderInfo,
    apply_block,
    next_target,
    validate_body,
    validate_header,
)
from crowdmesh.chain.state import State, muhash_of, state_root
from crowdmesh.errors import ValidationError

NOW = 10**12  # far future: the 2-hour rule never fires in differential tests


class Reference:
    """All blocks ever seen, and naive answers about them."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        g = genesis.header()
        self.genesis_hash = g.hash
        self.blocks: dict[bytes, Block] = {g.hash: Block(g)}  # built or added
        self.order: list[bytes] = [g.hash]  # blocks in the tree, in order of joining it
        self.pool: list[Block] = []  # parent not (yet) in the tree
        self.in_tree: set[bytes] = {g.hash}
        self._work: dict[bytes, int] = {}
        self._valid: dict[bytes, dict[bytes, bytes] | None] = {
            g.hash: dict(genesis.state_items())}

    def add(self, block: Block) -> None:
        """Record ``block``; blocks whose parent is known join the tree (orphans later)."""
        if block.hash in self.in_tree or any(b.hash == block.hash for b in self.pool):
            return
        self.blocks[block.hash] = block
        self.pool.append(block)
        queue = [b for b in self.pool if b.header.parent in self.in_tree]
        while queue:
            b = queue.pop(0)
            if b not in self.pool:
                continue
            self.pool.remove(b)
            self.in_tree.add(b.hash)
            self.order.append(b.hash)
            queue.extend(c for c in self.pool if c.header.parent == b.hash)

    def info(self, h: bytes) -> HeaderInfo:
        return HeaderInfo.of(self.blocks[h].header)

    def state(self, h: bytes) -> dict[bytes, bytes] | None:
        """The state after block ``h`` if it and all its ancestors are valid, else None."""
        if h not in self._valid:
            self._valid[h] = self._replay(self.blocks[h])
        return self._valid[h]

    def _replay(self, block: Block) -> dict[bytes, bytes] | None:
        parent_state = self.state(block.header.parent)
        if parent_state is None:
            return None
        try:
            validate_header(self.genesis, block.header, self.info(block.header.parent),
                            self.info, NOW)
            validate_body(self.genesis, block)
            st = State(parent_state.get)
            apply_block(st, block, self.genesis, CONTRACTS)
        except ValidationError:
            return None
        new = dict(parent_state)
        for k, v in st.diff()[0].items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = v
        if state_root(muhash_of(sorted(new.items()))) != block.header.state_root:
            return None
        return new

    def work(self, h: bytes) -> int:
        if h not in self._work:
            b = self.blocks[h].header
            self._work[h] = b.work + (self.work(b.parent) if b.height else 0)
        return self._work[h]

    def head(self) -> bytes:
        best, best_work = self.genesis_hash, self.work(self.genesis_hash)
        for h in self.order:
            if self.state(h) is not None and self.work(h) > best_work:
                best, best_work = h, self.work(h)
        return best

    def main_chain(self) -> list[bytes]:
        h = self.head()
        out = [h]
        while self.blocks[h].header.height > 0:
            h = self.blocks[h].header.parent
            out.append(h)
        return out[::-1]

    def build(self, parent: bytes, txs: tuple = (), miner: bytes = bytes(32), dt: int = 10,
              bad_root: bool = False) -> Block:
        """A PoW-valid block on ``parent`` (state root from a full replay of ``txs``)."""
        ph = self.blocks[parent].header
        st = State(self.state(parent).get)
        header = BlockHeader(
            self.genesis.chain_id, ph.height + 1, ph.hash, ph.timestamp + dt,
            next_target(self.genesis, self.info(parent), self.info),
            merkle_root([t.txid for t in txs]), bytes(32), miner, 0)
        apply_block(st, Block(header, tuple(txs)), self.genesis, CONTRACTS)
        new = dict(self.state(parent))
        for k, v in st.diff()[0].items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = v
        root = state_root(muhash_of(sorted(new.items())))
        if bad_root:
            root = bytes(32)
        block = mined(Block(dataclasses.replace(header, state_root=root), tuple(txs)))
        self.blocks[block.hash] = block
        return block

    def build_unchecked(self, parent: bytes, txs: tuple = (), miner: bytes = bytes(32),
                        dt: int = 10) -> Block:
        """Like :meth:`build` but never applies ``txs``: for blocks that must be invalid, or
        whose parent state is unknown (the state root is then a dummy)."""
        ph = self.blocks[parent].header
        header = BlockHeader(
            self.genesis.chain_id, ph.height + 1, ph.hash, ph.timestamp + dt,
            next_target(self.genesis, self.info(parent), self.info),
            merkle_root([t.txid for t in txs]), bytes(32), miner, 0)
        block = mined(Block(header, tuple(txs)))
        self.blocks[block.hash] = block
        return block


def mined(block: Block) -> Block:
    """``block`` with a nonce meeting its target (instant when the target is MAX_TARGET)."""
    from crowdmesh.chain import mine

    h = block.header
    if h.target == MAX_TARGET:
        return block
    nonce = mine(h, 0, 1 << 24)
    assert nonce is not None
    return Block(dataclasses.replace(h, nonce=nonce), block.txs)
