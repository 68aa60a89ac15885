"""What the two spatial roles share: store layout, message collection, chain look-ups, restart.

Invariants:
- Store layout (each role in its own namespace; ``rid`` is the 32-byte report id):
  ``r/‖rid`` the report's wire bytes (the instance exists iff this key does, between events),
  ``k/‖rid‖worker[‖h]`` a commit heard (or made; :func:`commit_key`), ``v/‖rid‖worker`` a
  reveal heard (requester), ``o/‖rid`` the worker's vote ([0] or [1]), ``q/‖request_id`` the
  requester's report id for an operator request. :func:`forget` deletes every per-report key
  of one report.
- Reveals: at most one per worker and report, at most :data:`MAX_MESSAGES` per report (a
  tally bundle holds no more). Commits: at most :data:`MAX_MESSAGES` workers per report and
  :data:`MAX_PER_WORKER` distinct commits per worker (see :func:`commit_key`). A
  commit names no beacon, and a reorg of block ``anchor + 1`` makes a worker commit again on
  the new beacon, so every commit is kept until the freeze, which picks, per worker, the valid
  one for the beacon on the best chain then (the smaller encoding between two valid ones, as
  ``committee.freeze`` does). A message counts only if its own signature holds, so nobody can
  crowd out a worker's message with a forgery under its key; a worker filling its own cap only
  shuts itself out.
- Windows are measured from ``report.ts`` in the contract's block time: commits count until
  ``ts + T_c`` (the freeze), reveals until ``ts + T_c + T_r``.
- Pure: nothing here reads a clock or does I/O; everything comes from the context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from crowdmesh.chain.contracts.spatial.contract import MAX_BUNDLE, PREFIX
from crowdmesh.chain.contracts.spatial.protocol import Commit, Report, Reveal
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.crypto.identity import verify_signature
from crowdmesh.errors import DecodeError, ValidationError
from crowdmesh.roles.context import RoleContext
from crowdmesh.roles.effects import Effect, LogEvent, ScheduleAt, StoreDelete
from crowdmesh.roles.events import Event
from crowdmesh.roles.spatial_events import SpatialDeadline, SpatialHeard, SpatialResumed

if TYPE_CHECKING:
    from crowdmesh.roles.dispatch import Role

__all__ = [
    "COMMITS",
    "MAX_MESSAGES",
    "MAX_PER_WORKER",
    "QUERIES",
    "REPORTS",
    "REVEALS",
    "VOTES",
    "beacon_of",
    "combination_used",
    "commit_deadline",
    "commit_key",
    "deadline_keys",
    "decode_commit",
    "decode_report",
    "decode_reveal",
    "forget",
    "heard_commit_key",
    "log",
    "params",
    "report_instances",
    "resume_all",
    "reveal_deadline",
    "rid_of",
    "stored_messages",
    "with_commit",
    "with_message",
]

REPORTS = b"r/"
COMMITS = b"k/"
REVEALS = b"v/"
VOTES = b"o/"
QUERIES = b"q/"
MAX_MESSAGES = MAX_BUNDLE
MAX_PER_WORKER = 4  # commits per worker and report: one per beacon the reorgs of a window bring

Signed = TypeVar("Signed", Commit, Reveal)


def params(ctx: RoleContext) -> SpatialParams:
    """The network's spatial parameters (its genesis)."""
    return ctx.chain.genesis().spatial


def commit_deadline(report: Report, p: SpatialParams) -> int:
    """The freeze: commits count before this time, the tally is valid from it on."""
    return report.ts + p.commit_window_s


def reveal_deadline(report: Report, p: SpatialParams) -> int:
    """The end of the reveal window."""
    return report.ts + p.commit_window_s + p.reveal_window_s


def beacon_of(report: Report, ctx: RoleContext) -> bytes | None:
    """The lottery beacon: the hash of main-chain block ``anchor + 1`` (None until it exists)."""
    header = ctx.chain.header_at(report.anchor + 1)
    return None if header is None else header.hash


def combination_used(ctx: RoleContext) -> Callable[[bytes], bool]:
    """``used(h)`` for ``committee.freeze``: the contract keeps used H(S) at ``x c‖h``."""
    return lambda h: ctx.chain.contract_state(PREFIX + b"c" + h) is not None


def decode_report(raw: bytes) -> Report | None:
    """The report, or None for bytes that are not one."""
    try:
        return Report.decode(raw)
    except (DecodeError, ValidationError):
        return None


def decode_commit(raw: bytes) -> Commit | None:
    """The commit, or None for bytes that are not one."""
    try:
        return Commit.decode(raw)
    except (DecodeError, ValidationError):
        return None


def decode_reveal(raw: bytes) -> Reveal | None:
    """The reveal, or None for bytes that are not one."""
    try:
        return Reveal.decode(raw)
    except (DecodeError, ValidationError):
        return None


def rid_of(instance: str) -> bytes | None:
    """The report id an instance key names (None for a key that is not one)."""
    try:
        rid = bytes.fromhex(instance)
    except ValueError:
        return None
    return rid if len(rid) == 32 else None


def _worker_of(msg: Commit | Reveal) -> bytes:
    return msg.worker


def _signed(msg: Commit | Reveal) -> bool:
    return verify_signature(msg.worker, msg.signing_bytes(), msg.sig)


def with_message(kept: tuple[Signed, ...], msg: Signed, *,
                 prefer_smaller: bool) -> tuple[Signed, ...] | None:
    """``kept`` with ``msg`` added (one per worker, sorted by worker), or None if it changes
    nothing: a bad signature, a full report, or a worker already kept (replaced only by a
    smaller encoding when ``prefer_smaller``)."""
    old = next((m for m in kept if m.worker == msg.worker), None)
    if old is not None and not (prefer_smaller and msg.encoded < old.encoded):
        return None
    if (old is None and len(kept) >= MAX_MESSAGES) or not _signed(msg):
        return None
    merged = [m for m in kept if m.worker != msg.worker]
    merged.append(msg)
    return tuple(sorted(merged, key=_worker_of))


def with_commit(kept: tuple[Commit, ...], commit: Commit) -> tuple[Commit, ...] | None:
    """``kept`` with ``commit`` added (sorted by worker, then encoding), or None if it changes
    nothing: the same bytes already kept, a worker already holding :data:`MAX_PER_WORKER`
    commits, a new worker when :data:`MAX_MESSAGES` are kept, or a bad signature. Commits of
    one worker for different beacons are all kept: which one counts is the freeze's choice."""
    own = [c for c in kept if c.worker == commit.worker]
    if any(c.encoded == commit.encoded for c in own) or len(own) >= MAX_PER_WORKER:
        return None
    if not own and len({c.worker for c in kept}) >= MAX_MESSAGES:
        return None
    if not _signed(commit):
        return None
    return tuple(sorted([*kept, commit], key=_commit_order))


def _commit_order(msg: Commit | Reveal) -> tuple[bytes, bytes]:
    return msg.worker, msg.encoded


def commit_key(kept: tuple[Commit, ...], commit: Commit) -> bytes:
    """Where a heard commit, not yet in ``kept``, is stored: ``k/‖rid‖worker`` for a worker's
    first, ``k/‖rid‖worker‖H(commit)[:8]`` for each further one (another beacon's)."""
    key = COMMITS + commit.report_id + commit.worker
    if any(c.worker == commit.worker for c in kept):
        key += hashlib.sha256(commit.encoded).digest()[:8]
    return key


def stored_messages(ctx: RoleContext, prefix: bytes, rid: bytes,
                    decode: Callable[[bytes], Signed | None]) -> tuple[Signed, ...]:
    """The messages of one report kept under ``prefix`` (sorted by worker, then encoding)."""
    found = (decode(raw) for _, raw in ctx.store.items(prefix + rid))
    return tuple(sorted((m for m in found if m is not None), key=_commit_order))


def forget(rid: bytes, ctx: RoleContext) -> list[Effect]:
    """Delete every store key of report ``rid`` (not the operator's ``q/`` record)."""
    keys = [key for prefix in (REPORTS, COMMITS, REVEALS, VOTES)
            for key, _ in ctx.store.items(prefix + rid)]
    return [StoreDelete(key) for key in keys]


def resume_all(role_name: str, ctx: RoleContext) -> list[Effect]:
    """One :class:`SpatialResumed` per kept report, delivered at once (the restart path)."""
    rids = [key[len(REPORTS):] for key, _ in ctx.store.items(REPORTS)]
    return [ScheduleAt(ctx.now, SpatialResumed(role_name, rid.hex())) for rid in rids]


def log(event: str, **fields: object) -> LogEvent:
    """A structured log line, fields sorted."""
    return LogEvent(event, tuple(sorted((k, str(v)) for k, v in fields.items())))


# -- instance keys ----------------------------------------------------------------------------


def report_instances(event: Event, role: Role, live: frozenset[str],
                     ctx: RoleContext) -> Iterable[str]:
    """Every live report instance (not the singleton ``""``), sorted."""
    return sorted(key for key in live if key)


def heard_commit_key(event: SpatialHeard, live: frozenset[str]) -> tuple[str, ...]:
    """The live report a heard commit is for (nothing for unknown reports or garbage)."""
    commit = decode_commit(event.raw)
    if commit is None or commit.report_id.hex() not in live:
        return ()
    return (commit.report_id.hex(),)


def deadline_keys(event: Event, role: Role, live: frozenset[str],
                  ctx: RoleContext) -> Iterable[str]:
    """The live report a deadline is for (a deadline outlives a dropped instance)."""
    assert isinstance(event, SpatialDeadline)
    key = event.report_id.hex()
    return (key,) if key in live else ()
