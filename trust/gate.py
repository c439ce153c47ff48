"""The content-trust gate: may this manifest be served from an enforced project?

Rules (a manifest that does not exist never reaches the gate; it is a plain 404):
- projects that do not enforce: served;
- HEAD by a principal holding push on the repository: served (tools check before pushing);
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
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from storage.references import Digest
from storage.store import Manifest, ManifestUnknownError, RegistryStore
from trust.collection import StoredTrustData, VerifiedTargets, verify_trust_data
from trust.errors import Expired, NoTrustData, TrustError
from trust.policy import ContentTrust, PolicyHolder

log = logging.getLogger("trustreg.trust.gate")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
NOTARY_REFUSAL = "The image is not signed in Notary."


class TrustDataSource(Protocol):
    """Where the gate reads a repository's stored trust data (the Notary server's storage)."""

    async def current_etag(self, repository: str) -> str | None:
        """A cheap token that changes whenever the repository's trust data changes; None = none."""
        ...

    async def load(self, repository: str) -> tuple[str, StoredTrustData] | None:
        """(GUN, every current role's bytes and the root history), or None if there is no data."""
        ...


@dataclass(frozen=True)
class Verdict:
    served: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    message: str = ""


SERVED = Verdict(True)


@dataclass
class _Verification:
    etag: str | None
    policy_version: int
    result: VerifiedTargets | None
    error: TrustError | None

    def fresh(self, etag: str | None, policy_version: int, now: datetime) -> bool:
        if self.etag != etag or self.policy_version != policy_version:
            return False
        return self.result is None or self.result.expires > now


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
    ) -> None:
        self.store = store
        self.source = source
        self.policy = policy
        self.clock = clock
        self._cache: OrderedDict[str, _Verification] = OrderedDict()
        self._cache_size = cache_size
        self._inflight: dict[str, asyncio.Future[_Verification]] = {}
        self._children: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.on_cache = on_cache or (lambda hit: None)

    def enforced(self, repository: str) -> ContentTrust | None:
        ct = self.policy.current.project(repository).content_trust
        return ct if ct.enforce else None

    def invalidate(self, repository: str) -> None:
        """Forget a repository's verification (called when this process publishes trust data)."""
        self._cache.pop(repository, None)

    async def decide(
        self, repository: str, tag: str | None, manifest: Manifest, *, push_holder_head: bool = False
    ) -> Verdict:
        ct = self.enforced(repository)
        if ct is None or push_holder_head:
            return SERVED
        verification = await self._verification(repository, ct)
        reference = tag if tag is not None else str(manifest.digest)
        detail: dict[str, Any] = {"repository": repository, "reference": reference, "digest": str(manifest.digest)}
        if verification.error is not None:
            return self._refuse(detail, _error_reason(verification.error))
        targets = verification.result
        assert targets is not None
        if tag is not None:
            return self._by_tag(targets, tag, manifest, detail)
        if targets.names_for_digest(str(manifest.digest)):
            return SERVED
        if ct.inherit_index and await self._child_of_signed_index(repository, targets, manifest.digest):
            return SERVED
        return self._refuse(detail, "digest not signed: no trusted role signs this manifest")

    def _by_tag(self, targets: VerifiedTargets, tag: str, manifest: Manifest, detail: dict[str, Any]) -> Verdict:
        signed = targets.lookup(tag)
        if signed is None:
            why = targets.excluded.get(tag)
            return self._refuse(detail, f"tag not signed: {why}" if why else "tag not signed")
        if manifest.digest.algorithm != "sha256" or signed.sha256 != manifest.digest.hex:
            detail["signed_digest"] = f"sha256:{signed.sha256}"
            reason = f"signed for another digest: {signed.role} signs {tag} as sha256:{signed.sha256}"
            return self._refuse(detail, reason)
        if signed.length != len(manifest.body):
            return self._refuse(detail, f"signed for another length: {signed.role} signs {signed.length} bytes")
        return SERVED

    @staticmethod
    def _refuse(detail: dict[str, Any], reason: str) -> Verdict:
        detail["reason"] = reason
        return Verdict(False, reason, detail, NOTARY_REFUSAL)

    async def _verification(self, repository: str, ct: ContentTrust) -> _Verification:
        etag = await self.source.current_etag(repository)
        version = self.policy.current.version
        cached = self._cache.get(repository)
        if cached is not None and cached.fresh(etag, version, self.clock()):
            self.cache_hits += 1
            self.on_cache(True)
            return cached
        inflight = self._inflight.get(repository)
        if inflight is not None:
            return await asyncio.shield(inflight)
        self.cache_misses += 1
        self.on_cache(False)
        future: asyncio.Future[_Verification] = asyncio.get_running_loop().create_future()
        self._inflight[repository] = future
        try:
            verification = await self._verify(repository, ct, etag, version)
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

    async def _verify(self, repository: str, ct: ContentTrust, etag: str | None, version: int) -> _Verification:
        loaded = await self.source.load(repository) if etag is not None else None
        if loaded is None:
            return _Verification(etag, version, None, NoTrustData(f"no trust data for {repository}"))
        gun, data = loaded
        try:
            result = verify_trust_data(data, gun, self.clock(), pinned_root_keys=ct.root_keys, trusted_roles=ct.signers)
        except TrustError as e:
            log.warning("trust data of %s does not verify: %s", repository, e)
            return _Verification(etag, version, None, e)
        return _Verification(etag, version, result, None)

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
            try:
                doc = json.loads(manifest.body)
                children = frozenset(m["digest"] for m in doc.get("manifests", []) if isinstance(m, dict))
            except (ValueError, KeyError, TypeError):
                children = frozenset()
        self._children[key] = children
        if len(self._children) > 4 * self._cache_size:
            self._children.popitem(last=False)
        return children


def _error_reason(error: TrustError) -> str:
    if isinstance(error, NoTrustData):
        return f"no trust data: {error}"
    if isinstance(error, Expired):
        return f"trust data expired: {error}"
    return f"verification failed: {error}"
