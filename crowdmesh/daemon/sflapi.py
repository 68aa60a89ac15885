"""The control socket's ``SflService``: CrowdSFL tasks and the node's ElGamal key.

Invariants:
- Reads come from the chain state the ``crowdsfl`` contract writes (``f t``, ``f s``, ``f w``,
  per-round records) and from complete blobs; nothing here decides anything a validator would
  not, and no secret leaves the node (``elgamal_key`` shows the public key only).
- Operator intents become role events delivered through the role host (``SflTaskRequested``,
  ``SflJoinRequested``); the roles decide, sign and send. ``elgamal_register`` is the one call
  this module builds itself: the ``register-key`` payload with its Schnorr proof, sent through
  the call service as the operator's call (idempotent by its call id).
- ``task_create`` checks what the contract would refuse at once (spec ranges, the keys, the
  CSP being someone else) before asking the requester, so the operator gets the contract's
  reject code instead of a silent refusal in the log.
- Errors carry stable codes: ``sfl-unknown-task``, ``sfl-no-model``, ``sfl-bad-spec``,
  ``sfl-key-missing``, ``sfl-csp-is-requester``, ``sfl-not-a-<role>``, ``no-account``.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from typing import Any, Final

import trio

from crowdmesh.chain.contracts import REGISTER_KEY
from crowdmesh.chain.contracts.blob import blob_bytes
from crowdmesh.chain.contracts.crowdsfl import (
    KIND_TIMEOUT,
    Phase,
    TaskSpec,
    create_payload,
    task_status,
    timeout_due,
    timeout_payload,
)
from crowdmesh.chain.contracts.crowdsfl.records import (
    load_worker,
    read_list,
    round_key,
    task_workers,
)
from crowdmesh.chain.contracts.registry import register_key_payload, registered_key
from crowdmesh.chain.contracts.transfer import KIND as TRANSFER
from crowdmesh.chain.contracts.transfer import transfer_payload
from crowdmesh.crypto.elgamal import generator
from crowdmesh.crypto.encoding import chunks_needed
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.calls import OPERATOR, CallService
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.rng import SystemRng
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.views import parse_hex
from crowdmesh.errors import NotFound, UsageError, ValidationError
from crowdmesh.roles.dispatch import Role
from crowdmesh.roles.events import Event
from crowdmesh.roles.sfl_events import SflConfigured, SflJoinRequested, SflTaskRequested
from crowdmesh.roles.sfl_jobs import dataset_from_bytes

__all__ = ["SFL_ROLES", "SPEC_DEFAULTS", "SflApi", "build_spec"]

SFL_ROLES: Final = frozenset({Role.REQUESTER, Role.WORKER, Role.CSP})
MAX_LIST: Final = 1000
_CREATE_PREFIX: Final = "create-"  # the requester's call id of a task request (sfl_requester)
_REGISTER_ID: Final = "elgamal-register-"
BLOCK_WAIT_S: Final = 60.0  # task_timeout: how long to wait for a block past the deadline
# What ``task create`` fills in when the operator leaves a field out (paper-sized: k = 3, t = 5).
SPEC_DEFAULTS: Final[dict[str, Any]] = {
    "profile": "default", "hidden": [6], "activation": "relu", "init": "he", "epochs": 3,
    "batch_size": 16, "lr_micro": 20_000, "l2_micro": 0, "optimizer": "adam", "rounds": 5,
    "min_workers": 3, "max_workers": 3, "join_window": 120, "t_wait": 30, "t_step": 60,
    "pool": 90_000, "deposit_base": 500, "deposit_per_ksample": 1000,
    "deposit_rep_discount": 10, "deposit_min": 100, "rep_weight": 1, "select_m": None,
    "min_accuracy_bps": 5000, "aggregation": "equal",
}
_PHASES: Final = {p: p.name.lower() for p in Phase}


def build_spec(params: JsonObj, csp: bytes, inputs: int, classes: int, now: int) -> TaskSpec:
    """A :class:`TaskSpec` from operator fields (``SPEC_DEFAULTS`` for the missing ones).

    ``layers`` may be given whole; otherwise it is ``inputs, hidden…, classes`` of the
    requester's held-out data. The join deadline is ``now + join_window`` unless
    ``join_deadline`` is given.

    Raises:
        ValidationError: ``sfl-bad-spec`` (unknown field, wrong type, out of range).
    """
    unknown = sorted(set(params) - set(SPEC_DEFAULTS) - {"layers", "join_deadline", "csp"})
    if unknown:
        raise ValidationError("sfl-bad-spec", f"unknown fields {unknown}")
    p = {**SPEC_DEFAULTS, **params}
    try:
        layers = tuple(int(v) for v in p.get("layers") or (inputs, *p["hidden"], classes))
        chunks = chunks_needed(PROFILES[p["profile"]].group, 4 * _n_params(layers))
        spec = TaskSpec(
            profile=p["profile"], csp=csp, layers=layers, activation=p["activation"],
            init=p["init"], epochs=p["epochs"], batch_size=p["batch_size"],
            lr_micro=p["lr_micro"], l2_micro=p["l2_micro"], optimizer=p["optimizer"],
            rounds=p["rounds"], min_workers=p["min_workers"], max_workers=p["max_workers"],
            join_deadline=p.get("join_deadline") or now + p["join_window"],
            t_wait=p["t_wait"], t_step=p["t_step"], pool=p["pool"],
            deposit_base=p["deposit_base"], deposit_per_ksample=p["deposit_per_ksample"],
            deposit_rep_discount=p["deposit_rep_discount"], deposit_min=p["deposit_min"],
            rep_weight=p["rep_weight"], select_m=p["select_m"] or p["max_workers"],
            min_accuracy_bps=p["min_accuracy_bps"], aggregation=p["aggregation"],
            bundle_chunks=chunks, schema_hash=schema_hash(layers[0], layers[-1]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError("sfl-bad-spec", f"{type(exc).__name__}: {exc}") from None
    return TaskSpec.from_obj(spec.to_obj())  # the contract's own type and range checks


def _n_params(layers: tuple[int, ...]) -> int:
    return sum((a + 1) * b for a, b in itertools.pairwise(layers))


def schema_hash(inputs: int, classes: int) -> bytes:
    """The dataset schema a task names: its input width and class count."""
    return hashlib.sha256(f"crowdsfl-schema/{inputs}/{classes}".encode()).digest()


class SflApi:
    """Implements :class:`crowdmesh.daemon.api.SflService`."""

    @classmethod
    def for_node(cls, ledger: Ledger, host: RoleHost, calls: CallService,
                 configs: Sequence[Event]) -> SflApi | None:
        """The service of a node with a CrowdSFL role, else None."""
        return cls(ledger, host, calls, configs) if host.roles & SFL_ROLES else None

    def __init__(self, ledger: Ledger, host: RoleHost, calls: CallService,
                 configs: Sequence[Event]) -> None:
        self._ledger = ledger
        self._host = host
        self._calls = calls
        mine = [c for c in configs if isinstance(c, SflConfigured)]
        secret = next((c.secret_key for c in mine if c.secret_key), None)
        self._sk = None if secret is None else int.from_bytes(secret, "big")
        self._held = next((c.dataset for c in mine if c.role == Role.REQUESTER.value), b"")
        self._created: dict[str, str] = {}  # request id -> task id (this run)

    @property
    def _get(self) -> Any:
        return self._ledger.chain.state_get

    # -- keys -------------------------------------------------------------------------------

    def elgamal_key(self, profile: str = "default") -> JsonObj:
        """The node's ElGamal public key and whether the chain has it for our account."""
        sk = self._need_key()
        pk = generator(PROFILES[profile]).pow(sk)
        account = self._calls.account
        on_chain = None if account is None else registered_key(self._get, account, profile)
        return {"profile": profile, "public_key": f"{pk:x}",
                "account": None if account is None else account.hex(),
                "registered": on_chain == pk, "conflict": on_chain not in (None, pk)}

    def elgamal_register(self, profile: str = "default") -> JsonObj:
        """Send ``register-key`` with a Schnorr proof bound to our account (once)."""
        view = self.elgamal_key(profile)
        if view["conflict"]:
            raise ValidationError("bad-registry-exists", "another key is registered for "
                                  "this account and profile; it cannot change")
        if view["registered"]:
            return {**view, "call": None}
        account = self._calls.account
        if account is None:
            raise UsageError("no-account", "configure [account] key in the daemon's config")
        sk = self._need_key()
        proof = prove_key(PROFILES[profile], account, sk, SystemRng())
        payload = register_key_payload(profile, generator(PROFILES[profile]).pow(sk), proof)
        call = self._calls.request_now(OPERATOR, _REGISTER_ID + profile, REGISTER_KEY, payload)
        return {**view, "call": call}

    def _need_key(self) -> int:
        if self._sk is None:
            raise UsageError("sfl-no-elgamal-key", "only a requester or csp node holds one")
        return self._sk

    # -- intents ----------------------------------------------------------------------------

    def task_create(self, params: JsonObj, request_id: str) -> JsonObj:
        """Ask the requester role to create a task (idempotent by ``request_id``)."""
        self._need(Role.REQUESTER)
        csp = parse_hex(str(params.get("csp", "")), 32, "csp")
        inputs, classes = self._held_shape()
        now = max(int(time.time()), self._ledger.chain.head.timestamp)
        spec = build_spec({k: v for k, v in params.items() if k != "csp"}, csp, inputs,
                          classes, now)
        self._precheck(spec)
        self._host.deliver(SflTaskRequested(request_id, create_payload(spec)))
        key = (Role.REQUESTER.value, "", _CREATE_PREFIX + request_id)
        record = next((r for r in self._calls.calls() if r.key == key), None)
        if record is not None:
            self._created[request_id] = record.view()["txid"]
        return {"request_id": request_id, "task": self._created.get(request_id),
                "spec": _spec_view(spec)}

    def _precheck(self, spec: TaskSpec) -> None:
        me = self._calls.account
        if me is None:
            raise UsageError("no-account", "configure [account] key in the daemon's config")
        if spec.csp == me:
            raise ValidationError("sfl-csp-is-requester", "name another account as the CSP")
        for who, account in (("requester", me), ("csp", spec.csp)):
            if registered_key(self._get, account, spec.profile) is None:
                raise ValidationError("sfl-key-missing", f"the {who} {account.hex()[:16]}… "
                                      "has no registered ElGamal key (keys elgamal register)")

    def _held_shape(self) -> tuple[int, int]:
        if not self._held:
            return 30, 2
        x, y = dataset_from_bytes(self._held)
        return int(x.shape[1]), int(max(int(y.max()) + 1, 2))

    def task_join(self, task_hex: str) -> JsonObj:
        """Ask the worker role to join task ``task_hex`` (it joins while joining is open)."""
        self._need(Role.WORKER)
        task, status = self._task(task_hex)
        if status.phase is not Phase.JOINING:
            raise ValidationError("sfl-join-closed", f"the task is {_PHASES[status.phase]}")
        self._host.deliver(SflJoinRequested(task.task_id))
        return {"task": task.task_id.hex(), "requested": True}

    async def task_timeout(self, task_hex: str) -> JsonObj:
        """Send ``sfl-timeout`` for a stalled task (anyone may, once its deadline passed): the
        task aborts and every escrowed coin goes back. ``sfl-not-expired`` (saying until when)
        while nothing is overdue; ``sfl-wrong-phase`` for a finished task.

        The contract judges the deadline by block time, so when only the wall clock is past it
        (an idle chain mines nothing on demand) a self-transfer brings a fresh block first, as
        the roles' beacon does; ``sfl-no-block`` if none comes within :data:`BLOCK_WAIT_S`.
        """
        task, status = self._task(task_hex)
        _open(status)
        due = timeout_due(status, len(task_workers(self._get, task.task_id)), task.spec)
        if time.time() <= due:
            raise ValidationError("sfl-not-expired", f"until {due} ({due - int(time.time())} s)")
        beacon = None
        if self._ledger.chain.head.timestamp <= due:
            beacon = self._beacon(due)
            await self._block_after(due)
            task, status = self._task(task_hex)
            if status.phase is Phase.ABORTED:  # a role's own timeout in that block was first
                return {"task": task.task_id.hex(), "beacon": beacon, "call": None,
                        "phase": "aborted"}
            _open(status)
        # why phase and round in the id: a later stall of the same task is a new call
        call_id = f"timeout-{task.task_id.hex()}-{int(status.phase)}-{status.round}"
        try:
            call = self._calls.request_now(OPERATOR, call_id, KIND_TIMEOUT,
                                           timeout_payload(task.task_id))
        except ValidationError as exc:
            if exc.code != "sfl-wrong-phase" or beacon is None:
                raise
            # why: the dry run applies our account's pending txs first, and a role of this
            # node sent its own timeout meanwhile: the task is already being aborted
            return {"task": task.task_id.hex(), "beacon": beacon, "call": None,
                    "phase": "aborting"}
        return {"task": task.task_id.hex(), "beacon": beacon, "call": call,
                "phase": _PHASES[status.phase]}

    def _beacon(self, deadline: int) -> JsonObj:
        me = self._calls.account
        if me is None:
            raise UsageError("no-account", "configure [account] key in the daemon's config")
        return self._calls.request_now(OPERATOR, f"beacon-{deadline}", TRANSFER,
                                       transfer_payload(me, 1))

    async def _block_after(self, deadline: int) -> None:
        with trio.move_on_after(BLOCK_WAIT_S):
            while self._ledger.chain.head.timestamp <= deadline:
                await trio.sleep(0.05)
            return
        raise ValidationError("sfl-no-block", f"no block past {deadline} within "
                              f"{BLOCK_WAIT_S:.0f} s: is any node mining?")

    # -- views ------------------------------------------------------------------------------

    def task_list(self) -> list[JsonObj]:
        """Every task on chain, newest join deadline first."""
        rows = [self._summary(k[2:]) for k, _ in self._ledger.chain.iter_state(b"ft")]
        rows.sort(key=lambda r: -int(r["join_deadline"]))
        return rows[:MAX_LIST]

    def task_show(self, task_hex: str) -> JsonObj:
        """One task: phase, deadlines, workers, per-round records and escrow; ``pending`` for a
        task this node created whose ``sfl-create`` is not in a block yet."""
        try:
            task, status = self._task(task_hex)
        except NotFound:
            # why: ``task create`` answers with the id at once; a ``task show`` right after
            # must not call the operator's own new task unknown
            if task_hex.lower() in self._created.values():
                return {"task": task_hex.lower(), "phase": "pending", "round": 0,
                        "workers": [], "history": []}
            raise
        tid, get = task.task_id, self._get
        workers: list[JsonObj] = []
        for w in (bytes(a) for a in read_list(get, b"fl" + tid)):
            rec = load_worker(get, tid, w)
            assert rec is not None, "a listed worker has a record"
            workers.append({"account": w.hex(), "n_k": rec.n_k, "deposit": rec.deposit,
                            "state": rec.state.name.lower()})
        rounds = [self._round(tid, r) for r in range(task.spec.rounds + 1)]
        return {**self._summary(tid), "window_end": status.window_end,
                "stall_at": status.stall_at, "submitted": status.submitted,
                "t_wait": task.spec.t_wait, "t_step": task.spec.t_step,
                "escrow": 0 if status.phase >= Phase.SETTLED else
                status.pool + sum(int(w["deposit"]) for w in workers),
                "workers": workers, "history": [r for r in rounds if len(r) > 1],
                "spec": _spec_view(task.spec)}

    def task_model(self, task_hex: str, round_: int | None) -> JsonObj:
        """The global model of ``round_`` (default: the newest posted) as float32 bytes."""
        task, _ = self._task(task_hex)
        tid = task.task_id
        posted = [r for r in range(task.spec.rounds + 1) if self._get(round_key(b"m", tid, r))]
        want = posted[-1] if round_ is None and posted else round_
        name = None if want is None else self._get(round_key(b"m", tid, want))
        data = None if name is None else blob_bytes(self._get, name)
        if data is None:
            raise NotFound("sfl-no-model", f"no global model for round {want} (posted: {posted})")
        spec = task.spec
        return {"task": tid.hex(), "round": want, "layers": list(spec.layers),
                "activation": spec.activation, "init": spec.init, "model": data.hex()}

    # -- helpers ----------------------------------------------------------------------------

    def _need(self, role: Role) -> None:
        if role not in self._host.roles:
            raise UsageError(f"sfl-not-a-{role.value}",
                             f"add \"{role.value}\" to roles in the config")

    def _task(self, task_hex: str) -> Any:
        tid = parse_hex(task_hex, 32, "task id")
        try:
            return task_status(self._get, tid)
        except ValidationError:
            raise NotFound("sfl-unknown-task", task_hex) from None

    def _summary(self, tid: bytes) -> JsonObj:
        task, status = task_status(self._get, tid)
        return {"task": tid.hex(), "phase": _PHASES[status.phase], "round": status.round,
                "rounds": task.spec.rounds, "requester": task.requester.hex(),
                "csp": task.spec.csp.hex(), "workers": len(read_list(self._get, b"fl" + tid)),
                "pool": status.pool, "join_deadline": task.spec.join_deadline}

    def _round(self, tid: bytes, r: int) -> JsonObj:
        get = self._get
        out: JsonObj = {"round": r}
        model = get(round_key(b"m", tid, r))
        if model is not None:
            out["model"] = model.hex()
        accuracy = read_list(get, round_key(b"a", tid, r))
        if accuracy:
            out["accuracy_bps"] = [int(a[1]) for a in accuracy]
            out["free_riders"] = sum(1 for a in accuracy if a[2])
        blinded = read_list(get, round_key(b"b", tid, r))
        if blinded:
            out["blinded"] = len(blinded)
        selected = read_list(get, round_key(b"c", tid, r))
        if selected:
            ids = [bytes(i) for i in selected[0]]
            out["selected"] = [_position(blinded, i) for i in ids]
        return out


def _open(status: Any) -> None:
    if status.phase in (Phase.SETTLED, Phase.ABORTED):
        raise ValidationError("sfl-wrong-phase", f"the task is {_PHASES[status.phase]}")


def _position(blinded: list[Any], ident: bytes) -> int:
    """A selected id as its index in the blinded list (the id itself means nothing)."""
    return next((n for n, (i, _) in enumerate(blinded) if bytes(i) == ident), -1)


def _spec_view(spec: TaskSpec) -> JsonObj:
    view = asdict(replace(spec))
    for f in fields(spec):
        if isinstance(view[f.name], bytes):
            view[f.name] = view[f.name].hex()
        elif isinstance(view[f.name], tuple):
            view[f.name] = list(view[f.name])
    return view
