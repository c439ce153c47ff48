"""Trust inspection, without HTTP: what each tag is, who signs it, and what the gate decides.

Shared by the JSON API (`registry.api`), the web UI (`registry.ui`) and `trustreg trust inspect`.

- The decision of every row is `ContentTrustGate.decide` itself (no re-implementation); a tag is
  decided by tag, a manifest page by digest, exactly as a pull would be.
- Signatures are listed per source. Notary: the verified targets of the project's signers (from the
  gate's cached verification, enforced project or not) -> `signed` (role, its key IDs, expiry of the
  verified metadata), `unsigned` (no trust data, tag not signed) or `invalid` (the data does not
  verify, or it signs the tag for another digest or length). cosign / notation (when the project
  requires them): the gate's own source checks the manifest; signer = the trust root (and key IDs).
- Everything here reads; nothing is written (the trust server may re-sign an expiring timestamp
  while loading, as on any pull).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry.manifests import DOCKER_MANIFEST, INDEX_TYPES
from storage.base import PathNotFoundError
from storage.references import Digest, InvalidReferenceError
from storage.store import BlobUnknownError, Manifest, ManifestUnknownError, RegistryStore
from trust.collection import VerifiedTargets
from trust.gate import ContentTrustGate
from trust.policy import PolicyHolder, Project, project_of

IMAGE_CONFIG_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
MAX_CONFIG = 1 << 20  # larger configs are not read for their platform
CONCURRENCY = 16


@dataclass(frozen=True)
class Signature:
    """One signature source's view of a tag (or digest)."""

    source: str  # "notary" (cosign / notation when the gate knows them)
    status: str  # "signed" | "unsigned" | "invalid"
    signer: str = ""  # Notary: the role
    keyids: tuple[str, ...] = ()
    expires: str = ""  # RFC 3339: earliest expiry of the verified metadata
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    served: bool
    reason: str


@dataclass
class ManifestFacts:
    """What a manifest is, read from its body (and its config, for an image's platform)."""

    digest: str
    media_type: str
    kind: str  # "image" | "index" | "artifact"
    artifact_type: str
    platforms: list[str]
    size: int  # the manifest and everything it references that the repository holds (deduplicated)
    document: dict[str, Any]


@dataclass
class TagReport:
    tag: str
    digest: str
    mediaType: str  # the JSON field names
    kind: str
    artifactType: str
    platforms: list[str]
    size: int
    pushed: str
    signatures: list[Signature]
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for sig in out["signatures"]:
            sig["keyids"] = list(sig["keyids"])
        return out


@dataclass
class ManifestReport:
    repository: str
    digest: str
    mediaType: str
    kind: str
    artifactType: str
    platforms: list[str]
    size: int
    tags: list[str]
    config: dict[str, Any] | None
    layers: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    subject: dict[str, Any] | None
    annotations: dict[str, Any]
    referrers: list[dict[str, Any]]
    signatures: list[Signature]
    decision: Decision
    signed_tags: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for sig in out["signatures"]:
            sig["keyids"] = list(sig["keyids"])
        return out


def requirement_json(requirement: Any) -> dict[str, Any]:
    """One accepted signature source of a policy (`require_any` entry): Notary roles, or a trust root."""
    out: dict[str, Any] = {"source": requirement.kind}
    if requirement.kind == "notary":
        out.update(signers=list(requirement.signers), root_keys=sorted(requirement.root_keys),
                   inherit_index=requirement.inherit_index)
    root = getattr(requirement, "trust_root", None)
    if root is not None:
        out["trust_root"] = root.name
    for extra in ("identities", "min_signatures"):
        if hasattr(requirement, extra):
            value = getattr(requirement, extra)
            items = [v.as_json() if hasattr(v, "as_json") else v for v in value] if isinstance(value, tuple) else value
            out[extra] = items
    return out


def project_json(project: Project, repositories: Iterable[str] = ()) -> dict[str, Any]:
    """A project and its content-trust policy as the API shows it."""
    ct = project.content_trust
    requirements = [requirement_json(r) for r in getattr(ct, "require_any", ())]
    out: dict[str, Any] = {
        "name": project.name,
        "public": project.public,
        "content_trust": {
            "enforced": ct.enforce,
            "sources": list(dict.fromkeys(r["source"] for r in requirements)) or ["notary"],
            "require_any": requirements,
            "signers": list(ct.signers),
            "root_keys": sorted(ct.root_keys),
            "inherit_index": ct.inherit_index,
        },
        "repositories": list(repositories),
    }
    if getattr(ct, "attestations", ()):  # every entry must accept, besides require_any
        out["content_trust"]["attestations"] = [
            {"name": a.name, "predicate_type": a.predicate_type, "policy": a.policy,
             "signed_by": [requirement_json(r) for r in a.signed_by]} for a in ct.attestations]
    return out


def iso(ts: float | datetime | None) -> str:
    if ts is None:
        return ""
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def platform_name(p: Any) -> str:
    """`os/architecture[/variant]` of an OCI platform object ("" when there is none)."""
    if not isinstance(p, dict):
        return ""
    parts = [str(p.get("os", "")), str(p.get("architecture", ""))]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


def _descriptors(items: Any) -> list[dict[str, Any]]:
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


def kind_of(media_type: str, doc: dict[str, Any]) -> str:
    """image, index or artifact (an artifactType, or a config that is not an image config)."""
    if media_type in INDEX_TYPES:
        return "index"
    if doc.get("artifactType"):
        return "artifact"
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    if media_type == DOCKER_MANIFEST or config.get("mediaType") in IMAGE_CONFIG_TYPES:
        return "image"
    return "artifact"


def notary_signature(targets: VerifiedTargets | None, error: str, tag: str, manifest: Manifest) -> Signature:
    """The Notary status of `tag` pointing at `manifest`, from the verified targets (or the failure)."""
    if targets is None:
        status = "unsigned" if error.startswith("no trust data") else "invalid"
        return Signature("notary", status, reason=error)
    expires = iso(targets.expires)
    signed = targets.lookup(tag)
    if signed is None:
        why = targets.excluded.get(tag)
        return Signature("notary", "unsigned", expires=expires,
                         reason=f"tag not signed: {why}" if why else "tag not signed")
    keyids = tuple(targets.role_keyids.get(signed.role, ()))
    if manifest.digest.algorithm != "sha256" or signed.sha256 != manifest.digest.hex:
        return Signature("notary", "invalid", signed.role, keyids, expires,
                         f"signed for another digest: {signed.role} signs {tag} as sha256:{signed.sha256}")
    if signed.length != len(manifest.body):
        return Signature("notary", "invalid", signed.role, keyids, expires,
                         f"signed for another length: {signed.role} signs {signed.length} bytes")
    return Signature("notary", "signed", signed.role, keyids, expires)


def notary_digest_signature(targets: VerifiedTargets | None, error: str, digest: Digest) -> Signature:
    """The Notary status of a manifest by digest: does any trusted role sign a target with it?"""
    if targets is None:
        status = "unsigned" if error.startswith("no trust data") else "invalid"
        return Signature("notary", status, reason=error)
    names = targets.names_for_digest(str(digest))
    if not names:
        return Signature("notary", "unsigned", expires=iso(targets.expires), reason="digest not signed")
    roles = tuple(dict.fromkeys(targets.targets[n].role for n in names))
    keyids = tuple(k for r in roles for k in targets.role_keyids.get(r, ()))
    return Signature("notary", "signed", ", ".join(roles), keyids, iso(targets.expires),
                     "signed tags: " + ", ".join(names))


def source_signature(kind: str, result: Any) -> Signature:
    """A cosign / notation source's answer (`trust.sources.SourceResult`) as a signature entry."""
    detail = result.detail if isinstance(result.detail, dict) else {}
    root = detail.get("trust_root")
    signer = detail.get("signer")  # keyless identities and attestation signers are shown as keys
    keys = tuple(str(k) for k in detail.get("keys") or detail.get("identities") or ([signer] if signer else ()))
    if result.accepted:
        return Signature(kind, "signed", f"trust root {root}" if root else "", keys, iso(result.valid_until))
    status = "unsigned" if result.code == "no signature found" else "invalid"
    return Signature(kind, status, f"trust root {root}" if root else "", keys, reason=result.reason)


class Inspector:
    """Reports on repositories of one store, with the registry's own gate and policy."""

    def __init__(self, store: RegistryStore, gate: ContentTrustGate, policy: PolicyHolder) -> None:
        self.store = store
        self.gate = gate
        self.policy = policy

    # --- projects ------------------------------------------------------------------------------
    def project(self, name: str) -> Project:
        return self.policy.current.project(f"{name}/x")

    async def project_names(self) -> list[str]:
        """Configured projects and the projects of every stored repository."""
        names = set(self.policy.current.projects)
        names.update(project_of(r) for r in await self.store.catalog())
        return sorted(names)

    # --- manifests -----------------------------------------------------------------------------
    async def facts(self, repository: str, manifest: Manifest) -> ManifestFacts:
        try:
            doc = json.loads(manifest.body)
        except (ValueError, RecursionError):  # stored content nested too deep (pushed blobs are any bytes)
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        kind = kind_of(manifest.media_type, doc)
        platforms: list[str] = []
        if kind == "index":
            platforms = [p for p in (platform_name(d.get("platform")) for d in _descriptors(doc.get("manifests"))) if p]
        elif kind == "image":
            platforms = await self._image_platform(repository, doc)
        size = await self._total_size(repository, manifest, doc, set())
        return ManifestFacts(str(manifest.digest), manifest.media_type, kind, str(doc.get("artifactType") or ""),
                             platforms, size, doc)

    async def _image_platform(self, repository: str, doc: dict[str, Any]) -> list[str]:
        config = doc.get("config")
        if not isinstance(config, dict):
            return []
        try:
            info = await self.store.stat_blob(repository, Digest.parse(str(config.get("digest"))))
            if info.size > MAX_CONFIG:
                return []
            body = b"".join([c async for c in self.store.read_blob(info)])
            platform = platform_name(json.loads(body))
        except (BlobUnknownError, PathNotFoundError, InvalidReferenceError, ValueError, RecursionError):
            return []
        return [platform] if platform.strip("/") else []

    async def _total_size(self, repository: str, manifest: Manifest, doc: dict[str, Any], seen: set[str]) -> int:
        """Manifest + config + layers; for an index, plus its children held by the repository."""
        seen.add(str(manifest.digest))
        total = len(manifest.body)
        blobs = _descriptors(doc.get("layers"))
        if isinstance(doc.get("config"), dict):
            blobs.append(doc["config"])
        for d in blobs:
            if str(d.get("digest")) not in seen and isinstance(d.get("size"), int):
                seen.add(str(d.get("digest")))
                total += d["size"]
        if manifest.media_type in INDEX_TYPES and len(seen) < 1000:
            for child in _descriptors(doc.get("manifests")):
                if str(child.get("digest")) in seen:
                    continue
                try:
                    m = await self.store.get_manifest(repository, Digest.parse(str(child.get("digest"))))
                    child_doc = json.loads(m.body)
                except (ManifestUnknownError, InvalidReferenceError, ValueError, RecursionError):
                    continue
                if isinstance(child_doc, dict):
                    total += await self._total_size(repository, m, child_doc, seen)
        return total

    async def decision(self, repository: str, tag: str | None, manifest: Manifest) -> Decision:
        """The gate's verdict for a pull of `manifest` by `tag` (or by digest when None)."""
        verdict = await self.gate.decide(repository, tag, manifest)
        if not verdict.served:
            return Decision(False, verdict.reason)
        if self.gate.enforced(repository) is None:
            return Decision(True, verdict.reason or "content trust not enforced in this project")
        return Decision(True, verdict.reason or "signed")

    # --- tags ----------------------------------------------------------------------------------
    async def tags(self, repository: str, n: int | None = None, last: str | None = None
                   ) -> tuple[list[TagReport], bool]:
        """One page of tag reports (sorted, after `last`, at most `n`) and whether more remain;
        RepositoryUnknownError when the repository has neither tags nor content."""
        names = await self.store.list_tags(repository)
        if not names and not await self.store.repository_exists(repository):
            raise RepositoryUnknownError(repository)
        if last is not None:
            names = [t for t in names if t > last]
        more = n is not None and len(names) > n
        names = names if n is None else names[:n]
        targets, error = await self.gate.verified_targets(repository)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(tag: str) -> TagReport | None:
            async with limit:
                try:
                    return await self._tag(repository, tag, targets, error)
                except ManifestUnknownError:
                    return None  # deleted meanwhile

        reports = await asyncio.gather(*(one(t) for t in names))
        return [r for r in reports if r is not None], more

    async def tag(self, repository: str, tag: str) -> TagReport:
        """The report of one tag; ManifestUnknownError if the repository has no such tag."""
        targets, error = await self.gate.verified_targets(repository)
        return await self._tag(repository, tag, targets, error)

    async def _tag(self, repository: str, tag: str, targets: VerifiedTargets | None, error: str) -> TagReport:
        digest = await self.store.resolve_tag(repository, tag)
        pushed = await self.store.tag_modified(repository, tag)
        manifest = await self.store.get_manifest(repository, digest)
        facts = await self.facts(repository, manifest)
        return TagReport(
            tag=tag, digest=facts.digest, mediaType=facts.media_type, kind=facts.kind,
            artifactType=facts.artifact_type, platforms=facts.platforms, size=facts.size, pushed=iso(pushed),
            signatures=[notary_signature(targets, error, tag, manifest),
                        *await self.other_sources(repository, tag, manifest)],
            decision=await self.decision(repository, tag, manifest),
        )

    async def other_sources(self, repository: str, tag: str | None, manifest: Manifest) -> list[Signature]:
        """cosign / notation: every such requirement of the project, checked by the gate's own source."""
        sources = getattr(self.gate, "sources", None)
        ct = self.policy.current.project(repository).content_trust
        requirements = (*getattr(ct, "require_any", ()), *getattr(ct, "attestations", ()))
        if not sources or not any(r.kind != "notary" for r in requirements):
            return []
        from trust.sources import Subject

        subject = Subject(self.store, repository, tag, manifest)
        out = []
        for requirement in requirements:
            if requirement.kind != "notary" and requirement.kind in sources:
                result = await sources[requirement.kind].check(subject, requirement)
                out.append(source_signature(requirement.kind, result))
        return out

    # --- one manifest --------------------------------------------------------------------------
    async def manifest(self, repository: str, digest: Digest) -> ManifestReport:
        """Layers, config, children, referrers, signatures and the by-digest decision of a manifest."""
        manifest = await self.store.get_manifest(repository, digest)
        facts = await self.facts(repository, manifest)
        doc = facts.document
        tags = []
        for tag in await self.store.list_tags(repository):
            try:
                if await self.store.resolve_tag(repository, tag) == digest:
                    tags.append(tag)
            except ManifestUnknownError:
                continue
        referrers = sorted(await self.store.referrers(repository, digest), key=lambda d: str(d.get("digest")))
        targets, error = await self.gate.verified_targets(repository)
        signed_tags = []
        if targets is not None:
            for name in targets.names_for_digest(str(digest)):
                signed_tags.append({"tag": name, "role": targets.targets[name].role})
        config = doc.get("config") if isinstance(doc.get("config"), dict) else None
        subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else None
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
        return ManifestReport(
            repository=repository, digest=facts.digest, mediaType=facts.media_type, kind=facts.kind,
            artifactType=facts.artifact_type, platforms=facts.platforms, size=facts.size, tags=tags,
            config=config, layers=_descriptors(doc.get("layers")), manifests=_descriptors(doc.get("manifests")),
            subject=subject, annotations=annotations, referrers=referrers,
            signatures=[notary_digest_signature(targets, error, digest),
                        *await self.other_sources(repository, None, manifest)],
            decision=await self.decision(repository, None, manifest), signed_tags=signed_tags,
        )


class RepositoryUnknownError(LookupError):
    """The repository has no tags and no content."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"repository {repository} is not known")
        self.repository = repository
