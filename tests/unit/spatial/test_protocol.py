"""Spatial messages: golden bytes, strict decoding, every reject code, keys, signatures, VRF."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdmesh.chain.codec import U64_MAX, pack
from crowdmesh.chain.contracts.spatial.protocol import (
    DOMAIN_COMMIT,
    DOMAIN_COMMITTEE,
    DOMAIN_REPORT,
    DOMAIN_REVEAL,
    DOMAIN_SEL,
    DOMAIN_VOTE,
    MAX_COMMIT_BYTES,
    MAX_REPORT_BYTES,
    MAX_REVEAL_BYTES,
    VOTE_CONFIRM,
    VOTE_REJECT,
    Commit,
    Report,
    Reveal,
    commit_value,
    committee_hash,
    selection_input,
    ticket,
)
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.errors import DecodeError, UsageError, ValidationError

_RNG = DeterministicRng(b"spatial-protocol")
KEYS = tuple(AccountKey.generate(_RNG) for _ in range(4))
REQUESTER, W1, W2, W3 = KEYS
CHAIN_ID = "cm-test"
BEACON = hashlib.sha256(b"block anchor+1").digest()
SALT = bytes(range(32))
SALT2 = bytes(range(32, 64))

# Golden vectors: computed once from the code in this commit (keys from DeterministicRng
# b"spatial-protocol") and pinned, so any change to an encoding, domain tag or hash preimage
# fails here. Change them only on purpose, with a new domain-tag version.
REPORT_HEX = (
    "98a7636d2d74657374a466697265ce02e97e25ce0023e45ece6553f10029c420078b4594423040ba9e1104f9"
    "56bf3bb29d0705484392d90e2705ad70dc256c0cc440f86b10f983f5cdad3a80995cb19072bfd372b8b15283"
    "074482ae6d68f76197cd245b8c00ef72223a2b1fe67c2116e130ba87c35fcbde4ffae507c902a5f73408"
)
REPORT_ID_HEX = "c671cbd8a3aa4b8539ae19900fdcf619393f4720774179c14e43e179cd4d72e0"
COMMIT_HEX = (
    "95c420c671cbd8a3aa4b8539ae19900fdcf619393f4720774179c14e43e179cd4d72e0c4201f270fabe1e1f3"
    "9edcc89d71b6152dfca201b1bdff75453ec956a10a2048903fc450571cf76e47c08e2109f5c77606f0a512d0"
    "b67ff238553501b1307ff1f9a84a6907f9fbfd2ac67e9f8f000cc95f3165f5cbdae671022f95047492318bb0"
    "a8530d29a37b2f4916409a510d5caa716f3e08c420f9a56af4cdade32c75fddc3a45deff58c34258dcb90a3b"
    "6b2999270eed92c2a2c4407cef4451bc8eb1407af676e04540af414610bae2d26fbe4b6289a2ab16c8f34959"
    "3bedd1ea74cd27f4653942a62d5a28dbff92de68435797541a7a68b7b58500"
)
TICKET = 12540507063499661772
REVEAL_HEX = (
    "96c420c671cbd8a3aa4b8539ae19900fdcf619393f4720774179c14e43e179cd4d72e0c4201f270fabe1e1f3"
    "9edcc89d71b6152dfca201b1bdff75453ec956a10a2048903f01c420000102030405060708090a0b0c0d0e0f"
    "101112131415161718191a1b1c1d1e1fc4206dadd28f3d4553533ff065d245d1d2a8583b4983b135c02480dd"
    "5811074df28dc440c5f1f88c67de65f52aa24fbc22e508f42a7f1a9947a3f0ad076415c6f466c7ea58bc22f1"
    "9b55966cfd228f0f58d4accb00fb68ec5d98d46e654239cd63084204"
)
COMMIT_VALUE_HEX = "f9a56af4cdade32c75fddc3a45deff58c34258dcb90a3b6b2999270eed92c2a2"
COMMITTEE_HASH_HEX = "6dadd28f3d4553533ff065d245d1d2a8583b4983b135c02480dd5811074df28d"


def golden_report() -> Report:
    return Report.create(REQUESTER, CHAIN_ID, "fire", 48_856_613, 2_352_222, 1_700_000_000, 41)


def golden_commit() -> Commit:
    return Commit.create(W1, golden_report().report_id, BEACON, VOTE_CONFIRM, SALT)


def golden_committee() -> bytes:
    return committee_hash([W3.public, W1.public, W2.public])


def golden_reveal() -> Reveal:
    return Reveal.create(W1, golden_report().report_id, VOTE_CONFIRM, SALT, golden_committee())


# -- keys, tags, goldens --------------------------------------------------------------------


def test_account_id_is_the_vrf_public_key() -> None:
    for key in KEYS:
        assert ecvrf.public_key(key.seed) == key.public
        pi = ecvrf.prove(key.seed, b"alpha")
        assert ecvrf.is_valid(key.public, pi, b"alpha")


def test_domain_tags_are_distinct_and_prefix_free() -> None:
    tags = [DOMAIN_REPORT, DOMAIN_COMMIT, DOMAIN_REVEAL, DOMAIN_VOTE, DOMAIN_SEL, DOMAIN_COMMITTEE]
    assert tags == [b"crowdmesh/spatial/report/1", b"crowdmesh/spatial/commit/1",
                    b"crowdmesh/spatial/reveal/1", b"crowdmesh/spatial/vote/1",
                    b"crowdmesh/spatial/sel/1", b"crowdmesh/spatial/committee/1"]
    assert not any(a != b and b.startswith(a) for a in tags for b in tags)
    assert (VOTE_REJECT, VOTE_CONFIRM) == (0, 1)


def test_report_golden() -> None:
    r = golden_report()
    assert r.encode().hex() == REPORT_HEX
    assert r.report_id.hex() == REPORT_ID_HEX
    unsigned = pack([CHAIN_ID, "fire", 48_856_613, 2_352_222, 1_700_000_000, 41,
                     REQUESTER.public])
    assert r.report_id == hashlib.sha256(DOMAIN_REPORT + unsigned).digest()
    assert Report.decode(bytes.fromhex(REPORT_HEX)) == r
    r.verify()


def test_commit_golden() -> None:
    c = golden_commit()
    assert c.encode().hex() == COMMIT_HEX
    assert Commit.decode(bytes.fromhex(COMMIT_HEX)) == c
    assert c.verify(BEACON) == TICKET
    rid = golden_report().report_id
    assert c.commitment.hex() == COMMIT_VALUE_HEX
    assert c.commitment == hashlib.sha256(
        DOMAIN_VOTE + rid + W1.public + b"\x01" + SALT).digest()
    assert c.commitment == commit_value(rid, W1.public, VOTE_CONFIRM, SALT)
    beta = ecvrf.verify(W1.public, c.vrf_proof, DOMAIN_SEL + rid + BEACON)
    assert TICKET == int.from_bytes(beta[:8], "big") == ticket(beta)


def test_reveal_and_committee_hash_golden() -> None:
    h = golden_committee()
    assert h.hex() == COMMITTEE_HASH_HEX
    assert h == hashlib.sha256(
        DOMAIN_COMMITTEE + b"".join(sorted([W1.public, W2.public, W3.public]))).digest()
    v = golden_reveal()
    assert v.encode().hex() == REVEAL_HEX
    assert Reveal.decode(bytes.fromhex(REVEAL_HEX)) == v
    v.verify(golden_commit())


def test_selection_input_layout() -> None:
    rid = golden_report().report_id
    assert selection_input(rid, BEACON) == DOMAIN_SEL + rid + BEACON


# -- round trips and size caps --------------------------------------------------------------

b32 = st.binary(min_size=32, max_size=32)
b64 = st.binary(min_size=64, max_size=64)
texts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32)


@given(chain_id=st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=32),
       type_=texts, lat=st.integers(-90_000_000, 90_000_000),
       lon=st.integers(-180_000_000, 180_000_000), ts=st.integers(0, U64_MAX),
       anchor=st.integers(0, U64_MAX), requester=b32, sig=b64)
def test_report_round_trip(chain_id: str, type_: str, lat: int, lon: int, ts: int, anchor: int,
                           requester: bytes, sig: bytes) -> None:
    r = Report(chain_id, type_, lat, lon, ts, anchor, requester, sig)
    data = r.encode()
    assert len(data) <= MAX_REPORT_BYTES
    back = Report.decode(data)
    assert back == r and back.report_id == r.report_id and back.encode() == data


@given(rid=b32, worker=b32, proof=st.binary(min_size=80, max_size=80), c=b32, sig=b64)
def test_commit_round_trip(rid: bytes, worker: bytes, proof: bytes, c: bytes, sig: bytes) -> None:
    commit = Commit(rid, worker, proof, c, sig)
    assert Commit.decode(commit.encode()) == commit
    assert len(commit.encode()) == 251 <= MAX_COMMIT_BYTES  # every field is fixed-size


@given(rid=b32, worker=b32, vote=st.sampled_from([0, 1]), salt=b32, h=b32, sig=b64)
def test_reveal_round_trip(rid: bytes, worker: bytes, vote: int, salt: bytes, h: bytes,
                           sig: bytes) -> None:
    reveal = Reveal(rid, worker, vote, salt, h, sig)
    assert Reveal.decode(reveal.encode()) == reveal
    assert len(reveal.encode()) == 204 <= MAX_REVEAL_BYTES


def test_largest_report_fits_the_cap() -> None:
    r = Report("c" * 32, "t" * 32, -90_000_000, -180_000_000, U64_MAX, U64_MAX, bytes(32),
               bytes(64))
    assert len(r.encode()) == 197 <= MAX_REPORT_BYTES


@given(st.permutations([W1.public, W2.public, W3.public, REQUESTER.public]))
def test_committee_hash_ignores_order(workers: list[bytes]) -> None:
    assert committee_hash(workers) == committee_hash(sorted(workers))


# -- strict decoding ------------------------------------------------------------------------


def _report_list() -> list[object]:
    return golden_report().to_list()


def _with(items: list[object], i: int, value: object) -> bytes:
    items = list(items)
    items[i] = value
    return pack(items)


REPORT_DECODE_REJECTS = [
    ("oversize", b"\x90" * (MAX_REPORT_BYTES + 1)),
    ("bad-msgpack", b"\xc1"),
    ("bad-msgpack", pack(_report_list()) + b"\x00"),  # trailing bytes
    ("non-canonical", b"\xdc\x00\x08" + pack(_report_list())[1:]),  # array16 header
    ("bad-shape", pack(_report_list()[:7])),
    ("bad-shape", pack({"a": 1})),
    ("bad-field", _with(_report_list(), 0, b"cm-test")),  # bytes where text belongs
    ("bad-field", _with(_report_list(), 1, "x" * 33)),
    ("bad-field", _with(_report_list(), 2, 1.5)),
    ("bad-field", _with(_report_list(), 3, True)),
    ("bad-field", _with(_report_list(), 4, -1)),
    ("bad-field", _with(_report_list(), 5, "41")),
    ("bad-field", _with(_report_list(), 6, bytes(31))),
    ("bad-field", _with(_report_list(), 7, bytes(65))),
]


@pytest.mark.parametrize(("code", "data"), REPORT_DECODE_REJECTS)
def test_report_decode_rejects(code: str, data: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        Report.decode(data)
    assert err.value.code == code


REPORT_FIELD_REJECTS = [
    ("bad-spatial-point", 2, 90_000_001),
    ("bad-spatial-point", 2, -90_000_001),
    ("bad-spatial-point", 3, 180_000_001),
    ("bad-spatial-point", 3, -180_000_001),
    ("bad-spatial-field", 1, "Fire"),
    ("bad-spatial-field", 1, ""),
    ("bad-spatial-field", 1, "fire!"),
    ("bad-chain-id", 0, ""),
    ("bad-chain-id", 0, "cm-tést"),
]


@pytest.mark.parametrize(("code", "i", "value"), REPORT_FIELD_REJECTS)
def test_report_field_rejects(code: str, i: int, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        Report.decode(_with(_report_list(), i, value))
    assert err.value.code == code
    with pytest.raises(ValidationError) as err2:  # the constructor enforces the same rule
        Report(*[value if j == i else v for j, v in enumerate(_report_list())])  # type: ignore[arg-type]
    assert err2.value.code == code


@pytest.mark.parametrize("i", range(5))
def test_commit_decode_rejects_wrong_lengths_and_types(i: int) -> None:
    items = golden_commit().to_list()
    for bad in (items[i][:-1], items[i] + b"\x00", "x" * len(items[i])):  # str for bin
        with pytest.raises(DecodeError) as err:
            Commit.decode(_with(items, i, bad))
        assert err.value.code == "bad-field"


def test_commit_and_reveal_decode_shape_and_cap() -> None:
    c, v = golden_commit().to_list(), golden_reveal().to_list()
    for cls, items, cap in ((Commit, c, MAX_COMMIT_BYTES), (Reveal, v, MAX_REVEAL_BYTES)):
        for data, code in ((pack(items[:-1]), "bad-shape"), (pack([*items, 0]), "bad-shape"),
                           (b"\x00" * (cap + 1), "oversize"),
                           (pack(items) + b"\x00", "bad-msgpack")):
            with pytest.raises(DecodeError) as err:
                cls.decode(data)  # type: ignore[attr-defined]
            assert err.value.code == code


@pytest.mark.parametrize(("i", "bad"), [(0, bytes(31)), (1, b"w" * 33), (2, 2), (2, True),
                                        (2, -1), (3, bytes(31)), (4, bytes(33)), (5, bytes(63))])
def test_reveal_decode_rejects(i: int, bad: object) -> None:
    with pytest.raises(DecodeError) as err:
        Reveal.decode(_with(golden_reveal().to_list(), i, bad))
    assert err.value.code == "bad-field"


def test_decode_does_not_accept_a_map_or_a_scalar() -> None:
    for cls in (Report, Commit, Reveal):
        for data in (msgpack.packb({}), msgpack.packb(7), msgpack.packb(b"")):
            with pytest.raises(DecodeError):
                cls.decode(data)  # type: ignore[attr-defined]


# -- constructors ---------------------------------------------------------------------------


def test_constructors_reject_bad_fields() -> None:
    c, v = golden_commit(), golden_reveal()
    for make in (lambda: replace(c, report_id=bytes(31)), lambda: replace(c, worker=bytes(33)),
                 lambda: replace(c, vrf_proof=bytes(79)),
                 lambda: replace(c, commitment=bytearray(32)), lambda: replace(c, sig=bytes(63)),
                 lambda: replace(v, vote=2), lambda: replace(v, vote=True),
                 lambda: replace(v, salt=bytes(16)), lambda: replace(v, committee=bytes(0)),
                 lambda: replace(golden_report(), ts=U64_MAX + 1),
                 lambda: replace(golden_report(), anchor=-1)):
        with pytest.raises(ValidationError) as err:
            make()
        assert err.value.code == "bad-spatial-field"


def test_create_rejects_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="bad-spatial-point"):
        Report.create(REQUESTER, CHAIN_ID, "fire", 0, 180_000_001, 1, 1)
    with pytest.raises(ValidationError, match="bad-spatial-field"):
        Report.create(REQUESTER, CHAIN_ID, "fire", 0, 0, U64_MAX + 1, 1)
    with pytest.raises(ValidationError, match="bad-spatial-field"):
        Reveal.create(W1, bytes(32), 2, SALT, bytes(32))
    rid = golden_report().report_id
    for args in ((bytes(31), BEACON, 1, SALT), (rid, bytes(33), 1, SALT), (rid, BEACON, 2, SALT),
                 (rid, BEACON, 1, bytes(31))):
        with pytest.raises(UsageError, match="bad-spatial-arg"):
            Commit.create(W1, *args)


def test_helpers_reject_wrong_sizes() -> None:
    with pytest.raises(UsageError):
        ticket(bytes(63))
    with pytest.raises(UsageError):
        selection_input(bytes(32), bytes(31))
    with pytest.raises(UsageError):
        committee_hash([bytes(32), bytes(31)])
    with pytest.raises(UsageError):
        commit_value(bytes(32), bytes(32), True, SALT)


# -- signatures, VRF, reveals ---------------------------------------------------------------


def test_report_signature_checks() -> None:
    r = golden_report()
    for forged in (replace(r, ts=r.ts + 1), replace(r, requester=W1.public),
                   replace(r, sig=bytes(64)), replace(r, chain_id="other-chain")):
        with pytest.raises(ValidationError) as err:
            forged.verify()
        assert err.value.code == "bad-spatial-report-sig"
    assert replace(r, sig=bytes(64)).report_id == r.report_id  # the id does not cover sig


def test_commit_signature_and_vrf_checks() -> None:
    c = golden_commit()
    for forged in (replace(c, sig=bytes(64)), replace(c, commitment=bytes(32)),
                   replace(c, worker=W2.public)):
        with pytest.raises(ValidationError) as err:
            forged.verify(BEACON)
        assert err.value.code == "bad-spatial-commit-sig"
    with pytest.raises(ValidationError) as err:  # the beacon is in the VRF input, not the sig
        c.verify(hashlib.sha256(b"another block").digest())
    assert err.value.code == "bad-spatial-vrf"
    with pytest.raises(UsageError):
        c.verify(bytes(31))


def test_commit_with_a_stolen_or_garbage_proof_is_rejected() -> None:
    rid = golden_report().report_id
    stolen = golden_commit().vrf_proof  # W1's proof, re-signed by W2 as its own
    for proof in (stolen, bytes(80), b"\xff" * 80):
        commitment = commit_value(rid, W2.public, VOTE_CONFIRM, SALT2)
        unsigned = Commit(rid, W2.public, proof, commitment, bytes(64))
        forged = replace(unsigned, sig=W2.sign(unsigned.signing_bytes()))
        with pytest.raises(ValidationError) as err:
            forged.verify(BEACON)
        assert err.value.code == "bad-spatial-vrf"


def test_tickets_differ_per_worker_and_are_deterministic() -> None:
    rid = golden_report().report_id
    tickets = [Commit.create(k, rid, BEACON, VOTE_REJECT, SALT).verify(BEACON) for k in KEYS]
    assert len(set(tickets)) == len(KEYS)
    again = Commit.create(W1, rid, BEACON, VOTE_REJECT, SALT2)  # other vote and salt
    assert again.verify(BEACON) == tickets[1]  # the VRF output depends on key and input only


def test_reveal_checks() -> None:
    rid, h = golden_report().report_id, golden_committee()
    c1 = golden_commit()
    c2 = Commit.create(W2, rid, BEACON, VOTE_REJECT, SALT2)
    cases = [
        (replace(golden_reveal(), sig=bytes(64)), c1, "bad-spatial-reveal-sig"),
        (replace(golden_reveal(), committee=bytes(32)), c1, "bad-spatial-reveal-sig"),
        (golden_reveal(), c2, "bad-spatial-reveal"),  # another worker's commit
        (Reveal.create(W1, rid, VOTE_REJECT, SALT, h), c1, "bad-spatial-reveal"),  # vote differs
        (Reveal.create(W1, rid, VOTE_CONFIRM, SALT2, h), c1, "bad-spatial-reveal"),  # salt
        (Reveal.create(W1, bytes(32), VOTE_CONFIRM, SALT, h), c1, "bad-spatial-reveal"),
    ]
    for reveal, commit, code in cases:
        with pytest.raises(ValidationError) as err:
            reveal.verify(commit)
        assert err.value.code == code
    Reveal.create(W2, rid, VOTE_REJECT, SALT2, h).verify(c2)


def test_copied_commitment_cannot_be_opened_by_the_copier() -> None:
    """SPATIAL.md §5 A5 (ii): worker 2 re-signs worker 1's commitment under its own key."""
    rid, h = golden_report().report_id, golden_committee()
    original = golden_commit()
    proof = ecvrf.prove(W2.seed, selection_input(rid, BEACON))
    unsigned = Commit(rid, W2.public, proof, original.commitment, bytes(64))
    copied = replace(unsigned, sig=W2.sign(unsigned.signing_bytes()))
    copied.verify(BEACON)  # a well-formed commit: it may even enter S
    # Even after worker 1 reveals (vote, salt), worker 2 cannot open the copy.
    for vote in (VOTE_CONFIRM, VOTE_REJECT):
        with pytest.raises(ValidationError) as err:
            Reveal.create(W2, rid, vote, SALT, h).verify(copied)
        assert err.value.code == "bad-spatial-reveal"
