"""Each attack test of SPATIAL.md §5 must FAIL with its defence switched off (issue 10: "one
test per attack A1–A10, each failing without its defence").

Every case monkeypatches one defence away (the rest of the code untouched), runs the attack
test's function, and expects its assertion to break. The patched stand-ins are the defended
functions minus exactly the check under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import crowdmesh.chain.contracts.spatial.committee as committee
import crowdmesh.chain.contracts.spatial.contract as contract
import crowdmesh.chain.contracts.spatial.protocol as protocol
import crowdmesh.chain.rules as rules
import crowdmesh.chain.template as template
import crowdmesh.roles.spatial_worker as spatial_worker
from crowdmesh.errors import ValidationError
from tests.unit.chain import test_rejects
from tests.unit.spatial import test_contract as tc
from tests.unit.spatial import test_roles as tr


def _no_pair_cap(state: Any, workers: Any, p: Any, ctx: Any) -> bytes:
    h_s = protocol.committee_hash(workers)
    if state.get(contract._key(b"c", h_s)) is not None:
        raise ValidationError("spatial-combination-used")
    return h_s


def _votes_for_any_h_s(committee_: Any, reveals: Any, h_s: bytes) -> dict[bytes, int]:
    by_worker = {c.worker: c for c in committee_}
    votes = {}
    for reveal in reveals:
        if reveal.worker in by_worker:
            try:
                reveal.verify(by_worker[reveal.worker])
            except ValidationError:
                continue
            votes[reveal.worker] = reveal.vote
    return votes


def _claimed_with_requester(report: Any, commits: Any) -> list[Any]:
    out = []
    for c in commits:
        if c.report_id == report.report_id:
            proof = c.decoded_proof()
            out.append((protocol.ticket(proof.beta), c.worker, c.encoded, c, proof))
    return sorted(out, key=lambda e: e[:3])


def _reveal_sig_only(self: Any, commit: Any) -> None:
    if not protocol.verify_signature(self.worker, self.signing_bytes(), self.sig):
        raise ValidationError("bad-spatial-reveal-sig")


def _refusal_without(code: str) -> Callable[..., str | None]:
    real = spatial_worker.refusal

    def refusal(report: Any, ctx: Any) -> str | None:
        why = real(report, ctx)
        return None if why == code else why

    return refusal


def _freeze_any_used(report: Any, commits: Any, beacon: bytes, k: int, *, used: Any) -> Any:
    return committee.freeze(report, commits, beacon, k, used=lambda _h: False)


# (attack, [(object, attribute, stand-in)], the attack test)
CASES: list[tuple[str, list[tuple[Any, str, Any]], Callable[..., None]]] = [
    ("A1 duplicate rule", [(contract, "check_duplicate", lambda *a: None)],
     lambda tmp: tc.test_a1_duplicate_reports_are_refused_across_keys(
         20, "flood", 600, "spatial-duplicate")),
    ("A2(i) used combinations", [(contract, "freeze", _freeze_any_used),
                                 (contract, "_check_combination",
                                  lambda s, w, p, c: protocol.committee_hash(w))],
     lambda tmp: tc.test_a2_the_same_combination_is_never_used_twice()),
    ("A2(ii) pair cap", [(contract, "_check_combination", _no_pair_cap)],
     lambda tmp: tc.test_a2_the_pair_cap_limits_how_often_two_workers_serve_together()),
    ("A2(iii)/A7 reveals sign the validators' H(S)",
     [(committee, "_counted_votes", _votes_for_any_h_s)],
     lambda tmp: tc.test_a2_a7_a_committee_that_is_not_the_lowest_tickets_gets_no_valid_reveals()),
    ("A3/A8 VRF proof over the chain's beacon",
     [(protocol.Commit, "verify",
       lambda self, beacon, proof=None: protocol.ticket(self.decoded_proof().beta))],
     lambda tmp: tc.test_a3_a8_commits_with_a_ticket_for_another_beacon_do_not_count()),
    ("A3 client distance check", [(spatial_worker, "refusal",
                                   _refusal_without("spatial-out-of-range"))],
     lambda tmp: tr.test_a_worker_outside_r_never_commits(tmp)),
    ("A4 requester skipped at freeze", [(committee, "_claimed", _claimed_with_requester)],
     lambda tmp: tc.test_a4_the_requester_never_sits_in_its_own_committee()),
    ("A4 client refuses its own report", [(spatial_worker, "refusal",
                                           _refusal_without("spatial-own-report"))],
     lambda tmp: tr.test_the_requesters_own_node_never_commits_to_its_report(tmp)),
    ("A5 reveal opens its commitment", [(protocol.Reveal, "verify", _reveal_sig_only)],
     lambda tmp: tc.test_a5_a_reveal_must_open_its_own_commit()),
    ("A6 miner cap", [(rules, "check_miner_cap", lambda *a: None),
                      (template, "check_miner_cap", lambda *a: None)],
     lambda tmp: test_rejects.test_over_cap_miner()),
    ("A9 spatial issuance cap", [(contract, "_count_mint", lambda *a: None)],
     lambda tmp: tc.test_a9_the_spatial_mint_per_block_is_bounded()),
    ("A10 K valid commits required",
     [(contract, "freeze", lambda r, cs, b, k, used: tuple(committee._lowest(r, cs, b, k)))],
     lambda tmp: tc.test_a10_a_report_without_a_complete_bundle_never_reaches_the_chain()),
]


@pytest.mark.parametrize(("patches", "attack"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_attack_test_fails_without_its_defence(patches, attack, monkeypatch, tmp_path):
    attack(tmp_path)  # with the defence: the attack test passes
    for obj, name, stand_in in patches:
        monkeypatch.setattr(obj, name, stand_in)
    undefended = tmp_path / "undefended"
    undefended.mkdir()
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        attack(undefended)
