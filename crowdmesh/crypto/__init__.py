"""crowdmesh.crypto: the pure cryptographic core (no I/O, randomness injected as ``rng``)."""

from crowdmesh.crypto import ecvrf
from crowdmesh.crypto.groups import (
    DEFAULT,
    FFDHE2048,
    FFDHE3072,
    PAPER,
    PROFILES,
    Group,
    Profile,
    get_profile,
    is_element,
    validate_element,
)
from crowdmesh.crypto.identity import (
    AccountKey,
    KeyFileInfo,
    decode_account_key,
    encode_account_key,
    inspect_account_key,
    verify_signature,
)
from crowdmesh.crypto.proofs import (
    DleqProof,
    ReencryptionStatement,
    SchnorrProof,
    is_valid_key_pok,
    is_valid_reencryption,
    prove_key,
    prove_reencryption,
    verify_key_pok,
    verify_reencryption,
)

__all__ = [
    "DEFAULT",
    "FFDHE2048",
    "FFDHE3072",
    "PAPER",
    "PROFILES",
    "AccountKey",
    "DleqProof",
    "Group",
    "KeyFileInfo",
    "Profile",
    "ReencryptionStatement",
    "SchnorrProof",
    "decode_account_key",
    "ecvrf",
    "encode_account_key",
    "get_profile",
    "inspect_account_key",
    "is_element",
    "is_valid_key_pok",
    "is_valid_reencryption",
    "prove_key",
    "prove_reencryption",
    "validate_element",
    "verify_key_pok",
    "verify_reencryption",
    "verify_signature",
]
