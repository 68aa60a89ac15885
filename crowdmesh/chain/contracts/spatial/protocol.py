"""Spatial crowdsourcing messages: Report, Commit and Reveal (SPATIAL.md §2.3 steps 1, 3, 5).

Invariants:
- Each message travels as a fixed-order canonical msgpack array (``crowdmesh.chain.codec``)::

      Report  [chain_id, type, lat_e6, lon_e6, ts, anchor, requester, sig]
      Commit  [report_id, worker, vrf_proof, commitment, sig]
      Reveal  [report_id, worker, vote, salt, committee, sig]

  ``decode`` checks the size cap first, then the exact shape and types (``DecodeError``), then
  the constructor's field rules (``ValidationError``).
- A constructed message has well-formed fields: ids, keys, salts and hashes are 32 bytes,
  signatures 64, VRF proofs 80; the point passes ``geo.check_point`` (``bad-spatial-point``);
  ``ts`` and ``anchor`` are u64; ``vote`` is 0 or 1; the type is 1..32 characters of
  ``[a-z0-9-]`` (the genesis alphabet). Whether signatures and proofs hold is decided only
  by ``verify``.
- Every signature covers ``domain tag ‖ pack(all fields but the signature)``. The six tags are
  distinct and none is a prefix of another, so a signature made for one purpose never verifies
  for another.
- ``report_id = SHA-256(DOMAIN_REPORT ‖ pack(unsigned fields))``: it covers the chain id and the
  anchor but not the signature, so re-signing a report cannot change its id.
- A worker's account key is also its ECVRF key (same RFC 8032 seed, same public key), so
  ``Commit.worker`` is both the signer and the VRF key of its ticket. The VRF input binds the
  report and the beacon (hash of block ``anchor + 1``), which did not exist when the requester
  signed, so the requester cannot grind the lottery (SPATIAL.md §5 A8).
- The commitment binds report id, worker key, vote and a fresh 32-byte salt, so a worker that
  copies another's commitment can never open it (§5 A5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crowdmesh.chain.codec import (
    U64_MAX,
    expect_array,
    expect_bytes,
    expect_text,
    expect_uint,
    pack,
    unpack,
)
from crowdmesh.chain.contracts.spatial.geo import check_point
from crowdmesh.chain.tx import MAX_CHAIN_ID_LEN
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.identity import Signer, verify_signature
from crowdmesh.errors import DecodeError, UsageError, ValidationError

__all__ = [
    "DOMAIN_COMMIT",
    "DOMAIN_COMMITTEE",
    "DOMAIN_REPORT",
    "DOMAIN_REVEAL",
    "DOMAIN_SALT",
    "DOMAIN_SEL",
    "DOMAIN_VOTE",
    "HASH_SIZE",
    "MAX_COMMIT_BYTES",
    "MAX_REPORT_BYTES",
    "MAX_REVEAL_BYTES",
    "MAX_TYPE_LEN",
    "SALT_SIZE",
    "VOTE_CONFIRM",
    "VOTE_REJECT",
    "Commit",
    "Report",
    "Reveal",
    "commit_salt",
    "commit_value",
    "committee_hash",
    "selection_input",
    "ticket",
]

VOTE_CONFIRM = 1
VOTE_REJECT = 0

DOMAIN_REPORT = b"crowdmesh/spatial/report/1"
DOMAIN_COMMIT = b"crowdmesh/spatial/commit/1"
DOMAIN_REVEAL = b"crowdmesh/spatial/reveal/1"
DOMAIN_VOTE = b"crowdmesh/spatial/vote/1"
DOMAIN_SEL = b"crowdmesh/spatial/sel/1"
DOMAIN_COMMITTEE = b"crowdmesh/spatial/committee/1"
DOMAIN_SALT = b"crowdmesh/spatial/salt/1"

HASH_SIZE = 32  # report ids, beacons, commitments, H(S); also account keys
SALT_SIZE = 32
SIG_SIZE = 64
MAX_TYPE_LEN = 32
_TYPE_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_TICKET_BYTES = 8

# Largest honest encodings: Report 197, Commit 251, Reveal 204 bytes (pinned in the tests).
MAX_REPORT_BYTES = 256
MAX_COMMIT_BYTES = 256
MAX_REVEAL_BYTES = 256

BAD_FIELD = "bad-spatial-field"


# -- field checks (constructors) ------------------------------------------------------------


def _check_bytes(value: bytes, size: int, what: str) -> None:
    if type(value) is not bytes or len(value) != size:
        raise ValidationError(BAD_FIELD, f"{what}: want {size} bytes")


def _check_u64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise ValidationError(BAD_FIELD, f"{what}: want a u64")


def _check_vote(vote: int) -> None:
    if type(vote) is not int or vote not in (VOTE_REJECT, VOTE_CONFIRM):
        raise ValidationError(BAD_FIELD, "vote: want 0 or 1")


def _check_text(chain_id: str, type_: str) -> None:
    if type(chain_id) is not str or not 0 < len(chain_id) <= MAX_CHAIN_ID_LEN \
            or not chain_id.isascii():
        raise ValidationError("bad-chain-id", repr(chain_id))
    if type(type_) is not str or not 0 < len(type_) <= MAX_TYPE_LEN \
            or not set(type_) <= _TYPE_ALPHABET:
        raise ValidationError(BAD_FIELD, f"type: {type_!r}")


def _expect_int(obj: Any, what: str) -> int:
    """An int (not a bool); the constructor checks its range."""
    if type(obj) is not int:
        raise DecodeError("bad-field", f"{what}: want an int")
    return obj


def _arg(value: bytes, size: int, what: str) -> bytes:
    """A local caller's argument of a fixed size (a wrong one is a bug, not remote data)."""
    if len(value) != size:
        raise UsageError("bad-spatial-arg", f"{what}: want {size} bytes, got {len(value)}")
    return value


# -- hashes and lottery ---------------------------------------------------------------------


def selection_input(report_id: bytes, beacon: bytes) -> bytes:
    """The VRF input alpha = DOMAIN_SEL ‖ report_id ‖ beacon (SPATIAL.md §2.3 step 2).

    Raises:
        UsageError: ``bad-spatial-arg`` unless both are 32 bytes.
    """
    return DOMAIN_SEL + _arg(report_id, HASH_SIZE, "report_id") + _arg(beacon, HASH_SIZE, "beacon")


def ticket(vrf_output: bytes) -> int:
    """The lottery ticket: the first 8 bytes of the VRF output beta, big-endian (lower wins).

    Raises:
        UsageError: ``bad-spatial-arg`` unless ``vrf_output`` is a 64-byte beta.
    """
    return int.from_bytes(_arg(vrf_output, ecvrf.BETA_SIZE, "vrf_output")[:_TICKET_BYTES], "big")


def commit_salt(key: Signer, report_id: bytes) -> bytes:
    """A worker's salt for ``report_id``: SHA-256 of its own signature over the id.

    Ed25519 signing is deterministic, so a restarted worker finds the same salt again (nothing
    to keep), and no one else can compute it before the reveal; each report gets its own, so a
    salt is never reused (a reused salt/vote pair would disclose other commits).
    """
    return hashlib.sha256(DOMAIN_SALT + key.sign(DOMAIN_SALT + report_id)).digest()


def commit_value(report_id: bytes, worker: bytes, vote: int, salt: bytes) -> bytes:
    """SHA-256(DOMAIN_VOTE ‖ report_id ‖ worker ‖ [vote] ‖ salt), the hidden vote.

    Raises:
        UsageError: ``bad-spatial-arg`` for a wrong-size argument or a vote other than 0/1.
    """
    if type(vote) is not int or vote not in (VOTE_REJECT, VOTE_CONFIRM):
        raise UsageError("bad-spatial-arg", f"vote: want 0 or 1, got {vote!r}")
    parts = (DOMAIN_VOTE, _arg(report_id, HASH_SIZE, "report_id"),
             _arg(worker, HASH_SIZE, "worker"), bytes([vote]), _arg(salt, SALT_SIZE, "salt"))
    return hashlib.sha256(b"".join(parts)).digest()


def committee_hash(workers: Sequence[bytes]) -> bytes:
    """H(S) = SHA-256(DOMAIN_COMMITTEE ‖ the sorted 32-byte worker keys), order-independent.

    Duplicates are not removed: a committee from ``committee.freeze`` never has any.

    Raises:
        UsageError: ``bad-spatial-arg`` for a key that is not 32 bytes.
    """
    keys = sorted(_arg(w, HASH_SIZE, "worker") for w in workers)
    return hashlib.sha256(DOMAIN_COMMITTEE + b"".join(keys)).digest()


# -- messages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """A requester's signed claim that an event of ``type`` happened at a point.

    ``anchor`` is the chain height the requester saw (h_tip); the lottery beacon is the hash
    of the block at ``anchor + 1``. ``ts`` is unix seconds.
    """

    chain_id: str
    type: str
    lat_e6: int
    lon_e6: int
    ts: int
    anchor: int
    requester: bytes
    sig: bytes
    report_id: bytes = field(init=False, repr=False, compare=False)
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_text(self.chain_id, self.type)
        check_point(self.lat_e6, self.lon_e6)
        _check_u64(self.ts, "ts")
        _check_u64(self.anchor, "anchor")
        _check_bytes(self.requester, HASH_SIZE, "requester")
        _check_bytes(self.sig, SIG_SIZE, "sig")
        unsigned = self.signing_bytes()
        object.__setattr__(self, "report_id", hashlib.sha256(unsigned).digest())
        object.__setattr__(self, "encoded", pack(self.to_list()))

    def signing_bytes(self) -> bytes:
        """DOMAIN_REPORT ‖ pack(fields but sig): what the requester signs and report_id hashes."""
        return _report_preimage(self.chain_id, self.type, self.lat_e6, self.lon_e6, self.ts,
                                self.anchor, self.requester)

    def to_list(self) -> list[Any]:
        """The wire array (to nest in larger objects, e.g. a tally transaction)."""
        return [self.chain_id, self.type, self.lat_e6, self.lon_e6, self.ts, self.anchor,
                self.requester, self.sig]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return self.encoded

    @classmethod
    def from_list(cls, obj: Any) -> Report:
        """Build from an already-unpacked wire array.

        Raises:
            DecodeError: ``bad-shape`` or ``bad-field`` (wrong shape, type or length).
            ValidationError: ``bad-spatial-point``, ``bad-spatial-field``, ``bad-chain-id``.
        """
        chain_id, type_, lat, lon, ts, anchor, requester, sig = expect_array(obj, 8, "report")
        return cls(
            chain_id=expect_text(chain_id, "report.chain_id", MAX_CHAIN_ID_LEN),
            type=expect_text(type_, "report.type", MAX_TYPE_LEN),
            lat_e6=_expect_int(lat, "report.lat_e6"),
            lon_e6=_expect_int(lon, "report.lon_e6"),
            ts=expect_uint(ts, "report.ts"),
            anchor=expect_uint(anchor, "report.anchor"),
            requester=expect_bytes(requester, "report.requester", HASH_SIZE),
            sig=expect_bytes(sig, "report.sig", SIG_SIZE),
        )

    @classmethod
    def decode(cls, data: bytes) -> Report:
        """Strictly decode wire bytes (size cap ``MAX_REPORT_BYTES`` first).

        Raises:
            DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
                ``bad-field``.
            ValidationError: as :meth:`from_list`.
        """
        return cls.from_list(unpack(data, MAX_REPORT_BYTES))

    @classmethod
    def create(cls, key: Signer, chain_id: str, type: str, lat_e6: int, lon_e6: int,
               ts: int, anchor: int) -> Report:
        """Sign a report as ``key``'s account.

        Raises:
            ValidationError: for out-of-range fields, as the constructor.
        """
        _check_text(chain_id, type)  # before hashing: pack() of a bad value would not raise ours
        check_point(lat_e6, lon_e6)
        _check_u64(ts, "ts")
        _check_u64(anchor, "anchor")
        sig = key.sign(_report_preimage(chain_id, type, lat_e6, lon_e6, ts, anchor, key.public))
        return cls(chain_id, type, lat_e6, lon_e6, ts, anchor, key.public, sig)

    def verify(self) -> None:
        """Check the requester's signature.

        Raises:
            ValidationError: ``bad-spatial-report-sig``.
        """
        if not verify_signature(self.requester, self.signing_bytes(), self.sig):
            raise ValidationError("bad-spatial-report-sig", self.report_id.hex())


def _report_preimage(chain_id: str, type_: str, lat_e6: int, lon_e6: int, ts: int, anchor: int,
                     requester: bytes) -> bytes:
    return DOMAIN_REPORT + pack([chain_id, type_, lat_e6, lon_e6, ts, anchor, requester])


@dataclass(frozen=True, slots=True)
class Commit:
    """A worker's lottery proof and hidden vote for one report (SPATIAL.md §2.3 step 3)."""

    report_id: bytes
    worker: bytes
    vrf_proof: bytes
    commitment: bytes
    sig: bytes
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_bytes(self.report_id, HASH_SIZE, "report_id")
        _check_bytes(self.worker, HASH_SIZE, "worker")
        _check_bytes(self.vrf_proof, ecvrf.PROOF_SIZE, "vrf_proof")
        _check_bytes(self.commitment, HASH_SIZE, "commitment")
        _check_bytes(self.sig, SIG_SIZE, "sig")
        object.__setattr__(self, "encoded", pack(self.to_list()))

    def signing_bytes(self) -> bytes:
        """DOMAIN_COMMIT ‖ pack(fields but sig)."""
        return _commit_preimage(self.report_id, self.worker, self.vrf_proof, self.commitment)

    def to_list(self) -> list[Any]:
        """The wire array."""
        return [self.report_id, self.worker, self.vrf_proof, self.commitment, self.sig]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return self.encoded

    @classmethod
    def from_list(cls, obj: Any) -> Commit:
        """Build from an already-unpacked wire array.

        Raises:
            DecodeError: ``bad-shape`` or ``bad-field``.
        """
        report_id, worker, proof, commitment, sig = expect_array(obj, 5, "commit")
        return cls(
            report_id=expect_bytes(report_id, "commit.report_id", HASH_SIZE),
            worker=expect_bytes(worker, "commit.worker", HASH_SIZE),
            vrf_proof=expect_bytes(proof, "commit.vrf_proof", ecvrf.PROOF_SIZE),
            commitment=expect_bytes(commitment, "commit.commitment", HASH_SIZE),
            sig=expect_bytes(sig, "commit.sig", SIG_SIZE),
        )

    @classmethod
    def decode(cls, data: bytes) -> Commit:
        """Strictly decode wire bytes (size cap ``MAX_COMMIT_BYTES`` first).

        Raises:
            DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
                ``bad-field``.
        """
        return cls.from_list(unpack(data, MAX_COMMIT_BYTES))

    @classmethod
    def create(cls, key: Signer, report_id: bytes, beacon: bytes, vote: int,
               salt: bytes) -> Commit:
        """Draw ``key``'s ticket for (report, beacon), hide ``vote`` under ``salt``, and sign.

        ``salt`` must be fresh (32 bytes from the daemon's CSPRNG): a reused salt lets anyone
        who saw the earlier reveal test both votes against the commitment.

        Raises:
            UsageError: ``bad-spatial-arg`` for a wrong-size argument or a vote other than 0/1.
        """
        worker = key.public
        proof = key.vrf_prove(selection_input(report_id, beacon))
        commitment = commit_value(report_id, worker, vote, salt)
        sig = key.sign(_commit_preimage(report_id, worker, proof, commitment))
        return cls(report_id, worker, proof, commitment, sig)

    def decoded_proof(self) -> ecvrf.DecodedProof:
        """The VRF proof split into its parts, with the beta it claims (NOT verified).

        Raises:
            ValidationError: ``bad-spatial-vrf`` if the proof does not even decode.
        """
        try:
            return ecvrf.decode_proof(self.vrf_proof)
        except ValidationError as exc:
            raise ValidationError("bad-spatial-vrf", f"{exc.code}: {self.worker.hex()}") from None

    def verify(self, beacon: bytes, proof: ecvrf.DecodedProof | None = None) -> int:
        """Check the worker's signature and VRF proof; return the worker's ticket.

        ``proof``: this commit's :meth:`decoded_proof`, if the caller already has it.

        Raises:
            ValidationError: ``bad-spatial-commit-sig`` or ``bad-spatial-vrf``.
            UsageError: ``bad-spatial-arg`` if ``beacon`` is not 32 bytes or ``proof`` is not
                this commit's.
        """
        alpha = selection_input(self.report_id, beacon)
        if proof is not None and proof.pi != self.vrf_proof:
            raise UsageError("bad-spatial-arg", "a decoded proof of another commit")
        if not verify_signature(self.worker, self.signing_bytes(), self.sig):
            raise ValidationError("bad-spatial-commit-sig", self.worker.hex())
        decoded = self.decoded_proof() if proof is None else proof
        try:
            beta = ecvrf.verify_decoded(self.worker, decoded, alpha)
        except ValidationError as exc:
            raise ValidationError("bad-spatial-vrf", f"{exc.code}: {self.worker.hex()}") from None
        return ticket(beta)


def _commit_preimage(report_id: bytes, worker: bytes, vrf_proof: bytes,
                     commitment: bytes) -> bytes:
    return DOMAIN_COMMIT + pack([report_id, worker, vrf_proof, commitment])


@dataclass(frozen=True, slots=True)
class Reveal:
    """A committee member opens its commitment and signs the committee H(S) (§2.3 step 5)."""

    report_id: bytes
    worker: bytes
    vote: int
    salt: bytes
    committee: bytes
    sig: bytes
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_bytes(self.report_id, HASH_SIZE, "report_id")
        _check_bytes(self.worker, HASH_SIZE, "worker")
        _check_vote(self.vote)
        _check_bytes(self.salt, SALT_SIZE, "salt")
        _check_bytes(self.committee, HASH_SIZE, "committee")
        _check_bytes(self.sig, SIG_SIZE, "sig")
        object.__setattr__(self, "encoded", pack(self.to_list()))

    def signing_bytes(self) -> bytes:
        """DOMAIN_REVEAL ‖ pack(fields but sig)."""
        return _reveal_preimage(self.report_id, self.worker, self.vote, self.salt,
                                self.committee)

    def to_list(self) -> list[Any]:
        """The wire array."""
        return [self.report_id, self.worker, self.vote, self.salt, self.committee, self.sig]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return self.encoded

    @classmethod
    def from_list(cls, obj: Any) -> Reveal:
        """Build from an already-unpacked wire array.

        Raises:
            DecodeError: ``bad-shape`` or ``bad-field`` (a vote other than 0/1 included).
        """
        report_id, worker, vote, salt, committee, sig = expect_array(obj, 6, "reveal")
        return cls(
            report_id=expect_bytes(report_id, "reveal.report_id", HASH_SIZE),
            worker=expect_bytes(worker, "reveal.worker", HASH_SIZE),
            vote=expect_uint(vote, "reveal.vote", VOTE_CONFIRM),
            salt=expect_bytes(salt, "reveal.salt", SALT_SIZE),
            committee=expect_bytes(committee, "reveal.committee", HASH_SIZE),
            sig=expect_bytes(sig, "reveal.sig", SIG_SIZE),
        )

    @classmethod
    def decode(cls, data: bytes) -> Reveal:
        """Strictly decode wire bytes (size cap ``MAX_REVEAL_BYTES`` first).

        Raises:
            DecodeError: ``oversize``, ``bad-msgpack``, ``non-canonical``, ``bad-shape``,
                ``bad-field``.
        """
        return cls.from_list(unpack(data, MAX_REVEAL_BYTES))

    @classmethod
    def create(cls, key: Signer, report_id: bytes, vote: int, salt: bytes,
               committee: bytes) -> Reveal:
        """Open ``key``'s commitment for the committee whose H(S) is ``committee``.

        Raises:
            ValidationError: ``bad-spatial-field`` for a wrong-size argument or a bad vote.
        """
        _check_vote(vote)  # a bool would pack as msgpack true, not as the int we sign
        sig = key.sign(_reveal_preimage(report_id, key.public, vote, salt, committee))
        return cls(report_id, key.public, vote, salt, committee, sig)

    def verify(self, commit: Commit) -> None:
        """Check the signature and that this reveal opens ``commit``.

        Does not check ``committee``: :func:`committee.decide` compares it with H(S).

        Raises:
            ValidationError: ``bad-spatial-reveal-sig``; ``bad-spatial-reveal`` if the worker or
                report differ from the commit's, or commit_value(...) != commit.commitment.
        """
        if not verify_signature(self.worker, self.signing_bytes(), self.sig):
            raise ValidationError("bad-spatial-reveal-sig", self.worker.hex())
        if self.worker != commit.worker or self.report_id != commit.report_id:
            raise ValidationError("bad-spatial-reveal", "not this commit's worker or report")
        opened = commit_value(self.report_id, self.worker, self.vote, self.salt)
        if opened != commit.commitment:
            raise ValidationError("bad-spatial-reveal", "does not open the commitment")


def _reveal_preimage(report_id: bytes, worker: bytes, vote: int, salt: bytes,
                     committee: bytes) -> bytes:
    return DOMAIN_REVEAL + pack([report_id, worker, vote, salt, committee])
