"""The spatial contract on a real in-memory chain: one test per validator rule and per attack
of SPATIAL.md §5 that the chain can check (A1, A2 i–iii, A3, A4, A5, A7, A8, A9, A10), each
asserting its stable reject code, plus the rewards of §3 and the supply invariant."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from crowdmesh.chain import MemoryStore, make_transaction
from crowdmesh.chain.chain import Chain
from crowdmesh.chain.contracts.spatial import geo
from crowdmesh.chain.contracts.spatial.contract import (
    KIND_REJECT,
    KIND_TALLY,
    reject_payload,
    tally_payload,
)
from crowdmesh.chain.contracts.spatial.protocol import (
    VOTE_CONFIRM,
    VOTE_REJECT,
    Commit,
    Report,
    Reveal,
    committee_hash,
)
from crowdmesh.chain.rules import burned_fee
from crowdmesh.chain.spatial_params import SpatialParams
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import ValidationError
from tests.unit.chain.helpers import ADDRS, KEYS, MINERS, T0, make_genesis, mine_block

RNG = DeterministicRng(b"spatial-contract")
WORKERS = [AccountKey.generate(RNG) for _ in range(6)]
REQUESTER, OTHER = KEYS[0], KEYS[1]
PARAMS = SpatialParams(committee_k=3, commit_window_s=60, reveal_window_s=30, pair_cap=2,
                       pair_window_blocks=100, dup_distance_m=50, dup_window_s=3600)
CLT = (35_227_100, -80_843_100)  # Charlotte, NC


def _salt(i: int) -> bytes:
    return hashlib.sha256(b"salt" + i.to_bytes(4, "big")).digest()


@dataclass
class World:
    """A chain plus helpers to run one report through commit, reveal and tally."""

    chain: Chain
    nonces: dict[bytes, int] = field(default_factory=dict)
    clock: int = T0

    def block(self, *txs, advance: int = 10) -> None:
        self.clock += advance
        tpl = self.chain.build_block_template(MINERS[0], txs, self.clock)
        assert tpl.skipped == (), tpl.skipped
        self.chain.import_block(mine_block(tpl.block), self.clock)

    def try_block(self, tx, advance: int = 10) -> str:
        """The reject code a block holding ``tx`` gets (the template skips it)."""
        tpl = self.chain.build_block_template(MINERS[0], (tx,), self.clock + advance)
        assert [t for t, _ in tpl.skipped] == [tx.txid]
        self.nonces[tx.sender] -= 1  # it never landed: the sender's next tx reuses the nonce
        return tpl.skipped[0][1]

    def tx(self, kind: str, payload: bytes, key: AccountKey = REQUESTER):
        nonce = self.nonces.get(key.public, 0)
        self.nonces[key.public] = nonce + 1
        return make_transaction(key, self.chain.genesis.chain_id, nonce, kind, payload,
                                minimum_fee(payload, 1))

    def report(self, point=CLT, kind: str = "flood", key: AccountKey = REQUESTER,
               ts: int | None = None) -> tuple[Report, bytes]:
        """A report anchored at the head, and its beacon (after one more block)."""
        report = Report.create(key, self.chain.genesis.chain_id, kind, point[0], point[1],
                               self.clock if ts is None else ts, self.chain.height)
        self.block()
        return report, self.chain.get_hash_at(report.anchor + 1)


def world(**overrides) -> World:
    params = SpatialParams(**{**PARAMS.to_obj(), **overrides,
                              "report_types": PARAMS.report_types})
    funded = sorted([(a, 10**9) for a in ADDRS[:2]])
    return World(Chain.open(MemoryStore(), make_genesis(spatial=params, alloc=tuple(funded))))


def votes_for(world: World, report: Report, beacon: bytes, votes: dict[int, int]):
    """Commits of the given workers (index → vote), the frozen S, and its reveals."""
    commits = {i: Commit.create(WORKERS[i], report.report_id, beacon, v, _salt(i))
               for i, v in votes.items()}
    ranked = sorted(commits.items(), key=lambda kv: (kv[1].verify(beacon), kv[1].worker))
    chosen = ranked[:world.chain.genesis.spatial.committee_k]
    h_s = committee_hash([c.worker for _, c in chosen])
    reveals = [Reveal.create(WORKERS[i], report.report_id, votes[i], _salt(i), h_s)
               for i, _ in chosen]
    return list(commits.values()), reveals, h_s


def confirmed_tally(w: World, report: Report, beacon: bytes, workers=(0, 1, 2)):
    commits, reveals, _ = votes_for(w, report, beacon, dict.fromkeys(workers, VOTE_CONFIRM))
    w.clock += PARAMS.commit_window_s + PARAMS.reveal_window_s
    return w.tx(KIND_TALLY, tally_payload(report, commits, reveals))


def supply(chain: Chain) -> int:
    return sum(a.balance for _, a in chain.iter_accounts())


def test_a_confirmed_report_pays_requester_and_confirmers_exactly():
    w = world()
    report, beacon = w.report()
    before = {k.public: w.chain.balance(k.public) for k in [REQUESTER, *WORKERS[:3]]}
    w.block(confirmed_tally(w, report, beacon), advance=0)
    receipt = w.chain.tx_receipt(w.chain.get_block_by_height(w.chain.height).txs[0].txid)
    paid = {e.fields[0]: e.fields[1] for e in receipt.events if e.name == "spatial-reward"}
    # first report, first confirmations: Φ = 1; K = 3, m = 2, N_w = 3
    assert paid == {REQUESTER.public: 60_000, **{k.public: 20_000 for k in WORKERS[:3]}}
    assert receipt.events[0].name == "report-confirmed"
    tally = w.chain.get_block_by_height(w.chain.height).txs[0]
    for key, amount in paid.items():
        fee = tally.fee if key == REQUESTER.public else 0
        assert w.chain.balance(key) == before[key] + amount - fee
    genesis = w.chain.genesis
    minted = sum(genesis.reward(h) for h in range(w.chain.height + 1))
    burned = burned_fee(tally.fee, genesis)
    assert supply(w.chain) == genesis.alloc_total() + minted + sum(paid.values()) - burned


def test_rewards_follow_each_accounts_history_of_confirmed_reports():
    w = world()
    first, beacon = w.report()
    w.block(confirmed_tally(w, first, beacon, (0, 1, 2)), advance=0)
    far = (CLT[0] + 20_000, CLT[1])  # ≈ 2.2 km north
    second, beacon = w.report(point=far)
    w.block(confirmed_tally(w, second, beacon, (0, 1, 3)), advance=0)
    receipt = w.chain.tx_receipt(w.chain.get_block_by_height(w.chain.height).txs[0].txid)
    paid = {e.fields[0]: e.fields[1] for e in receipt.events if e.name == "spatial-reward"}
    d = geo.distance_m(*far, *CLT)
    assert paid[REQUESTER.public] == 100_000 * 600 * (2 * d + 2000) // ((d + 2000) * 1000)
    assert paid[WORKERS[3].public] == 20_000  # its first confirmation
    assert paid[WORKERS[0].public] == 100_000 * 300 * (2 * d + 2000) * 2 // (
        (d + 2000) * 1000 * 3)


def test_a10_a_report_without_a_complete_bundle_never_reaches_the_chain():
    w = world()
    report, beacon = w.report()
    commits, reveals, _ = votes_for(w, report, beacon, {0: 1, 1: 1})  # 2 < K
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, reveals))
    assert w.try_block(tx) == "spatial-too-few-commits"
    assert w.try_block(w.tx(KIND_TALLY, b"\x93\x01\x02\x03")) == "bad-spatial-payload"


def test_a_majority_counted_over_k_is_needed():
    w = world()
    report, beacon = w.report()
    commits, reveals, _ = votes_for(w, report, beacon, {0: 1, 1: 0, 2: 0})
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, reveals))
    assert w.try_block(tx) == "spatial-not-confirmed"
    # one confirm revealed, one confirm never revealed: 1 of K, not 1 of 1
    commits, reveals, _ = votes_for(w, report, beacon, {0: 1, 1: 1, 2: 0})
    silent = next(r for r in reveals if r.vote == VOTE_CONFIRM)
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, [r for r in reveals if r != silent]))
    assert w.try_block(tx) == "spatial-not-confirmed"


@pytest.mark.parametrize(("offset_m", "kind", "later_s", "code"), [
    (20, "flood", 600, "spatial-duplicate"),      # same type, 20 m, 10 min later
    (20, "fire", 600, None),                      # another type
    (20, "flood", 3_700, None),                   # after T_dup
    (60, "flood", 600, None),                     # farther than d_dup
])
def test_a1_duplicate_reports_are_refused_across_keys(offset_m, kind, later_s, code):
    w = world()
    first, beacon = w.report()
    w.block(confirmed_tally(w, first, beacon), advance=0)
    point = (CLT[0] + offset_m * 9, CLT[1])  # 1e-6° of latitude ≈ 0.111 m
    w.clock = first.ts + later_s
    second, beacon = w.report(point=point, kind=kind, key=OTHER, ts=w.clock)
    tx = confirmed_tally(w, second, beacon, (3, 4, 5))
    if code is None:
        w.block(tx, advance=0)
    else:
        assert w.try_block(tx, advance=0) == code


def test_a2_the_same_combination_is_never_used_twice():
    w = world()
    first, beacon = w.report()
    w.block(confirmed_tally(w, first, beacon), advance=0)
    second, beacon = w.report(point=(CLT[0] + 50_000, CLT[1]))
    tx = confirmed_tally(w, second, beacon)  # the same three workers again
    assert w.try_block(tx, advance=0) == "spatial-combination-used"


def test_a2_the_pair_cap_limits_how_often_two_workers_serve_together():
    w = world(pair_cap=1)
    first, beacon = w.report()
    w.block(confirmed_tally(w, first, beacon, (0, 1, 2)), advance=0)
    second, beacon = w.report(point=(CLT[0] + 50_000, CLT[1]))
    tx = confirmed_tally(w, second, beacon, (0, 1, 3))  # a new set, but 0 and 1 again
    assert w.try_block(tx, advance=0) == "spatial-pair-cap"


def test_a2_a7_a_committee_that_is_not_the_lowest_tickets_gets_no_valid_reveals():
    w = world()
    report, beacon = w.report()
    votes = {i: VOTE_CONFIRM for i in range(4)}
    commits, _, h_s = votes_for(w, report, beacon, votes)
    ranked = sorted(commits, key=lambda c: (c.verify(beacon), c.worker))
    # the aggregator drops the lowest ticket and signs reveals for the next three
    others = ranked[1:]
    h_other = committee_hash([c.worker for c in others])
    index = {k.public: i for i, k in enumerate(WORKERS)}
    reveals = [Reveal.create(WORKERS[index[c.worker]], report.report_id, VOTE_CONFIRM,
                             _salt(index[c.worker]), h_other) for c in others]
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, reveals))
    assert w.try_block(tx) == "spatial-not-confirmed"  # validators freeze the lowest K
    assert h_other != h_s


def test_a3_a8_commits_with_a_ticket_for_another_beacon_do_not_count():
    w = world()
    report, _ = w.report()
    ground = hashlib.sha256(b"a beacon the requester chose").digest()
    commits, reveals, _ = votes_for(w, report, ground, dict.fromkeys(range(3), 1))
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, reveals))
    assert w.try_block(tx) == "spatial-too-few-commits"


def test_a4_the_requester_never_sits_in_its_own_committee():
    w = world()
    report, beacon = w.report()
    commits, reveals, _ = votes_for(w, report, beacon, {0: 1, 1: 1})
    own = Commit.create(REQUESTER, report.report_id, beacon, VOTE_CONFIRM, _salt(99))
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, [*commits, own], reveals))
    assert w.try_block(tx) == "spatial-too-few-commits"


def test_a5_a_reveal_must_open_its_own_commit():
    w = world()
    report, beacon = w.report()
    commits, reveals, h_s = votes_for(w, report, beacon, {0: 1, 1: 0, 2: 0})
    index = {k.public: i for i, k in enumerate(WORKERS)}
    turned = [Reveal.create(WORKERS[index[r.worker]], report.report_id, VOTE_CONFIRM,
                            r.salt, h_s) for r in reveals]  # the rejecters now "confirm"
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, turned))
    assert w.try_block(tx) == "spatial-not-confirmed"


def test_the_beacon_block_must_exist_below_the_tally():
    w = world()
    report = Report.create(REQUESTER, w.chain.genesis.chain_id, "flood", *CLT, w.clock,
                           w.chain.height)  # block anchor + 1 is not mined yet
    commits = [Commit.create(k, report.report_id, b"\x00" * 32, 1, _salt(i))
               for i, k in enumerate(WORKERS[:3])]
    w.clock += 100
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, []))
    assert w.try_block(tx) == "spatial-no-beacon"


def test_a_tally_is_checked_against_block_time_windows():
    w = world()
    report, beacon = w.report()
    commits, reveals, _ = votes_for(w, report, beacon, dict.fromkeys(range(3), 1))
    tx = w.tx(KIND_TALLY, tally_payload(report, commits, reveals))
    assert w.try_block(tx, advance=0) == "spatial-too-early"
    assert w.try_block(tx, advance=10 * (60 + 30)) == "spatial-too-late"


def test_a_report_is_confirmed_once_and_a_reject_cannot_censor_it():
    w = world()
    report, beacon = w.report()
    _, _, h_s = votes_for(w, report, beacon, dict.fromkeys(range(3), 1))
    w.block(w.tx(KIND_REJECT, reject_payload(report.report_id, h_s), key=OTHER))
    assert w.try_block(w.tx(KIND_REJECT, reject_payload(report.report_id, h_s))) == (
        "spatial-decided")
    tally = confirmed_tally(w, report, beacon)
    w.block(tally, advance=0)  # the front-running reject did not block the true tally
    again = w.tx(KIND_TALLY, tally.payload)
    assert w.try_block(again) == "spatial-decided"


def test_a9_the_spatial_mint_per_block_is_bounded():
    w = world(issuance_per_block=100_000)  # less than one tally's 60k + 3 × 20k
    report, beacon = w.report()
    assert w.try_block(confirmed_tally(w, report, beacon), advance=0) == "spatial-issuance-cap"


def test_a_tally_in_a_block_that_a_reorg_removes_is_undone():
    w = world()
    report, beacon = w.report()
    base = w.chain.height
    balance = w.chain.balance(WORKERS[0].public)
    w.block(confirmed_tally(w, report, beacon), advance=0)
    assert w.chain.balance(WORKERS[0].public) == balance + 20_000
    fork = Chain.open(MemoryStore(), w.chain.genesis)
    for h in range(1, base + 1):
        fork.import_block(w.chain.get_block_by_height(h), w.clock)
    for i in range(2):  # a heavier branch without the tally
        tpl = fork.build_block_template(MINERS[1], (), w.clock + i)
        block = mine_block(tpl.block)
        fork.import_block(block, w.clock + 10)
        w.chain.import_block(block, w.clock + 10)
    assert w.chain.balance(WORKERS[0].public) == balance


def test_every_validator_reaches_the_same_decision_from_the_bytes_alone():
    w = world()
    report, beacon = w.report()
    tx = confirmed_tally(w, report, beacon)
    w.block(tx, advance=0)
    replica = Chain.open(MemoryStore(), w.chain.genesis)
    for h in range(1, w.chain.height + 1):
        replica.import_block(w.chain.get_block_by_height(h), w.clock)
    assert replica.head_hash == w.chain.head_hash
    assert replica.state_accumulator == w.chain.state_accumulator


def test_a_report_off_the_globe_cannot_even_be_made():
    assert VOTE_REJECT == 0
    with pytest.raises(ValidationError) as info:
        Report.create(REQUESTER, "cm-test", "flood", 91_000_000, 0, T0, 1)
    assert info.value.code == "bad-spatial-point"


def test_the_decision_record_and_earnings_are_readable_from_state():
    from crowdmesh.chain.codec import unpack

    w = world()
    report, beacon = w.report()
    w.block(confirmed_tally(w, report, beacon), advance=0)
    record = unpack(w.chain.state_get(b"xr" + report.report_id), 4096)
    assert record[:2][0] == 1 and record[3:8] == [
        "flood", CLT[0], CLT[1], report.ts, REQUESTER.public]
    assert sorted(record[8]) == sorted(k.public for k in WORKERS[:3])
    assert unpack(w.chain.state_get(b"xe" + REQUESTER.public), 128) == [60_000, 0, 1, 0]
    assert unpack(w.chain.state_get(b"xe" + WORKERS[0].public), 128) == [0, 20_000, 0, 1]


def test_the_supply_check_sees_this_chain_and_its_spatial_rewards(supply_is_conserved):
    from tests.unit.spatial.conftest import supply_terms

    w = world()
    report, beacon = w.report()
    w.block(confirmed_tally(w, report, beacon), advance=0)
    assert w.chain in supply_is_conserved  # the autouse fixture checks it after this test
    terms = supply_terms(w.chain)
    assert terms["spatial_rewards"] == terms["earned_records"] == 60_000 + 3 * 20_000
    assert terms["burned"] > 0 and terms["block_rewards"] > 0
