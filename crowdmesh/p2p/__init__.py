"""crowdmesh.p2p: libp2p host, gossip topics and validators, sync protocol, messages, scoring.

Invariant: this package does all network I/O for the node and exposes only wire messages
(``messages``), the running :class:`Network` and the sync client/server; chain objects cross it
as opaque canonical bytes.
"""

from crowdmesh.p2p.gossip import BLOCKS, TXS, Gossip, GossipConfig, Incoming, topic_name
from crowdmesh.p2p.messages import (
    MESSAGE_TYPES,
    BlockAnnounce,
    Blocks,
    GetBlocks,
    GetHeaders,
    GetStatus,
    GetTxs,
    Headers,
    Message,
    NewBlock,
    Status,
    SyncFailed,
    TxAnnounce,
    TxBatch,
    TxGossip,
    Txs,
    decode_message,
    encode_message,
)
from crowdmesh.p2p.network import Network, NetworkConfig, open_network
from crowdmesh.p2p.scoring import PeerScores
from crowdmesh.p2p.sync import SYNC_PROTOCOL, SyncProvider, SyncSession

__all__ = [
    "BLOCKS",
    "MESSAGE_TYPES",
    "SYNC_PROTOCOL",
    "TXS",
    "BlockAnnounce",
    "Blocks",
    "GetBlocks",
    "GetHeaders",
    "GetStatus",
    "GetTxs",
    "Gossip",
    "GossipConfig",
    "Headers",
    "Incoming",
    "Message",
    "Network",
    "NetworkConfig",
    "NewBlock",
    "PeerScores",
    "Status",
    "SyncFailed",
    "SyncProvider",
    "SyncSession",
    "TxAnnounce",
    "TxBatch",
    "TxGossip",
    "Txs",
    "decode_message",
    "encode_message",
    "open_network",
    "topic_name",
]
