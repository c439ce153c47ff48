"""Admission of an upstream manifest: fetch it with its signatures, judge it in staging, then store it.

1. Fetch the manifest (by tag or digest); its bytes must hash to the requested digest, or to the
   upstream's Docker-Content-Digest; it is read strictly (registry.manifests.parse_manifest).
2. An index: every child manifest too (digest-checked), to be admitted by the index's verdict.
3. Enforced projects: the manifest's signature artifacts, each digest-checked and parsed: the cosign
   `<alg>-<hex>.sig` and `.att` tags, the referrers API (or, where the upstream has none, the
   `<alg>-<hex>` referrers tag schema index), and their blobs (at most MAX_SIGNATURE_BLOB each).
4. All of it goes into a staging store (storage.memory) and the requested manifest is judged there by
   a ContentTrustGate under the project's policy. Refused: Refusal (412), nothing written for real.
5. Accepted: committed to the real store in a safe order: signature blobs, the marks that let the
   image's blobs be fetched later (registry.proxy.records), signature manifests, children, the
   manifest, and its tag last.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from registry.manifests import ManifestInvalidError, ParsedManifest, parse_manifest, referrer_descriptor
from registry.proxy.upstream import Upstream, UpstreamInvalidError
from storage.memory import MemoryDriver
from storage.references import Digest, InvalidReferenceError, is_digest
from storage.store import Manifest, RegistryStore
from trust.gate import ContentTrustGate, TrustDataSource, Verdict
from trust.policy import PolicyHolder
from trust.sources.artifacts import MAX_CANDIDATES, MAX_SIGNATURE_BLOB, manifest_doc, signature_kind, tag_for

log = logging.getLogger("trustreg.proxy")
MAX_CHILDREN = 128
GENERIC_TYPES = ("", "application/json", "text/plain", "application/octet-stream")
MAX_ADMISSION_BYTES = 32 * 1024 * 1024  # everything one admission holds in memory


@dataclass
class Fetched:
    """A manifest read from the upstream, verified against its digest and parsed."""

    digest: Digest
    media_type: str
    body: bytes
    parsed: ParsedManifest
    tags: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.digest, self.media_type, self.body)

    def blob_sizes(self) -> dict[Digest, int]:
        """The config and layers it references, with their descriptors' sizes."""
        doc = json.loads(self.body)
        sizes = {}
        for desc in [doc.get("config"), *(doc.get("layers") or [])]:
            if isinstance(desc, dict) and isinstance(desc.get("size"), int):
                try:
                    digest = Digest.parse(desc.get("digest", ""))
                except InvalidReferenceError:
                    continue
                if digest in self.parsed.blobs:
                    sizes[digest] = desc["size"]
        return sizes


@dataclass
class Admission:
    """Everything an accepted manifest is stored with."""

    manifest: Fetched
    children: list[Fetched] = field(default_factory=list)
    signatures: list[Fetched] = field(default_factory=list)
    small_blobs: dict[Digest, bytes] = field(default_factory=dict)
    size: int = 0  # bytes held so far (bounded by MAX_ADMISSION_BYTES)

    def charge(self, size: int) -> None:
        """Count `size` more bytes held in memory; an upstream that makes us hold too much is refused."""
        self.size += size
        if self.size > MAX_ADMISSION_BYTES:
            raise UpstreamInvalidError(f"manifest, children and signatures exceed {MAX_ADMISSION_BYTES} bytes")

    def blob_sizes(self) -> dict[Digest, int]:
        """Blobs of the image (and its children) a client may fetch through the proxy once admitted."""
        sizes: dict[Digest, int] = {}
        for fetched in (self.manifest, *self.children):
            sizes.update(fetched.blob_sizes())
        return {d: s for d, s in sizes.items() if d not in self.small_blobs}


def verified(body: bytes, media_type: str, expected: Digest | None, header: str | None, what: str) -> Fetched:
    """Check `body` against the digest asked for (or the upstream's header) and parse it strictly."""
    try:
        claimed = expected or (Digest.parse(header) if header else None)
    except InvalidReferenceError as e:
        raise UpstreamInvalidError(f"{what}: Docker-Content-Digest {header[:100]!r} is invalid") from e
    actual = Digest.of(body, claimed.algorithm if claimed else "sha256")
    if claimed is not None and actual != claimed:
        raise UpstreamInvalidError(f"{what}: content has digest {actual}, not {claimed}",
                                   {"expected": str(claimed), "actual": str(actual)})
    declared = None if media_type in GENERIC_TYPES else media_type  # then the document's own mediaType
    try:
        parsed = parse_manifest(body, declared)
    except ManifestInvalidError as e:
        raise UpstreamInvalidError(f"{what}: {e}") from e
    return Fetched(actual, parsed.media_type, body, parsed)


async def fetch_manifest(upstream: Upstream, repository: str, reference: str) -> Fetched | None:
    """The manifest `reference` (tag or digest) names upstream, verified; None if unknown there."""
    got = await upstream.get_manifest(repository, reference)
    if got is None:
        return None
    body, media_type, header = got
    expected = Digest.parse(reference) if is_digest(reference) else None
    fetched = verified(body, media_type, expected, header, f"manifest {repository}:{reference}")
    if expected is None:
        fetched.tags.append(reference)
    return fetched


class Admitter:
    """Fetches, judges in staging and commits the manifests of one proxy project."""

    def __init__(self, upstream: Upstream, policy: PolicyHolder, trust_source: TrustDataSource) -> None:
        self.upstream = upstream
        self.policy = policy
        self.trust_source = trust_source

    def enforced(self, name: str) -> bool:
        return self.policy.current.project(name).content_trust.enforce

    async def gather(self, name: str, repository: str, reference: str) -> Admission | None:
        """Steps 1-3: the manifest and what it is judged and stored with; None if unknown upstream."""
        fetched = await fetch_manifest(self.upstream, repository, reference)
        if fetched is None:
            return None
        admission = Admission(fetched)
        admission.charge(len(fetched.body))
        if len(fetched.parsed.children) > MAX_CHILDREN:
            raise UpstreamInvalidError(f"index lists more than {MAX_CHILDREN} manifests")
        for child in fetched.parsed.children:
            got = await fetch_manifest(self.upstream, repository, str(child))
            if got is None:
                raise UpstreamInvalidError(f"index child {child} is missing upstream")
            admission.charge(len(got.body))
            admission.children.append(got)
            if signature_kind(manifest_doc(got.manifest)) is not None:  # the referrers tag schema's index
                await self._small_blobs(admission, repository, got)
        if self.enforced(name):  # an unenforced project fetches signatures only when they are asked for
            await self._signatures(admission, repository)
            if signature_kind(manifest_doc(fetched.manifest)) is not None:  # a signature asked for itself
                await self._small_blobs(admission, repository, fetched)
        return admission

    async def _signatures(self, admission: Admission, repository: str) -> None:
        subject = admission.manifest.digest
        found: dict[Digest, Fetched] = {}
        for suffix in (".sig", ".att"):
            legacy = await fetch_manifest(self.upstream, repository, tag_for(subject, suffix))
            if legacy is not None:
                admission.charge(len(legacy.body))
                found.setdefault(legacy.digest, legacy).tags.extend(t for t in legacy.tags if t not in
                                                                   found[legacy.digest].tags)
        listed = await self.upstream.referrers(repository, subject)
        if listed is None:  # no referrers API: the referrers tag schema
            index = await fetch_manifest(self.upstream, repository, tag_for(subject))
            if index is not None and index.parsed.children:
                admission.charge(len(index.body))
                found.setdefault(index.digest, index)
                listed = [{"digest": str(d)} for d in index.parsed.children]
        for entry in (listed or [])[:MAX_CANDIDATES]:
            try:
                digest = Digest.parse(str(entry.get("digest", "")))
            except InvalidReferenceError:
                continue
            if digest in found:
                continue
            referrer = await fetch_manifest(self.upstream, repository, str(digest))
            if referrer is not None:
                admission.charge(len(referrer.body))
            if referrer is None or referrer.parsed.subject is None:
                continue
            if referrer.parsed.subject.get("digest") != str(subject):  # somebody else's referrer
                continue
            found[digest] = referrer
        for artifact in found.values():
            # only what a signature source can read: a runnable image posing as a referrer is left out
            is_index = bool(artifact.parsed.children)
            if not is_index and signature_kind(manifest_doc(artifact.manifest)) is None:
                continue
            if await self._small_blobs(admission, repository, artifact):
                admission.signatures.append(artifact)

    async def _small_blobs(self, admission: Admission, repository: str, artifact: Fetched) -> bool:
        """Fetch an artifact's blobs (each digest-checked, at most MAX_SIGNATURE_BLOB); False if one is
        missing or too large (the artifact is then left out: the gate decides without it)."""
        blobs: dict[Digest, bytes] = {}
        for digest in artifact.parsed.blobs:
            if digest in admission.small_blobs:
                continue
            try:
                data = await self.upstream.get_blob(repository, digest, MAX_SIGNATURE_BLOB)
            except UpstreamInvalidError as e:
                log.warning("proxy: signature artifact %s left out: %s", artifact.digest, e.message)
                return False
            if data is None:
                return False
            if Digest.of(data, digest.algorithm) != digest:
                raise UpstreamInvalidError(f"blob {digest} does not match its digest")
            admission.charge(len(data))
            blobs[digest] = data
        admission.small_blobs.update(blobs)
        return True

    async def judge(self, name: str, tag: str | None, admission: Admission) -> Verdict:
        """Step 4: the gate's verdict on the manifest, computed on a staging copy of the admission."""
        staging = RegistryStore(MemoryDriver())
        await store_admission(staging, name, admission)
        gate = ContentTrustGate(staging, self.trust_source, self.policy)
        verdict = await gate.decide(name, tag, admission.manifest.manifest)
        if verdict.served and admission.children:
            # Children come in by the gate's own rule (an accepted index lists them; `inherit_index`),
            # never by an exemption of the index: the referrers tag schema is exempt, what it lists is not.
            admission.children = [child for child in admission.children
                                  if (await gate.decide(name, None, child.manifest)).served]
        return verdict


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(store: RegistryStore, name: str, fetched: Fetched) -> None:
    parsed = fetched.parsed
    descriptor = referrer_descriptor(parsed, fetched.digest, len(fetched.body)) if parsed.subject else None
    await store.put_manifest(name, fetched.body, parsed.media_type, fetched.digest, fetched.tags,
                             parsed.subject, descriptor)


async def store_admission(store: RegistryStore, name: str, admission: Admission,
                          mark: Callable[[Digest, int], Awaitable[None]] | None = None) -> None:
    """Write an admission in the safe order (step 5); `mark(digest, size)` marks fetchable blobs."""
    for digest, data in admission.small_blobs.items():
        if await store.blob_exists_globally(digest) is None:
            await store.put_blob(name, _once(data), digest)
        else:
            await store.link_blob(name, digest)
    if mark is not None:
        for digest, size in admission.blob_sizes().items():
            await mark(digest, size)
    for artifact in sorted(admission.signatures, key=lambda a: bool(a.parsed.children)):  # indexes last
        await _put(store, name, artifact)
    for child in admission.children:
        await _put(store, name, child)
    await _put(store, name, admission.manifest)
