"""The key registry: ElGamal public keys bound to accounts, accepted only with a Schnorr PoK.

Payload of ``register-key``: ``[profile name, key (element_bytes big-endian), proof bytes]``.
Invariants:
- A key registers only with a valid proof of knowledge of its secret bound to the sender's
  account id (``verify_key_pok``), so nobody can register h_req = g^x / h_csp (the rogue-key
  attack, DESIGN.md CrowdSFL decisions).
- One key per (account, profile); a second registration is refused (``bad-registry-exists``), so
  a key a task was set up with cannot change under it.
- State key: ``k ‖ account ‖ profile name`` → key bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from crowdmesh.chain.codec import pack
from crowdmesh.chain.contracts.base import Event, TxContext, decode_payload
from crowdmesh.chain.state import State
from crowdmesh.chain.tx import Transaction
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.crypto.proofs import SchnorrProof, verify_key_pok
from crowdmesh.errors import ValidationError

__all__ = ["KIND", "PREFIX", "apply_register_key", "register_key_payload", "registered_key"]

KIND = "register-key"
PREFIX = b"k"


def _state_key(account: bytes, profile: str) -> bytes:
    return PREFIX + account + profile.encode()


def register_key_payload(profile: str, key: int, proof: SchnorrProof) -> bytes:
    """Encode a ``register-key`` payload."""
    size = PROFILES[profile].group.element_bytes
    return pack([profile, int(key).to_bytes(size, "big"), proof.to_bytes()])


def registered_key(get: Callable[[bytes], bytes | None], account: bytes,
                   profile: str) -> int | None:
    """The key ``account`` registered under ``profile`` (``get`` reads state), or None."""
    raw = get(_state_key(account, profile))
    return None if raw is None else int.from_bytes(raw, "big")


def apply_register_key(state: State, tx: Transaction, ctx: TxContext) -> tuple[Event, ...]:
    """Verify the proof and store the key."""
    obj = decode_payload(tx.payload, "bad-registry-payload")
    ok = (isinstance(obj, list) and len(obj) == 3 and type(obj[0]) is str
          and obj[0] in PROFILES and type(obj[1]) is bytes and type(obj[2]) is bytes)
    if not ok or len(obj[1]) != PROFILES[obj[0]].group.element_bytes:
        raise ValidationError("bad-registry-payload")
    profile_name, key_bytes, proof = obj
    if state.get(_state_key(tx.sender, profile_name)) is not None:
        raise ValidationError("bad-registry-exists")
    verify_key_pok(PROFILES[profile_name], tx.sender, int.from_bytes(key_bytes, "big"), proof)
    state.set(_state_key(tx.sender, profile_name), key_bytes)
    return (Event("key-registered", (tx.sender, profile_name)),)
