"""Chain and mempool methods, backed by :class:`~crowdmesh.daemon.api.ChainService` only.

Hashes, ids, raw transactions and accounts arrive as hex (checked, lowercased); a block is
referenced by height or hash.
"""

from __future__ import annotations

from typing import Final

from crowdmesh.daemon.methods import Method, MethodTable, param_hex, param_ref

__all__ = ["METHODS"]

METHODS: Final[MethodTable] = {
    "head": Method((), lambda s, a: s.chain.head(), doc="chain tip"),
    "block": Method((("ref", param_ref),), lambda s, a: s.chain.block(a[0]),
                    doc="block by height or hash"),
    "mempool": Method((), lambda s, a: s.chain.mempool(), doc="pending transactions"),
    "submit_tx": Method((("raw", param_hex),), lambda s, a: s.chain.submit_tx(a[0]),
                        doc="submit a signed tx (hex)"),
    "tx": Method((("txid", param_hex),), lambda s, a: s.chain.tx(a[0]), doc="tx by id"),
    "balance": Method((("account", param_hex),), lambda s, a: s.chain.balance(a[0]),
                      doc="balance, nonce and pending_nonce of an account"),
}
