"""The small real chain every fuzz target validates against, and the seed objects it yields.

``build_world()`` is deterministic: the same keys, genesis, blocks, spatial report and tally
every time, so a fuzz input replays against the same state. The chain (MemoryStore, easy PoW
target 2**250 ≈ 64 hashes a block, so a mutated block re-mines in microseconds) holds:
block 1 a transfer and a key registration, block 2 a spatial report's beacon, and the head
state funds four accounts. ``World.tally_payload`` is a confirmed tally that would apply in
the next block; ``World.next_block`` a valid block on the head.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from crowdmesh.chain import (
    REGISTER_KEY,
    TRANSFER,
    Address,
    Block,
    Chain,
    Genesis,
    MemoryStore,
    Mempool,
    Transaction,
    make_transaction,
    mine,
    minimum_fee,
    register_key_payload,
    transfer_payload,
)
from crowdmesh.chain.contracts import SPATIAL_REJECT, SPATIAL_TALLY
from crowdmesh.chain.contracts.spatial.contract import reject_payload, tally_payload
from crowdmesh.chain.contracts.spatial.protocol import (
    VOTE_CONFIRM,
    Commit,
    Report,
    Reveal,
    committee_hash,
)
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.ledger import Ledger

__all__ = ["CHAIN_ID", "EASY_TARGET", "KEYS", "T0", "World", "build_world", "mined"]

CHAIN_ID = "cm-fuzz"
T0 = 1_700_000_000
EASY_TARGET = 1 << 250
KEYS = [AccountKey.generate(DeterministicRng(b"fuzz-key-%d" % i)) for i in range(4)]
WORKERS = [AccountKey.generate(DeterministicRng(b"fuzz-worker-%d" % i)) for i in range(4)]
MINER = Address(b"\xa0" * 32)
PARAMS = SpatialParams(committee_k=3, commit_window_s=60, reveal_window_s=30, pair_cap=2,
                       pair_window_blocks=100, dup_distance_m=50, dup_window_s=3600)
CLT = (35_227_100, -80_843_100)


def make_genesis() -> Genesis:
    """Four funded accounts, easy PoW, no retargeting, a quarter of fees burned."""
    return Genesis(chain_id=CHAIN_ID, timestamp=T0, target=EASY_TARGET, block_interval=10,
                   retarget_interval=0, block_reward=1000, fee_burn_bps=2500,
                   max_block_bytes=1 << 20, spatial=PARAMS,
                   alloc=tuple(sorted((Address(k.public), 10**12) for k in KEYS)))


def mined(block: Block, tries: int = 1 << 16) -> Block:
    """``block`` with a nonce that meets its target (or unchanged if none in ``tries``)."""
    nonce = mine(block.header, 0, tries)
    if nonce is None:
        return block
    return Block(dataclasses.replace(block.header, nonce=nonce), block.txs)


@dataclass
class World:
    """A chain, its ledger, and the real objects the seed corpora are made of."""

    chain: Chain
    ledger: Ledger
    now: int
    txs: list[Transaction] = field(default_factory=list)
    next_block: Block | None = None
    report: Report | None = None
    commits: list[Commit] = field(default_factory=list)
    reveals: list[Reveal] = field(default_factory=list)
    beacon: bytes = b""
    tally_ts: int = 0

    @property
    def genesis(self) -> Genesis:
        return self.chain.genesis

    def nonce(self, key: AccountKey) -> int:
        return self.chain.nonce(key.public)

    def tx(self, key: AccountKey, kind: str, payload: bytes, nonce: int | None = None) -> \
            Transaction:
        n = self.nonce(key) if nonce is None else nonce
        return make_transaction(key, CHAIN_ID, n, kind, payload, minimum_fee(payload, 1) + 7)

    def mine_on_head(self, txs: tuple[Transaction, ...] = (), advance: int = 10) -> Block:
        """Build, mine and import a block holding ``txs``; return it."""
        tpl = self.chain.build_block_template(MINER, txs, self.chain.head.timestamp + advance)
        assert tpl.skipped == (), tpl.skipped
        block = mined(tpl.block)
        self.chain.import_block(block, self.now)
        return block

    def transfer(self, key: AccountKey, amount: int = 5, nonce: int | None = None) -> \
            Transaction:
        return self.tx(key, TRANSFER, transfer_payload(KEYS[3].public, amount), nonce)

    def register_payload(self, key: AccountKey, seed: int = 7) -> bytes:
        rng = DeterministicRng(seed)
        sk = DEFAULT.random_exponent(rng)
        public = pow(DEFAULT.group.g, sk, DEFAULT.group.p)
        return register_key_payload("default", public, prove_key(DEFAULT, key.public, sk, rng))

    @property
    def tally_payload(self) -> bytes:
        assert self.report is not None
        return tally_payload(self.report, self.commits, self.reveals)

    @property
    def reject_payload(self) -> bytes:
        assert self.report is not None
        return reject_payload(self.report.report_id, committee_hash(
            [c.worker for c in self.commits[:3]]))

    def seed_txs(self) -> list[Transaction]:
        """Valid next transactions of every kind (nonces continue from the head)."""
        k0, k1, k2 = KEYS[0], KEYS[1], KEYS[2]
        return [self.transfer(k0), self.transfer(k0, 7, self.nonce(k0) + 1),
                self.tx(k1, REGISTER_KEY, self.register_payload(k1, 9)),
                self.tx(k2, SPATIAL_TALLY, self.tally_payload),
                self.tx(k2, SPATIAL_REJECT, self.reject_payload)]


def _salt(i: int) -> bytes:
    return hashlib.sha256(b"fuzz-salt" + bytes([i])).digest()


def _spatial(world: World) -> None:
    """A report anchored at the head, its beacon block, commits of every worker, reveals of
    the frozen committee, all confirming."""
    report = Report.create(KEYS[2], CHAIN_ID, "flood", CLT[0], CLT[1],
                           world.chain.head.timestamp, world.chain.height)
    world.mine_on_head()
    beacon = world.chain.get_hash_at(report.anchor + 1)
    commits = [Commit.create(w, report.report_id, beacon, VOTE_CONFIRM, _salt(i))
               for i, w in enumerate(WORKERS)]
    ranked = sorted(commits, key=lambda c: (c.verify(beacon), c.worker))[:PARAMS.committee_k]
    h_s = committee_hash([c.worker for c in ranked])
    by_worker = {w.public: (i, w) for i, w in enumerate(WORKERS)}
    reveals = [Reveal.create(by_worker[c.worker][1], report.report_id, VOTE_CONFIRM,
                             _salt(by_worker[c.worker][0]), h_s) for c in ranked]
    world.report, world.commits, world.reveals, world.beacon = report, commits, reveals, beacon
    world.tally_ts = report.ts + PARAMS.commit_window_s + PARAMS.reveal_window_s


def build_world() -> World:
    """The deterministic fuzz chain (see the module docstring)."""
    genesis = make_genesis()
    chain = Chain.open(MemoryStore(), genesis)
    world = World(chain, Ledger(chain, Mempool(chain), clock=lambda: T0 + 100), now=T0 + 10**6)
    k0, k1 = KEYS[0], KEYS[1]
    first = (world.transfer(k0), world.tx(k1, REGISTER_KEY, world.register_payload(k1)))
    world.txs.extend(first)
    world.mine_on_head(first)
    _spatial(world)
    # the head's timestamp must allow the tally (block time ≥ report.ts + T_c) in the next block
    tpl = chain.build_block_template(MINER, (world.transfer(k0),), world.tally_ts)
    world.next_block = mined(tpl.block)
    return world
