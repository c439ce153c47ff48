"""Signature sources the content-trust gate asks: "does this source accept this manifest?"

A `SignatureSource` answers for one kind of requirement (`notary`, `cosign`, `notation`): given the
subject (repository, tag, manifest, and the signature artifacts that refer to it, discovered once per
decision) and the project's requirement, it returns a `SourceResult` — accepted, or refused with a
reason written for humans whose text before the first `:` is a stable code ("no signature found",
"signed by an untrusted key", "signature does not verify", "signed a different digest",
"certificate chain not trusted", "expired", ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from storage.store import Manifest
from trust.policy import Requirement
from trust.sources.artifacts import SignatureSet, discover


@dataclass(frozen=True)
class SourceResult:
    """One source's answer. `valid_until`: when an acceptance stops holding (certificate or
    signature expiry), None if it does not expire; `detail` adds machine-readable facts; `basis`:
    the evidence an acceptance rests on, for a source that can tell later whether it still holds."""

    accepted: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    valid_until: datetime | None = None
    basis: Any = field(default=None, compare=False)

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0] if self.reason else "signed"


ACCEPTED = SourceResult(True)


class Subject:
    """The manifest being decided, with its signature artifacts discovered lazily (once)."""

    def __init__(self, store: Any, repository: str, tag: str | None, manifest: Manifest) -> None:
        self.store = store
        self.repository = repository
        self.tag = tag
        self.manifest = manifest
        self._signatures: SignatureSet | None = None

    async def signatures(self) -> SignatureSet:
        """Referrers of the manifest plus the `<alg>-<hex>.sig` and `<alg>-<hex>` tags (cheap reads)."""
        if self._signatures is None:
            self._signatures = await discover(self.store, self.repository, self.manifest.digest)
        return self._signatures


class SignatureSource(Protocol):
    """One kind of signature the gate can require; `refusal` is the 412 message when it refuses."""

    kind: str
    refusal: str

    async def check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        """Accept or refuse `subject.manifest` under `requirement` (storage errors propagate)."""
        ...

    def invalidate(self, repository: str) -> None:
        """Forget anything cached about `repository` (its trust data changed)."""
        ...
