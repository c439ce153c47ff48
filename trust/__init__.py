"""Notary v1 (TUF) trust: metadata model, canonical JSON, keys and signatures, the verifier.

The gate calls `verify_trust_data`; everything it raises is a `TrustError`. `trust` never imports
`registry`.
"""

from trust.collection import (
    DEFAULT_TRUSTED_ROLES,
    SignedTarget,
    StoredTrustData,
    VerifiedTargets,
    build_trusted_set,
    verify_trust_data,
)
from trust.errors import (
    BadRoot,
    BadSignature,
    Expired,
    HashMismatch,
    Malformed,
    NotDelegated,
    NoTrustData,
    Rollback,
    ThresholdNotMet,
    TrustError,
)
from trust.trusted_set import TrustedMetadataSet

__all__ = [
    "DEFAULT_TRUSTED_ROLES",
    "BadRoot",
    "BadSignature",
    "Expired",
    "HashMismatch",
    "Malformed",
    "NoTrustData",
    "NotDelegated",
    "Rollback",
    "SignedTarget",
    "StoredTrustData",
    "ThresholdNotMet",
    "TrustError",
    "TrustedMetadataSet",
    "VerifiedTargets",
    "build_trusted_set",
    "verify_trust_data",
]
