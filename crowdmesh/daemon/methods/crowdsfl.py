"""CrowdSFL methods, backed by :class:`~crowdmesh.daemon.api.SflService` only.

Rule: a node without a CrowdSFL role (requester, worker, csp) answers every method with
``sfl-off``. ``task_create`` takes the spec as an object of fields (``SPEC_DEFAULTS`` in
``daemon/sflapi.py`` fill the rest; ``csp`` is required) and is idempotent by ``id``.
"""

from __future__ import annotations

from typing import Any, Final

from crowdmesh.daemon.api import Services, SflService
from crowdmesh.daemon.methods import (
    INVALID_PARAMS,
    Method,
    MethodTable,
    RpcError,
    param_hex,
    param_int,
    param_optional,
    param_str,
)
from crowdmesh.errors import UsageError

__all__ = ["METHODS"]

_PROFILE = param_optional(param_str)


def _sfl(services: Services) -> SflService:
    if services.crowdsfl is None:
        raise UsageError("sfl-off", "add requester, worker or csp to roles")
    return services.crowdsfl


def _param_obj(v: Any, name: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise RpcError(INVALID_PARAMS, f"{name} must be an object of spec fields")
    return v


METHODS: Final[MethodTable] = {
    "elgamal_key": Method((("profile", _PROFILE),),
                          lambda s, a: _sfl(s).elgamal_key(a[0] or "default"),
                          doc="this node's ElGamal public key and its registration"),
    "elgamal_register": Method((("profile", _PROFILE),),
                               lambda s, a: _sfl(s).elgamal_register(a[0] or "default"),
                               doc="register the ElGamal key on chain (register-key + PoK)"),
    "task_create": Method((("spec", _param_obj), ("id", param_str)),
                          lambda s, a: _sfl(s).task_create(a[0], a[1]),
                          doc="create a CrowdSFL task as requester (idempotent by id)"),
    "task_join": Method((("task", param_hex),), lambda s, a: _sfl(s).task_join(a[0]),
                        doc="join a task as worker"),
    "task_timeout": Method((("task", param_hex),), lambda s, a: _sfl(s).task_timeout(a[0]),
                           doc="abort a stalled task after its deadline (refunds every coin)"),
    "task_list": Method((), lambda s, a: _sfl(s).task_list(), doc="every task on chain"),
    "task_show": Method((("task", param_hex),), lambda s, a: _sfl(s).task_show(a[0]),
                        doc="one task: phase, deadlines, workers, rounds, escrow"),
    "task_model": Method((("task", param_hex), ("round", param_optional(param_int(0, 100)))),
                         lambda s, a: _sfl(s).task_model(a[0], a[1]),
                         doc="a round's global model (float32 bytes, hex)"),
}
