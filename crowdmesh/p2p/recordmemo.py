"""Remember signed peer records py-libp2p already accepted, instead of checking them per RPC.

py-libp2p 0.8.1 attaches the sender's signed peer record (an Envelope) to every pubsub RPC, and
the receiver consumes it twice per RPC (``Pubsub.continuously_read_stream`` and
``GossipSub.handle_rpc`` both call ``maybe_consume_signed_record``): two protobuf parses, two
Ed25519 verifications and a rewrite of the peer's addresses each time, though a peer sends the
same bytes in every RPC. Measured in a busy CrowdSFL daemon: 6–11 % of its CPU.

Invariants:
- :func:`install` replaces the function in the two py-libp2p modules that call it (libp2p is
  pinned to 0.8.1 in pyproject.toml) with :func:`consume_memoised`; it is idempotent.
- A memo hit returns True only for the very bytes the original accepted from the same peer,
  while the peerstore still holds the envelope that acceptance stored, and for at most
  :data:`MEMO_S` seconds; anything else (a first sight, a rejected record, a newer record
  stored meanwhile, an expired entry) goes to the original, so every decision the original
  would make differently is still its own. Rejections are never remembered.
- At most :data:`MEMO_PEERS` entries (least recently used first out).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.gossipsub as _gossipsub
import libp2p.pubsub.pubsub as _pubsub
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.utils import maybe_consume_signed_record as _original

__all__ = ["MEMO_PEERS", "MEMO_S", "consume_memoised", "install"]

MEMO_S = 60.0  # why: the original also refreshes the peer's address TTL (2 h) on each call
MEMO_PEERS = 1024

# (our host id + peer id, record bytes) → (the envelope our peerstore held after acceptance,
# when)
_memo: OrderedDict[tuple[bytes, bytes], tuple[object, float]] = OrderedDict()


def _stored_envelope(host: IHost, peer_id: ID) -> object:
    state = getattr(host.get_peerstore(), "peer_record_map", {}).get(peer_id)
    return None if state is None else getattr(state, "envelope", None)


def consume_memoised(msg: Any, host: IHost, peer_id: ID,
                     consume: Callable[[Any, IHost, ID], bool] = _original) -> bool:
    """``maybe_consume_signed_record`` (same arguments and answer), remembering acceptances."""
    if not msg.HasField("senderRecord"):
        return True
    # why the host in the key: tests run several hosts in one process, each with its peerstore
    key = (host.get_id().to_bytes() + peer_id.to_bytes(), bytes(msg.senderRecord))
    hit = _memo.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[1] < MEMO_S and hit[0] is _stored_envelope(host, peer_id):
        _memo.move_to_end(key)
        return True
    _memo.pop(key, None)
    if not consume(msg, host, peer_id):
        return False
    envelope = _stored_envelope(host, peer_id)
    if envelope is not None:
        _memo[key] = (envelope, now)
        while len(_memo) > MEMO_PEERS:
            _memo.popitem(last=False)
    return True


def install() -> None:
    """Route py-libp2p's pubsub record consumption through :func:`consume_memoised`."""
    for module in (_pubsub, _gossipsub):
        module.maybe_consume_signed_record = consume_memoised  # type: ignore[attr-defined]
