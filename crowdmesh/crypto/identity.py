"""Ed25519 account identities (PyNaCl) and their key-file serialisation.

An account id is the 32-byte Ed25519 public key. Signing is deterministic (RFC 8032), so the
only randomness needed is the 32-byte seed, which comes from the injected ``rng``.

Invariants:
- ``AccountKey(seed).public`` is a pure function of the seed; ``verify_signature`` never raises.
- ``decode_account_key(encode_account_key(k, pw, rng), pw) == k`` for every key and passphrase.
- A key file is versioned and self-describing (magic, version, KDF id and limits, salt, nonce,
  ciphertext, checksum). Decoding rejects anything else with a stable code: ``bad-key-file``
  (damaged, truncated or foreign), ``passphrase-required``, ``wrong-passphrase``.
- No file I/O here: ``crowdmesh.daemon.keystore`` writes these blobs with mode 0600.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Protocol

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.pwhash import argon2id
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import DecodeError, UsageError, ValidationError

__all__ = [
    "DEFAULT_MEMLIMIT",
    "DEFAULT_OPSLIMIT",
    "MAX_KEY_FILE_SIZE",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "AccountKey",
    "KeyFileInfo",
    "Signer",
    "decode_account_key",
    "encode_account_key",
    "inspect_account_key",
    "verify_signature",
]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class AccountKey:
    """An Ed25519 signing key held by this node; ``public`` is the account id."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    _signer: SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(self.seed)}")
        signer = SigningKey(self.seed)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "public", bytes(signer.verify_key))

    @classmethod
    def generate(cls, rng: Rng) -> AccountKey:
        """Create a fresh key from ``rng`` (the daemon passes the OS CSPRNG)."""
        return cls(rng.token_bytes(SEED_SIZE))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        return bytes(self._signer.sign(message).signature)

    def vrf_prove(self, alpha: bytes) -> bytes:
        """The ECVRF proof (RFC 9381, TAI) of ``alpha`` under this key: the account id is also
        the VRF public key (the same RFC 8032 seed and scalar)."""
        return ecvrf.prove(self.seed, alpha)


class Signer(Protocol):
    """What signs for an account without handing out its secret: the daemon wraps its
    ``[account]`` key in one for the roles; an :class:`AccountKey` is one too (tests, tools)."""

    @property
    def public(self) -> bytes:
        """The account id (also the VRF public key)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        ...

    def vrf_prove(self, alpha: bytes) -> bytes:
        """The 80-byte ECVRF proof of ``alpha``."""
        ...


def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool:
    """Return True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public``."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        # why the binding: ``VerifyKey(public).verify`` makes the same libsodium call but adds
        # ~35 µs of wrapping per check (a third of it); a tally checks eleven signatures
        crypto_sign_open(signature + message, public)
    except (BadSignatureError, ValueError):
        return False
    return True


# -- key files: versioned, self-describing, optionally passphrase-encrypted -------------------
#
# Layout (all integers big-endian):
#   magic "CMAK" | version u8 = 1 | kdf u8 | public key (32) | body | checksum (8)
#   kdf 0 (none):     body = seed (32)
#   kdf 1 (argon2id): body = opslimit u32 | memlimit u64 | salt (16) | nonce (24)
#                            | secretbox(seed) (48)
#   checksum = SHA-256(everything before it)[:8]
#
# The public key sits in clear so a keystore can list accounts without the passphrase; after
# decoding, the seed must reproduce it. The unkeyed checksum separates accidental damage
# (bad-key-file) from a passphrase that fails the secretbox MAC (wrong-passphrase).

KEY_FILE_MAGIC = b"CMAK"
KEY_FILE_VERSION = 1
KDF_NONE = 0
KDF_ARGON2ID = 1
DEFAULT_OPSLIMIT = argon2id.OPSLIMIT_INTERACTIVE
DEFAULT_MEMLIMIT = argon2id.MEMLIMIT_INTERACTIVE
# A key file may not make us spend more than this on the KDF (a damaged or hostile file could
# otherwise ask for terabytes of memory).
MAX_OPSLIMIT = 16
MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE

_HEADER = struct.Struct(">4sBB32s")
_ARGON2ID_PARAMS = struct.Struct(">IQ16s24s")
_SEALED_SIZE = SEED_SIZE + SecretBox.MACBYTES
_CHECKSUM_SIZE = 8
_BODY_SIZE = {KDF_NONE: SEED_SIZE, KDF_ARGON2ID: _ARGON2ID_PARAMS.size + _SEALED_SIZE}
MAX_KEY_FILE_SIZE = _HEADER.size + max(_BODY_SIZE.values()) + _CHECKSUM_SIZE

BAD_KEY_FILE = "bad-key-file"


@dataclass(frozen=True, slots=True)
class KeyFileInfo:
    """What a key file says about itself without its passphrase."""

    public: bytes
    encrypted: bool
    opslimit: int = 0
    memlimit: int = 0


@dataclass(frozen=True, slots=True)
class _Parsed:
    info: KeyFileInfo
    body: bytes


def _checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:_CHECKSUM_SIZE]


def _check_limits(opslimit: int, memlimit: int) -> bool:
    return (
        argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT
        and argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT
    )


def _derive_box(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> SecretBox:
    key = argon2id.kdf(SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit)
    return SecretBox(key)


def encode_account_key(
    key: AccountKey,
    passphrase: bytes | None,
    rng: Rng,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> bytes:
    """Serialise ``key``; with a passphrase, seal the seed with argon2id + secretbox.

    ``rng`` supplies the salt and nonce. The limits are stored in the file, so tests may use
    ``argon2id.OPSLIMIT_MIN``/``MEMLIMIT_MIN`` and the daemon the interactive defaults.

    Raises:
        UsageError: ``empty-passphrase`` for b"", ``bad-kdf-limits`` outside the accepted range.
    """
    if passphrase is None:
        body, kdf = key.seed, KDF_NONE
    else:
        body, kdf = _seal(key.seed, passphrase, rng, opslimit, memlimit), KDF_ARGON2ID
    data = _HEADER.pack(KEY_FILE_MAGIC, KEY_FILE_VERSION, kdf, key.public) + body
    return data + _checksum(data)


def _seal(seed: bytes, passphrase: bytes, rng: Rng, opslimit: int, memlimit: int) -> bytes:
    if not passphrase:
        raise UsageError("empty-passphrase", "use None for an unencrypted key file")
    if not _check_limits(opslimit, memlimit):
        raise UsageError("bad-kdf-limits", f"opslimit={opslimit} memlimit={memlimit}")
    salt = rng.token_bytes(argon2id.SALTBYTES)
    nonce = rng.token_bytes(SecretBox.NONCE_SIZE)
    sealed = _derive_box(passphrase, salt, opslimit, memlimit).encrypt(seed, nonce).ciphertext
    return _ARGON2ID_PARAMS.pack(opslimit, memlimit, salt, nonce) + bytes(sealed)


def _parse(blob: bytes) -> _Parsed:
    if len(blob) < _HEADER.size + _CHECKSUM_SIZE:
        raise DecodeError(BAD_KEY_FILE, "too short")
    magic, version, kdf, public = _HEADER.unpack_from(blob)
    if magic != KEY_FILE_MAGIC:
        raise DecodeError(BAD_KEY_FILE, "not a crowdmesh account key file")
    if version != KEY_FILE_VERSION:
        raise DecodeError(BAD_KEY_FILE, f"unsupported key file version {version}")
    if kdf not in _BODY_SIZE:
        raise DecodeError(BAD_KEY_FILE, f"unknown kdf id {kdf}")
    if len(blob) != _HEADER.size + _BODY_SIZE[kdf] + _CHECKSUM_SIZE:
        raise DecodeError(BAD_KEY_FILE, f"wrong length {len(blob)} for kdf {kdf}")
    data, checksum = blob[:-_CHECKSUM_SIZE], blob[-_CHECKSUM_SIZE:]
    if _checksum(data) != checksum:
        raise DecodeError(BAD_KEY_FILE, "checksum mismatch (file damaged)")
    body = data[_HEADER.size :]
    if kdf == KDF_NONE:
        return _Parsed(KeyFileInfo(public, encrypted=False), body)
    opslimit, memlimit, _, _ = _ARGON2ID_PARAMS.unpack_from(body)
    if not _check_limits(opslimit, memlimit):
        raise DecodeError(BAD_KEY_FILE, f"kdf limits out of range: {opslimit}, {memlimit}")
    return _Parsed(KeyFileInfo(public, True, opslimit, memlimit), body)


def inspect_account_key(blob: bytes) -> KeyFileInfo:
    """Read a key file's public key and protection without decrypting it.

    Raises:
        DecodeError: ``bad-key-file`` if the blob is not an intact key file.
    """
    return _parse(blob).info


def decode_account_key(blob: bytes, passphrase: bytes | None) -> AccountKey:
    """Parse a key file made by ``encode_account_key`` (a passphrase is ignored if unneeded).

    Raises:
        DecodeError: ``bad-key-file`` for a damaged, truncated or foreign blob.
        UsageError: ``passphrase-required`` for an encrypted key and ``passphrase=None``.
        ValidationError: ``wrong-passphrase`` if the passphrase does not open the key.
    """
    parsed = _parse(blob)
    seed = _open(parsed, passphrase) if parsed.info.encrypted else parsed.body
    key = AccountKey(seed)
    if key.public != parsed.info.public:
        raise DecodeError(BAD_KEY_FILE, "seed does not match the stored public key")
    return key


def _open(parsed: _Parsed, passphrase: bytes | None) -> bytes:
    if passphrase is None:
        raise UsageError("passphrase-required", "this account key is passphrase-encrypted")
    opslimit, memlimit, salt, nonce = _ARGON2ID_PARAMS.unpack_from(parsed.body)
    sealed = parsed.body[_ARGON2ID_PARAMS.size :]
    try:
        return bytes(_derive_box(passphrase, salt, opslimit, memlimit).decrypt(sealed, nonce))
    except CryptoError as exc:
        raise ValidationError("wrong-passphrase", "the passphrase does not open this key") from exc
