"""The CrowdSFL transition table: (kind, phase) → handler, and one contract per kind.

Invariants:
- :data:`TABLE` is the whole state machine. A call whose (kind, phase) is not in it is refused
  with ``sfl-wrong-phase``; nothing else decides which handler runs (STYLE.md: tables over
  branching).
- Every contract decodes its payload against its schema (``bad-sfl-payload``) and loads the task
  (``sfl-unknown-task``) before the table lookup; ``sfl-create`` has no task yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from crowdmesh.chain.contracts.base import Contract, Event, TxContext
from crowdmesh.chain.contracts.crowdsfl.calls import Call, Handler
from crowdmesh.chain.contracts.crowdsfl.payloads import (
    KIND_ACCURACY,
    KIND_BLINDED,
    KIND_CREATE,
    KIND_JOIN,
    KIND_MODEL,
    KIND_SELECT,
    KIND_SETTLE,
    KIND_SUBMIT,
    KIND_TIMEOUT,
    SCHEMAS,
    decode_call,
)
from crowdmesh.chain.contracts.crowdsfl.phases import (
    apply_create,
    on_accuracy,
    on_blinded,
    on_join,
    on_model_final,
    on_model_next,
    on_model_start,
    on_select,
    on_submit,
)
from crowdmesh.chain.contracts.crowdsfl.records import Phase, load_status, load_task
from crowdmesh.chain.contracts.crowdsfl.settle import WAITING_ON, on_settle, on_timeout
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import ValidationError

__all__ = ["CONTRACTS", "TABLE"]

TABLE: Mapping[tuple[str, Phase], Handler] = {
    (KIND_JOIN, Phase.JOINING): on_join,
    (KIND_MODEL, Phase.JOINING): on_model_start,
    (KIND_SUBMIT, Phase.TRAINING): on_submit,
    (KIND_BLINDED, Phase.TRAINING): on_blinded,
    (KIND_ACCURACY, Phase.BLINDED): on_accuracy,
    (KIND_SELECT, Phase.SCORED): on_select,
    (KIND_MODEL, Phase.SELECTED): on_model_next,
    (KIND_SETTLE, Phase.FINAL): on_settle,
    (KIND_MODEL, Phase.FINAL): on_model_final,
    (KIND_MODEL, Phase.SETTLED): on_model_final,
    **{(KIND_TIMEOUT, phase): on_timeout for phase in WAITING_ON},
}


def _contract(kind: str) -> Contract:
    def apply(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
        task_id, args = decode_call(kind, tx.payload)
        task = load_task(state.get, task_id)
        status = load_status(state.get, task_id)
        handler = TABLE.get((kind, status.phase))
        if handler is None:
            raise ValidationError("sfl-wrong-phase", f"{kind} in {status.phase.name}")
        return handler(Call(state, tx, ctx, task, status, args))

    apply.__name__ = f"apply_{kind.replace('-', '_')}"
    return apply


CONTRACTS: Mapping[str, Contract] = {
    KIND_CREATE: apply_create,
    **{kind: _contract(kind) for kind in SCHEMAS},
}
