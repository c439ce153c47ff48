"""The Notary v1 signature source: the built-in trust server's data, checked by the embedded verifier.

- by tag: a trusted role signs a target of that name whose sha256 and length equal the manifest the
  tag points at now;
- by digest: a trusted role signs a target with that digest, or (`inherit_index`) the manifest is a
  child of a signed index / manifest list of the same repository;
- the signatures come from the embedded verifier over the stored trust data (root chain ->
  timestamp -> snapshot -> targets -> delegations); expired or tampered data means unsigned.
Verification results are cached per repository and invalidated when the policy changes, when the
stored timestamp changes (one cheap read per decision), or when the verified metadata expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from storage.references import Digest
from storage.store import Manifest, ManifestUnknownError, RegistryStore
from trust.collection import StoredTrustData, VerifiedTargets, verify_trust_data
from trust.errors import Expired, NoTrustData, TrustError
from trust.policy import NotaryRequirement, PolicyHolder, Requirement
from trust.sources import ACCEPTED, SourceResult, Subject
from trust.sources.artifacts import manifest_doc

log = logging.getLogger("trustreg.trust.gate")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
REFUSAL = "The image is not signed in Notary."


class TrustDataSource(Protocol):
    """Where the gate reads a repository's stored trust data (the Notary server's storage)."""

    async def current_etag(self, repository: str) -> str | None:
        """A cheap token that changes whenever the repository's trust data changes; None = none."""
        ...

    async def load(self, repository: str) -> tuple[str, StoredTrustData] | None:
        """(GUN, every current role's bytes and the root history), or None if there is no data."""
        ...


class NotarySettings(Protocol):
    """What verification depends on (a NotaryRequirement, or a project's ContentTrust)."""

    signers: tuple[str, ...]
    root_keys: frozenset[str]


@dataclass
class Verification:
    etag: str | None
    policy_version: int
    settings: tuple[tuple[str, ...], frozenset[str]]
    result: VerifiedTargets | None
    error: TrustError | None
    checked_at: float = 0.0  # time.monotonic() of the last storage check that confirmed it

    def fresh(self, etag: str | None, policy_version: int, settings: tuple[Any, ...], now: datetime) -> bool:
        if self.etag != etag or self.policy_version != policy_version or self.settings != settings:
            return False
        return self.result is None or self.result.expires > now


def error_reason(error: TrustError) -> str:
    if isinstance(error, NoTrustData):
        return f"no trust data: {error}"
    if isinstance(error, Expired):
        return f"trust data expired: {error}"
    return f"verification failed: {error}"


class NotarySource:
    """The `notary:` requirement; see the module docstring."""

    kind = "notary"
    refusal = REFUSAL

    def __init__(self, store: RegistryStore, source: TrustDataSource, policy: PolicyHolder,
                 clock: Callable[[], datetime], cache_size: int, count: Callable[[bool], None],
                 recheck: float = 0.0) -> None:
        self.store = store
        self.source = source
        self.policy = policy
        self.clock = clock
        self.count = count
        self._cache: OrderedDict[str, Verification] = OrderedDict()
        self._cache_size = cache_size
        self._inflight: dict[str, asyncio.Future[Verification]] = {}
        self._children: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.recheck = recheck

    def invalidate(self, repository: str) -> None:
        self._cache.pop(repository, None)

    def confirms(self, repository: str, verification: Verification) -> bool:
        """Whether `verification` is still the repository's, confirmed against storage less than
        `recheck` seconds ago, under the current policy and not expired: what `verification` itself
        would return without a storage read."""
        return (
            self._cache.get(repository) is verification
            and time.monotonic() - verification.checked_at < self.recheck
            and self.policy.current.version == verification.policy_version
            and verification.result is not None
            and verification.result.expires > self.clock()
        )

    async def check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        assert isinstance(requirement, NotaryRequirement)
        manifest = subject.manifest
        verification = await self.verification(subject.repository, requirement)
        if verification.error is not None:
            return SourceResult(False, error_reason(verification.error))
        targets = verification.result
        assert targets is not None
        if subject.tag is not None:
            result = self._by_tag(targets, subject.tag, manifest)
        elif targets.names_for_digest(str(manifest.digest)) or (
            requirement.inherit_index
            and await self._child_of_signed_index(subject.repository, targets, manifest.digest)
        ):
            result = ACCEPTED
        else:
            return SourceResult(False, "digest not signed: no trusted role signs this manifest")
        return replace(result, basis=verification) if result.accepted else result

    @staticmethod
    def _by_tag(targets: VerifiedTargets, tag: str, manifest: Manifest) -> SourceResult:
        signed = targets.lookup(tag)
        if signed is None:
            why = targets.excluded.get(tag)
            return SourceResult(False, f"tag not signed: {why}" if why else "tag not signed")
        if manifest.digest.algorithm != "sha256" or signed.sha256 != manifest.digest.hex:
            reason = f"signed for another digest: {signed.role} signs {tag} as sha256:{signed.sha256}"
            return SourceResult(False, reason, {"signed_digest": f"sha256:{signed.sha256}"})
        if signed.length != len(manifest.body):
            return SourceResult(False, f"signed for another length: {signed.role} signs {signed.length} bytes")
        return SourceResult(True, valid_until=targets.expires)

    async def verification(self, repository: str, settings: NotarySettings) -> Verification:
        """The repository's verified trust data (cached; concurrent callers verify once)."""
        version = self.policy.current.version
        key = (tuple(settings.signers), frozenset(settings.root_keys))
        cached = self._cache.get(repository)
        checked = time.monotonic()
        if (
            cached is not None
            and checked - cached.checked_at < self.recheck
            and cached.fresh(cached.etag, version, key, self.clock())
        ):
            self.count(True)  # confirmed against storage less than `recheck` seconds ago
            return cached
        etag = await self.source.current_etag(repository)
        if cached is not None and cached.fresh(etag, version, key, self.clock()):
            cached.checked_at = checked
            self.count(True)
            return cached
        inflight = self._inflight.get(repository)
        if inflight is not None:
            return await asyncio.shield(inflight)
        self.count(False)
        future: asyncio.Future[Verification] = asyncio.get_running_loop().create_future()
        self._inflight[repository] = future
        try:
            verification = await self._verify(repository, settings, etag, version, key)
            verification.checked_at = checked
            future.set_result(verification)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[repository]
        self._cache[repository] = verification
        self._cache.move_to_end(repository)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verification

    async def _verify(self, repository: str, settings: NotarySettings, etag: str | None, version: int,
                      key: tuple[tuple[str, ...], frozenset[str]]) -> Verification:
        loaded = await self.source.load(repository) if etag is not None else None
        if loaded is None:
            return Verification(etag, version, key, None, NoTrustData(f"no trust data for {repository}"))
        gun, data = loaded
        try:
            result = verify_trust_data(data, gun, self.clock(), pinned_root_keys=settings.root_keys,
                                       trusted_roles=settings.signers)
        except TrustError as e:
            log.warning("trust data of %s does not verify: %s", repository, e)
            return Verification(etag, version, key, None, e)
        return Verification(etag, version, key, result, None)

    async def _child_of_signed_index(self, repository: str, targets: VerifiedTargets, digest: Digest) -> bool:
        for signed in targets.by_digest:
            children = await self._index_children(repository, Digest.parse(signed))
            if str(digest) in children:
                return True
        return False

    async def _index_children(self, repository: str, index: Digest) -> frozenset[str]:
        key = f"{repository}@{index}"
        cached = self._children.get(key)
        if cached is not None:
            return cached
        try:
            manifest = await self.store.get_manifest(repository, index)
        except ManifestUnknownError:
            return frozenset()  # not (or no longer) in this repository: not cached
        children: frozenset[str] = frozenset()
        if manifest.media_type in INDEX_TYPES:
            entries = manifest_doc(manifest).get("manifests")  # read as containerd reads it
            children = frozenset(m["digest"] for m in entries or () if isinstance(m, dict)
                                 and isinstance(m.get("digest"), str))
        self._children[key] = children
        if len(self._children) > 4 * self._cache_size:
            self._children.popitem(last=False)
        return children
