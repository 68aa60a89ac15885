"""The node: wiring and intake only. Each job has its own module:

- ``intake.py``: gossip (and sync-fetched) blocks and transactions into the ledger;
- ``chainfeed.py``: what follows any chain or mempool change (logs, subscribers, roles, calls);
- ``relay.py``: outbound transaction batching and block gossip;
- ``spatialnet.py``: spatial topics (cells around the location, votes) and their publishing;
- ``mining.py``: the PoW search, templates, found blocks, ``generate``;
- ``rolehost.py``: the roles' per-instance states and dispatch; ``effects.py`` executes what
  they return; ``calls.py`` signs their contract calls; ``rolestore.py`` keeps their secrets;
  ``jobs.py`` runs their CPU work; ``timers.py`` their scheduled events;
- ``methods/`` + ``api.py``: the control methods, each table over one narrow service.

Invariants:
- :func:`run_node` owns one nursery holding every node task. ``task_status.started(services)``
  is called only once the host listens, gossip is subscribed, the sync server is registered
  and the roles have started, i.e. when the node is serving.
- Startup problems an operator must fix (a role not implemented yet, an unreadable account
  key, dataset or ElGamal key, a bad genesis, a locked or damaged data dir) raise a
  ``CrowdmeshError`` before anything listens; the CLI prints it and exits 78.
- Shutdown: ``Node.request_stop`` ends ``run_node``; network closed as LIBP2P.md §11, stores last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import ExitStack, nullcontext
from typing import TYPE_CHECKING, Any

import trio
from libp2p.peer.id import ID

from crowdmesh.chain.chain import Chain
from crowdmesh.chain.contracts import CONTRACTS, Contract
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon import startup
from crowdmesh.daemon.api import EventSink, JsonObj, Services
from crowdmesh.daemon.calls import AccountApi, CallService
from crowdmesh.daemon.chainfeed import ChainApi, ChainFeed
from crowdmesh.daemon.chainsync import ChainSync
from crowdmesh.daemon.chainview import LedgerChainView
from crowdmesh.daemon.clock import install_clock_skew
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.effects import EffectExecutor, EffectPorts
from crowdmesh.daemon.groupstore import GroupCommitStore
from crowdmesh.daemon.intake import GossipIntake
from crowdmesh.daemon.jobs import JobPool, warm_crypto_tables
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.logs import log_event, log_reject
from crowdmesh.daemon.mempoolfile import open_ledger
from crowdmesh.daemon.mining import BlockProducer
from crowdmesh.daemon.peerapi import PeerApi
from crowdmesh.daemon.relay import TxRelay
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.daemon.sflapi import SflApi
from crowdmesh.daemon.signer import KeySigner
from crowdmesh.daemon.spatialapi import SpatialApi
from crowdmesh.daemon.spatialnet import SPATIAL_ROLES, SpatialNet
from crowdmesh.daemon.timers import Timers
from crowdmesh.daemon.txfetch import TxFetcher
from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from crowdmesh.roles.context import NodeIdentity
from crowdmesh.roles.dispatch import SINGLETON, Role
from crowdmesh.roles.events import Event, MempoolChanged, MiningModeSet, RolesStarted
from crowdmesh.roles.miner import MinerState

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["ROLE_STORE", "Node", "run_node"]

log, p2p_log = logging.getLogger("crowdmesh.node"), logging.getLogger("crowdmesh.p2p")
ROLE_STORE = "roles.sqlite"
JOB_THREADS = 2


class Node:
    """Wires the parts together and answers the ``NodeService`` calls (ready, status, stop)."""

    def __init__(self, cfg: NodeConfig, events: EventSink, ledger: Ledger,
                 identity: NodeIdentity, role_store: RoleStore, signer: AccountKey | None,
                 store: GroupCommitStore | None = None, sfl: tuple[Event, ...] = ()) -> None:
        self.cfg, self.events, self.ledger, self.store, self.sfl = cfg, events, ledger, store, sfl
        self.role_store, self._signer = role_store, signer
        self.roles = frozenset(Role(r) for r in cfg.roles) | (
            frozenset({Role.MINER}) if cfg.mining_mode != "off" else frozenset())
        self.host = RoleHost(self.roles, LedgerChainView(ledger.chain),
                             {r: role_store.view(r.value) for r in self.roles}, identity,
                             signer=None if signer is None else KeySigner(signer))
        self._stop, self._ready = trio.Event(), False
        self.services: Services

    def attach(self, net: Network, nursery: trio.Nursery) -> None:
        """Connect the running network, build the services and start the node's tasks."""
        self.net = net
        relay = TxRelay(net, nursery)
        self.calls = CallService(self.ledger, self.role_store, self._signer,
                                 lambda tx: self.feed.submit_call_tx(tx), self.host.deliver)
        self.feed = ChainFeed(self.ledger, self.events, relay, self.host, self.calls.reconcile)
        self.intake = GossipIntake(net, self.ledger, self.feed, relay, self.host.deliver)
        self.spatial = SpatialNet(net, self.ledger.genesis, self.roles, self.cfg, self.host.deliver)
        group = self.store.group if self.store is not None else nullcontext
        self.sync = ChainSync(net, self.ledger.chain, self.ledger.genesis.chain_id,
                              self.intake.import_from_peer, group)
        self.fetcher = TxFetcher(net.open_sync, self.ledger.unknown_txids,
                                 self.intake.accept_fetched, self.intake.reject_fetched)
        self.intake.attach(self.sync, self.fetcher)
        self.producer = BlockProducer(self.ledger, self.host.identity.miner,
                                      Role.MINER in self.roles, self.host.deliver,
                                      self.feed.imported, relay.publish_block)
        self._start_effects(nursery, relay)
        for task in (self.intake.run, relay.run, self.sync.run, self.fetcher.run,
                     warm_crypto_tables):
            nursery.start_soon(task)
        spatial = SpatialApi(self.ledger, self.host, self.role_store, self.spatial.set_location)
        self.services = Services(self, ChainApi(self.ledger, self.feed), self.producer,
                                 PeerApi(net), AccountApi(self.calls, self.ledger),
                                 spatial if self.roles & SPATIAL_ROLES else None,
                                 SflApi.for_node(self.ledger, self.host, self.calls, self.sfl))
        self._start_roles()

    def _start_effects(self, nursery: trio.Nursery, relay: TxRelay) -> None:
        runner = self.producer.attach(nursery)
        self.timers = Timers[Event](self.host.deliver)
        nursery.start_soon(self.timers.run)
        executor: EffectExecutor
        self.jobs = JobPool(nursery, lambda out: executor.job_done(out), threads=JOB_THREADS)
        executor = EffectExecutor(EffectPorts(
            mine_on=runner.mine_on, stop_mining=runner.stop,
            publish_block=relay.publish_block, publish_tx=relay.publish_tx,
            submit_tx=self._submit_own_tx, deliver=self.host.deliver,
            submit_call=self.calls.request, start_job=self.jobs.start,
            cancel_job=self.jobs.cancel, store_apply=self.role_store.apply,
            schedule=self.timers.schedule, publish_spatial=self.spatial.publish), nursery)
        self.host.attach(executor)

    async def _submit_own_tx(self, raw: bytes) -> object:
        """The ``SubmitTx`` effect's port: a role's own signed transaction."""
        return await self.services.chain.submit_tx(raw.hex())

    def _start_roles(self) -> None:
        """Roles rebuild their instances from their store and the chain, then calls catch up."""
        self.sync.request()
        for event in (RolesStarted(), *self.sfl):  # SflConfigured: keys, datasets, seeds
            self.host.deliver(event)
        self.spatial.start_roles()
        if Role.MINER in self.roles:
            self.host.deliver(MiningModeSet(self.cfg.mining_mode))
        self.host.deliver(MempoolChanged(len(self.ledger.mempool)))
        self.calls.reconcile()
        self._ready = True

    def on_net_event(self, name: str, fields: dict[str, Any]) -> None:
        """Log network events; a new peer triggers a sync round with it."""
        if name == "gossip-reject" or name == "sync-reject":
            log_reject(p2p_log, fields.pop("code"), **fields)
            return
        log_event(p2p_log, name, **fields)
        if name == "peer-up" and hasattr(self, "sync"):
            self.sync.request(ID.from_base58(fields["peer"]))

    # -- NodeService ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """True once the node serves (network up, sync and gossip running, roles started)."""
        return self._ready

    def status(self) -> JsonObj:
        """A summary for ``crowdmesh status``."""
        chain, gossip = self.ledger.chain, self.net.gossip.counters
        miner = self.host.state(Role.MINER, SINGLETON) or MinerState(chain.head_hash, 0)
        account = self.calls.account
        return {
            "chain_id": self.ledger.genesis.chain_id, "height": chain.height,
            "min_gas_price": self.ledger.genesis.min_gas_price,  # wallets price fees with it
            "head": chain.head_hash.hex(), "total_work": str(chain.total_work),
            "peer_id": self.net.peer_id, "addrs": self.net.addrs(),
            "peers": len(self.net.connected()), "peers_refused": self.net.refused,
            "mempool": len(self.ledger.mempool), "network_active": self.net.active,
            "orphans": chain.orphan_count(), "roles": sorted(r.value for r in self.roles),
            "mining": miner.mode, "mining_active": self.producer.runner.active,
            "generate_left": miner.generate_left, "hashes": self.producer.runner.stats.hashes,
            "blocks_mined": self.producer.mined_count, "sync_rounds": self.sync.rounds,
            "account": None if account is None else account.hex(),
            "calls": {"in_flight": self.calls.in_flight(), "sent": self.calls.sent,
                      "rejected": self.calls.rejected},
            "jobs": {"running": self.jobs.running(), "queued": self.jobs.queued()},
            "tx_fetch": {"fetched": self.fetcher.fetched, "dropped": self.fetcher.dropped,
                         "wanted": self.fetcher.wanted},
            "gossip": {"received": gossip.received, "published": gossip.published,
                       "dropped": gossip.dropped_incoming, "rejected": dict(gossip.rejected)},
        }

    def request_stop(self) -> None:
        """Ask :func:`run_node` to return (graceful stop)."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Return when a stop was requested."""
        await self._stop.wait()


async def run_node(
    config: NodeConfig,
    events: EventSink,
    task_status: TaskStatus[Services] = trio.TASK_STATUS_IGNORED,
    contracts: Mapping[str, Contract] = CONTRACTS,
) -> None:
    """Run the node until stopped; ``task_status.started(services)`` once serving.

    ``contracts`` is the chain's transaction-kind registry (every node of a network must use
    the same one; embedders and tests may add kinds).

    Raises:
        CrowdmeshError: an operator-fixable startup problem (genesis, locked data dir, …).
    """
    startup.check_roles(config)
    install_clock_skew()  # a test hook (CROWDMESH_CLOCK_SKEW_S); see daemon/clock.py
    genesis = startup.load_genesis(config)
    signer = startup.load_signer(config)
    with ExitStack() as stack:
        store = GroupCommitStore(startup.open_chain_store(config))  # data dir made 0700 if new
        stack.callback(store.close)
        chain = Chain.open(store, genesis, contracts)
        ledger = stack.enter_context(open_ledger(chain, config.data_dir))  # mempool.dat
        role_store = RoleStore.open(config.data_dir / ROLE_STORE)
        stack.callback(role_store.close)
        sfl = tuple(startup.sfl_configs(config))  # datasets and ElGamal keys, before listening
        net_cfg = NetworkConfig(config.data_dir, config.listen, genesis.chain_id,
                                config.bootstrap, max_peers=config.max_peers)
        node_box: list[Node] = []

        def on_event(name: str, fields: dict[str, Any]) -> None:
            if node_box:
                node_box[0].on_net_event(name, fields)

        async with open_network(net_cfg, ledger, ledger.check_gossip, on_event) as net:
            startup.check_listening(config.listen, net.addrs())  # libp2p only logs a failure
            identity = startup.node_identity(config, signer, net.host.get_public_key().to_bytes())
            node = Node(config, events, ledger, identity, role_store, signer, store, sfl)
            node_box.append(node)
            async with trio.open_nursery() as nursery:
                node.attach(net, nursery)
                await node.spatial.start()
                log_event(log, "node-serving", peer_id=net.peer_id, addrs=",".join(net.addrs()),
                          height=chain.height, head=chain.head_hash.hex())
                task_status.started(node.services)
                await node.wait_stopped()
                nursery.cancel_scope.cancel()
        log_event(log, "node-closed", height=chain.height)
