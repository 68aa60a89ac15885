"""Native contracts: pure functions ``(state, tx, ctx) -> events``, one per transaction kind.

``CONTRACTS`` is the one registry of transaction kinds; a kind not in it is rejected with
``bad-tx-kind``. Each contract adds one line here (``spatial``: the committee's tally and the
reject record, ``crowdmesh/chain/contracts/spatial/``).
"""

from __future__ import annotations

from collections.abc import Mapping

from crowdmesh.chain.contracts.base import Contract, Event, TxContext, decode_payload
from crowdmesh.chain.contracts.blob import KIND as BLOB_PART
from crowdmesh.chain.contracts.blob import apply_blob_part
from crowdmesh.chain.contracts.crowdsfl import CONTRACTS as CROWDSFL_CONTRACTS
from crowdmesh.chain.contracts.registry import KIND as REGISTER_KEY
from crowdmesh.chain.contracts.registry import (
    apply_register_key,
    register_key_payload,
    registered_key,
)
from crowdmesh.chain.contracts.spatial.contract import (
    KIND_REJECT as SPATIAL_REJECT,
)
from crowdmesh.chain.contracts.spatial.contract import (
    KIND_TALLY as SPATIAL_TALLY,
)
from crowdmesh.chain.contracts.spatial.contract import apply_reject, apply_tally
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import apply_transfer, transfer_payload

__all__ = [
    "BLOB_PART",
    "CONTRACTS",
    "REGISTER_KEY",
    "SPATIAL_REJECT",
    "SPATIAL_TALLY",
    "TRANSFER",
    "Contract",
    "Event",
    "TxContext",
    "decode_payload",
    "register_key_payload",
    "registered_key",
    "transfer_payload",
]

CONTRACTS: Mapping[str, Contract] = {
    TRANSFER: apply_transfer,
    REGISTER_KEY: apply_register_key,
    SPATIAL_TALLY: apply_tally,
    SPATIAL_REJECT: apply_reject,
    BLOB_PART: apply_blob_part,
    **CROWDSFL_CONTRACTS,
}
