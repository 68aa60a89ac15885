"""One fuzz target per input surface: its seed corpus, its mutation, its run, and its allowed
outcomes.

Rule: a run returns an outcome label (success) or raises one of the surface's ``allowed``
crowdmesh error families, whose stable ``code`` is the outcome; anything else it raises is
*unexpected* (a bug). Some runs also assert a property of a success (a decoded object
re-encodes to the same bytes, a message round-trips); a failed assertion is unexpected too.
Every run that can change the world's chain puts it back (``World.reset_chain``), so inputs
are independent of their order except through the corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from crowdmesh.chain import CONTRACTS, Block, BlockHeader, Chain, Mempool, Transaction
from crowdmesh.chain.contracts import REGISTER_KEY, SPATIAL_REJECT, SPATIAL_TALLY, TRANSFER
from crowdmesh.chain.contracts.base import TxContext
from crowdmesh.chain.contracts.spatial.protocol import Commit, Report, Reveal
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import Receipt, apply_tx, check_tx
from crowdmesh.chain.state import State
from crowdmesh.chain.store import MemoryStore
from crowdmesh.chain.tx import make_transaction, minimum_fee
from crowdmesh.crypto.identity import (
    _ARGON2ID_PARAMS,
    _HEADER,
    AccountKey,
    decode_account_key,
    encode_account_key,
    inspect_account_key,
)
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.config import parse_config, render_config
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.errors import (
    CrowdmeshError,
    DecodeError,
    NotFound,
    ProtocolViolation,
    UsageError,
    ValidationError,
)
from crowdmesh.p2p.messages import (
    BlockAnnounce,
    Blocks,
    GetBlocks,
    GetHeaders,
    GetStatus,
    GetTxs,
    Headers,
    Message,
    NewBlock,
    SpatialGossip,
    Status,
    SyncFailed,
    TxAnnounce,
    TxBatch,
    TxGossip,
    Txs,
    decode_message,
    encode_message,
)
from tests.fuzz.mutate import Mutator
from tests.fuzz.world import CHAIN_ID, KEYS, WORKERS, World, mined

__all__ = ["SURFACES", "Surface", "Target"]

Run = Callable[[bytes], "str | Awaitable[str]"]


@dataclass(frozen=True, slots=True)
class Surface:
    """A surface's definition; :meth:`make` builds its live :class:`Target` on a world."""

    name: str
    doc: str
    make: Callable[[World], Target]
    is_async: bool = False


@dataclass(slots=True)
class Target:
    """What the engine drives: seeds, a mutation, a run, the allowed error families."""

    seeds: list[bytes]
    mutate: Callable[[Mutator, bytes], bytes]
    run: Any  # Callable[[bytes], str] or its async form
    allowed: tuple[type[CrowdmeshError], ...]
    close: Callable[[], Any] | None = None
    label: Callable[[CrowdmeshError], str] | None = None
    """Outcome of an allowed error (default: its code); surfaces whose errors share one code
    (``bad-config``, ``bad-genesis``) add which rule fired, so depth stays visible."""


# ---- helpers --------------------------------------------------------------------------------


def _msgpack_or_bytes(m: Mutator, data: bytes) -> bytes:
    return m.msgpack(data) if m.rng.random() < 0.6 else m.bytes_(data)


def _context(world: World, tx: Transaction) -> TxContext:
    chain = world.chain
    return TxContext(CHAIN_ID, chain.height + 1, world.tally_ts, chain.head_hash, tx.txid,
                     chain.genesis, chain.main_hash_at)


def _apply(world: World, tx: Transaction) -> str:
    """Apply ``tx`` to a scratch state over the head; check its receipt's codec."""
    state = State(world.chain.state_get)
    receipt = apply_tx(state, tx, _context(world, tx), CONTRACTS)
    assert Receipt.decode(receipt.encode()) == receipt, "receipt does not round-trip"
    return f"applied:{tx.kind}"


class _ChainGuard:
    """Gives targets a chain that imports may change, restored from a snapshot after any
    change (so each input meets the same chain)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.base = dict(world.chain.store.data)  # type: ignore[attr-defined]
        self.dirty = False

    def import_block(self, block: Block) -> str:
        w = self.world
        self.dirty = True
        return w.ledger.import_block(block, w.now).status.value

    def restore(self) -> None:
        if not self.dirty:
            return
        w = self.world
        store = MemoryStore()
        store.data.update(self.base)
        w.chain = Chain.open(store, w.genesis)
        w.ledger = Ledger(w.chain, Mempool(w.chain), clock=w.ledger._clock)
        self.dirty = False


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


class _FakeStream:
    """An INetStream stand-in: reads return ``data`` in order, writes are kept."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.written = bytearray()

    async def read(self, n: int | None = None) -> bytes:
        n = len(self.data) if n is None else n
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


def _drive(coro: Awaitable[Any]) -> Any:
    """Run a coroutine that never suspends (a fake stream never blocks) without trio."""
    it = coro.__await__()
    try:
        it.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine suspended")


def _message_seeds(world: World) -> list[Message]:
    w, ledger = world, world.ledger
    assert w.next_block is not None and w.report is not None
    txs = w.seed_txs()
    blocks = [w.chain.get_block_by_height(h) for h in range(w.chain.height + 1)]
    return [
        TxGossip(txs[0].encode()), TxBatch(tuple(t.encode() for t in txs[:3])),
        NewBlock(w.next_block.encode()), BlockAnnounce(w.next_block.header.encode()),
        TxAnnounce(tuple(t.txid for t in txs[:2])), GetStatus(), ledger.sync_status(),
        GetHeaders(0, 8), ledger.sync_headers(0, 8), GetBlocks(tuple(b.hash for b in blocks)),
        ledger.sync_blocks(tuple(b.hash for b in blocks)),
        GetTxs(tuple(t.txid for t in w.txs)), Txs(tuple(t.encode() for t in txs[:2])),
        SyncFailed("block-not-found"), SpatialGossip("report", w.report.encode()),
        SpatialGossip("commit", w.commits[0].encode()),
        SpatialGossip("reveal", w.reveals[0].encode()),
    ]


# ---- wire messages and gossip validators --------------------------------------------------


def _message_target(world: World) -> Target:
    def run(data: bytes) -> str:
        msg = decode_message(data)
        again = decode_message(encode_message(msg))
        assert again == msg, "message does not round-trip"
        return f"ok:{msg.TYPE}"

    seeds = [encode_message(m) for m in _message_seeds(world)]
    return Target(seeds, _msgpack_or_bytes, run, (DecodeError,))


def _gossip_target(world: World) -> Target:
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2

    from crowdmesh.p2p.gossip import (
        SPATIAL_VOTES,
        Gossip,
        _Counters,
        spatial_cell_topic,
        spatial_votes_topic,
        topic_name,
    )
    from crowdmesh.p2p.scoring import PeerScores

    rejects: list[str] = []
    g = object.__new__(Gossip)  # why: the validator without a libp2p host (no I/O in it)
    g.scores = PeerScores(clock=lambda: 0.0)
    g.topics = {k: topic_name(CHAIN_ID, k) for k in ("blocks", "txs")}
    g.votes_topic = spatial_votes_topic(CHAIN_ID)
    g._kinds = {name: kind for kind, name in g.topics.items()}
    g._kinds[g.votes_topic] = SPATIAL_VOTES
    g._cell_prefix = spatial_cell_topic(CHAIN_ID, "0" * 15)[:-15]
    g._check = lambda msg: world.ledger.check_gossip(msg)
    g._on_reject = lambda peer, topic, code, detail: rejects.append(code)
    g.counters = _Counters()
    topics = [g.topics["blocks"], g.topics["txs"], g.votes_topic,
              spatial_cell_topic(CHAIN_ID, "872a10000ffffff"), "crowdmesh/other/txs/1", ""]
    peer = ID(hashlib.sha256(b"fuzz-peer").digest())
    kind_topic = {TxGossip: 1, TxBatch: 1, TxAnnounce: 1, NewBlock: 0, BlockAnnounce: 0}

    def run(data: bytes) -> str:
        if not data:
            return "empty"
        topic = topics[data[0] % len(topics)]
        rpc = rpc_pb2.Message(data=data[1:], topicIDs=[topic] if topic else [])
        rejects.clear()
        ok = g._validator(peer, rpc)
        assert ok == (not rejects), "validator verdict and reject report disagree"
        return "accepted" if ok else (rejects[0] if rejects else "dropped")

    seeds = []
    for m in _message_seeds(world):
        if isinstance(m, SpatialGossip):
            seeds.append(bytes([3 if m.kind == "report" else 2]) + encode_message(m))
        elif type(m) in kind_topic:
            seeds.append(bytes([kind_topic[type(m)]]) + encode_message(m))

    def mutate(m: Mutator, data: bytes) -> bytes:
        if m.rng.random() < 0.05 or not data:
            return bytes([m.rng.randrange(256)]) + data[1:]
        return data[:1] + _msgpack_or_bytes(m, data[1:])

    return Target(seeds, mutate, run, ())


# ---- sync -----------------------------------------------------------------------------------


def _sync_server_target(world: World) -> Target:
    from crowdmesh.p2p.sync import SyncServer, read_frame

    bad: list[str] = []
    server = SyncServer(world.ledger, lambda peer, code, detail: bad.append(code))

    def run(data: bytes) -> str:
        server._provider = world.ledger
        request = _drive(read_frame(_FakeStream(data)))  # type: ignore[arg-type]
        reply = server.answer(request)
        again = decode_message(encode_message(reply))
        assert again == reply, "reply does not round-trip"
        return f"{reply.TYPE}:{reply.code}" if isinstance(reply, SyncFailed) else reply.TYPE

    seeds = [_frame(encode_message(m)) for m in _message_seeds(world)]

    def mutate(m: Mutator, data: bytes) -> bytes:
        if m.rng.random() < 0.8:
            return _frame(_msgpack_or_bytes(m, data[4:]))
        return m.bytes_(data)

    return Target(seeds, mutate, run, (DecodeError, ProtocolViolation))


def _sync_client_target(world: World) -> Target:

    from crowdmesh.p2p.sync import SyncSession

    guard = _ChainGuard(world)
    w = world
    hashes = tuple(w.chain.get_hash_at(h) for h in range(w.chain.height + 1))
    requests: list[Message] = [GetStatus(), GetHeaders(0, 8), GetBlocks(hashes),
                               GetTxs(tuple(t.txid for t in w.txs))]

    def use_headers(reply: Headers) -> str:
        parent = None
        for raw in reply.headers:
            header = BlockHeader.decode(raw)
            if header.chain_id != CHAIN_ID or not header.meets_target():
                raise ValidationError("sync-bad-header")
            if parent is not None and header.parent != parent:
                raise ProtocolViolation("sync-bad-reply", "headers out of sequence")
            parent = header.hash
        return "headers"

    def use_blocks(reply: Blocks) -> str:
        out = "blocks"
        try:
            for raw in reply.blocks:
                out = guard.import_block(Block.decode(raw))
        finally:
            guard.restore()
        return out

    def use_txs(reply: Txs) -> str:
        for raw in reply.txs:
            w.ledger.check_tx(raw)
        return "txs"

    def use_status(reply: Status) -> str:
        if reply.chain_id != CHAIN_ID:
            raise ProtocolViolation("sync-wrong-chain")
        return "more-work" if reply.work > w.chain.total_work else "status"

    uses: dict[type[Message], Callable[[Any], str]] = {
        Status: use_status, Headers: use_headers, Blocks: use_blocks, Txs: use_txs}

    async def run(data: bytes) -> str:
        if not data:
            return "empty"
        request = requests[data[0] % len(requests)]
        stream = _FakeStream(data[1:])
        reply = await SyncSession(stream, None).request(request, timeout=5.0)  # type: ignore[arg-type]
        return uses[type(reply)](reply)

    seeds = []
    replies = _message_seeds(world)
    for i in range(len(requests)):
        for m in replies:
            if type(m).__name__ in ("Status", "Headers", "Blocks", "Txs", "SyncFailed"):
                seeds.append(bytes([i]) + _frame(encode_message(m)))
    seeds.append(bytes([2]) + _frame(encode_message(Blocks((w.next_block.encode(),)))))  # type: ignore[union-attr]

    def mutate(m: Mutator, data: bytes) -> bytes:
        if not data:
            return bytes([m.rng.randrange(4)])
        if m.rng.random() < 0.05:
            return bytes([m.rng.randrange(256)]) + data[1:]
        if m.rng.random() < 0.85:
            return data[:1] + _frame(_msgpack_or_bytes(m, data[5:]))
        return data[:1] + m.bytes_(data[1:])

    return Target(seeds, mutate, run, (DecodeError, ProtocolViolation, ValidationError))


# ---- transactions and blocks --------------------------------------------------------------

_KEY_BY_PUBLIC = {k.public: k for k in [*KEYS, *WORKERS]}
_KINDS = [TRANSFER, REGISTER_KEY, SPATIAL_TALLY, SPATIAL_REJECT, "nope", "", "x" * 33]


def _resign(m: Mutator, world: World, data: bytes) -> bytes:
    """Change one signed field of a transaction and sign it again with a known key, so the
    result passes the signature check and meets the state rules (nonce, fee, contract)."""
    try:
        tx = Transaction.decode(data)
    except CrowdmeshError:
        return m.msgpack(data)
    rng = m.rng
    key = _KEY_BY_PUBLIC.get(tx.sender, KEYS[0])
    fields = {"chain_id": tx.chain_id, "nonce": tx.nonce, "kind": tx.kind,
              "payload": tx.payload, "fee": tx.fee}
    what = rng.choice(["nonce", "fee", "kind", "payload", "payload", "chain_id", "key"])
    if what == "nonce":
        fields["nonce"] = rng.choice([0, 1, tx.nonce + 1, tx.nonce - 1, 2**64 - 1, tx.nonce + 4096])
    elif what == "fee":
        fields["fee"] = rng.choice([0, 1, minimum_fee(tx.payload, 1) - 1, 2**64 - 1, 10**12,
                                    10**12 + 1, tx.fee * 2])
    elif what == "kind":
        fields["kind"] = rng.choice(_KINDS)
    elif what == "payload":
        fields["payload"] = _msgpack_or_bytes(m, tx.payload)
    elif what == "chain_id":
        fields["chain_id"] = rng.choice(["cm-other", CHAIN_ID + "x", "é", ""])
    else:
        key = rng.choice([*KEYS, *WORKERS])
    for name in ("nonce", "fee"):  # make_transaction is a local API: u64 is the caller's job
        fields[name] = max(0, min(int(fields[name]), 2**64 - 1))
    try:
        return make_transaction(key, str(fields["chain_id"]), int(fields["nonce"]),
                                str(fields["kind"]), bytes(fields["payload"]),
                                int(fields["fee"])).encode()
    except CrowdmeshError:
        return m.msgpack(data)


def _tx_target(world: World) -> Target:
    def run(data: bytes) -> str:
        tx = Transaction.decode(data)
        assert tx.encode() == data, "a non-canonical transaction decoded"
        check_tx(tx, world.genesis, CONTRACTS)
        return _apply(world, tx)

    def mutate(m: Mutator, data: bytes) -> bytes:
        r = m.rng.random()
        if r < 0.6:
            return _resign(m, world, data)
        return _msgpack_or_bytes(m, data)

    return Target([t.encode() for t in world.seed_txs()], mutate, run, (DecodeError,
                                                                          ValidationError))


def _block_target(world: World) -> Target:
    guard = _ChainGuard(world)
    seed_txs = [*world.seed_txs(), *world.txs]

    def run(data: bytes) -> str:
        block = Block.decode(data)
        assert block.encode() == data, "a non-canonical block decoded"
        try:
            return guard.import_block(block)
        finally:
            guard.restore()

    def restructure(m: Mutator, data: bytes) -> bytes:
        """Edit a decodable block's header or transactions, then fix its Merkle root and PoW
        so it reaches the contextual and state rules."""
        try:
            block = Block.decode(data)
        except CrowdmeshError:
            return m.msgpack(data)
        rng = m.rng
        h, txs = block.header, list(block.txs)
        op = rng.randrange(6)
        try:
            if op == 0 and txs:
                del txs[rng.randrange(len(txs))]
            elif op == 1:
                txs.insert(rng.randrange(len(txs) + 1), rng.choice(seed_txs))
            elif op == 2 and txs:
                txs.append(rng.choice(txs))
            elif op == 3 and txs:
                i = rng.randrange(len(txs))
                txs[i] = Transaction.decode(_resign(m, world, txs[i].encode()))
            else:
                field = rng.choice(["height", "timestamp", "parent", "state_root", "target",
                                    "miner"])
                value: Any = {
                    "height": rng.choice([0, 1, h.height + 1, h.height - 1, 2**64 - 1]),
                    "timestamp": rng.choice([h.timestamp + 7200 + 10**6, h.timestamp - 10, 0,
                                             h.timestamp + 1]),
                    "parent": rng.choice([bytes(32), world.chain.get_hash_at(0),
                                          rng.randbytes(32)]),
                    "state_root": rng.randbytes(32),
                    "target": rng.choice([h.target - 1, h.target + 1, h.target >> 1, 1]),
                    "miner": rng.randbytes(32),
                }[field]
                if isinstance(value, int):
                    value = max(1 if field == "target" else 0, value)
                h = dataclasses.replace(h, **{field: value})
        except CrowdmeshError:
            return m.msgpack(data)
        block = Block(h, tuple(txs))
        if rng.random() < 0.8:
            block = Block(dataclasses.replace(h, tx_root=block.computed_tx_root()), block.txs)
        if rng.random() < 0.9:
            block = mined(block, 512)  # 2**250 needs ~64 tries; a harder target stays unmined
        return block.encode()

    def mutate(m: Mutator, data: bytes) -> bytes:
        return restructure(m, data) if m.rng.random() < 0.6 else _msgpack_or_bytes(m, data)

    assert world.next_block is not None
    seeds = [world.next_block.encode(),
             *(world.chain.get_block_by_height(h).encode() for h in range(world.chain.height + 1))]
    return Target(seeds, mutate, run, (DecodeError, ValidationError))


# ---- contract payloads ----------------------------------------------------------------------


def _contract_target(kind: str, key: AccountKey, seeds_of: Callable[[World], list[bytes]]) -> \
        Callable[[World], Target]:
    def make(world: World) -> Target:
        def run(payload: bytes) -> str:
            if len(payload) > 64 * 1024:
                payload = payload[:64 * 1024]
            nonce = world.nonce(key)
            tx = Transaction(CHAIN_ID, key.public, nonce, kind, payload,  # type: ignore[arg-type]
                             minimum_fee(payload, 1), bytes(64))
            return _apply(world, tx)

        def mutate(m: Mutator, data: bytes) -> bytes:
            if kind == SPATIAL_TALLY and m.rng.random() < 0.3:
                return _resign_report(m, world, data)
            return m.msgpack(data) if m.rng.random() < 0.75 else m.bytes_(data)

        # a contract's failures must be ValidationError: apply_tx reverts only those
        return Target(seeds_of(world), mutate, run, (ValidationError,))

    return make


def _resign_report(m: Mutator, world: World, payload: bytes) -> bytes:
    """A tally whose report has one field changed and is signed again by its requester."""
    try:
        raw_report, commits, reveals = msgpack.unpackb(payload, raw=False)
        r = Report.decode(raw_report)
    except Exception:  # why broad: any undecodable payload just gets a plain mutation
        return m.msgpack(payload)
    rng = m.rng
    fields = {"chain_id": r.chain_id, "type": r.type, "lat_e6": r.lat_e6, "lon_e6": r.lon_e6,
              "ts": r.ts, "anchor": r.anchor}
    what = rng.choice(list(fields))
    fields[what] = {
        "chain_id": rng.choice(["cm-other", CHAIN_ID]),
        "type": rng.choice(["fire", "flood", "unknown", "a" * 32]),
        "lat_e6": rng.choice([r.lat_e6 + 1, r.lat_e6 + 10_000, 90_000_000, -90_000_000]),
        "lon_e6": rng.choice([r.lon_e6 + 1, 180_000_000, -180_000_000]),
        "ts": rng.choice([r.ts + 1, r.ts - 10**5, r.ts + 10**5, 0, 2**64 - 1]),
        "anchor": rng.choice([r.anchor + 1, r.anchor + 5, 0, 2**64 - 2, 2**64 - 1]),
    }[what]
    key = _KEY_BY_PUBLIC.get(r.requester, KEYS[2])
    try:
        again = Report.create(key, **fields)  # type: ignore[arg-type]
    except CrowdmeshError:
        return m.msgpack(payload)
    return msgpack.packb([again.encode(), commits, reveals], use_bin_type=True)


def _transfer_seeds(w: World) -> list[bytes]:
    return [t.payload for t in w.seed_txs() if t.kind == TRANSFER]


def _register_seeds(w: World) -> list[bytes]:
    return [w.register_payload(KEYS[2], s) for s in (3, 4)]


def _tally_seeds(w: World) -> list[bytes]:
    return [w.tally_payload]


def _reject_seeds(w: World) -> list[bytes]:
    return [w.reject_payload]


def _spatial_target(world: World) -> Target:
    commits = {c.worker: c for c in world.commits}

    def run(data: bytes) -> str:
        if not data:
            return "empty"
        kind = data[0] % 3
        raw = data[1:]
        if kind == 0:
            report = Report.decode(raw)
            assert report.encode() == raw, "non-canonical report decoded"
            report.verify()
            return "report"
        if kind == 1:
            commit = Commit.decode(raw)
            commit.verify(world.beacon)
            return "commit"
        reveal = Reveal.decode(raw)
        reveal.verify(commits.get(reveal.worker, world.commits[0]))
        return "reveal"

    assert world.report is not None
    seeds = [b"\x00" + world.report.encode(), *(b"\x01" + c.encode() for c in world.commits),
             *(b"\x02" + r.encode() for r in world.reveals)]

    def mutate(m: Mutator, data: bytes) -> bytes:
        return data[:1] + _msgpack_or_bytes(m, data[1:])

    return Target(seeds, mutate, run, (DecodeError, ValidationError))


# ---- files: config, genesis, key files ------------------------------------------------------

_TOML_KEYS = ["data_dir", "genesis", "roles", "log_level", "listen", "bootstrap", "max_peers",
              "mode", "account", "key", "passphrase_env", "socket", "max_clients",
              "request_timeout", "location", "vote_policy", "error_rate", "ground_truth",
              "p2p.listen", '"quoted"', "a.b.c"]
_TOML_VALUES = [
    '"x"', '""', '"\\u0000"', '"~nosuchuser/x"', '"~"', '"/"', '"a\\u0000b"', "1", "0", "-1",
    "1e400", "inf", "nan", "-0.0", "1.5", "3600", "3600.0000001", "99999999999999999999",
    "0x10", "true", "[]", '["miner"]', '["miner", "spatial-worker"]', '["x"]', "[1, 2]",
    "[35.2, -80.8]", "[1e999, 0]", "[9e99, 1]", "[90.0000005, 180]", "[-90, -180]",
    "[0.0000005, 0]", '[1, "a"]', "{a = 1}", "1979-05-27T07:32:00Z", "1979-05-27",
    '"/ip4/127.0.0.1/tcp/7350"', '"/ip4/127.0.0.1/tcp/99999"', '"/ip4/1.2.3.4/tcp/1/p2p/abc"',
    '["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWAbc"]', '["/ip4/127.0.0.1/tcp/1/p2p/QmYyQSo1c1Ym7orWx'
    'LYvCrM2EmxFTANf8wXmmE7DWjhx5N"]', '"' + "a" * 200 + '"', '"' + "f" * 64 + '"',
    '"oracle"', '"truth.csv"', '"nosuch.csv"', '"debug"', '"on-demand"', '"continuous"',
    '"node"', '"A_B"', '"1A"', "'''multi\nline'''",
]


def _config_target(world: World) -> Target:
    tmp = Path(tempfile.mkdtemp(prefix="cmfuzz-cfg-"))
    (tmp / "truth.csv").write_text("type,lat,lon\nflood,35.2271,-80.8431\n")
    env: dict[str, str] = {}

    def run(data: bytes) -> str:
        text = data.decode("utf-8", "replace")
        cfg = parse_config(text, source="fuzz.toml", base_dir=tmp, env=env)
        again = parse_config(render_config(cfg), source="fuzz.toml", base_dir=tmp, env=env)
        assert again == cfg, "render_config does not round-trip"
        return "ok"

    seeds = [
        b'data_dir = "d"\nroles = ["miner"]\nlog_level = "info"\n[mining]\nmode = "on-demand"\n',
        b'data_dir = "/var/lib/cm"\ngenesis = "g.json"\n[p2p]\nlisten = "/ip4/0.0.0.0/tcp/7350"\n'
        b'bootstrap = []\nmax_peers = 10\n[control]\nsocket = "c.sock"\nmax_clients = 8\n'
        b"request_timeout = 2.5\n",
        b'data_dir = "d"\nroles = ["spatial-worker"]\n[spatial]\nlocation = [35.2271, -80.8431]\n'
        b'vote_policy = "oracle"\nerror_rate = 5\nground_truth = "truth.csv"\n'
        b'[account]\nkey = "node"\npassphrase_env = "PW"\n',
        b'data_dir = "d"\n[mining]\naccount = "' + b"ab" * 32 + b'"\n',
    ]

    def mutate(m: Mutator, data: bytes) -> bytes:
        return m.toml(data, _TOML_KEYS, _TOML_VALUES) if m.rng.random() < 0.8 else \
            m.bytes_(data)

    return Target(seeds, mutate, run, (UsageError,), close=lambda: _rmtree(tmp),
                  label=_config_label)


def _config_label(err: CrowdmeshError) -> str:
    """``bad-config:<key or problem>`` from ``file:line: key: problem``."""
    parts = err.detail.split(": ")
    what = (parts[1] if len(parts) > 2 else parts[-1]).split(" '")[0].split(" (")[0]
    return f"{err.code}:{''.join(c for c in what if not c.isdigit())[:40]}"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _genesis_target(world: World) -> Target:
    def run(data: bytes) -> str:
        g = Genesis.from_json(data.decode("utf-8", "surrogatepass"))
        assert Genesis.from_json(g.to_json()) == g, "genesis does not round-trip"
        g.header()
        return "ok"

    base = json.loads(world.genesis.to_json())
    legacy = {k: v for k, v in base.items() if k != "spatial"}
    seeds = [world.genesis.to_json().encode(), json.dumps(legacy).encode()]

    def mutate(m: Mutator, data: bytes) -> bytes:
        return m.json(data) if m.rng.random() < 0.85 else m.bytes_(data)

    def run_text(data: bytes) -> str:
        try:
            return run(data)
        except UnicodeDecodeError:
            return "not-utf8"  # the daemon reads the file as UTF-8 text first (config loader)

    return Target(seeds, mutate, run_text, (DecodeError,), label=_genesis_label)


def _genesis_label(err: CrowdmeshError) -> str:
    """``bad-genesis:<which field or rule>`` (the detail names the problems)."""
    first = err.detail.split(",")[0].split(" (")[0]
    return f"{err.code}:{''.join(c for c in first if not c.isdigit())[:40]}"


def _keyfile_target(world: World) -> Target:
    from nacl.pwhash import argon2id

    rng = DeterministicRng(b"fuzz-keyfile")
    key = KEYS[0]
    plain = encode_account_key(key, None, rng)
    sealed = encode_account_key(key, b"pw", rng, opslimit=argon2id.OPSLIMIT_MIN,
                                memlimit=argon2id.MEMLIMIT_MIN)
    tmp = Path(tempfile.mkdtemp(prefix="cmfuzz-keys-"))
    store = Keystore(tmp)
    counter = [0]
    cheap = (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

    def run(data: bytes) -> str:
        counter[0] += 1
        if counter[0] % 16 == 0:  # the file path: permissions, size and type checks
            path = tmp / "k.key"
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600 if data[:1] != b"\x07" else 0o644)
            os.write(fd, data)
            os.close(fd)
            store.load("k", None)
            return "loaded"
        info = inspect_account_key(data)
        limits = _limits(data) if info.encrypted else cheap
        # why only the cheapest limits: others cost up to 1 GiB and seconds of argon2id each
        passphrase = b"pw" if limits == cheap and data[-9:-8] != b"\x00" else None
        decode_account_key(data, passphrase)
        return "decoded"

    def mutate(m: Mutator, data: bytes) -> bytes:
        out = m.bytes_(data)
        if m.rng.random() < 0.6 and len(out) > 8:  # fix the checksum so the body is checked
            body = out[:-8]
            out = body + hashlib.sha256(body).digest()[:8]
        return out

    return Target([plain, sealed], mutate, run, (DecodeError, ValidationError, UsageError,
                                                  NotFound), close=lambda: _rmtree(tmp))


def _limits(blob: bytes) -> tuple[int, int]:
    ops, mem, _, _ = _ARGON2ID_PARAMS.unpack_from(blob, _HEADER.size)
    return ops, mem


# ---- the control socket ---------------------------------------------------------------------


def _control_seeds() -> list[bytes]:
    hex64 = "ab" * 32
    calls: list[tuple[str, Any]] = [
        ("status", None), ("head", []), ("block", [1]), ("block", {"ref": hex64}),
        ("mempool", None), ("submit_tx", ["00ff"]), ("tx", [hex64]), ("balance", [hex64]),
        ("peers", []), ("connect", ["/ip4/127.0.0.1/tcp/9/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9o"
                                    "hihFhzcW6d69Lr2NASuq"]),
        ("disconnect", ["12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"]),
        ("set_mining", ["off"]), ("generate", [1]), ("account", []),
        ("account_call", ["transfer", "9282", "c1"]), ("account_pay", [hex64, 5, "c2"]),
        ("location_set", [35227100, -80843100]), ("report_submit", ["flood", 1, 2, "r1"]),
        ("report_vote", [hex64, "confirm"]), ("report_pending", []),
        ("report_list", [35227100, -80843100, 1000, "confirmed"]), ("report_show", [hex64]),
        ("rewards", [hex64]), ("ready", []), ("methods", []), ("subscribe", ["heads"]),
        ("unsubscribe", [1]), ("stop", []), ("no_such", []),
    ]
    out = [json.dumps({"jsonrpc": "2.0", "id": i, "method": name,
                       **({} if params is None else {"params": params})}).encode()
           for i, (name, params) in enumerate(calls)]
    out.append(json.dumps([{"jsonrpc": "2.0", "id": "a", "method": "head"},
                           {"jsonrpc": "2.0", "method": "status"}]).encode())
    return out


def _control_mutate(m: Mutator, data: bytes) -> bytes:
    r = m.rng.random()
    if r < 0.1:  # batch it
        return b"[" + data + b"," + m.rng.choice(_CONTROL_SEEDS) + b"]"
    return m.json(data) if r < 0.85 else m.bytes_(data)


_CONTROL_SEEDS = _control_seeds()


def _control_surface_make(world: World) -> Target:
    raise AssertionError("the control target is built by tests.fuzz.control_node")


# ---- the table ------------------------------------------------------------------------------

_CONTRACT_SEEDS: dict[str, tuple[AccountKey, Callable[[World], list[bytes]]]] = {
    TRANSFER: (KEYS[0], _transfer_seeds),
    REGISTER_KEY: (KEYS[2], _register_seeds),
    SPATIAL_TALLY: (KEYS[2], _tally_seeds),
    SPATIAL_REJECT: (KEYS[2], _reject_seeds),
}


def _generic_seeds(w: World) -> list[bytes]:
    """Plausible shapes for a contract kind without world objects of its own: ids, counts,
    small lists (the structure mutator grows them into the kind's real shapes)."""
    h = bytes(range(32))
    return [msgpack.packb(v, use_bin_type=True) for v in (
        [], [h], [h, 0], [h, 0, 1, b"data"], [h, [h, 1]], [h, [1, 2, 3], b"x" * 64],
        [h, 1, h, [h]], {"a": 1})]


def _schema_instance(schema: Any) -> Any:
    """A value matching a crowdsfl payload schema token (``u``, ``b32``, ``("*", item)``…)."""
    if isinstance(schema, str):
        return {"u": 1, "b32": bytes(range(32)), "b16": bytes(range(16)),
                "proof": bytes(range(48))}.get(schema, b"")
    if schema[0] == "*":
        return [_schema_instance(schema[1])]
    return [_schema_instance(s) for s in schema]


def _schema_seeds(kind: str) -> Callable[[World], list[bytes]]:
    def seeds(w: World) -> list[bytes]:
        try:  # why guarded: a contract family that declares payload schemas (crowdsfl)
            from crowdmesh.chain.contracts.crowdsfl.payloads import SCHEMAS
        except ImportError:
            return _generic_seeds(w)
        if kind not in SCHEMAS:
            return _generic_seeds(w)
        return [msgpack.packb(_schema_instance(SCHEMAS[kind]), use_bin_type=True),
                *_generic_seeds(w)]

    return seeds


def _contract_surfaces() -> list[Surface]:
    out = []
    for kind in CONTRACTS:
        key, seeds = _CONTRACT_SEEDS.get(kind, (KEYS[2], _schema_seeds(kind)))
        out.append(Surface(f"contract-{kind}", f"{kind} payload through apply_tx",
                           _contract_target(kind, key, seeds)))
    return out


SURFACES: dict[str, Surface] = {s.name: s for s in [
    Surface("message", "p2p.messages.decode_message + round trip", _message_target),
    Surface("gossip", "Gossip topic validator + Ledger.check_gossip", _gossip_target),
    Surface("sync-server", "read_frame + SyncServer.answer on the real ledger",
            _sync_server_target),
    Surface("sync-client", "SyncSession.request reply checks + decode/import of replies",
            _sync_client_target, is_async=True),
    Surface("tx", "Transaction.decode + check_tx + apply_tx on the head state", _tx_target),
    Surface("block", "Block.decode + Chain.import_block on the real chain", _block_target),
    *_contract_surfaces(),
    Surface("spatial-msg", "Report/Commit/Reveal decode + verify", _spatial_target),
    Surface("control", "ControlServer.handle_line against a real in-process node",
            _control_surface_make, is_async=True),
    Surface("config", "daemon.config.parse_config + render round trip", _config_target),
    Surface("genesis", "Genesis.from_json + round trip + header", _genesis_target),
    Surface("keyfile", "key file decode/inspect + Keystore.load", _keyfile_target),
]}

