"""The ciphertext checks that run on chain: a worker's bundle, and the shape of the CSP's list.

What runs on chain and why (DESIGN.md "CrowdSFL protocol"):
- **Worker bundle (full check).** The blob parses as a bundle of exactly ``bundle_chunks``
  chunks (``sfl-bundle-shape``), every component is in the QR subgroup (``sfl-bundle-element``:
  a non-residue would survive blinding and tag the bundle, and would make the CSP's batch fail
  for everyone), and the proof of encryption randomness verifies for this sender, task and
  round (``bad-randproof``). These must be consensus rules: a copied or malformed submission
  would otherwise take a slot, and only the chain can refuse it before the CSP acts. The cost
  is one multi-exponentiation over c1 plus one Legendre symbol per component (about 0.4 s of
  CPU for a 1 MiB model, measured).
- **CSP blinded bundle (shape only).** Each listed blob is complete, starts with its 16-byte
  blinded id, holds exactly ``bundle_chunks`` chunks in three columns and ends with a proof of
  plausible length (``sfl-blinded-shape``). The batched DLEQ proof inside is verified by the
  requester before it decrypts (``crypto.csp.requester_open``), not here: it needs two
  multi-exponentiations and three columns of subgroup checks per bundle (seconds per round for
  every validator on every block connect), it protects only the requester, and a requester who
  finds a bad proof simply does not answer, so the task times out and every coin is refunded.
"""

from __future__ import annotations

from crowdmesh.chain.contracts.blob import Get, blob_bytes, blob_head, blob_info
from crowdmesh.chain.contracts.crowdsfl.records import Task
from crowdmesh.chain.contracts.crowdsfl.spec import BLINDED_HEADER_BYTES, TaskSpec
from crowdmesh.crypto.elgamal import Bundle
from crowdmesh.crypto.groups import PROFILES
from crowdmesh.crypto.randproof import RandStatement, verify_randomness
from crowdmesh.errors import DecodeError, ValidationError

__all__ = ["check_blinded_blob", "check_submission"]

_PROOF_BYTES = (17, 16 + 512)  # a DleqProof's encoding: 16-byte e ‖ 1..512-byte s


def _blob(get: Get, name: bytes) -> bytes:
    data = blob_bytes(get, name)
    if data is None:
        raise ValidationError("sfl-blob-missing", name.hex())
    return data


def check_submission(get: Get, task: Task, sender: bytes, round_: int, name: bytes,
                     proof: bytes) -> None:
    """Every on-chain rule of a worker's encrypted bundle (see the module docstring)."""
    spec = task.spec
    profile = PROFILES[spec.profile]
    try:
        bundle = Bundle.from_bytes(profile.group, _blob(get, name), spec.bundle_chunks)
    except DecodeError as exc:
        raise ValidationError("sfl-bundle-shape", exc.code) from None
    if len(bundle) != spec.bundle_chunks:
        raise ValidationError("sfl-bundle-shape", f"{len(bundle)} != {spec.bundle_chunks} chunks")
    try:
        bundle.validate(profile.group)
    except ValidationError as exc:
        raise ValidationError("sfl-bundle-element", exc.code) from None
    verify_randomness(profile, RandStatement(sender, task.task_id, round_, bundle), proof)


def check_blinded_blob(get: Get, spec: TaskSpec, blinded_id: bytes, name: bytes) -> None:
    """The shape of one CSP output bundle (``crypto.csp.ProvenBundle.to_bytes``)."""
    info, head = blob_info(get, name), blob_head(get, name)
    if info is None or head is None:
        raise ValidationError("sfl-blob-missing", name.hex())
    body = BLINDED_HEADER_BYTES + 3 * spec.bundle_chunks * spec.element_bytes
    count = int.from_bytes(head[17:21], "big") if len(head) >= 21 else -1
    ok = (head[:17] == bytes([len(blinded_id)]) + blinded_id and count == spec.bundle_chunks
          and body + _PROOF_BYTES[0] <= info[2] <= body + _PROOF_BYTES[1])
    if not ok:
        raise ValidationError("sfl-blinded-shape", blinded_id.hex())
