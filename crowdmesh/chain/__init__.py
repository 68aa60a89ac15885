"""crowdmesh.chain: the pure blockchain core (codec, transactions, blocks, PoW, state, fork
choice, mempool) over an injected :class:`Store`; only ``store_sqlite`` touches files.

See docs/chain.md for the API summary and the reject codes.
"""

from crowdmesh.chain.block import (
    MAX_BLOCK_BYTES,
    MAX_HEADER_BYTES,
    MAX_TARGET,
    Block,
    BlockHeader,
    block_work,
    merkle_root,
    mine,
)
from crowdmesh.chain.chain import (
    MAX_ORPHAN_BYTES,
    MAX_ORPHANS,
    BlockTemplate,
    Chain,
    ImportResult,
    ImportStatus,
)
from crowdmesh.chain.codec import Address, BlockHash, TxId
from crowdmesh.chain.contracts import (
    CONTRACTS,
    REGISTER_KEY,
    TRANSFER,
    Event,
    TxContext,
    register_key_payload,
    registered_key,
    transfer_payload,
)
from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.layout import BlockStatus
from crowdmesh.chain.maintenance import check_db, reindex
from crowdmesh.chain.mempool import Mempool
from crowdmesh.chain.rules import MAX_FUTURE_SECONDS, Receipt
from crowdmesh.chain.state import Account, State
from crowdmesh.chain.store import MemoryStore, Store
from crowdmesh.chain.store_sqlite import SqliteStore
from crowdmesh.chain.tx import (
    MAX_PAYLOAD_BYTES,
    MAX_TX_BYTES,
    Transaction,
    make_transaction,
    minimum_fee,
)

__all__ = [
    "CONTRACTS",
    "MAX_BLOCK_BYTES",
    "MAX_FUTURE_SECONDS",
    "MAX_HEADER_BYTES",
    "MAX_ORPHANS",
    "MAX_ORPHAN_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_TARGET",
    "MAX_TX_BYTES",
    "REGISTER_KEY",
    "TRANSFER",
    "Account",
    "Address",
    "Block",
    "BlockHash",
    "BlockHeader",
    "BlockStatus",
    "BlockTemplate",
    "Chain",
    "Event",
    "Genesis",
    "ImportResult",
    "ImportStatus",
    "MemoryStore",
    "Mempool",
    "Receipt",
    "SqliteStore",
    "State",
    "Store",
    "Transaction",
    "TxContext",
    "TxId",
    "block_work",
    "check_db",
    "make_transaction",
    "merkle_root",
    "mine",
    "minimum_fee",
    "register_key_payload",
    "registered_key",
    "reindex",
    "transfer_payload",
]
