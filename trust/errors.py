"""The one exception family the verifier raises for anything the repository can inflict.

Callers catch `TrustError`; its message is written for humans (it becomes the reason of a 412 or the
`Msg` of a Notary `INVALID_UPDATE`), e.g. "targets expired at 2029-11-23T17:29:40.38360387Z".
Caller mistakes (loading roles out of order) raise `RuntimeError` instead.
"""

from __future__ import annotations


class TrustError(Exception):
    """Trust data was refused. `role` names the role concerned when one is."""

    def __init__(self, message: str, role: str | None = None) -> None:
        super().__init__(message)
        self.role = role

    @property
    def message(self) -> str:
        return str(self)


class NoTrustData(TrustError):
    """A role the verification needs is not there (e.g. no root: the GUN has no trust data)."""


class Malformed(TrustError):
    """Bytes that are not valid Notary metadata of the expected shape and type."""


class BadSignature(TrustError):
    """A signature is invalid in a way that is an error by itself (e.g. key ID / key mismatch)."""


class ThresholdNotMet(BadSignature):
    """Fewer distinct keys than the role's threshold produced valid signatures."""


class Expired(TrustError):
    """Metadata expired at the fixed clock reading the verification uses."""


class Rollback(TrustError):
    """A version lower than one already trusted (replay / rollback attack)."""


class HashMismatch(TrustError):
    """A file's hashes or length differ from what the timestamp/snapshot says (mix-and-match)."""


class BadRoot(TrustError):
    """A root that may not be trusted: bad certificates, bad rotation, pinning, structure."""


class NotDelegated(TrustError):
    """A role that its parent does not delegate, or a target outside the delegated paths."""
