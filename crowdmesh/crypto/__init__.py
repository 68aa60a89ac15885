"""crowdmesh.crypto: the pure cryptographic core (no I/O, randomness injected as ``rng``)."""

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
    "DleqProof",
    "Group",
    "Profile",
    "ReencryptionStatement",
    "SchnorrProof",
    "get_profile",
    "is_element",
    "is_valid_key_pok",
    "is_valid_reencryption",
    "prove_key",
    "prove_reencryption",
    "validate_element",
    "verify_key_pok",
    "verify_reencryption",
]
