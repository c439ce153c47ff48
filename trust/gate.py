"""The content-trust gate: may this manifest be served from an enforced project?

Rules (a manifest that does not exist never reaches the gate; it is a plain 404):
- projects that do not enforce: served;
- a principal holding push on the repository reading by HEAD or by digest (`push_holder_head`): served
  (build and signing tools read the subject before pushing a signature);
- signature artifacts themselves (cosign `.sig`/`.att`, sigstore bundles, notation signatures, the
  referrers-tag-schema index), proven by their content to be nothing a runtime could run
  (trust.exemption): served;
- otherwise served only if ANY requirement of the project's `require_any` accepts the manifest; each
  requirement is checked by its `SignatureSource` (trust.sources): Notary (trust.sources.notary),
  cosign (trust.cosign, keyless in trust.keyless), notation (trust.notation); and EVERY entry of
  `attestations` accepts it (trust.attestations), each verdict cached like a signature verdict.
- a manifest requested by digest that is not accepted itself: served if an index of the same
  repository that lists it is accepted by the same rules (trust.index_verdict: multi-arch images
  signed once), unless the project sets `inherit_index: false`.
A refusal carries the first requirement's message ("The image is not signed in Notary." / "... by
cosign." / "... by notation.") and every source's reason in `detail`.

Caches: Notary keeps its verified trust data per repository (see trust.sources.notary); it is dropped
at once by a publish through this process (`invalidate`), and otherwise confirmed against the stored
trust pointer (one small read) at most every `recheck` seconds, so a publish through another process
takes effect within that interval (the registry uses 0.1 s; a moved tag is always seen at once, since
the tag is resolved on every request and compared with the signed digest). A Notary acceptance is
remembered per (repository, tag, digest, length) for as long as the verification it came from would
be returned without a storage read (`NotarySource.confirms`), so a repeated pull of a signed image
skips the rule evaluation; any change that ends that verification ends the acceptance (not used when
the project requires attestations: those are read on every decision). cosign and
notation verdicts are cached per (policy version, requirement, repository, manifest digest, set of
signature artifact digests): the set is read on every decision (one referrers listing, two tag
reads), so a newly pushed signature is seen at once; an acceptance also ends when a certificate or
signature it relied on expires, and any verdict after `VERDICT_MAX_AGE`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.store import Manifest, RegistryStore
from trust.attestations import AttestationSource
from trust.collection import VerifiedTargets
from trust.cosign import CosignSource
from trust.exemption import SignatureExemption
from trust.index_verdict import inherited
from trust.notation import NotationSource
from trust.policy import ContentTrust, PolicyHolder, Requirement
from trust.sources import SignatureSource, SourceResult, Subject
from trust.sources.notary import INDEX_TYPES, NotarySettings, NotarySource, TrustDataSource, Verification
from trust.sources.notary import REFUSAL as NOTARY_REFUSAL
from trust.sources.notary import error_reason as _error_reason

__all__ = ["INDEX_TYPES", "NOTARY_REFUSAL", "SERVED", "ContentTrustGate", "TrustDataSource", "Verdict"]
VERDICT_MAX_AGE = timedelta(minutes=5)
# A cheap pre-filter (one C-level scan) before the exact classification of signature artifacts.
_SIGNATURE_HINTS = re.compile(rb"cosign|sigstore|notary\.signature|dsse|application/vnd\.oci\.image\.index")


@dataclass(frozen=True)
class Verdict:
    served: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    code: str = ""  # the first refusing source's stable reason code (metrics label)


SERVED = Verdict(True)


@dataclass
class _CachedResult:
    result: SourceResult
    until: datetime


class ContentTrustGate:
    """Decides whether a manifest may be served; see the module docstring."""

    def __init__(
        self,
        store: RegistryStore,
        source: TrustDataSource,
        policy: PolicyHolder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_size: int = 10_000,
        on_cache: Callable[[bool], None] | None = None,
        sources: dict[str, SignatureSource] | None = None,
        recheck: float = 0.0,
    ) -> None:
        self.store = store
        self.source = source
        self.policy = policy
        self.clock = clock
        self.cache_hits = 0
        self.cache_misses = 0
        self.on_cache = on_cache or (lambda hit: None)
        self._cache_size = cache_size
        self._verdicts: OrderedDict[tuple[Any, ...], _CachedResult] = OrderedDict()
        # Notary acceptances: (repository, tag, digest, length) -> the verification that accepted
        self._accepted: OrderedDict[tuple[str, str | None, Any, int], Verification] = OrderedDict()
        self.exemption = SignatureExemption(store, cache_size)
        self.notary = NotarySource(store, source, policy, lambda: self.clock(), cache_size, self._count, recheck)
        self.sources: dict[str, SignatureSource] = {
            "notary": self.notary,
            "cosign": CosignSource(store),
            "notation": NotationSource(store, lambda: self.clock()),
            "attestation": AttestationSource(store),
            **(sources or {}),
        }

    def _count(self, hit: bool) -> None:
        if hit:
            self.cache_hits += 1
        else:
            self.cache_misses += 1
        self.on_cache(hit)

    def enforced(self, repository: str) -> ContentTrust | None:
        ct = self.policy.current.project(repository).content_trust
        return ct if ct.enforce else None

    def invalidate(self, repository: str) -> None:
        """Forget a repository's verification (called when this process publishes trust data)."""
        for source in self.sources.values():
            source.invalidate(repository)

    async def _verification(self, repository: str, ct: NotarySettings) -> Verification:
        """The repository's verified Notary trust data (cached), for `ct`'s signers and root keys."""
        return await self.notary.verification(repository, ct)

    async def verified_targets(self, repository: str) -> tuple[VerifiedTargets | None, str]:
        """Read-only, for inspection: what the project's signers sign (enforced or not), from the same
        cached verification `decide` uses; or None and the refusal reason `decide` would give."""
        ct = self.policy.current.project(repository).content_trust
        verification = await self._verification(repository, ct)
        if verification.error is not None:
            return None, _error_reason(verification.error)
        return verification.result, ""

    async def decide(
        self, repository: str, tag: str | None, manifest: Manifest, *, push_holder_head: bool = False
    ) -> Verdict:
        """Served or refused; `push_holder_head`: the principal may push and reads by HEAD or digest."""
        ct = self.enforced(repository)
        if ct is None or push_holder_head:
            return SERVED
        if self.remembered(repository, tag, manifest):
            return SERVED
        if _SIGNATURE_HINTS.search(manifest.body) and await self.exemption.exempt(repository, tag, manifest):
            return SERVED
        verdict = await self._judge(Subject(self.store, repository, tag, manifest), ct)
        if verdict.served or tag is not None or not ct.inherit_index:  # `inherit_index: false` opts out
            return verdict

        async def judge_index(index: Manifest) -> tuple[bool, str]:
            index_verdict = await self._judge(Subject(self.store, repository, None, index), ct)
            return index_verdict.served, index_verdict.reason

        served, tried = await inherited(self.store, repository, manifest, judge_index)
        if served:
            return SERVED
        if tried:
            verdict.detail["indexes"] = tried
        return verdict

    async def _judge(self, subject: Subject, ct: ContentTrust) -> Verdict:
        """The manifest itself under the project's requirements (no exemption, no inheritance)."""
        refusals: list[tuple[Requirement, SourceResult]] = []
        for requirement in ct.require_any:
            result = await self._check(subject, requirement)
            if result.accepted:
                break
            refusals.append((requirement, result))
        else:
            return self._refuse(subject, refusals)
        for attestation in ct.attestations:  # AND every attestation entry
            attested = await self._check(subject, attestation)
            if not attested.accepted:
                return self._refuse(subject, [(attestation, attested)])
        if isinstance(result.basis, Verification) and not ct.attestations:  # attestations are read every time
            key = (subject.repository, subject.tag, subject.manifest.digest, len(subject.manifest.body))
            self._remember_acceptance(key, result.basis)
        return SERVED

    def remembered(self, repository: str, tag: str | None, manifest: Manifest) -> bool:
        """Whether a Notary acceptance of this (repository, tag, manifest) still holds: the cheap,
        synchronous first step of `decide` for an enforced repository (see the module docstring)."""
        verification = self._accepted.get((repository, tag, manifest.digest, len(manifest.body)))
        if verification is not None and self.notary.confirms(repository, verification):
            self._count(True)
            return True
        return False

    def _remember_acceptance(self, key: tuple[str, str | None, Any, int], verification: Verification) -> None:
        self._accepted[key] = verification
        self._accepted.move_to_end(key)
        if len(self._accepted) > self._cache_size:
            self._accepted.popitem(last=False)

    async def _check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        source = self.sources[requirement.kind]
        if requirement.kind == "notary":
            return await source.check(subject, requirement)
        signatures = await subject.signatures()
        key = (self.policy.current.version, requirement, subject.repository, str(subject.manifest.digest),
               subject.manifest.media_type, len(subject.manifest.body), signatures.key)
        now = self.clock()
        cached = self._verdicts.get(key)
        if cached is not None and now < cached.until:
            self._verdicts.move_to_end(key)
            self._count(True)
            return cached.result
        self._count(False)
        result = await source.check(subject, requirement)
        until = now + VERDICT_MAX_AGE
        if result.valid_until is not None:
            until = min(until, result.valid_until)
        self._verdicts[key] = _CachedResult(result, until)
        if len(self._verdicts) > self._cache_size:
            self._verdicts.popitem(last=False)
        return result

    def _refuse(self, subject: Subject, refusals: list[tuple[Requirement, SourceResult]]) -> Verdict:
        manifest = subject.manifest
        reference = subject.tag if subject.tag is not None else str(manifest.digest)
        detail: dict[str, Any] = {"repository": subject.repository, "reference": reference,
                                  "digest": str(manifest.digest)}
        first_requirement, first = refusals[0]
        message = self.sources[first_requirement.kind].refusal
        if len(refusals) == 1:
            reason = first.reason
            detail.update(first.detail)
        else:
            reason = "; ".join(f"{req.kind}: {result.reason}" for req, result in refusals)
            detail["sources"] = [{"source": req.kind, "reason": result.reason, **result.detail}
                                 for req, result in refusals]
        detail["reason"] = reason
        return Verdict(False, reason, detail, message, first.code)
