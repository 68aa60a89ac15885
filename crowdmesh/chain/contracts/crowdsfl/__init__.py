"""crowdmesh.chain.contracts.crowdsfl: the CrowdSFL task lifecycle as native contracts.

Kinds (one per protocol step, DESIGN.md "CrowdSFL protocol"): ``sfl-create``, ``sfl-join``,
``sfl-model``, ``sfl-submit``, ``sfl-blinded``, ``sfl-accuracy``, ``sfl-select``,
``sfl-settle``, ``sfl-timeout``. The state machine is the table in :mod:`.dispatch`; the rules
and reject codes are listed in :mod:`.phases` and :mod:`.settle`; the state layout in
:mod:`.records`; what runs on chain and what at the requester in :mod:`.bundles`. Large
payloads travel as blobs (:mod:`crowdmesh.chain.contracts.blob`). docs/crowdsfl.md has the
whole picture.
"""

from crowdmesh.chain.contracts.crowdsfl.dispatch import CONTRACTS, TABLE
from crowdmesh.chain.contracts.crowdsfl.pace import PoolPace, pool_pace
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
    accuracy_payload,
    blinded_payload,
    create_payload,
    join_payload,
    model_payload,
    score_commitment,
    select_payload,
    settle_payload,
    submit_payload,
    timeout_payload,
)
from crowdmesh.chain.contracts.crowdsfl.records import (
    PREFIX,
    Phase,
    Status,
    Task,
    Worker,
    WorkerState,
    burned_total,
    escrow_total,
    load_worker,
    task_status,
    task_workers,
)
from crowdmesh.chain.contracts.crowdsfl.settle import REP_GAIN, REP_LOSS, timeout_due
from crowdmesh.chain.contracts.crowdsfl.spec import MAX_WORKERS, TaskSpec, deposit_for

__all__ = [
    "CONTRACTS",
    "KIND_ACCURACY",
    "KIND_BLINDED",
    "KIND_CREATE",
    "KIND_JOIN",
    "KIND_MODEL",
    "KIND_SELECT",
    "KIND_SETTLE",
    "KIND_SUBMIT",
    "KIND_TIMEOUT",
    "MAX_WORKERS",
    "PREFIX",
    "REP_GAIN",
    "REP_LOSS",
    "TABLE",
    "Phase",
    "PoolPace",
    "Status",
    "Task",
    "TaskSpec",
    "Worker",
    "WorkerState",
    "accuracy_payload",
    "blinded_payload",
    "burned_total",
    "create_payload",
    "deposit_for",
    "escrow_total",
    "join_payload",
    "load_worker",
    "model_payload",
    "pool_pace",
    "score_commitment",
    "select_payload",
    "settle_payload",
    "submit_payload",
    "task_status",
    "task_workers",
    "timeout_due",
    "timeout_payload",
]
