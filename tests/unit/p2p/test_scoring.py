"""Peer scores: reject penalties, decay, bans, and the loopback colocation whitelist."""

from __future__ import annotations

import math
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

import crowdmesh
from crowdmesh.p2p.scoring import (
    BAN_SCORE,
    HALF_LIFE_S,
    PENALTIES,
    LoopbackWhitelistScorer,
    PeerScores,
    make_score_params,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def new_id() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


def test_penalties_follow_the_table_and_decay() -> None:
    clock = Clock()
    scores = PeerScores(clock)
    rec = scores.penalize("p", "bad-tx-sig")
    assert rec.score_after == -PENALTIES["bad-tx-sig"] == scores.score("p")
    scores.penalize("p", "bad-tx-nonce")
    assert scores.score("p") == -(PENALTIES["bad-tx-sig"] + PENALTIES["bad-tx-nonce"])
    assert scores.rejects("p") == {"bad-tx-sig": 1, "bad-tx-nonce": 1}
    clock.t += HALF_LIFE_S
    assert abs(scores.score("p") + 21.0) < 1e-9
    assert scores.score("other") == 0.0


def test_honest_races_and_clock_skew_cost_nothing() -> None:
    scores = PeerScores(Clock())
    for code in ("mempool-duplicate", "mempool-nonce-gap", "bad-block-time-future"):
        scores.penalize("p", code)
    assert scores.score("p") == 0.0
    assert scores.rejects("p") == {"mempool-duplicate": 1, "mempool-nonce-gap": 1,
                                   "bad-block-time-future": 1}


def test_ban_threshold() -> None:
    scores = PeerScores(Clock())
    n = 0
    while not scores.is_banned("p"):
        scores.penalize("p", "bad-block-pow")
        n += 1
        assert n < 100
    assert scores.score("p") <= BAN_SCORE
    assert n == math.ceil(-BAN_SCORE / PENALTIES["bad-block-pow"])


def test_loopback_is_exempt_from_colocation_but_others_are_not() -> None:
    scorer = LoopbackWhitelistScorer(make_score_params(PeerScores(Clock())))
    local = [new_id() for _ in range(6)]
    remote = [new_id() for _ in range(6)]
    for pid in local:
        scorer.add_peer_ip(pid, "127.0.0.1")
    for pid in remote:
        scorer.add_peer_ip(pid, "203.0.113.7")
    assert scorer.ip_colocation_penalty(local[0]) == 0.0
    assert scorer.ip_colocation_penalty(remote[0]) > 0.0


def test_app_score_reaches_the_router_score() -> None:
    scores = PeerScores(Clock())
    scorer = LoopbackWhitelistScorer(make_score_params(scores))
    pid = new_id()
    before = scorer.score(pid, ["t"])
    scores.penalize(pid.to_base58(), "bad-msgpack")
    assert scorer.score(pid, ["t"]) == before - PENALTIES["bad-msgpack"]


def test_every_penalty_key_is_a_code_some_module_raises() -> None:
    """The table cannot drift: each key appears as a string literal outside scoring.py."""
    root = Path(crowdmesh.__file__).parent
    sources = "\n".join(p.read_text() for p in root.rglob("*.py")
                        if p.name != "scoring.py" or p.parent.name != "p2p")
    dead = [code for code in PENALTIES if f'"{code}"' not in sources]
    assert dead == []
    for code in ("bad-tx-chain-id", "bad-block-chain-id", "bad-block-target", "bad-block-pow"):
        assert PENALTIES[code] >= 20.0, code  # chain rejects of made-up data are not free
