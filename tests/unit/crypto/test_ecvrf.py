"""ECVRF (RFC 9381): Appendix B.3/B.4 vectors, RFC 9380 hash-to-curve vectors, rejections."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl import bindings as sodium

from crowdmesh.crypto import _ed25519 as ed
from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.ecvrf import Suite
from crowdmesh.errors import UsageError, ValidationError

# RFC 9381 Appendix B.3, Examples 16-18 (ECVRF-EDWARDS25519-SHA512-TAI):
# (SK, PK, alpha, H, pi, beta). Cross-checked against three independent copies of the RFC text.
TAI_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "91bbed02a99461df1ad4c6564a5f5d829d0b90cfc7903e7a5797bd658abf3318",
        "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f"
        "26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12"
        "68a1b0db10836d9826a528ca76567805",
        "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff"
        "66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "5b659fc3d4e9263fd9a4ed1d022d75eaacc20df5e09f9ea937502396598dc551",
        "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593"
        "3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d"
        "a3ef39226bbc355bdc9850112c8f4b02",
        "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb"
        "5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "bf4339376f5542811de615e3313d2b36f6f53c0acfebb482159711201192576a",
        "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80"
        "96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a"
        "2d41b00b05081ed0f58ee5e31b3a970e",
        "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45"
        "2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    ),
]

# RFC 9381 Appendix B.4, Examples 19-21 (ECVRF-EDWARDS25519-SHA512-ELL2): same six fields.
ELL2_VECTORS = [
    (
        TAI_VECTORS[0][0],
        TAI_VECTORS[0][1],
        "",
        "b8066ebbb706c72b64390324e4a3276f129569eab100c26b9f05011200c1bad9",
        "7d9c633ffeee27349264cf5c667579fc583b4bda63ab71d001f89c10003ab46f"
        "14adf9a3cd8b8412d9038531e865c341cafa73589b023d14311c331a9ad15ff2"
        "fb37831e00f0acaa6d73bc9997b06501",
        "9d574bf9b8302ec0fc1e21c3ec5368269527b87b462ce36dab2d14ccf80c53cc"
        "cf6758f058c5b1c856b116388152bbe509ee3b9ecfe63d93c3b4346c1fbc6c54",
    ),
    (
        TAI_VECTORS[1][0],
        TAI_VECTORS[1][1],
        "72",
        "76ac3ccb86158a9104dff819b1ca293426d305fd76b39b13c9356d9b58c08e57",
        "47b327393ff2dd81336f8a2ef10339112401253b3c714eeda879f12c509072ef"
        "055b48372bb82efbdce8e10c8cb9a2f9d60e93908f93df1623ad78a86a028d6b"
        "c064dbfc75a6a57379ef855dc6733801",
        "38561d6b77b71d30eb97a062168ae12b667ce5c28caccdf76bc88e093e463598"
        "7cd96814ce55b4689b3dd2947f80e59aac7b7675f8083865b46c89b2ce9cc735",
    ),
    (
        TAI_VECTORS[2][0],
        TAI_VECTORS[2][1],
        "af82",
        "13d2a8b5ca32db7e98094a61f656a08c6c964344e058879a386a947a4e189ed1",
        "926e895d308f5e328e7aa159c06eddbe56d06846abf5d98c2512235eaa57fdce"
        "35b46edfc655bc828d44ad09d1150f31374e7ef73027e14760d42e77341fe054"
        "67bb286cc2c9d7fde29120a0b2320d04",
        "121b7f9b9aaaa29099fc04a94ba52784d44eac976dd1a3cca458733be5cd090a"
        "7b5fbd148444f17f8daf1fb55cb04b1ae85a626e30a54b4b0f8abf4a43314a58",
    ),
]

# RFC 9380 Appendix J.5.2, edwards25519_XMD:SHA-512_ELL2_NU_: (msg, u0, Q.x, Q.y, P.x, P.y)
H2C_DST = b"QUUX-V01-CS02-with-edwards25519_XMD:SHA-512_ELL2_NU_"
H2C_VECTORS = [
    (
        b"",
        "7f3e7fb9428103ad7f52db32f9df32505d7b427d894c5093f7a0f0374a30641d",
        "42836f691d05211ebc65ef8fcf01e0fb6328ec9c4737c26050471e50803022eb",
        "22cb4aaa555e23bd460262d2130d6a3c9207aa8bbb85060928beb263d6d42a95",
        "1ff2b70ecf862799e11b7ae744e3489aa058ce805dd323a936375a84695e76da",
        "222e314d04a4d5725e9f2aff9fb2a6b69ef375a1214eb19021ceab2d687f0f9b",
    ),
    (
        b"abc",
        "09cfa30ad79bd59456594a0f5d3a76f6b71c6787b04de98be5cd201a556e253b",
        "333e41b61c6dd43af220c1ac34a3663e1cf537f996bab50ab66e33c4bd8e4e19",
        "51b6f178eb08c4a782c820e306b82c6e273ab22e258d972cd0c511787b2a3443",
        "5f13cc69c891d86927eb37bd4afc6672360007c63f68a33ab423a3aa040fd2a8",
        "67732d50f9a26f73111dd1ed5dba225614e538599db58ba30aaea1f5c827fa42",
    ),
    (
        b"abcdef0123456789",
        "475ccff99225ef90d78cc9338e9f6a6bb7b17607c0c4428937de75d33edba941",
        "55186c242c78e7d0ec5b6c9553f04c6aeef64e69ec2e824472394da32647cfc6",
        "5b9ea3c265ee42256a8f724f616307ef38496ef7eba391c08f99f3bea6fa88f0",
        "1dd2fefce934ecfd7aae6ec998de088d7dd03316aa1847198aecf699ba6613f1",
        "2f8a6c24dd1adde73909cada6a4a137577b0f179d336685c4a955a0a8e1a86fb",
    ),
    (
        b"q128_" + b"q" * 128,
        "049a1c8bd51bcb2aec339f387d1ff51428b88d0763a91bcdf6929814ac95d03d",
        "024b6e1621606dca8071aa97b43dce4040ca78284f2a527dcf5d0fbfac2b07e7",
        "5102353883d739bdc9f8a3af650342b171217167dcce34f8db57208ec1dfdbf2",
        "35fbdc5143e8a97afd3096f2b843e07df72e15bfca2eaf6879bf97c5d3362f73",
        "2af6ff6ef5ebba128b0774f4296cb4c2279a074658b083b8dcca91f57a603450",
    ),
    (
        b"a512_" + b"a" * 512,
        "3cb0178a8137cefa5b79a3a57c858d7eeeaa787b2781be4a362a2f0750d24fa0",
        "3e6368cff6e88a58e250c54bd27d2c989ae9b3acb6067f2651ad282ab8c21cd9",
        "38fb39f1566ca118ae6c7af42810c0bb9767ae5960abb5a8ca792530bfb9447d",
        "6e5e1f37e99345887fc12111575fc1c3e36df4b289b8759d23af14d774b66bff",
        "2c90c3d39eb18ff291d33441b35f3262cdd307162cc97c31bfcc7a4245891a37",
    ),
]

ALL_VECTORS = [(Suite.TAI, *v) for v in TAI_VECTORS] + [(Suite.ELL2, *v) for v in ELL2_VECTORS]
# The secret scalars x the RFC lists for Examples 16-18 (and again for 19-21).
SECRET_SCALARS = [
    "307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f",
    "68bd9ed75882d52815a97585caf4790a7f6c6b3b7f821c5e259a24b02e502e51",
    "909a8b755ed902849023a55b15c23d11ba4d7f4ec5c2f51b1325a181991ea95c",
]
SEED = bytes.fromhex(TAI_VECTORS[0][0])
PK = bytes.fromhex(TAI_VECTORS[0][1])
OTHER_SEED = bytes.fromhex(TAI_VECTORS[1][0])


def _b(h):
    return bytes.fromhex(h)


def _bad(code, fn, *args, **kwargs):
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code


@pytest.mark.parametrize(("suite", "sk", "pk", "alpha", "h", "pi", "beta"), ALL_VECTORS)
def test_rfc9381_vectors(suite, sk, pk, alpha, h, pi, beta):
    assert ecvrf.public_key(_b(sk)) == _b(pk)
    assert ecvrf.prove(_b(sk), _b(alpha), suite=suite) == _b(pi)
    assert ecvrf.proof_to_hash(_b(pi), suite=suite) == _b(beta)
    assert ecvrf.verify(_b(pk), _b(pi), _b(alpha), suite=suite) == _b(beta)
    assert ecvrf.is_valid(_b(pk), _b(pi), _b(alpha), suite=suite)


@pytest.mark.parametrize(("suite", "sk", "pk", "alpha", "h", "pi", "beta"), ALL_VECTORS)
def test_rfc9381_intermediate_h(suite, sk, pk, alpha, h, pi, beta):
    assert ecvrf._ENCODE_TO_CURVE[suite](_b(pk), _b(alpha)) == _b(h)


@pytest.mark.parametrize(("vector", "x"), list(zip(TAI_VECTORS, SECRET_SCALARS, strict=True)))
def test_rfc9381_secret_scalar(vector, x):
    assert ecvrf._expand_seed(_b(vector[0]))[0] == int.from_bytes(_b(x), "little")


@pytest.mark.parametrize(("msg", "u0", "qx", "qy", "px", "py"), H2C_VECTORS)
def test_rfc9380_edwards25519_ell2_nu_vectors(msg, u0, qx, qy, px, py):
    (u,) = ed.hash_to_field(msg, H2C_DST)
    assert u == int(u0, 16)
    assert ed.to_affine(ed.map_to_curve_elligator2(u)) == (int(qx, 16), int(qy, 16))
    assert ed.to_affine(ed.encode_to_curve(msg, H2C_DST)) == (int(px, 16), int(py, 16))


def test_suites_disagree_on_the_same_input():
    assert ecvrf.prove(SEED, b"x", suite=Suite.TAI) != ecvrf.prove(SEED, b"x", suite=Suite.ELL2)
    pi = ecvrf.prove(SEED, b"x", suite=Suite.TAI)
    _bad("bad-vrf-proof", ecvrf.verify, PK, pi, b"x", suite=Suite.ELL2)


@pytest.mark.parametrize("suite", list(Suite))
@given(alpha=st.binary(max_size=64))
def test_prove_is_unique_and_verifies(suite, alpha):
    pi = ecvrf.prove(SEED, alpha, suite=suite)
    assert ecvrf.prove(SEED, alpha, suite=suite) == pi  # uniqueness: one proof per input
    beta = ecvrf.verify(PK, pi, alpha, suite=suite)
    assert len(pi) == ecvrf.PROOF_SIZE and len(beta) == ecvrf.BETA_SIZE
    assert beta == ecvrf.proof_to_hash(pi, suite=suite)


@given(alpha=st.binary(max_size=32), position=st.integers(0, 79), bit=st.integers(0, 7))
def test_any_flipped_bit_fails(alpha, position, bit):
    pi = bytearray(ecvrf.prove(SEED, alpha))
    pi[position] ^= 1 << bit
    _bad("bad-vrf-proof", ecvrf.verify, PK, bytes(pi), alpha)
    assert not ecvrf.is_valid(PK, bytes(pi), alpha)


def test_wrong_alpha_and_wrong_key_fail():
    pi = ecvrf.prove(SEED, b"report-1")
    _bad("bad-vrf-proof", ecvrf.verify, PK, pi, b"report-2")
    _bad("bad-vrf-proof", ecvrf.verify, ecvrf.public_key(OTHER_SEED), pi, b"report-1")
    other = ecvrf.prove(OTHER_SEED, b"report-1")
    _bad("bad-vrf-proof", ecvrf.verify, PK, other, b"report-1")


def test_different_inputs_and_keys_give_different_outputs():
    betas = {ecvrf.verify(PK, ecvrf.prove(SEED, bytes([i])), bytes([i])) for i in range(8)}
    betas.add(ecvrf.proof_to_hash(ecvrf.prove(OTHER_SEED, b"\x00")))
    assert len(betas) == 9


@pytest.mark.parametrize("size", [0, 79, 81])
def test_wrong_proof_length(size):
    _bad("bad-vrf-proof", ecvrf.verify, PK, bytes(size), b"")
    _bad("bad-vrf-proof", ecvrf.proof_to_hash, bytes(size))


def test_unreduced_s_is_rejected():
    pi = ecvrf.prove(SEED, b"a")
    s = int.from_bytes(pi[48:], "little")
    forged = pi[:48] + (s + ed.L).to_bytes(32, "little")  # same point arithmetic, not canonical
    _bad("bad-vrf-proof", ecvrf.verify, PK, forged, b"a")


@pytest.mark.parametrize("alias", [ed.P, ed.P + 1, ed.P + 1 + (1 << 255)])
def test_non_canonical_gamma_is_rejected(alias):
    # y = p and y = p + 1 alias valid points (y = 0, y = 1); RFC 8032 decoding refuses y ≥ p.
    pi = ecvrf.prove(SEED, b"a")
    forged = alias.to_bytes(32, "little") + pi[32:]
    _bad("bad-vrf-proof", ecvrf.proof_to_hash, forged)
    _bad("bad-vrf-proof", ecvrf.verify, PK, forged, b"a")


def _small_order_encodings():
    """All canonical encodings of the 8 torsion points, plus y ≥ p aliases and x = -0."""
    torsion = {ed.encode(ed.scalar_mult(k, _torsion_generator())) for k in range(8)}
    aliases = {(ed.P + 1).to_bytes(32, "little"), (ed.P + 1 + (1 << 255)).to_bytes(32, "little")}
    negative_zero = (1 | (1 << 255)).to_bytes(32, "little")
    return sorted(torsion | aliases | {negative_zero})


def _torsion_generator():
    # An order-8 point: 8·T = O but 4·T ≠ O, found by clearing the L-part of a hash-derived point.
    for i in range(256):
        p = ed.decode(hashlib.sha512(bytes([i])).digest()[:32])
        if p is None:
            continue
        t = ed.scalar_mult(ed.L, p)
        if ed.encode(ed.scalar_mult(4, t)) != ed.IDENTITY:
            return t
    raise AssertionError("no order-8 point found")


@pytest.mark.parametrize("bad_key", _small_order_encodings(), ids=bytes.hex)
def test_small_order_and_malformed_keys_are_rejected(bad_key):
    pi = ecvrf.prove(SEED, b"a")
    _bad("bad-vrf-key", ecvrf.verify, bad_key, pi, b"a")
    _bad("bad-vrf-key", ecvrf.validate_public_key, bad_key)
    assert not ecvrf.is_valid(bad_key, pi, b"a")


def test_off_curve_and_short_keys_are_rejected():
    off_curve = next(
        enc for i in range(64) if ed.decode(enc := (i + 2).to_bytes(32, "little")) is None
    )
    for key in (off_curve, PK[:31], b""):
        _bad("bad-vrf-key", ecvrf.validate_public_key, key)
    ecvrf.validate_public_key(PK)


def test_seed_must_be_32_bytes():
    with pytest.raises(UsageError) as info:
        ecvrf.prove(b"short", b"")
    assert info.value.code == "bad-vrf-seed"


def test_proof_with_torsioned_gamma_verifies_with_the_same_beta():
    """RFC 9381 only asks Gamma to be on the curve; beta clears the cofactor, so a prover that
    adds a torsion point to Gamma gets no second output. This also drives the plain-integer
    fallback (libsodium refuses points outside the prime-order subgroup)."""
    alpha = b"torsion"
    honest = ecvrf.prove(SEED, alpha)
    x, _ = ecvrf._expand_seed(SEED)
    x %= ed.L
    t = ed.encode(_torsion_generator())
    h = ecvrf._encode_to_curve_tai(PK, alpha)
    gamma = sodium.crypto_core_ed25519_add(ecvrf._mul(x, h), t)
    for k in range(1, 200):
        u, kh = ecvrf._mul_base(k), ecvrf._mul(k, h)
        for j in range(8):  # V = kH - c·T depends on c mod 8: guess it and check
            v = ecvrf._sub(kh, ecvrf._mul(j, t))
            c = ecvrf._challenge(Suite.TAI, PK, h, gamma, u, v)
            if c % 8 == j:
                s = (k + c * x) % ed.L
                pi = gamma + c.to_bytes(16, "little") + s.to_bytes(32, "little")
                assert pi != honest
                assert ecvrf.verify(PK, pi, alpha) == ecvrf.proof_to_hash(honest)
                return
    raise AssertionError("no torsioned proof found in 200 nonces")


@given(n=st.integers(1, ed.L - 1))
def test_integer_fallback_matches_libsodium(n):
    base = ecvrf._mul_base(1)
    assert ed.encode(ed.scalar_mult(n, ed.decode_or_raise(base))) == ecvrf._mul_base(n)
    assert ecvrf._mul(n, base) == ecvrf._mul_base(n)


def test_strict_decoder_round_trips_libsodium_points():
    for i in range(1, 20):
        enc = ecvrf._mul_base(i)
        assert ed.encode(ed.decode_or_raise(enc)) == enc
