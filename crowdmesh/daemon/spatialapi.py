"""The control socket's ``SpatialService``: reports, votes, location and rewards.

Invariants:
- Reads come from the chain state the spatial contract writes (``x r`` decisions, ``x e``
  earnings) and from the node's own role instances (reports it is requesting or voting on);
  nothing here decides anything a validator would not.
- Operator intents (submit, vote, location) become role events delivered through the role
  host, exactly as gossip does; the roles decide, sign and publish.
- Coordinates cross this boundary as integer micro-degrees; the CLI converts degrees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.protocol import VOTE_CONFIRM, VOTE_REJECT
from crowdmesh.daemon.api import JsonObj
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.daemon.rolehost import RoleHost
from crowdmesh.daemon.rolestore import RoleStore
from crowdmesh.daemon.views import parse_hex
from crowdmesh.errors import NotFound, UsageError
from crowdmesh.roles.dispatch import Role
from crowdmesh.roles.spatial_events import ReportRequested, VoteGiven

__all__ = ["MAX_LIST", "VOTES", "SpatialApi"]

MAX_LIST = 1000
VOTES = {"confirm": VOTE_CONFIRM, "reject": VOTE_REJECT}
_STATUS = {1: "confirmed", 0: "rejected"}


class SpatialApi:
    """Implements :class:`crowdmesh.daemon.api.SpatialService`."""

    def __init__(self, ledger: Ledger, host: RoleHost, store: RoleStore,
                 set_location: Callable[[int, int], Awaitable[JsonObj]]) -> None:
        self._ledger = ledger
        self._host = host
        self._store = store
        self._set_location = set_location

    # -- intents ----------------------------------------------------------------------------

    async def location_set(self, lat_e6: int, lon_e6: int) -> JsonObj:
        """Move the node: re-subscribe to the cells around the new point."""
        geo.check_point(lat_e6, lon_e6)
        return await self._set_location(lat_e6, lon_e6)

    def report_submit(self, kind: str, lat_e6: int, lon_e6: int, request_id: str) -> JsonObj:
        """Report an event here (idempotent by ``request_id``); returns its report id."""
        self._need(Role.SPATIAL_REQUESTER)
        if kind not in self._ledger.genesis.spatial.report_types:
            raise UsageError("spatial-unknown-type",
                             f"known types: {', '.join(self._ledger.genesis.spatial.report_types)}")
        geo.check_point(lat_e6, lon_e6)
        self._host.deliver(ReportRequested(request_id, kind, lat_e6, lon_e6))
        rid = self._store.get(Role.SPATIAL_REQUESTER.value, b"q/" + request_id.encode())
        if rid is None:
            raise UsageError("spatial-no-account", "the report was not signed: set [account]")
        return {"request_id": request_id, "report_id": rid.hex(), "status": "pending"}

    def report_vote(self, report_id_hex: str, vote: str) -> JsonObj:
        """The operator's vote on a pending report (within its commit window)."""
        self._need(Role.SPATIAL_WORKER)
        rid = parse_hex(report_id_hex, 32, "report id")
        if rid.hex() not in self._host.instances(Role.SPATIAL_WORKER):
            raise NotFound("report-not-pending", report_id_hex)
        self._host.deliver(VoteGiven(rid, VOTES[vote]))
        return {"report_id": rid.hex(), "vote": vote}

    # -- views ------------------------------------------------------------------------------

    def report_pending(self) -> list[JsonObj]:
        """Reports this node may vote on and has not voted on yet."""
        out = []
        for key in self._host.instances(Role.SPATIAL_WORKER):
            state = self._host.state(Role.SPATIAL_WORKER, key)
            if key and getattr(state, "awaiting_operator", False):
                out.append({"report_id": key, **_report_fields(state)})
        return out

    def report_list(self, near: tuple[int, int] | None, radius_m: int | None,
                    status: str | None) -> list[JsonObj]:
        """Decided reports (chain state), newest first, optionally near a point or by status."""
        rows = [self._decision(k[2:], v) for k, v in self._ledger.chain.iter_state(b"xr")]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        if near is not None:
            radius = radius_m if radius_m is not None else self._ledger.genesis.spatial.radius_m
            rows = [r for r in rows if "lat_e6" in r and geo.distance_m(
                near[0], near[1], r["lat_e6"], r["lon_e6"]) <= radius]
        rows.sort(key=lambda r: -int(r["height"]))
        return rows[:MAX_LIST]

    def report_show(self, report_id_hex: str) -> JsonObj:
        """One report: its decision on chain, or this node's part in it while pending."""
        rid = parse_hex(report_id_hex, 32, "report id")
        raw = self._ledger.chain.state_get(b"xr" + rid)
        if raw is not None:
            return self._decision(rid, raw)
        for role in (Role.SPATIAL_REQUESTER, Role.SPATIAL_WORKER):
            if rid.hex() in self._host.instances(role):
                state = self._host.state(role, rid.hex())
                return {"report_id": rid.hex(), "status": "pending", "as": role.value,
                        **_report_fields(state)}
        raise NotFound("report-not-found", report_id_hex)

    def rewards(self, account_hex: str) -> JsonObj:
        """What ``account`` earned as requester, worker (spatial contract) and miner."""
        account = parse_hex(account_hex, 32, "account")
        raw = self._ledger.chain.state_get(b"xe" + account)
        earned = [0, 0, 0, 0] if raw is None else list(unpack(raw, 128))
        chain, genesis = self._ledger.chain, self._ledger.genesis
        mined = [h.height for h in chain.headers_range(1, chain.height) if h.miner == account]
        return {"account": account.hex(), "requester": earned[0], "worker": earned[1],
                "reports": earned[2], "confirmations": earned[3],
                "miner": sum(genesis.reward(h) for h in mined), "blocks": len(mined)}

    # -- helpers ----------------------------------------------------------------------------

    def _need(self, role: Role) -> None:
        if role not in self._host.roles:
            raise UsageError("not-a-" + role.value, f"add \"{role.value}\" to roles in the config")

    @staticmethod
    def _decision(report_id: bytes, raw: bytes) -> JsonObj:
        record = list(unpack(raw, 1 << 16))
        view: JsonObj = {"report_id": report_id.hex(), "status": _STATUS[record[0]],
                         "committee": record[1].hex(), "height": record[2]}
        if record[0] == 1:
            kind, lat, lon, ts, requester, confirmers = record[3:9]
            view.update({"type": kind, "lat_e6": lat, "lon_e6": lon, "ts": ts,
                         "requester": requester.hex(),
                         "confirmers": [c.hex() for c in confirmers]})
        return view


def _report_fields(state: Any) -> JsonObj:
    """The report's public fields from a role instance (whatever its state class)."""
    report = getattr(state, "report", None)
    if report is None:
        return {}
    return {"type": report.type, "lat_e6": report.lat_e6, "lon_e6": report.lon_e6,
            "ts": report.ts, "requester": report.requester.hex()}
