"""A CrowdSFL task on a real in-memory chain, with block time advanced by hand.

``World`` wraps a :class:`Chain` plus the parties' account keys, the requester's and CSP's
ElGamal keys (registered with their PoK in the first block), nonce bookkeeping and one helper
per protocol step. ``assert_supply`` checks the chain's supply identity:
Σ balances + escrow + burned deposits + burned fees = genesis alloc + block rewards.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from crowdmesh.chain import MemoryStore, make_transaction, register_key_payload
from crowdmesh.chain.chain import Chain
from crowdmesh.chain.contracts import REGISTER_KEY
from crowdmesh.chain.contracts.blob import KIND as BLOB_PART
from crowdmesh.chain.contracts.blob import blob_bytes, blob_hash, split_blob
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_ACCURACY,
    KIND_BLINDED,
    KIND_CREATE,
    KIND_JOIN,
    KIND_MODEL,
    KIND_SELECT,
    KIND_SETTLE,
    KIND_SUBMIT,
    KIND_TIMEOUT,
    TaskSpec,
    accuracy_payload,
    blinded_payload,
    burned_total,
    create_payload,
    escrow_total,
    join_payload,
    model_payload,
    score_commitment,
    select_payload,
    settle_payload,
    submit_payload,
    task_status,
    timeout_payload,
)
from crowdmesh.chain.rules import burned_fee
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto.csp import ProvenBundle, csp_process, task_keys
from crowdmesh.crypto.elgamal import Bundle, keygen
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.randproof import encrypt_proven
from crowdmesh.crypto.rng import DeterministicRng
from tests.unit.chain.helpers import MINERS, T0, make_genesis, mine_block

RNG = DeterministicRng(b"crowdsfl-world")
REQ, CSP, OTHER = (AccountKey.generate(RNG) for _ in range(3))
WORKERS = [AccountKey.generate(RNG) for _ in range(4)]
FUNDS = 10**9
CHUNKS = 3  # bundle_chunks of the test tasks: 3 × 383 bytes of plaintext
MODEL = bytes(range(200)) * 4  # an 800-byte "model"
SCHEMA = hashlib.sha256(b"bcwd-schema").digest()


def base_spec(**overrides: object) -> TaskSpec:
    """A 2-round task for 2..3 workers with short windows (seconds of block time)."""
    spec = TaskSpec(
        profile="default", csp=CSP.public, layers=(30, 8, 2), activation="relu", init="he",
        epochs=1, batch_size=16, lr_micro=10_000, l2_micro=0, optimizer="sgd", rounds=2,
        min_workers=2, max_workers=3, join_deadline=T0 + 1000, t_wait=100, t_step=100,
        pool=9_000, deposit_base=500, deposit_per_ksample=1000, deposit_rep_discount=10,
        deposit_min=100, rep_weight=1, select_m=3, min_accuracy_bps=5000, aggregation="equal",
        bundle_chunks=CHUNKS, schema_hash=SCHEMA)
    return dataclasses.replace(spec, **overrides)  # type: ignore[arg-type]


@dataclass
class World:
    """The chain, the clock and the parties' keys."""

    chain: Chain
    nonces: dict[bytes, int] = field(default_factory=dict)
    clock: int = T0
    rng: DeterministicRng = field(default_factory=lambda: DeterministicRng(b"world"))

    def __post_init__(self) -> None:
        self.req_keys = keygen(DEFAULT, DeterministicRng(b"req-elgamal"))
        self.csp_keys = keygen(DEFAULT, DeterministicRng(b"csp-elgamal"))
        self.block(*(self.tx(k, REGISTER_KEY, register_key_payload(
            "default", kp.pk, prove_key(DEFAULT, k.public, kp.sk, self.rng)))
            for k, kp in ((REQ, self.req_keys), (CSP, self.csp_keys))))
        self.keys = task_keys(DEFAULT, self.csp_keys.pk, self.req_keys.pk)

    # -- chain plumbing ---------------------------------------------------------------------

    def tx(self, key: AccountKey, kind: str, payload: bytes):
        nonce = self.nonces.get(key.public, 0)
        self.nonces[key.public] = nonce + 1
        return make_transaction(key, self.chain.genesis.chain_id, nonce, kind, payload,
                                minimum_fee(payload, 1))

    def block(self, *txs, advance: int = 10) -> None:
        self.clock += advance
        tpl = self.chain.build_block_template(MINERS[0], txs, self.clock)
        assert tpl.skipped == (), tpl.skipped
        self.chain.import_block(mine_block(tpl.block), self.clock)

    def code(self, tx, advance: int = 10) -> str:
        """The reject code of ``tx`` in the next block (which is then not mined)."""
        tpl = self.chain.build_block_template(MINERS[0], (tx,), self.clock + advance)
        assert [t for t, _ in tpl.skipped] == [tx.txid], "the transaction was accepted"
        self.nonces[tx.sender] -= 1  # it never landed: the next tx reuses its nonce
        return tpl.skipped[0][1]

    def send(self, key: AccountKey, kind: str, payload: bytes, advance: int = 10):
        tx = self.tx(key, kind, payload)
        self.block(tx, advance=advance)
        return tx

    def upload(self, key: AccountKey, data: bytes) -> bytes:
        if blob_bytes(self.chain.state_get, blob_hash(data)) is not None:
            return blob_hash(data)  # already on chain: anyone may name it
        self.block(*(self.tx(key, BLOB_PART, p) for p in split_blob(data)))
        return blob_hash(data)

    def phase(self, task: bytes):
        return task_status(self.chain.state_get, task)[1]

    # -- protocol steps ---------------------------------------------------------------------

    def create(self, **overrides: object) -> bytes:
        return self.send(REQ, KIND_CREATE, create_payload(base_spec(**overrides))).txid

    def join(self, task: bytes, worker: AccountKey, n_k: int = 1000) -> None:
        self.send(worker, KIND_JOIN, join_payload(task, n_k, hashlib.sha256(worker.public)
                                                  .digest()))

    def model(self, task: bytes, round_: int, data: bytes = MODEL) -> bytes:
        name = self.upload(REQ, data)
        self.send(REQ, KIND_MODEL, model_payload(task, round_, name))
        return name

    def encrypt(self, task: bytes, round_: int, worker: AccountKey, data: bytes = MODEL):
        return encrypt_proven(self.keys.joint, data, self.rng, worker.public, task, round_,
                              CHUNKS)

    def submit_tx(self, task: bytes, round_: int, worker: AccountKey, bundle: Bundle,
                  proof: bytes):
        name = self.upload(worker, bundle.to_bytes(DEFAULT.group))
        return self.tx(worker, KIND_SUBMIT, submit_payload(task, round_, name, proof))

    def submit(self, task: bytes, round_: int, worker: AccountKey, data: bytes = MODEL) -> Bundle:
        bundle, proof = self.encrypt(task, round_, worker, data)
        self.block(self.submit_tx(task, round_, worker, bundle, proof.to_bytes()))
        return bundle

    def submitted(self, task: bytes, round_: int, workers) -> list[Bundle]:
        from crowdmesh.chain.contracts.crowdsfl.records import round_key
        names = [self.chain.state_get(round_key(b"u", task, round_, w.public)) for w in workers]
        return [Bundle.from_bytes(DEFAULT.group, blob_bytes(self.chain.state_get, n), CHUNKS)
                for n in names if n is not None]

    def prepare_blinded(self, task: bytes, round_: int, workers):
        """The CSP's real pipeline on the round's submissions, uploaded: (outputs, entries)."""
        result = csp_process(self.keys, self.csp_keys.sk, self.submitted(task, round_, workers),
                             self.rng)
        names = [self.upload(CSP, out.to_bytes(DEFAULT.group)) for out in result.outputs]
        entries = [(o.bundle_id, n) for o, n in zip(result.outputs, names, strict=True)]
        return list(result.outputs), entries

    def blind(self, task: bytes, round_: int, workers) -> list[ProvenBundle]:
        """Run the CSP's pipeline and post the blinded list."""
        outs, entries = self.prepare_blinded(task, round_, workers)
        self.send(CSP, KIND_BLINDED, blinded_payload(task, round_, entries), advance=0)
        return outs

    def accuracy(self, task: bytes, round_: int, outs, accs=None) -> None:
        accs = accs or [9000] * len(outs)
        self.send(REQ, KIND_ACCURACY, accuracy_payload(
            task, round_, [(o.bundle_id, a, 0) for o, a in zip(outs, accs, strict=True)]))

    def select(self, task: bytes, round_: int, ids) -> None:
        commitment = score_commitment(b"salt", [(w.public, 1) for w in WORKERS])
        self.send(CSP, KIND_SELECT, select_payload(task, round_, ids, commitment))

    def settle(self, task: bytes, split) -> None:
        self.send(CSP, KIND_SETTLE, settle_payload(task, split))

    def timeout(self, task: bytes, advance: int):
        return self.send(OTHER, KIND_TIMEOUT, timeout_payload(task), advance=advance)

    def run_round(self, task: bytes, round_: int, workers) -> list[ProvenBundle]:
        """Submissions from ``workers`` then blinded list, accuracies and a full selection."""
        for w in workers:
            self.submit(task, round_, w)
        outs = self.blind(task, round_, workers)
        self.accuracy(task, round_, outs)
        self.select(task, round_, [o.bundle_id for o in outs])
        return outs

    # -- supply -----------------------------------------------------------------------------

    def assert_supply(self) -> None:
        g = self.chain.genesis
        get = self.chain.state_get
        balances = sum(a.balance for _, a in self.chain.iter_accounts())
        fees_burned = sum(burned_fee(tx.fee, g)
                          for h in range(1, self.chain.height + 1)
                          for tx in self.chain.get_block_by_height(h).txs)
        rewards = sum(g.reward(h) for h in range(1, self.chain.height + 1))
        held = balances + escrow_total(get) + burned_total(get) + fees_burned
        assert held == g.alloc_total() + rewards


def new_world() -> World:
    alloc = tuple(sorted((k.public, FUNDS) for k in (REQ, CSP, OTHER, *WORKERS)))
    return World(Chain.open(MemoryStore(), make_genesis(alloc=alloc)))


def started(world: World, workers=WORKERS[:3], **overrides: object) -> bytes:
    """A task with ``workers`` joined and round 0's model posted (TRAINING, round 0)."""
    task = world.create(**overrides)
    for w in workers:
        world.join(task, w)
    if len(workers) < base_spec(**overrides).max_workers:
        world.clock = max(world.clock, base_spec(**overrides).join_deadline)
    world.model(task, 0)
    return task
