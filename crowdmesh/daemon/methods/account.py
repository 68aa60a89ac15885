"""Account methods, backed by :class:`~crowdmesh.daemon.api.AccountService` only.

Rule: every call carries an operator-chosen ``id``; asking again with the same id returns the
call already made instead of sending a second one, so a client may retry after a timeout.
"""

from __future__ import annotations

from typing import Final

from crowdmesh.chain.codec import U64_MAX
from crowdmesh.daemon.methods import Method, MethodTable, param_hex, param_int, param_str

__all__ = ["MAX_CALL_ID", "METHODS"]

MAX_CALL_ID: Final = 128


def _call_id(v: object, name: str) -> str:
    text = param_str(v, name)
    return param_str(text if len(text) <= MAX_CALL_ID else "", name)


METHODS: Final[MethodTable] = {
    "account": Method((), lambda s, a: s.account.account(),
                      doc="the node's signing account, balance and calls in flight"),
    "account_call": Method(
        (("kind", param_str), ("payload", param_hex), ("id", _call_id)),
        lambda s, a: s.account.call(a[0], a[1], a[2]),
        doc="send a contract call from the node's account (idempotent by id)"),
    "account_pay": Method(
        (("to", param_hex), ("amount", param_int(1, U64_MAX)), ("id", _call_id)),
        lambda s, a: s.account.pay(a[0], a[1], a[2]),
        doc="transfer coins from the node's account (idempotent by id)"),
}
