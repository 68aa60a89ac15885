"""Freezing the committee S of a report and deciding its outcome (SPATIAL.md §2.3 steps 4–6).

Invariants:
- ``freeze`` is a pure function of the SET of commits it is given: input order never changes
  its result, so every node (and every validator re-checking a tally bundle) computes the same
  S from the same commits.
- S holds exactly K commits, each verified against the beacon (signature and VRF proof), for
  the report, from K distinct workers none of whom is the requester, and they are the K lowest
  by (ticket, worker). Invalid commits are skipped, never fatal; fewer than K valid ones fail
  the round (``spatial-too-few-commits``).
- A worker counts once. The VRF output is unique per (key, input), so two valid commits of one
  worker for one report carry the same ticket; the one with the smaller wire encoding is kept,
  which makes the choice independent of arrival order.
- Lazy verification, same result: every commit's proof is decoded for the ticket it CLAIMS
  (beta of its Gamma, no point arithmetic), the commits are sorted by (claimed ticket, worker,
  encoding), and signatures and proofs are verified in that order until K distinct workers are
  valid. A valid proof's ticket is exactly its claimed one, so no valid commit with a lower
  ticket is ever passed over; invalid ones are skipped wherever they sort. Commits ranked after
  the K-th valid one are not verified: they cannot change S.
- "Never the same combination": if H(S) of the lowest K is already used, the round fails
  (``spatial-combination-used``). Another set is never picked instead, since that would let
  colluders steer S by withholding commits.
- ``decide`` counts over K, not over reveals: a member that does not reveal, or whose reveal
  does not open its commit in S or signs another H(S), counts as not confirming. Confirmed iff
  2·#confirm > K ([P] Alg. 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from crowdmesh.chain.contracts.spatial.protocol import (
    HASH_SIZE,
    VOTE_CONFIRM,
    Commit,
    Report,
    Reveal,
    committee_hash,
    ticket,
)
from crowdmesh.crypto.ecvrf import DecodedProof
from crowdmesh.errors import UsageError, ValidationError

__all__ = ["Decision", "decide", "freeze"]

TOO_FEW = "spatial-too-few-commits"
COMBINATION_USED = "spatial-combination-used"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one report's committee vote.

    Attributes:
        confirmed: strictly more than half of the K members revealed a confirm vote.
        confirmers: the confirming members' keys, sorted bytewise.
        revealed: how many members' reveals counted (confirm or reject).
        committee_hash: H(S), the value every counted reveal signed.
    """

    confirmed: bool
    confirmers: tuple[bytes, ...]
    revealed: int
    committee_hash: bytes

    def __post_init__(self) -> None:
        ok = (type(self.confirmed) is bool and type(self.revealed) is int
              and len(self.confirmers) <= self.revealed
              and all(len(w) == HASH_SIZE for w in self.confirmers)
              and list(self.confirmers) == sorted(set(self.confirmers))
              and len(self.committee_hash) == HASH_SIZE)
        if not ok:
            raise UsageError("bad-spatial-decision", repr(self))


def _claimed(report: Report, commits: Iterable[Commit]) -> list[tuple[int, bytes, bytes,
                                                                      Commit, DecodedProof]]:
    """Commits for ``report`` (not the requester's) with a decodable proof, sorted by
    (claimed ticket, worker, encoding); nothing is verified yet."""
    out = []
    for commit in commits:
        if commit.report_id != report.report_id or commit.worker == report.requester:
            continue
        try:
            proof = commit.decoded_proof()
        except ValidationError:
            continue  # a proof that does not even decode only disqualifies its commit
        out.append((ticket(proof.beta), commit.worker, commit.encoded, commit, proof))
    out.sort(key=lambda e: e[:3])
    return out


def _lowest(report: Report, commits: Iterable[Commit], beacon: bytes, k: int) -> list[Commit]:
    """The first ``k`` distinct workers' valid commits in (ticket, worker, encoding) order."""
    chosen: dict[bytes, Commit] = {}
    for _, worker, _, commit, proof in _claimed(report, commits):
        if worker in chosen:
            continue
        try:
            commit.verify(beacon, proof)
        except ValidationError:
            continue  # a bad signature or proof only disqualifies that commit
        chosen[worker] = commit
        if len(chosen) == k:
            break
    return list(chosen.values())


def freeze(report: Report, commits: Iterable[Commit], beacon: bytes, k: int, *,
           used: Callable[[bytes], bool]) -> tuple[Commit, ...]:
    """Return the committee S: the K lowest-ticket valid commits, in ticket order.

    ``report`` is assumed already verified; ``beacon`` is the hash of block anchor + 1;
    ``used(h)`` says whether a committee hash is already in chain state.

    Raises:
        ValidationError: ``spatial-too-few-commits`` with fewer than K valid distinct
            workers; ``spatial-combination-used`` if H(S) is already used.
        UsageError: ``bad-spatial-arg`` if ``k`` < 1 or ``beacon`` is not 32 bytes.
    """
    if k < 1:
        raise UsageError("bad-spatial-arg", f"k must be positive, got {k}")
    chosen = tuple(_lowest(report, commits, beacon, k))
    if len(chosen) < k:
        raise ValidationError(TOO_FEW, f"{len(chosen)} valid commits, need {k}")
    if used(committee_hash([c.worker for c in chosen])):
        raise ValidationError(COMBINATION_USED, report.report_id.hex())
    return chosen


def _counted_votes(committee: Sequence[Commit], reveals: Iterable[Reveal],
                   h_s: bytes) -> dict[bytes, int]:
    """worker -> vote for each member whose reveal signs ``h_s`` and opens its commit."""
    by_worker = {c.worker: c for c in committee}
    votes: dict[bytes, int] = {}
    for reveal in reveals:
        commit = by_worker.get(reveal.worker)
        if commit is None or reveal.committee != h_s:
            continue
        try:
            reveal.verify(commit)
        except ValidationError:
            continue
        votes[reveal.worker] = reveal.vote  # the commitment fixes the vote: repeats agree
    return votes


def decide(committee: Sequence[Commit], reveals: Iterable[Reveal]) -> Decision:
    """Tally the reveals of committee S (as returned by :func:`freeze`).

    Reveals from outsiders, for another H(S), with a bad signature, or that do not open the
    member's commitment are ignored; the member then counts as not confirming.

    Raises:
        UsageError: ``bad-spatial-arg`` for an empty committee or one with a repeated worker.
    """
    workers = [c.worker for c in committee]
    if not workers or len(set(workers)) != len(workers):
        raise UsageError("bad-spatial-arg", "a committee is non-empty with distinct workers")
    h_s = committee_hash(workers)
    votes = _counted_votes(committee, reveals, h_s)
    confirmers = tuple(sorted(w for w, v in votes.items() if v == VOTE_CONFIRM))
    return Decision(confirmed=2 * len(confirmers) > len(workers), confirmers=confirmers,
                    revealed=len(votes), committee_hash=h_s)
