"""Peer scores: invalid data lowers a peer's score, by a table keyed on stable reject codes.

Invariants:
- A score starts at 0, only rejects lower it, and it decays back towards 0 with a half-life,
  so a peer that stops misbehaving recovers; time is passed in (``now``, seconds).
- The application score feeds gossipsub's P6 term, so the router's own gates (graylist,
  gossip, publish) also see it; a peer at or below :data:`BAN_SCORE` is reported as banned.
- Loopback addresses are whitelisted from gossipsub's IP-colocation penalty (P7): a local
  testnet runs every peer on 127.0.0.1, which would otherwise look like a Sybil cluster.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass

from libp2p.peer.id import ID
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams

__all__ = [
    "BAN_SCORE",
    "DEFAULT_PENALTY",
    "PENALTIES",
    "LoopbackWhitelistScorer",
    "PeerScores",
    "RejectRecord",
    "make_score_params",
]

DEFAULT_PENALTY = 10.0
BAN_SCORE = -500.0
HALF_LIFE_S = 600.0
MAX_TRACKED_PEERS = 4096

# Why these weights: forged signatures, bad PoW and a wrong difficulty target cost the sender
# nothing to mass-produce and cost us CPU, so they weigh most; stale nonces also happen to honest
# peers (races, reorgs), so they weigh least.
PENALTIES: dict[str, float] = {
    "oversize": 20.0,
    "bad-msgpack": 20.0,
    "bad-msg-shape": 20.0,
    "unknown-msg-type": 20.0,
    "bad-msg-field-type": 20.0,
    "wrong-topic": 20.0,
    "bad-tx-sig": 40.0,
    "bad-block-pow": 40.0,
    "bad-block-target": 40.0,
    "bad-chain-id": 20.0,
    "bad-tx-chain-id": 20.0,
    "bad-block-chain-id": 20.0,
    "bad-tx-nonce": 2.0,
    # a peer whose head differs from ours can trip these honestly (rarely), so they weigh little
    "mempool-gap-too-far": 2.0,
    "mempool-sender-cannot-pay": 2.0,
    "mempool-duplicate": 0.0,
    "mempool-nonce-gap": 0.0,
    "mempool-conflict": 0.0,
    "mempool-full": 0.0,
    "mempool-sender-full": 0.0,
    # A clock running ahead is not malice: the block is not marked invalid and is taken once
    # our clock catches up (Bitcoin does not punish time-too-new either).
    "bad-block-time-future": 0.0,
    # Likewise a spatial report stamped outside our ±(T_c + T_r) window: clocks drift.
    "bad-spatial-ts": 0.0,
    "sync-bad-reply": 20.0,
    "sync-oversize": 20.0,
    "sync-tx-mismatch": 20.0,
    # Announced txids it then could not serve: cheap to fake (it ties up a fetch), but an
    # honest peer can lose a transaction to a block or an eviction meanwhile.
    "sync-tx-unserved": 2.0,
}
"""Penalty per reject code; every key is a code some module raises (a test greps for it)."""


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """One rejected message, kept for status output and tests."""

    peer: str
    code: str
    score_after: float


class PeerScores:
    """Application-level scores per peer id (base58 text)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._score: dict[str, tuple[float, float]] = {}
        self._rejects: dict[str, dict[str, int]] = {}

    def score(self, peer: str) -> float:
        """Return the current (decayed) score of ``peer``; 0 for unknown peers."""
        value, since = self._score.get(peer, (0.0, 0.0))
        if value == 0.0:
            return 0.0
        elapsed = max(0.0, self._clock() - since)
        return value * math.pow(0.5, elapsed / HALF_LIFE_S)

    def penalize(self, peer: str, code: str) -> RejectRecord:
        """Lower ``peer``'s score by the penalty for reject ``code``; return the record."""
        if peer not in self._score and len(self._score) >= MAX_TRACKED_PEERS:
            self._forget_mildest()
        new = self.score(peer) - PENALTIES.get(code, DEFAULT_PENALTY)
        self._score[peer] = (new, self._clock())
        counts = self._rejects.setdefault(peer, {})
        counts[code] = counts.get(code, 0) + 1
        return RejectRecord(peer, code, new)

    def rejects(self, peer: str) -> dict[str, int]:
        """Return how many messages of each reject code ``peer`` sent."""
        return dict(self._rejects.get(peer, {}))

    def is_banned(self, peer: str) -> bool:
        """True when ``peer`` misbehaved enough that we stop talking to it."""
        return self.score(peer) <= BAN_SCORE

    def for_libp2p(self, peer_id: ID) -> float:
        """The P6 application score callback for gossipsub."""
        return self.score(peer_id.to_base58())

    def _forget_mildest(self) -> None:
        mildest = max(self._score, key=lambda p: self._score[p][0])
        del self._score[mildest]
        self._rejects.pop(mildest, None)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class LoopbackWhitelistScorer(PeerScorer):
    """gossipsub's scorer with loopback peers exempt from the IP-colocation penalty."""

    def ip_colocation_penalty(self, peer: ID) -> float:
        ip = self.ip_by_peer.get(peer)
        if ip is not None and _is_loopback(ip):
            return 0.0
        penalty: float = super().ip_colocation_penalty(peer)
        return penalty


def make_score_params(scores: PeerScores) -> ScoreParams:
    """Score parameters: invalid messages (P4), our reject table (P6) and colocation (P7)."""
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=10.0, cap=1000.0, decay=0.99),
        p6_appl_slack_weight=1.0,
        p6_appl_slack_decay=1.0,
        p7_ip_colocation_weight=5.0,
        p7_ip_colocation_threshold=3,
        publish_threshold=-2000.0,
        gossip_threshold=-1000.0,
        graylist_threshold=-4000.0,
        app_specific_score_fn=scores.for_libp2p,
    )
