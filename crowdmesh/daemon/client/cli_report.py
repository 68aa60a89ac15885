"""Command group ``spatial``: reports, votes, the node's location and rewards.

Commands: ``report submit --type T --lat LAT --lon LON [--id ID]``, ``report list [--near LAT
LON] [--radius M] [--status confirmed|rejected]``, ``report show ID``, ``report pending``,
``report vote ID confirm|reject``, ``location set LAT LON``, ``rewards ACCOUNT``.

Rule: coordinates are typed in degrees and sent as integer micro-degrees, converted exactly
(decimal, half away from zero), so ``35.2271`` is ``35_227_100`` and never a float's neighbour.
``report submit`` is idempotent by ``--id`` (default: a fresh random id per run).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

from crowdmesh.daemon.client.cli_command import CommandGroup, Invocation, client_command
from crowdmesh.errors import UsageError

__all__ = ["GROUP", "micro_degrees"]


def micro_degrees(text: str) -> int:
    """``"35.2271"`` → ``35227100`` exactly (raises ``UsageError('bad-coordinate')``)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UsageError("bad-coordinate", f"{text!r} is not a number of degrees") from None
    if not value.is_finite():
        raise UsageError("bad-coordinate", f"{text!r} is not a number of degrees")
    return int((value * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _degrees(text: str) -> int:
    try:
        return micro_degrees(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None


def _setup_report(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = sub.add_parser("submit", help="report an event here")
    submit.add_argument("--type", required=True, dest="kind")
    submit.add_argument("--lat", required=True, type=_degrees)
    submit.add_argument("--lon", required=True, type=_degrees)
    # why built here: the parser is built once per command run, so each run gets a fresh id
    submit.add_argument("--id", dest="request_id", default=uuid.uuid4().hex)
    listing = sub.add_parser("list", help="decided reports")
    listing.add_argument("--near", nargs=2, type=_degrees, metavar=("LAT", "LON"))
    listing.add_argument("--radius", type=int, metavar="M")
    listing.add_argument("--status", choices=["confirmed", "rejected"])
    show = sub.add_parser("show", help="one report")
    show.add_argument("report_id")
    sub.add_parser("pending", help="reports waiting for this node's vote")
    vote = sub.add_parser("vote", help="vote on a pending report")
    vote.add_argument("report_id")
    vote.add_argument("vote", choices=["confirm", "reject"])


def _report_submit(inv: Invocation) -> tuple[str, list[Any]]:
    a = inv.args
    return "report_submit", [a.kind, a.lat, a.lon, a.request_id]


def _report_list(inv: Invocation) -> tuple[str, list[Any]]:
    near = inv.args.near or [None, None]
    return "report_list", [near[0], near[1], inv.args.radius, inv.args.status]


_REPORT_ACTIONS: Final[dict[str, Callable[[Invocation], tuple[str, list[Any]]]]] = {
    "submit": _report_submit,
    "list": _report_list,
    "show": lambda inv: ("report_show", [inv.args.report_id]),
    "pending": lambda inv: ("report_pending", []),
    "vote": lambda inv: ("report_vote", [inv.args.report_id, inv.args.vote]),
}


async def _report(inv: Invocation) -> Any:
    method, params = _REPORT_ACTIONS[inv.args.action](inv)
    return await inv.call(method, params)


def _setup_location(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = sub.add_parser("set", help="move this node")
    put.add_argument("lat", type=_degrees)
    put.add_argument("lon", type=_degrees)


async def _location(inv: Invocation) -> Any:
    return await inv.call("location_set", [inv.args.lat, inv.args.lon])


def _setup_rewards(p: argparse.ArgumentParser) -> None:
    p.add_argument("account", help="account id (64 hex)")


async def _rewards(inv: Invocation) -> Any:
    return await inv.call("rewards", [inv.args.account])


GROUP: Final = CommandGroup("spatial", "spatial crowdsourcing: reports, votes, rewards", {
    "report": client_command("reports: submit, list, show, pending, vote", _report,
                             _setup_report),
    "location": client_command("this node's location: set LAT LON", _location,
                               _setup_location),
    "rewards": client_command("earned as requester, worker and miner", _rewards,
                              _setup_rewards),
})
