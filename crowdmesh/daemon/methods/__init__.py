"""Control-socket method tables: what one JSON-RPC method is, and how tables combine.

Each feature contributes one :data:`MethodTable` in a module of this package (``node``,
``chain``, ``mining``, ``peers``, ``account``); ``crowdmesh.daemon.methods.all`` composes them into
``DEFAULT_METHODS``, and the control server (``crowdmesh.daemon.control``) serves whatever table
it is given, so a later feature plugs in a table without touching the server.

Rule 1 (narrow): a handler receives the node's :class:`~crowdmesh.daemon.api.Services` and the
checked arguments, and uses only its own feature's service (``services.chain`` for the chain
table, …). It never sees the connection or the server.
Rule 2 (checked): every parameter has a checker that either returns the (normalised) value or
raises :class:`RpcError` ``-32602``; a handler only ever sees checked values, in table order.
Rule 3 (unique): :func:`compose` refuses two methods of the same name, so no table silently
shadows another.

This module imports no feature table (they import it), so the package has no import cycle.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from crowdmesh.daemon.api import JsonObj, Services

__all__ = [
    "INVALID_PARAMS",
    "MAX_LINE",
    "Checker",
    "Handler",
    "Method",
    "MethodTable",
    "Param",
    "RpcError",
    "bind_params",
    "call_handler",
    "compose",
    "param_choice",
    "param_hex",
    "param_int",
    "param_optional",
    "param_ref",
    "param_str",
]

MAX_LINE: Final = 1 << 20  # the control socket's request-line cap; no string param is longer
INVALID_PARAMS: Final = -32602


class RpcError(Exception):
    """A JSON-RPC error to send back to the client."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> JsonObj:
        err: JsonObj = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


Checker: TypeAlias = Callable[[Any, str], Any]
"""``check(value, name)``: the checked value, or raise :class:`RpcError` -32602."""
Param: TypeAlias = tuple[str, Checker]
Handler: TypeAlias = Callable[[Services, list[Any]], Awaitable[Any] | Any]
"""``handler(services, args)``: a JSON-able result, or an awaitable of one."""


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC method.

    Attributes:
        params: ``(name, checker)`` pairs, in positional order (named params use the names).
        handler: called with the node's services and the checked arguments.
        needs_ready: answer ``-28 warming up`` until ``services.node.is_ready()``; when False
            the method runs as soon as the node has handed over its services.
        timeout_factor: multiplies the server's per-request timeout (``generate`` mines).
        doc: one line for the ``methods`` RPC.
    """

    params: tuple[Param, ...]
    handler: Handler
    needs_ready: bool = True
    timeout_factor: float = 1.0
    doc: str = ""


MethodTable: TypeAlias = Mapping[str, Method]


def compose(*tables: MethodTable) -> dict[str, Method]:
    """Merge method tables into one, in order.

    Raises:
        ValueError: two tables define the same method name. This is a programming error, not
            an operator's, so it is not a ``CrowdmeshError`` (which the CLI reports as a
            config problem).
    """
    out: dict[str, Method] = {}
    for table in tables:
        for name, method in table.items():
            if name in out:
                raise ValueError(f"duplicate-rpc-method: {name!r} is defined twice")
            out[name] = method
    return out


async def call_handler(handler: Handler, services: Services, args: list[Any]) -> Any:
    """Run a sync or async handler and return its result."""
    result = handler(services, args)
    if inspect.isawaitable(result):
        return await result
    return result


# ---- parameter checkers -------------------------------------------------------------------


def param_str(v: Any, name: str) -> str:
    """A non-empty string of at most :data:`MAX_LINE` characters."""
    if not isinstance(v, str) or not v or len(v) > MAX_LINE:
        raise RpcError(INVALID_PARAMS, f"{name} must be a non-empty string")
    return v


_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")


def param_hex(v: Any, name: str) -> str:
    """A hex string of whole bytes, returned lowercase.

    Why not ``bytes.fromhex`` alone: it skips whitespace ("  ab cd\n" passes), so text a
    client did not mean as hex would be accepted and normalised silently.
    """
    s = param_str(v, name)
    if _HEX.fullmatch(s) is None:
        raise RpcError(INVALID_PARAMS, f"{name} must be a hex string (no spaces)")
    return s.lower()


def param_int(lo: int, hi: int) -> Checker:
    """A checker for an integer (not a bool) in ``lo..hi`` inclusive."""

    def check(v: Any, name: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise RpcError(INVALID_PARAMS, f"{name} must be an integer in {lo}..{hi}")
        return v

    return check


def param_ref(v: Any, name: str) -> str | int:
    """A block reference: a height (int) or a hash (hex string, returned lowercase)."""
    if isinstance(v, int) and not isinstance(v, bool):
        height: int = param_int(0, 2**63)(v, name)
        return height
    return param_hex(v, name)


def param_choice(choices: tuple[str, ...]) -> Checker:
    """A checker for one of ``choices``."""

    def check(v: Any, name: str) -> str:
        if v not in choices:
            raise RpcError(INVALID_PARAMS, f"{name} must be one of {list(choices)}")
        return str(v)

    return check


_MISSING: Final = object()


def bind_params(spec: tuple[Param, ...], params: Any) -> list[Any]:
    """Check positional or named ``params`` against ``spec``; return the values in order.

    Raises:
        RpcError: -32602 for a wrong shape, a missing or unknown name, or a failed check.
    """
    names = [n for n, _ in spec]
    if params is None:
        params = []
    if isinstance(params, dict):
        extra = sorted(set(params) - set(names))
        if extra:
            raise RpcError(INVALID_PARAMS, f"unknown params {extra}; expected {names}")
        params = [params.get(n, _MISSING) for n in names]
    if not isinstance(params, list):
        raise RpcError(INVALID_PARAMS, "params must be an array or an object")
    if len(params) < len(names):  # trailing params left out: only optional ones may be
        params = params + [_MISSING] * (len(names) - len(params))
    head, tail = params[:len(names)], params[len(names):]
    params = [None if v is _MISSING and _is_optional(check) else v
              for (_, check), v in zip(spec, head, strict=True)] + tail
    if len(params) != len(names) or _MISSING in params:
        raise RpcError(INVALID_PARAMS, f"expected params {names}")
    return [check(v, name) for (name, check), v in zip(spec, params, strict=True)]


def param_optional(check: Checker) -> Checker:
    """``check``, or None when the parameter is absent or null (it may be left out)."""

    def accept(v: Any, name: str) -> Any:
        return None if v is None else check(v, name)

    accept.optional = True  # type: ignore[attr-defined]
    return accept


def _is_optional(check: Checker) -> bool:
    return bool(getattr(check, "optional", False))
