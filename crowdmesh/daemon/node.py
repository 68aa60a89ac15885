"""The node: wires the chain store, mempool, p2p network, sync, miner role and effect executor.

Invariants:
- :func:`run_node` owns one nursery holding every node task (gossip intake, sync, mining, the
  effects it spawns). ``task_status.started(node)`` is called only once the host listens, gossip
  is subscribed and the sync server is registered, i.e. when the node is serving.
- Wiring only: chain rules live in ``chain/``, the miner's decisions in ``roles/miner.py``,
  effects are carried out by ``daemon/effects.py``, networking in ``p2p/``.
- Gossip intake is one task reading one bounded channel; each message type has one handler in
  :attr:`Node._intake`. Bad input from a peer is dropped with its stable reject code, logged
  (``event=rejected code=…``) and counted against the peer; it never stops the node.
- A transaction too large for a gossip message is announced (``TxAnnounce``) instead; peers
  fetch it over sync through ``daemon/txfetch.py``, off the intake loop, and validate it as if
  gossiped.
- A search that ends without a block joining the chain (no template, our block rejected or not
  connected) while the head is still its parent is reported to the miner role
  (``MiningStopped``), which retries; ``generate`` gives up with ``mining-stalled`` after
  :data:`MAX_GENERATE_STALLS` such stops in a row, so it never waits forever.
- Shutdown: :meth:`Node.request_stop` ends ``run_node``; the network closes in the order
  LIBP2P.md §11 requires and the store is closed last.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import ExitStack, nullcontext
from typing import TYPE_CHECKING, Any

import trio
from libp2p.peer.id import ID

from crowdmesh.chain.block import Block, BlockHeader
from crowdmesh.chain.chain import Chain, ImportResult, ImportStatus
from crowdmesh.chain.contracts import CONTRACTS, Contract
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.mempool import Mempool
from crowdmesh.chain.store_sqlite import SqliteStore
from crowdmesh.chain.tx import Transaction
from crowdmesh.daemon.api import EventSink, JsonObj, MiningMode
from crowdmesh.daemon.chainsync import ChainSync
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.groupstore import GroupCommitStore
from crowdmesh.daemon.ledger import Ledger, decode_tx_hex
from crowdmesh.daemon.logs import log_event, log_reject
from crowdmesh.daemon.mining import MiningRunner
from crowdmesh.daemon.txfetch import TxFetcher
from crowdmesh.errors import DecodeError, UsageError, ValidationError
from crowdmesh.p2p.gossip import BLOCKS, TXS, Incoming
from crowdmesh.p2p.messages import (
    MAX_GOSSIP_BYTES,
    MAX_TXS_PER_BATCH,
    BlockAnnounce,
    Message,
    NewBlock,
    TxAnnounce,
    TxBatch,
    TxGossip,
)
from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from crowdmesh.roles.dispatch import Role, dispatch
from crowdmesh.roles.effects import PublishTx
from crowdmesh.roles.events import (
    BlockMined,
    CompetingTipSeen,
    Event,
    GenerateRequested,
    HeadChanged,
    MempoolChanged,
    MiningModeSet,
    MiningStopped,
)
from crowdmesh.roles.miner import MinerState, RoleContext

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["MAX_GENERATE", "Node", "run_node"]

log = logging.getLogger("crowdmesh.node")
p2p_log = logging.getLogger("crowdmesh.p2p")

MAX_GENERATE = 10_000
MAX_GENERATE_STALLS = 3  # stops without a block before generate fails (retries are RETRY_S apart)
GOSSIP_BLOCK_LIMIT = MAX_GOSSIP_BYTES - 256  # room for the message envelope
QUEUED_CODES = frozenset({"mempool-nonce-gap"})  # held in the ledger's gap buffer, not lost
QUIET_CODES = QUEUED_CODES | {"mempool-duplicate"}
TX_OUTBOX = 8192
TX_BATCH_WINDOW_S = 0.02
TX_BATCH_BYTES = MAX_GOSSIP_BYTES - 64  # room for the batch's own msgpack framing


def _now() -> int:
    return int(time.time())


class Node:
    """Implements :class:`crowdmesh.daemon.api.NodeControl` over the wired parts."""

    def __init__(self, cfg: NodeConfig, events: EventSink, ledger: Ledger, miner: bytes,
                 store: GroupCommitStore | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.events = events
        self.ledger = ledger
        self.miner_address = miner
        self.roles = frozenset({Role.MINER}) if self._is_miner(cfg) else frozenset()
        head = ledger.chain.head
        self._states: dict[Role, Any] = {
            Role.MINER: MinerState(head.hash, head.height, salt=miner)}
        self._stop = trio.Event()
        self._ready = False
        # why bounded: a node mining for months must not grow; generate needs ≤ MAX_GENERATE
        self._mined: deque[str] = deque(maxlen=MAX_GENERATE)
        self._mined_count = 0
        self._stalls = 0
        self._stall_code = ""
        self._mining_changed = trio.Event()  # a block mined or a search stopped
        self.net: Network
        self.sync: ChainSync
        self.runner: MiningRunner
        self.executor: EffectExecutor
        self.fetcher: TxFetcher
        self._tx_out, self._tx_outbox = trio.open_memory_channel[bytes](TX_OUTBOX)
        self._intake: dict[type[Message], Callable[[Incoming], None]] = {
            TxGossip: self._on_tx_gossip,
            TxBatch: self._on_tx_batch,
            NewBlock: self._on_new_block,
            BlockAnnounce: self._on_block_announce,
            TxAnnounce: self._on_tx_announce,
        }

    @staticmethod
    def _is_miner(cfg: NodeConfig) -> bool:
        return "miner" in cfg.roles or cfg.mining_mode != "off"

    # -- wiring -----------------------------------------------------------------------------

    def attach(self, net: Network, nursery: trio.Nursery) -> None:
        """Connect the running network and start the node's tasks in ``nursery``."""
        self.net = net
        self.sync = ChainSync(net, self.ledger.chain, self.ledger.genesis.chain_id,
                              self._import_from_peer,
                              self.store.group if self.store is not None else nullcontext)
        self.runner = MiningRunner(nursery, self._template, self._on_mined,
                                   on_stopped=self._on_search_stopped)
        self.fetcher = TxFetcher(net.open_sync, self.ledger.unknown_txids, self._accept_fetched,
                                 self._reject_fetched)
        self.executor = EffectExecutor(EffectPorts(
            mine_on=self.runner.mine_on, stop_mining=self.runner.stop,
            publish_block=self._publish_block, publish_tx=self._publish_tx,
            submit_tx=self._submit_raw, deliver=self.deliver), nursery)
        nursery.start_soon(self._intake_loop)
        nursery.start_soon(self._tx_batcher)
        nursery.start_soon(self.sync.run)
        nursery.start_soon(self.fetcher.run)
        self.sync.request()
        if Role.MINER in self.roles:
            self.deliver(MiningModeSet(self.cfg.mining_mode))
            self.deliver(MempoolChanged(len(self.ledger.mempool)))
        self._ready = True

    def on_net_event(self, name: str, fields: dict[str, Any]) -> None:
        """Log network events; a new peer triggers a sync round with it."""
        if name == "gossip-reject" or name == "sync-reject":
            log_reject(p2p_log, fields.pop("code"), **fields)
            return
        log_event(p2p_log, name, **fields)
        if name == "peer-up" and hasattr(self, "sync"):
            self.sync.request(ID.from_base58(fields["peer"]))

    def deliver(self, event: Event) -> None:
        """Feed a local event to the roles that take it and execute their effects."""
        if not self.roles:
            return
        self._states, effects = dispatch(self.roles, self._states, event, RoleContext(_now()))
        self.executor.run(effects)

    # -- intake -----------------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        async for item in self.net.gossip.incoming:
            self._intake[type(item.msg)](item)
            await trio.sleep(0)  # why: let a burst of gossip interleave with sync and RPCs

    def _reject(self, peer: str, kind: str, exc: DecodeError | ValidationError) -> None:
        self.net.gossip.reject(peer, self.net.gossip.topics.get(kind, kind), exc.code,
                               exc.detail)

    def _on_tx_gossip(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxGossip)
        self._accept_gossiped_tx(item.msg.tx, item.origin)

    def _on_tx_batch(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxBatch)
        for raw in item.msg.txs:
            self._accept_gossiped_tx(raw, item.origin)

    def _on_tx_announce(self, item: Incoming) -> None:
        assert isinstance(item.msg, TxAnnounce)
        if ID.from_base58(item.origin) in self.net.connected():
            self.fetcher.announced(item.origin, item.msg.txids)
        else:  # why not fetch: a connected holder re-announces once it has pooled them
            self._count_quietly("tx-announce-not-connected")

    async def _accept_fetched(self, raws: list[bytes], peer: str) -> None:
        """Validate fetched transactions as the gossip validator and intake would, then
        re-announce the ones now held, so our other peers can fetch them from us."""
        checked = []
        for raw in raws:
            try:
                checked.append(self.ledger.check_tx(raw))
            except (DecodeError, ValidationError) as exc:
                self._reject(peer, "sync", exc)
                continue
            self._accept_gossiped_tx(raw, peer, "sync")
        lacking = set(self.ledger.unknown_txids(tuple(tx.txid for tx in checked)))
        for tx in checked:
            if tx.txid not in lacking:  # pooled or waiting in the gap buffer
                await self._publish_tx(tx.encode())

    def _reject_fetched(self, peer: str, code: str, detail: str) -> None:
        self.net.gossip.reject(peer, "sync", code, detail)

    def _accept_gossiped_tx(self, raw: bytes, origin: str, kind: str = TXS) -> None:
        try:
            tx = Transaction.decode(raw)
            if self.ledger.is_confirmed(tx.txid):
                # why not a reject: under load a block often overtakes the batch that carried
                # its transactions; an exact replay of a mined tx costs us one lookup
                self._count_quietly("tx-already-mined")
                return
            self._pooled(self.ledger.add_tx(tx))
        except (DecodeError, ValidationError) as exc:
            if exc.code in QUIET_CODES:  # honest races: reordered nonces, re-announced txs
                self._count_quietly(exc.code)
            else:
                self._reject(origin, kind, exc)

    def _count_quietly(self, code: str) -> None:
        counts = self.net.gossip.counters.rejected
        counts[code] = counts.get(code, 0) + 1

    def _on_new_block(self, item: Incoming) -> None:
        assert isinstance(item.msg, NewBlock)
        try:
            block = Block.decode(item.msg.block)
        except (DecodeError, ValidationError) as exc:
            self._reject(item.origin, BLOCKS, exc)
            return
        self._import_from_peer(block, item.origin)

    def _on_block_announce(self, item: Incoming) -> None:
        assert isinstance(item.msg, BlockAnnounce)
        header = BlockHeader.decode(item.msg.header)  # the validator decoded it already
        if not self.ledger.chain.has_block(header.hash):
            self.sync.request(ID.from_base58(item.origin))

    def _import_from_peer(self, block: Block, peer: str) -> bool:
        try:
            result = self.ledger.import_block(block, _now())
        except ValidationError as exc:
            self._reject(peer, BLOCKS, exc)
            return False
        if result.status is ImportStatus.ORPHAN:
            self.sync.request(ID.from_base58(peer))
        elif result.status is ImportStatus.SIDE_CHAIN and block.height >= self.ledger.chain.height:
            self.deliver(CompetingTipSeen(block.height, block.hash))
        self._after_import(result, peer)
        return True

    def _after_import(self, result: ImportResult, source: str) -> None:
        for bad, code in result.rejected:
            log_reject(log, code, block=bad.hex(), source=source)
        if not (result.connected or result.disconnected):
            return
        head = self.ledger.chain.head
        if result.reorg:
            log_event(log, "reorg", depth=len(result.disconnected), height=head.height,
                      head=head.hash.hex(), returned_txs=len(result.returned_txs))
        for block in result.connected:
            log_event(log, "block-connected", height=block.height, hash=block.hash.hex(),
                      txs=len(block.txs), source=source)
        self.events.publish_nowait("heads", {"hash": head.hash.hex(), "height": head.height,
                                             "reorg": result.reorg, "ts": time.time()})
        # why re-announce: peers that only saw the losing chain may never have seen these
        self.executor.run([PublishTx(tx.encode()) for tx in result.returned_txs
                           if tx.txid in self.ledger.mempool])
        self.deliver(HeadChanged(head.hash, head.height))
        self.deliver(MempoolChanged(len(self.ledger.mempool)))

    def _pooled(self, txs: list[Transaction]) -> None:
        for tx in txs:
            self.events.publish_nowait("txs", {"txid": tx.txid.hex(), "sender": tx.sender.hex(),
                                               "nonce": tx.nonce})
        if txs:
            self.deliver(MempoolChanged(len(self.ledger.mempool)))

    # -- mining -----------------------------------------------------------------------------

    def _template(self, parent: bytes) -> Block | None:
        try:
            return self.ledger.template(parent, self.miner_address, _now())
        except ValidationError as exc:
            log_event(log, "mining-paused", logging.WARNING, code=exc.code)
            self._stall_code = exc.code
            return None

    def _on_search_stopped(self, parent: bytes) -> None:
        self._search_stopped(parent, self._stall_code or "no-template")

    def _search_stopped(self, parent: bytes, code: str) -> None:
        """A search on ``parent`` ended without a block: tell the miner role, wake generate."""
        if parent != self.ledger.chain.head_hash:
            return  # why: the head moved on, and the new head has restarted the search
        self._stalls += 1
        self._stall_code = code
        self._wake_generate()
        self.deliver(MiningStopped(parent))

    def _wake_generate(self) -> None:
        self._mining_changed.set()
        self._mining_changed = trio.Event()

    async def _on_mined(self, block: Block) -> None:
        try:
            result = self.ledger.import_block(block, _now())
        except ValidationError as exc:
            log_reject(log, exc.code, block=block.hash.hex(), source="miner")
            self._search_stopped(block.header.parent, exc.code)
            return
        if result.status is not ImportStatus.CONNECTED:
            # usually a race lost to a peer's block (the new head restarts mining); if the
            # head is still our parent, nothing would
            self._search_stopped(block.header.parent, f"mined-block-{result.status.value}")
            return
        log_event(log, "block-mined", height=block.height, hash=block.hash.hex(),
                  txs=len(block.txs))
        self._after_import(result, "miner")
        self._mined.append(block.hash.hex())
        self._mined_count += 1
        self._wake_generate()
        self.deliver(BlockMined(block.hash, block.height))
        await self._publish_block(block.encode())

    async def _publish_block(self, raw: bytes) -> None:
        if len(raw) <= GOSSIP_BLOCK_LIMIT:
            await self.net.publish(BLOCKS, NewBlock(raw))
        else:
            await self.net.publish(BLOCKS, BlockAnnounce(Block.decode(raw).header.encode()))

    async def _publish_tx(self, raw: bytes) -> None:
        if len(raw) + 8 > TX_BATCH_BYTES:  # too large to gossip even alone: inv/getdata
            txid = Transaction.decode(raw).txid
            await self.net.publish(TXS, TxAnnounce((txid,)))
            return
        try:
            self._tx_out.send_nowait(raw)
        except trio.WouldBlock:  # the batcher is far behind: send this one on its own
            await self.net.publish(TXS, TxGossip(raw))

    async def _tx_batcher(self) -> None:
        """Publish queued transactions as :class:`TxBatch` messages of at most
        :data:`TX_BATCH_BYTES`, waiting at most :data:`TX_BATCH_WINDOW_S` after the first so a
        single transaction stays prompt."""
        carry: bytes | None = None
        while True:
            first = carry if carry is not None else await self._tx_outbox.receive()
            carry = None
            batch, size = [first], len(first) + 8
            with trio.move_on_after(TX_BATCH_WINDOW_S):
                while len(batch) < MAX_TXS_PER_BATCH:
                    raw = await self._tx_outbox.receive()
                    if size + len(raw) + 8 > TX_BATCH_BYTES:
                        carry = raw  # starts the next batch
                        break
                    batch.append(raw)
                    size += len(raw) + 8
            await self._publish_batch(batch)

    async def _publish_batch(self, batch: list[bytes]) -> None:
        try:
            await self.net.publish(TXS, TxBatch(tuple(batch)))
        except DecodeError as exc:  # why kept: _publish_tx sends what cannot fit as TxAnnounce
            log_event(log, "tx-not-gossiped", logging.WARNING, code=exc.code,
                      txs=len(batch), bytes=sum(map(len, batch)))

    async def _submit_raw(self, raw: bytes) -> None:
        await self.submit_tx(raw.hex())

    # -- NodeControl ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """True once the node serves (network up, sync and gossip running)."""
        return self._ready

    def status(self) -> JsonObj:
        """A summary for ``crowdmesh status``."""
        chain = self.ledger.chain
        miner: MinerState = self._states[Role.MINER]
        return {
            "chain_id": self.ledger.genesis.chain_id, "height": chain.height,
            "min_gas_price": self.ledger.genesis.min_gas_price,  # wallets price fees with it
            "head": chain.head_hash.hex(), "total_work": str(chain.total_work),
            "peer_id": self.net.peer_id, "addrs": self.net.addrs(),
            "peers": len(self.net.connected()), "peers_refused": self.net.refused,
            "mempool": len(self.ledger.mempool),
            "orphans": chain.orphan_count(), "roles": sorted(r.value for r in self.roles),
            "mining": miner.mode, "mining_active": self.runner.active,
            "generate_left": miner.generate_left, "hashes": self.runner.stats.hashes,
            "blocks_mined": self._mined_count, "sync_rounds": self.sync.rounds,
            "tx_fetch": {"fetched": self.fetcher.fetched, "dropped": self.fetcher.dropped,
                         "wanted": self.fetcher.wanted},
            "gossip": {"received": self.net.gossip.counters.received,
                       "published": self.net.gossip.counters.published,
                       "dropped": self.net.gossip.counters.dropped_incoming,
                       "rejected": dict(self.net.gossip.counters.rejected)},
        }

    def peers(self) -> list[JsonObj]:
        """Connected peers with scores and reject counts."""
        return self.net.peers()

    def head(self) -> JsonObj:
        """The head header."""
        return self.ledger.head_view()

    def block(self, ref: str | int) -> JsonObj:
        """A block by height or hash."""
        return self.ledger.block_by_ref(ref)

    def mempool(self) -> JsonObj:
        """The mempool summary."""
        return self.ledger.mempool_view()

    async def submit_tx(self, raw_hex: str) -> JsonObj:
        """Pool a transaction from the control socket and gossip it.

        A transaction whose nonce is ahead of the pool (its predecessor is still on its way
        through gossip) is queued, gossiped, and pooled when the predecessor arrives.
        """
        tx = decode_tx_hex(raw_hex)
        try:
            pooled = self.ledger.add_tx(tx)
        except ValidationError as exc:
            if exc.code not in QUEUED_CODES:
                raise
            await self._publish_tx(tx.encode())
            return {"txid": tx.txid.hex(), "status": "queued"}
        self._pooled(pooled)
        await self._publish_tx(tx.encode())
        return {"txid": tx.txid.hex(), "status": "pending"}

    def tx(self, txid_hex: str) -> JsonObj:
        """A pending or confirmed transaction."""
        return self.ledger.tx_lookup(txid_hex)

    def balance(self, account_hex: str) -> JsonObj:
        """Balance and nonce of an account at the head, and its pending (mempool) nonce."""
        return self.ledger.balance(account_hex)

    def set_mining(self, mode: MiningMode) -> JsonObj:
        """Switch the mining mode (``off``, ``continuous``, ``on-demand``)."""
        self._need_miner()
        self.deliver(MiningModeSet(mode))
        return {"mining": mode}

    async def generate(self, n_blocks: int) -> list[str]:
        """Mine ``n_blocks`` blocks now (any mode) and return their hashes.

        Raises:
            UsageError: ``not-a-miner``; ``bad-generate-count``; ``mining-stalled`` when
                :data:`MAX_GENERATE_STALLS` searches in a row ended without a block (the role
                keeps retrying the blocks still asked for).
        """
        self._need_miner()
        if not 0 < n_blocks <= MAX_GENERATE:
            raise UsageError("bad-generate-count", f"1..{MAX_GENERATE}")
        start = progress = self._mined_count
        stalls = self._stalls
        self.deliver(GenerateRequested(n_blocks))
        while self._mined_count < start + n_blocks:
            await self._mining_changed.wait()
            if self._mined_count > progress:
                progress, stalls = self._mined_count, self._stalls
            elif self._stalls - stalls >= MAX_GENERATE_STALLS:
                raise UsageError("mining-stalled", f"{self._mined_count - start} of {n_blocks} "
                                 f"blocks mined; the search keeps stopping: {self._stall_code}")
        newer = self._mined_count - start  # ours are the first n of the blocks mined since
        recent = list(self._mined)[-newer:]
        return recent[:n_blocks]

    def set_bootstrap(self, addrs: tuple[str, ...]) -> JsonObj:
        """Apply a reloaded ``[p2p] bootstrap`` list (SIGHUP)."""
        self.net.set_bootstrap(addrs)
        return {"bootstrap": list(addrs)}

    async def connect_peer(self, addr: str) -> JsonObj:
        """Dial ``/ip4/…/tcp/…/p2p/<id>`` once (``PeerControl``)."""
        ok = await self.net.connect(addr)
        return {"addr": addr, "connected": ok}

    async def disconnect_peer(self, peer_id: str) -> JsonObj:
        """Drop a peer's connections and stop redialling it (``PeerControl``)."""
        await self.net.disconnect(peer_id)
        return {"peer": peer_id, "disconnected": True}

    def request_stop(self) -> None:
        """Ask :func:`run_node` to return (graceful stop)."""
        self._stop.set()

    def _need_miner(self) -> None:
        if Role.MINER not in self.roles:
            raise UsageError("not-a-miner", "add \"miner\" to roles in the config")

    async def wait_stopped(self) -> None:
        """Return when a stop was requested."""
        await self._stop.wait()


def _load_genesis(cfg: NodeConfig) -> Genesis:
    try:
        text = cfg.genesis_path.read_text()
    except OSError as exc:
        raise UsageError("genesis-unreadable", f"{cfg.genesis_path}: {exc}") from exc
    return Genesis.from_json(text)


def _miner_address(cfg: NodeConfig, node_key_public: bytes) -> bytes:
    # why the node key as default: it is an Ed25519 key the operator already holds, so
    # rewards are never burned when no account is configured.
    return bytes.fromhex(cfg.miner_account) if cfg.miner_account else node_key_public


async def run_node(
    config: NodeConfig,
    events: EventSink,
    task_status: TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
    contracts: Mapping[str, Contract] = CONTRACTS,
) -> None:
    """Run the node until :meth:`Node.request_stop`; ``task_status.started(node)`` once serving.

    ``contracts`` is the chain's transaction-kind registry (every node of a network must use
    the same one; embedders and tests may add kinds).

    Raises:
        CrowdmeshError: an operator-fixable startup problem (genesis, locked data dir, …).
    """
    genesis = _load_genesis(config)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        store = GroupCommitStore(SqliteStore.open(str(config.chain_db)))
        stack.callback(store.close)
        chain = Chain.open(store, genesis, contracts)
        ledger = Ledger(chain, Mempool(chain))
        net_cfg = NetworkConfig(config.data_dir, config.listen, genesis.chain_id,
                                config.bootstrap, max_peers=config.max_peers)
        node_box: list[Node] = []

        def on_event(name: str, fields: dict[str, Any]) -> None:
            if node_box:
                node_box[0].on_net_event(name, fields)

        async with open_network(net_cfg, ledger, ledger.check_gossip, on_event) as net:
            public = net.host.get_public_key().to_bytes()
            node = Node(config, events, ledger, _miner_address(config, public), store)
            node_box.append(node)
            async with trio.open_nursery() as nursery:
                node.attach(net, nursery)
                log_event(log, "node-serving", peer_id=net.peer_id, addrs=",".join(net.addrs()),
                          height=chain.height, head=chain.head_hash.hex())
                task_status.started(node)
                await node.wait_stopped()
                nursery.cancel_scope.cancel()
        log_event(log, "node-closed", height=chain.height)
