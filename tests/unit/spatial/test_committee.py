"""Committee freezing (lowest K tickets, skip rules, determinism) and the tally decision."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain.contracts.spatial.committee import Decision, decide, freeze
from crowdmesh.chain.contracts.spatial.protocol import (
    VOTE_CONFIRM,
    Commit,
    Report,
    Reveal,
    commit_value,
    committee_hash,
    selection_input,
)
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import UsageError, ValidationError

_RNG = DeterministicRng(b"spatial-committee")
REQUESTER = AccountKey.generate(_RNG)
WORKERS = tuple(AccountKey.generate(_RNG) for _ in range(7))
BEACON = hashlib.sha256(b"beacon").digest()
OTHER_BEACON = hashlib.sha256(b"another block").digest()
REPORT = Report.create(REQUESTER, "cm-test", "flood", 52_520_008, 13_404_954, 1_700_000_000, 9)
RID = REPORT.report_id
K = 5


def salt(i: int) -> bytes:
    return hashlib.sha256(b"salt" + bytes([i])).digest()


def commit_of(key: AccountKey, vote: int, i: int = 0) -> Commit:
    return Commit.create(key, RID, BEACON, vote, salt(i))


# Worker i commits vote i % 2 under salt(i); tickets come from the VRF, so the ranking is
# whatever the keys give: RANKED is the honest order the tests compare against.
COMMITS = tuple(commit_of(w, i % 2, i) for i, w in enumerate(WORKERS))
TICKETS = {c.worker: c.verify(BEACON) for c in COMMITS}
RANKED = tuple(sorted(COMMITS, key=lambda c: (TICKETS[c.worker], c.worker)))
VOTES = {c.worker: i % 2 for i, c in enumerate(COMMITS)}
SALTS = {c.worker: salt(i) for i, c in enumerate(COMMITS)}
KEY_OF = {w.public: w for w in WORKERS}


def never_used(h: bytes) -> bool:
    return False


def reveal_for(commit: Commit, h_s: bytes, vote: int | None = None) -> Reveal:
    v = VOTES[commit.worker] if vote is None else vote
    return Reveal.create(KEY_OF[commit.worker], RID, v, SALTS[commit.worker], h_s)


def forged_commit(key: AccountKey, proof: bytes, commitment: bytes) -> Commit:
    unsigned = Commit(RID, key.public, proof, commitment, bytes(64))
    return replace(unsigned, sig=key.sign(unsigned.signing_bytes()))


# -- freeze ---------------------------------------------------------------------------------


def test_freeze_takes_the_k_lowest_tickets_in_order() -> None:
    s = freeze(REPORT, COMMITS, BEACON, K, used=never_used)
    assert s == RANKED[:K]
    tickets = [TICKETS[c.worker] for c in s]
    assert tickets == sorted(tickets) and len(set(c.worker for c in s)) == K
    assert max(tickets) < min(TICKETS[c.worker] for c in RANKED[K:])


def test_requester_is_skipped() -> None:
    own = Commit.create(REQUESTER, RID, BEACON, VOTE_CONFIRM, salt(99))
    own.verify(BEACON)  # valid in itself
    s = freeze(REPORT, (own, *COMMITS), BEACON, len(WORKERS), used=never_used)
    assert REQUESTER.public not in {c.worker for c in s}
    with pytest.raises(ValidationError) as err:
        freeze(REPORT, (own, *COMMITS), BEACON, len(WORKERS) + 1, used=never_used)
    assert err.value.code == "spatial-too-few-commits"


def test_duplicate_worker_counts_once() -> None:
    # Same key, same report and beacon: the VRF output is unique, so the ticket is the same
    # and the commit with the smaller encoding is kept whatever the order.
    first = RANKED[0]
    key = KEY_OF[first.worker]
    twin = Commit.create(key, RID, BEACON, 1 - VOTES[first.worker], salt(50))
    assert twin.verify(BEACON) == TICKETS[first.worker]
    keep = min(first, twin, key=lambda c: c.encoded)
    for commits in ((twin, *COMMITS), (*COMMITS, twin)):
        s = freeze(REPORT, commits, BEACON, K, used=never_used)
        assert s == (keep, *RANKED[1:K])


def test_invalid_commits_are_skipped() -> None:
    w0, w1 = RANKED[0], RANKED[1]
    bad = [
        replace(w0, sig=bytes(64)),  # bad signature
        Commit.create(KEY_OF[w0.worker], RID, OTHER_BEACON, 1, salt(60)),  # other beacon
        forged_commit(KEY_OF[w1.worker], w0.vrf_proof, w1.commitment),  # stolen proof
        Commit.create(KEY_OF[w0.worker], bytes(32), BEACON, 1, salt(61)),  # another report
    ]
    honest = RANKED[2:]
    s = freeze(REPORT, (*bad, *honest), BEACON, K, used=never_used)
    assert s == honest[:K]
    with pytest.raises(ValidationError) as err:
        freeze(REPORT, (*bad, *honest[: K - 1]), BEACON, K, used=never_used)
    assert err.value.code == "spatial-too-few-commits"


def test_too_few_commits() -> None:
    for commits in ((), COMMITS[: K - 1]):
        with pytest.raises(ValidationError) as err:
            freeze(REPORT, commits, BEACON, K, used=never_used)
        assert err.value.code == "spatial-too-few-commits"


def test_wrong_beacon_invalidates_every_commit() -> None:
    with pytest.raises(ValidationError) as err:
        freeze(REPORT, COMMITS, OTHER_BEACON, K, used=never_used)
    assert err.value.code == "spatial-too-few-commits"


def test_used_combination_fails_the_round() -> None:
    h_lowest = committee_hash([c.worker for c in RANKED[:K]])
    asked: list[bytes] = []

    def used(h: bytes) -> bool:
        asked.append(h)
        return h == h_lowest

    with pytest.raises(ValidationError) as err:
        freeze(REPORT, COMMITS, BEACON, K, used=used)
    assert err.value.code == "spatial-combination-used"
    assert asked == [h_lowest]  # no fallback to another set


def test_freeze_rejects_a_bad_k() -> None:
    with pytest.raises(UsageError):
        freeze(REPORT, COMMITS, BEACON, 0, used=never_used)


_POOL = (
    *COMMITS,
    Commit.create(KEY_OF[RANKED[0].worker], RID, BEACON, 1, salt(70)),  # duplicate worker
    Commit.create(REQUESTER, RID, BEACON, VOTE_CONFIRM, salt(71)),  # requester
    replace(RANKED[1], sig=bytes(64)),  # invalid
)


@given(st.permutations(_POOL), st.integers(1, len(WORKERS)))
def test_freeze_is_independent_of_input_order(pool: Sequence[Commit], k: int) -> None:
    assert freeze(REPORT, pool, BEACON, k, used=never_used) == \
        freeze(REPORT, _POOL, BEACON, k, used=never_used)


def _reference_freeze(report: Report, commits: Sequence[Commit], k: int) -> tuple[Commit, ...]:
    """The rule as written: verify EVERY commit, keep per worker the valid one with the
    smallest (ticket, encoding), sort by (ticket, worker), take the first k."""
    best: dict[bytes, tuple[int, bytes, Commit]] = {}
    for c in commits:
        if c.report_id != report.report_id or c.worker == report.requester:
            continue
        try:
            entry = (c.verify(BEACON), c.encoded, c)
        except ValidationError:
            continue
        if c.worker not in best or entry[:2] < best[c.worker][:2]:
            best[c.worker] = entry
    ranked = sorted(best.values(), key=lambda e: (e[0], e[2].worker))
    return tuple(c for _, _, c in ranked[:k])


# Invalid commits whose CLAIMED ticket (Gamma of a proof) is low: the lazy freeze must skip
# them, never stop on them, and never pass over a valid lower ticket.
_TRAPS = (
    replace(RANKED[0], sig=bytes(64)),  # bad signature, lowest claimed ticket
    forged_commit(KEY_OF[RANKED[3].worker], RANKED[0].vrf_proof, RANKED[3].commitment),
    Commit.create(KEY_OF[RANKED[2].worker], RID, OTHER_BEACON, 1, salt(72)),  # other beacon
    forged_commit(KEY_OF[RANKED[4].worker], bytes(80), RANKED[4].commitment),  # undecodable
    Commit.create(KEY_OF[RANKED[1].worker], RID, BEACON, 0, salt(73)),  # second valid one
)


@given(st.lists(st.sampled_from(_POOL + _TRAPS), max_size=14), st.integers(1, len(WORKERS)))
def test_lazy_freeze_equals_verifying_every_commit(pool: list[Commit], k: int) -> None:
    expected = _reference_freeze(REPORT, pool, k)
    if len(expected) < k:
        with pytest.raises(ValidationError) as err:
            freeze(REPORT, pool, BEACON, k, used=never_used)
        assert err.value.code == "spatial-too-few-commits"
    else:
        assert freeze(REPORT, pool, BEACON, k, used=never_used) == expected


def test_freeze_does_not_verify_commits_ranked_after_the_kth(monkeypatch) -> None:
    checked: list[bytes] = []
    real = Commit.verify

    def counting(self: Commit, beacon: bytes, proof=None) -> int:
        checked.append(self.worker)
        return real(self, beacon, proof)

    monkeypatch.setattr(Commit, "verify", counting)
    assert freeze(REPORT, COMMITS, BEACON, 3, used=never_used) == RANKED[:3]
    assert checked == [c.worker for c in RANKED[:3]]


# -- decide ---------------------------------------------------------------------------------

S = RANKED[:K]
H_S = committee_hash([c.worker for c in S])


def honest_reveals() -> list[Reveal]:
    """Every member of S opens its own commit (the vote it committed to) for H(S)."""
    return [reveal_for(c, H_S) for c in S]


def test_decide_counts_over_k() -> None:
    members_confirming = [c.worker for c in S if VOTES[c.worker] == VOTE_CONFIRM]
    d = decide(S, honest_reveals())
    assert d.revealed == K
    assert d.confirmers == tuple(sorted(members_confirming))
    assert d.confirmed == (2 * len(members_confirming) > K)
    assert d.committee_hash == H_S


def _committee_voting(votes: Sequence[int]) -> tuple[tuple[Commit, ...], bytes]:
    commits = tuple(commit_of(KEY_OF[c.worker], v, 100 + i)
                    for i, (c, v) in enumerate(zip(S, votes, strict=True)))
    return commits, committee_hash([c.worker for c in commits])


@pytest.mark.parametrize(("votes", "revealing", "confirmed", "n_confirm"), [
    ((1, 1, 1, 0, 0), (1, 1, 1, 1, 1), True, 3),
    ((1, 1, 0, 0, 0), (1, 1, 1, 1, 1), False, 2),
    ((1, 1, 1, 1, 1), (1, 1, 1, 0, 0), True, 3),  # non-revealers do not block a majority
    ((1, 1, 1, 1, 1), (1, 1, 0, 0, 0), False, 2),  # 2 of 2 reveals confirm, but 2 <= K/2
    ((1, 1, 1, 1, 1), (0, 0, 0, 0, 0), False, 0),
    ((0, 0, 0, 0, 0), (1, 1, 1, 1, 1), False, 0),
])
def test_majority_over_k(votes: Sequence[int], revealing: Sequence[int], confirmed: bool,
                         n_confirm: int) -> None:
    commits, h_s = _committee_voting(votes)
    reveals = [Reveal.create(KEY_OF[c.worker], RID, v, salt(100 + i), h_s)
               for i, (c, v, r) in enumerate(zip(commits, votes, revealing, strict=True)) if r]
    d = decide(commits, reveals)
    assert (d.confirmed, len(d.confirmers), d.revealed) == (confirmed, n_confirm, sum(revealing))


def test_reveal_signing_another_committee_is_ignored() -> None:
    commits, h_s = _committee_voting((1, 1, 1, 0, 0))
    other = committee_hash([c.worker for c in RANKED[1 : K + 1]])  # e.g. S minus one, plus next
    reveals = [Reveal.create(KEY_OF[c.worker], RID, v, salt(100 + i), other if i == 0 else h_s)
               for i, (c, v) in enumerate(zip(commits, (1, 1, 1, 0, 0), strict=True))]
    d = decide(commits, reveals)
    assert (d.confirmed, d.revealed, len(d.confirmers)) == (False, 4, 2)
    assert commits[0].worker not in d.confirmers


def test_reveal_with_a_different_vote_is_ignored() -> None:
    commits, h_s = _committee_voting((1, 1, 0, 0, 0))
    reveals = [Reveal.create(KEY_OF[c.worker], RID, 1, salt(100 + i), h_s)  # all claim confirm
               for i, c in enumerate(commits)]
    d = decide(commits, reveals)
    assert (d.confirmed, d.revealed, len(d.confirmers)) == (False, 2, 2)


def test_copied_commit_cannot_be_revealed_by_the_copier() -> None:
    """SPATIAL.md §5 A5 (ii) inside a committee: the copy's slot counts as not confirming."""
    victim, copier = S[0], KEY_OF[S[1].worker]
    proof = ecvrf.prove(copier.seed, selection_input(RID, BEACON))
    copied = forged_commit(copier, proof, victim.commitment)
    assert copied.verify(BEACON) == TICKETS[copier.public]
    assert copied.commitment != commit_value(RID, copier.public, VOTES[victim.worker],
                                             SALTS[victim.worker])
    committee = freeze(REPORT, (copied, *[c for c in COMMITS if c.worker != copier.public]),
                       BEACON, K, used=never_used)
    assert copied in committee
    h_s = committee_hash([c.worker for c in committee])
    victim_reveal = reveal_for(victim, h_s)
    # The copier learned (vote, salt) from the victim's reveal and replays them as its own.
    copy_reveal = Reveal.create(copier, RID, victim_reveal.vote, victim_reveal.salt, h_s)
    d = decide(committee, [victim_reveal, copy_reveal])
    assert d.revealed == 1 and copier.public not in d.confirmers


def test_outsider_and_repeated_reveals() -> None:
    outsider = RANKED[K]
    reveals = [reveal_for(outsider, H_S), *honest_reveals(), *honest_reveals()]
    d = decide(S, reveals)
    assert d.revealed == K and outsider.worker not in d.confirmers
    assert d == decide(S, reversed(reveals))
    assert d == decide(tuple(reversed(S)), reveals)  # member order is irrelevant


def test_reveal_for_another_report_is_ignored() -> None:
    c = S[0]
    wrong = Reveal.create(KEY_OF[c.worker], bytes(32), VOTES[c.worker], SALTS[c.worker], H_S)
    assert decide(S, [wrong]).revealed == 0


def test_decide_rejects_a_malformed_committee() -> None:
    for committee in ((), (S[0], S[0], S[1])):
        with pytest.raises(UsageError):
            decide(committee, [])


def test_decision_constructor_checks() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    Decision(True, (a, b), 3, H_S)
    for args in (((b, a), 3), ((a,), 0), ((a, a), 3), ((bytes(31),), 1)):
        with pytest.raises(UsageError):
            Decision(False, args[0], args[1], H_S)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Decision(False, (), 0, bytes(31))
