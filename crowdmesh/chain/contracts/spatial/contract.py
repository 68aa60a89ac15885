"""The spatial contract: a committee's decision on a report, checked by every validator.

Two transaction kinds (SPATIAL.md §2.3, DESIGN.md "Spatial protocol"):

- ``spatial-tally`` — a CONFIRMED report. Payload ``[report, [commit…], [reveal…]]`` (each the
  message's canonical encoding). Nothing about a report reaches the chain before this.
- ``spatial-reject`` — a REJECTED report leaves only ``[report_id, H(S)]``: no location, no
  reward. **Decision** (departs from SPATIAL.md's optional REJECTED rule): a reject carries no
  proof, so anyone who saw the commits could send one; if it used up the id or the combination,
  it would censor the true tally (front-run it with a reject). So a reject only records the
  outcome; a valid confirmed tally for the same id still lands and replaces it.

Invariants (each rule has its own reject code, checked in this order):
1. The report decodes, is signed by its requester, has a known type and a valid point
   (``bad-spatial-payload``, the protocol module's codes, ``spatial-unknown-type``).
2. It was not confirmed before (``spatial-decided``).
3. Its beacon exists: the hash of the block at ``anchor + 1``, an ancestor of this block
   (``spatial-no-beacon``); tickets are VRF outputs over ``report_id ‖ beacon``, so neither the
   requester (who fixed ``anchor`` before that block existed) nor a worker can grind them.
4. Block time: at least the commit window after the report, and not older than both windows
   plus :data:`LATE_SLACK` (``spatial-too-early``, ``spatial-too-late``).
5. S is exactly the K lowest valid tickets of the commits in the bundle, without the requester
   (``committee.freeze``); its combination H(S) was never used (``spatial-combination-used``),
   and no two of its workers were together in ``pair_cap`` tallies of the last
   ``pair_window_blocks`` blocks (``spatial-pair-cap``).
6. The reveals sign H(S) and open their commits; the report is confirmed iff confirms > K/2
   counted over K (``spatial-not-confirmed`` otherwise: submit ``spatial-reject`` instead).
7. No confirmed report of the same type lies within ``dup_distance_m`` and ``dup_window_s``
   (``spatial-duplicate``), whoever reported it (checked right after rule 4, before the
   committee: a duplicate is the report's own fault, whatever its committee).
8. Rewards (SPATIAL.md §3) are computed here from chain data only: the requester's and each
   confirmer's previous confirmed reports; nothing in the payload names an amount. The block's
   spatial mint stays within ``issuance_per_block`` (``spatial-issuance-cap``).

State (prefix ``x``):
- ``x r‖report_id``: the decision (confirmed: ``[1, H(S), height, type, lat, lon, ts,
  requester, [confirmers]]``; rejected: ``[0, H(S), height]``);
- ``x e‖account``: ``[earned as requester, earned as worker, reports, confirmations]``;
- ``x c‖H(S)``: used combinations; ``x p‖a‖b``: heights at which workers a < b served together;
- ``x q‖account`` / ``x w‖account``: the points of an account's confirmed reports as requester /
  as confirming worker;
- ``x d‖type‖band``: confirmed reports per 0.01° latitude band for the duplicate rule (integers,
  not H3: see ``_BAND_E6``);
- ``x i``: the current block's spatial mint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crowdmesh.chain.codec import expect_array, expect_list, pack, unpack
from crowdmesh.chain.contracts.base import Event, TxContext, decode_payload
from crowdmesh.chain.contracts.spatial import geo, rewards
from crowdmesh.chain.contracts.spatial.committee import Decision, decide, freeze
from crowdmesh.chain.contracts.spatial.protocol import Commit, Reveal, committee_hash
from crowdmesh.chain.contracts.spatial.protocol import Report as SpatialReport
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.errors import DecodeError, ValidationError

__all__ = [
    "KIND_REJECT",
    "KIND_TALLY",
    "LATE_SLACK",
    "MAX_BUNDLE",
    "PREFIX",
    "apply_reject",
    "apply_tally",
    "check_duplicate",
    "reject_payload",
    "tally_payload",
]

KIND_TALLY = "spatial-tally"
KIND_REJECT = "spatial-reject"
PREFIX = b"x"
MAX_BUNDLE = 256  # commits or reveals in one bundle
LATE_SLACK = 2  # a tally may come this many times both windows after its report
_CONFIRMED, _REJECTED = 1, 0
# Duplicate index: latitude bands of 0.01° (≥ 1,110 m), computed in integers. Why not H3 cells:
# h3 computes cells in floating point, and a state key two platforms disagreed on at a cell
# boundary would split the chain; an integer band cannot.
_BAND_E6 = 10_000


def tally_payload(report: SpatialReport, commits: Sequence[Commit],
                  reveals: Sequence[Reveal]) -> bytes:
    """Encode a ``spatial-tally`` payload."""
    return pack([report.encode(), [c.encode() for c in commits], [r.encode() for r in reveals]])


def reject_payload(report_id: bytes, committee: bytes) -> bytes:
    """Encode a ``spatial-reject`` payload."""
    return pack([report_id, committee])


# -- state helpers --------------------------------------------------------------------------


def _key(tag: bytes, *parts: bytes) -> bytes:
    return PREFIX + tag + b"".join(parts)


def _get_list(state: State, key: bytes) -> list[Any]:
    raw = state.get(key)
    return [] if raw is None else list(unpack(raw, 1 << 24))


def _params(ctx: TxContext) -> SpatialParams:
    assert ctx.genesis is not None, "contracts run with the genesis in their context"
    return ctx.genesis.spatial


# -- decoding -------------------------------------------------------------------------------


def _decode_tally(payload: bytes) -> tuple[SpatialReport, list[Commit], list[Reveal]]:
    obj = decode_payload(payload, "bad-spatial-payload")
    try:
        raw_report, raw_commits, raw_reveals = expect_array(obj, 3, "tally")
        commits = [Commit.decode(c) for c in expect_list(raw_commits, MAX_BUNDLE, "commits")]
        reveals = [Reveal.decode(r) for r in expect_list(raw_reveals, MAX_BUNDLE, "reveals")]
        report = SpatialReport.decode(raw_report)
    except DecodeError as exc:
        raise ValidationError("bad-spatial-payload", exc.code) from exc
    return report, commits, reveals


# -- rules ----------------------------------------------------------------------------------


def _check_report(report: SpatialReport, p: SpatialParams, ctx: TxContext) -> None:
    report.verify()
    if report.chain_id != ctx.chain_id:
        raise ValidationError("spatial-chain-id")
    if report.type not in p.report_types:
        raise ValidationError("spatial-unknown-type", report.type)
    geo.check_point(report.lat_e6, report.lon_e6)


def _decision_of(state: State, report_id: bytes) -> int | None:
    raw = state.get(_key(b"r", report_id))
    return None if raw is None else int(unpack(raw, 256)[0])


def _check_unconfirmed(state: State, report_id: bytes) -> None:
    if _decision_of(state, report_id) == _CONFIRMED:
        raise ValidationError("spatial-decided", report_id.hex())


def _beacon(report: SpatialReport, ctx: TxContext) -> bytes:
    beacon = ctx.hash_at(report.anchor + 1)
    if beacon is None:
        raise ValidationError("spatial-no-beacon", f"no block {report.anchor + 1} below this one")
    return beacon


def _check_time(report: SpatialReport, p: SpatialParams, ctx: TxContext) -> None:
    if ctx.timestamp < report.ts + p.commit_window_s:
        raise ValidationError("spatial-too-early", "the commit window is still open")
    if ctx.timestamp > report.ts + LATE_SLACK * (p.commit_window_s + p.reveal_window_s):
        raise ValidationError("spatial-too-late")


def _check_combination(state: State, workers: Sequence[bytes], p: SpatialParams,
                       ctx: TxContext) -> bytes:
    h_s = committee_hash(workers)
    if state.get(_key(b"c", h_s)) is not None:
        raise ValidationError("spatial-combination-used", h_s.hex())
    low = ctx.height - p.pair_window_blocks
    for a, b in _pairs(workers):
        recent = [h for h in _get_list(state, _key(b"p", a, b)) if h > low]
        if len(recent) >= p.pair_cap:
            raise ValidationError("spatial-pair-cap", f"{a.hex()[:16]}+{b.hex()[:16]}")
    return h_s


def _pairs(workers: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    ordered = sorted(workers)
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]]


def _record_combination(state: State, workers: Sequence[bytes], h_s: bytes, p: SpatialParams,
                        ctx: TxContext) -> None:
    state.set(_key(b"c", h_s), pack(ctx.height))
    low = ctx.height - p.pair_window_blocks
    for a, b in _pairs(workers):
        key = _key(b"p", a, b)
        state.set(key, pack([h for h in _get_list(state, key) if h > low] + [ctx.height]))


def _band(lat_e6: int) -> int:
    return lat_e6 // _BAND_E6


def _dup_bands(report: SpatialReport, p: SpatialParams) -> range:
    # a band is ≥ 1,110 m of latitude, so d_dup // 1000 + 1 bands each side cover d_dup
    reach = p.dup_distance_m // 1000 + 1
    return range(_band(report.lat_e6) - reach, _band(report.lat_e6) + reach + 1)


def check_duplicate(get: Callable[[bytes], bytes | None], report: SpatialReport,
                    p: SpatialParams) -> None:
    """The duplicate rule over state reads ``get`` (the contract's, or a role's chain view).

    Raises:
        ValidationError: ``spatial-duplicate`` if a confirmed report of the same type lies
            within ``dup_distance_m`` and ``dup_window_s``.
    """
    for band in _dup_bands(report, p):
        raw = get(_dup_key(report.type, band))
        for lat, lon, ts in [] if raw is None else unpack(raw, 1 << 24):
            near = geo.distance_m(report.lat_e6, report.lon_e6, lat, lon) <= p.dup_distance_m
            if near and abs(report.ts - ts) <= p.dup_window_s:
                raise ValidationError("spatial-duplicate", f"a {report.type} report {ts}")


def _dup_key(kind: str, band: int) -> bytes:
    return _key(b"d", kind.encode(), b"\x00", band.to_bytes(4, "big", signed=True))


def _record_report(state: State, report: SpatialReport, p: SpatialParams) -> None:
    key = _dup_key(report.type, _band(report.lat_e6))
    # why prune: only reports within the duplicate window can ever match again
    kept = [e for e in _get_list(state, key) if report.ts - e[2] <= p.dup_window_s]
    state.set(key, pack([*kept, [report.lat_e6, report.lon_e6, report.ts]]))


# -- rewards --------------------------------------------------------------------------------


def _history_reward(state: State, key: bytes, report: SpatialReport) -> tuple[int, int]:
    """(D, N) for the report from an account's previous confirmed points, and record it."""
    raw = state.get(key)
    points = [] if raw is None else list(unpack(raw, 1 << 24))
    d = geo.sum_distances_m(report.lat_e6, report.lon_e6, points)
    state.set(key, _append_packed(raw, points, [report.lat_e6, report.lon_e6]))
    return d, len(points) + 1


_FIXARRAY, _ARRAY16, _ARRAY32 = 0x90, 0xDC, 0xDD  # msgpack array headers


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([_FIXARRAY | n])
    if n < 1 << 16:
        return bytes([_ARRAY16]) + n.to_bytes(2, "big")
    return bytes([_ARRAY32]) + n.to_bytes(4, "big")


def _append_packed(raw: bytes | None, items: list[Any], item: Any) -> bytes:
    """``pack([*items, item])`` where ``raw`` holds ``items`` as read by ``unpack``.

    Why: an account's history grows by one point per report, and re-packing all of it cost as
    much as the distance sum. ``unpack`` only returns what re-packs to exactly ``raw``, so the
    canonical encoding of the longer array is its new header, ``raw``'s items, then ``item``.
    """
    if raw is None or not items or raw[0] not in (_FIXARRAY | len(items), _ARRAY16, _ARRAY32):
        return pack([*items, item])
    body = raw[len(_array_header(len(items))):]
    return _array_header(len(items) + 1) + body + pack(item)


def _pay(state: State, report: SpatialReport, decision: Decision,
         p: SpatialParams) -> list[tuple[bytes, int, str]]:
    d_r, n_r = _history_reward(state, _key(b"q", report.requester), report)
    paid = [(report.requester, rewards.requester_reward(p, d_r, n_r), "requester")]
    n_w = len(decision.confirmers)
    for worker in decision.confirmers:
        d_w, n_c = _history_reward(state, _key(b"w", worker), report)
        paid.append((worker, rewards.worker_reward(p, d_w, n_c, n_w), "worker"))
    for account, amount, _ in paid:
        state.credit(account, amount)
    return paid


def _add_earnings(state: State, paid: list[tuple[bytes, int, str]]) -> None:
    """Per account: earned as requester, as worker, and how many times each (for ``rewards``)."""
    for account, amount, role in paid:
        key = _key(b"e", account)
        raw = state.get(key)
        earned = [0, 0, 0, 0] if raw is None else list(unpack(raw, 128))
        slot = 0 if role == "requester" else 1
        earned[slot] += amount
        earned[slot + 2] += 1
        state.set(key, pack(earned))


def _count_mint(state: State, amount: int, p: SpatialParams, ctx: TxContext) -> None:
    raw = state.get(_key(b"i"))
    height, minted = (0, 0) if raw is None else tuple(unpack(raw, 64))
    total = (minted if height == ctx.height else 0) + amount
    if total > p.issuance_per_block:
        raise ValidationError("spatial-issuance-cap", f"{total} > {p.issuance_per_block}")
    state.set(_key(b"i"), pack([ctx.height, total]))


# -- the two contracts ----------------------------------------------------------------------


def apply_tally(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """Check a confirmed report's bundle against every rule, record it, pay the rewards."""
    p = _params(ctx)
    report, commits, reveals = _decode_tally(tx.payload)
    _check_report(report, p, ctx)
    _check_unconfirmed(state, report.report_id)
    beacon = _beacon(report, ctx)
    _check_time(report, p, ctx)
    check_duplicate(state.get, report, p)  # before the committee: the report's own fault
    committee = freeze(report, commits, beacon, p.committee_k,
                       used=lambda h: state.get(_key(b"c", h)) is not None)
    workers = [c.worker for c in committee]
    h_s = _check_combination(state, workers, p, ctx)
    decision = decide(committee, reveals)
    if not decision.confirmed:
        raise ValidationError("spatial-not-confirmed", "submit spatial-reject instead")
    state.set(_key(b"r", report.report_id), pack([
        _CONFIRMED, h_s, ctx.height, report.type, report.lat_e6, report.lon_e6, report.ts,
        report.requester, list(decision.confirmers)]))
    _record_combination(state, workers, h_s, p, ctx)
    _record_report(state, report, p)
    paid = _pay(state, report, decision, p)
    _add_earnings(state, paid)
    _count_mint(state, sum(amount for _, amount, _ in paid), p, ctx)
    return (Event("report-confirmed", (report.report_id, report.requester, report.type,
                                       report.lat_e6, report.lon_e6, report.ts, h_s)),
            *(Event("spatial-reward", (account, amount, role)) for account, amount, role in paid))


def apply_reject(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """Record that a report was rejected (once, and never over a confirmation); nothing else."""
    obj = decode_payload(tx.payload, "bad-spatial-payload")
    ok = (isinstance(obj, list) and len(obj) == 2 and all(type(v) is bytes and len(v) == 32
                                                          for v in obj))
    if not ok:
        raise ValidationError("bad-spatial-payload", "want [report_id, H(S)]")
    report_id, h_s = obj
    if _decision_of(state, report_id) is not None:
        raise ValidationError("spatial-decided", report_id.hex())
    state.set(_key(b"r", report_id), pack([_REJECTED, h_s, ctx.height]))
    return (Event("report-rejected", (report_id, h_s)),)
