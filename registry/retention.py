"""Retention (`projects.<p>.retention`): delete the tags outside a project's rules, and with them their
signatures and other referrers; the blobs they leave unreferenced go with the next `gc`.

    retention:
      keep_last: 10          # most recently pushed tags per repository (absent: no limit)
      keep_tags: ["v*"]      # kept whatever their age
      keep_signed: true      # kept if the project enforces and the gate would serve them (default)
                             # (tags matching `immutable_tags` are never deleted)
      delete_untagged: true  # also remove the manifests nothing kept needs (below)

Signature tags (cosign `<alg>-<hex>.sig`/`.att`/`.sbom`, the referrers tag schema's `<alg>-<hex>`) are
never candidates themselves: they go when their subject goes. A manifest leaves only when no
remaining tag reaches it (directly or as an index child); a referrer whose subject is kept stays.
With `delete_untagged`, a manifest is kept only if a remaining tag reaches it, or it is a child of a
kept index, a referrer of a kept manifest, the manifest of a signature tag of a kept subject (all
transitively), or younger than `grace` seconds (a push in progress: platform manifests before their
index, a signature before its tag), or unreadable; the others go with their signatures and referrers.
`trustreg gc --retention` and the `retention_schedule` (registry.retention_schedule) run it.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.loader import Settings
from registry.immutable import SIGNATURE_TAG, project_config, protecting_rule
from storage.base import PathNotFoundError
from storage.references import ALGORITHMS, Digest, InvalidReferenceError
from storage.store import IntegrityError, ManifestUnknownError, RegistryStore, index_children, repo_key
from trust.gate import ContentTrustGate

DEFAULT_GRACE = 3600.0  # seconds an untagged manifest is spared (as gc's grace)


@dataclass(frozen=True)
class Rules:
    keep_last: int | None = None
    keep_tags: tuple[str, ...] = ()
    keep_signed: bool = True
    delete_untagged: bool = False


def rules_for(raw: Mapping[str, Any], repository: str) -> Rules | None:
    """The retention rules of `repository`'s project, None without any."""
    section = project_config(raw, repository).get("retention")
    if not section:
        return None
    return Rules(section.get("keep_last"), tuple(section.get("keep_tags") or ()),
                 bool(section.get("keep_signed", True)), bool(section.get("delete_untagged", False)))


@dataclass
class RetentionReport:
    dry_run: bool
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (repository, tag, digest) deleted
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest) removed


class Retention:
    """One retention pass over the store (see the module docstring)."""

    def __init__(self, store: RegistryStore, gate: ContentTrustGate, raw: Mapping[str, Any],
                 dry_run: bool = False, grace: float = DEFAULT_GRACE) -> None:
        self.store = store
        self.gate = gate
        self.raw = raw
        self.grace = grace
        self.report = RetentionReport(dry_run)
        self._removed: set[tuple[str, Digest]] = set()

    async def run(self) -> RetentionReport:
        for repository in await self.store.catalog():
            rules = rules_for(self.raw, repository)
            if rules is not None:
                await self._repository(repository, rules)
        return self.report

    async def _signed(self, repository: str, tag: str, digest: Digest) -> bool:
        if self.gate.enforced(repository) is None:
            return False  # nothing is signed where nothing is checked
        try:
            manifest = await self.store.get_manifest(repository, digest)
        except (ManifestUnknownError, IntegrityError):
            return False
        return (await self.gate.decide(repository, tag, manifest)).served

    async def doomed_tags(self, repository: str, rules: Rules) -> dict[str, Digest]:
        """The tags the rules do not keep (tag -> digest), oldest push last kept."""
        pushed = []
        for tag in await self.store.list_tags(repository):
            if SIGNATURE_TAG.match(tag):
                continue
            try:
                pushed.append((await self.store.tag_modified(repository, tag), tag,
                               await self.store.resolve_tag(repository, tag)))
            except ManifestUnknownError:
                continue
        pushed.sort(reverse=True)
        doomed = {}
        for rank, (_, tag, digest) in enumerate(pushed):
            if rules.keep_last is None or rank < rules.keep_last:
                continue
            if any(fnmatch.fnmatchcase(tag, g) for g in rules.keep_tags) or protecting_rule(self.raw, repository, tag):
                continue  # kept by the rules; an immutable tag is never deleted
            if rules.keep_signed and await self._signed(repository, tag, digest):
                continue
            doomed[tag] = digest
        return doomed

    async def _reachable(self, repository: str, tags: list[str]) -> set[Digest]:
        """Manifests the given tags reach (index children included)."""
        reached: set[Digest] = set()
        todo = []
        for tag in tags:
            try:
                todo.append(await self.store.resolve_tag(repository, tag))
            except ManifestUnknownError:
                continue
        while todo:
            digest = todo.pop()
            if digest in reached:
                continue
            reached.add(digest)
            try:
                doc = json.loads((await self.store.get_manifest(repository, digest)).body)
            except (ManifestUnknownError, IntegrityError, ValueError, RecursionError):
                continue
            for child in doc.get("manifests") or () if isinstance(doc, dict) else ():
                try:
                    todo.append(Digest.parse(str(child.get("digest"))))
                except (InvalidReferenceError, AttributeError):
                    continue
        return reached

    async def _repository(self, repository: str, rules: Rules) -> None:
        doomed = await self.doomed_tags(repository, rules)
        remaining = [t for t in await self.store.list_tags(repository)
                     if t not in doomed and not SIGNATURE_TAG.match(t)]
        kept = await self._reachable(repository, remaining)
        for tag, digest in sorted(doomed.items()):
            self.report.tags.append((repository, tag, str(digest)))
            if not self.report.dry_run:
                await self.store.delete_tag(repository, tag)
        for digest in sorted({d for d in doomed.values() if d not in kept}, key=str):
            await self._remove_with_referrers(repository, digest, kept)
        if rules.delete_untagged:
            await self._untagged(repository, kept)

    async def _untagged(self, repository: str, reached: set[Digest]) -> None:
        """Remove the manifests nothing kept needs (`delete_untagged`, see the module docstring)."""
        links: dict[Digest, tuple[set[Digest], Digest | None]] = {}  # digest -> (children, subject)
        keep = set(reached)
        now = time.time()
        for alg in ALGORITHMS:
            prefix = f"{repo_key(repository)}/_manifests/revisions/{alg}"
            for hex_ in await self.store.driver.list(prefix):
                try:
                    digest = Digest.parse(f"{alg}:{hex_}")
                    found = await self._links(repository, digest)
                    if found is None or now - (await self.store.driver.stat(f"{prefix}/{hex_}")).modified < self.grace:
                        keep.add(digest)  # unreadable (`trustreg check` reports it) or young: never deleted here
                    links[digest] = found or (set(), None)
                except (InvalidReferenceError, PathNotFoundError):
                    continue
        for tag in await self.store.list_tags(repository):  # signature tags name their subject
            if match := SIGNATURE_TAG.match(tag):
                try:
                    target = await self.store.resolve_tag(repository, tag)
                except ManifestUnknownError:
                    continue
                if target in links:
                    children, subject = links[target]
                    links[target] = (children, subject or Digest.parse(match.group(1).replace("-", ":", 1)))
        changed = True
        while changed:  # children of kept indexes; referrers and signatures of kept subjects
            changed = False
            for digest, (children, subject) in links.items():
                new = (children & links.keys()) - keep if digest in keep else {digest} if subject in keep else set()
                if new:
                    keep |= new
                    changed = True
        for digest in sorted(links.keys() - keep, key=str):
            await self._remove_with_referrers(repository, digest, keep)

    async def _links(self, repository: str, digest: Digest) -> tuple[set[Digest], Digest | None] | None:
        """A manifest's index children and `subject`; None when it cannot be read."""
        try:
            manifest = await self.store.get_manifest(repository, digest)
            doc = json.loads(manifest.body)
            subject = Digest.parse(str(doc["subject"]["digest"])) if isinstance(doc.get("subject"), dict) else None
        except (ManifestUnknownError, IntegrityError, ValueError, RecursionError):
            return None
        except (AttributeError, KeyError, InvalidReferenceError):  # a JSON value that is no manifest's subject
            return set(index_children(manifest.media_type, manifest.body)), None
        return set(index_children(manifest.media_type, manifest.body)), subject

    async def _remove_with_referrers(self, repository: str, digest: Digest, kept: set[Digest]) -> None:
        """Remove a manifest, its signature tags' manifests and its referrers (recursively)."""
        if (repository, digest) in self._removed:
            return
        self._removed.add((repository, digest))
        attached: list[Digest] = []
        for suffix in ("", ".sig", ".att", ".sbom"):
            try:
                attached.append(await self.store.resolve_tag(repository, f"{digest.algorithm}-{digest.hex}{suffix}"))
            except ManifestUnknownError:
                continue
        for referrer in await self.store.referrers(repository, digest):
            try:
                attached.append(Digest.parse(str(referrer.get("digest"))))
            except InvalidReferenceError:
                continue
        self.report.manifests.append((repository, str(digest)))
        if not self.report.dry_run:
            try:
                await self.store.delete_manifest(repository, digest)
            except ManifestUnknownError:
                pass
        for other in attached:
            if other not in kept and other != digest:
                await self._remove_with_referrers(repository, other, kept)


async def apply_retention(store: RegistryStore, gate: ContentTrustGate, raw: Mapping[str, Any],
                          dry_run: bool = False, grace: float = DEFAULT_GRACE) -> RetentionReport:
    """One pass over every repository whose project has retention rules. Run `gc` afterwards to free
    the blobs."""
    return await Retention(store, gate, raw, dry_run, grace).run()


async def retention_from_settings(settings: Settings, dry_run: bool = False,
                                  grace: float = DEFAULT_GRACE) -> RetentionReport:
    """`apply_retention` straight on the configured storage, with the server's own gate (what
    `trustreg gc --retention` is to run before its mark and sweep)."""
    from registry.enforcement import NoTrustServer
    from registry.notary_api import key_passphrase
    from storage.factory import create_driver
    from trust.gate import TrustDataSource
    from trust.policy import Policy, PolicyHolder
    from trust.server import NotaryService

    driver = create_driver(settings.storage)
    try:
        await driver.check()
        store = RegistryStore(driver)
        policy = Policy.from_config(settings.raw, settings.config_dir)
        policy.load_trust_roots()
        source: TrustDataSource = NoTrustServer()
        if (settings.raw.get("trust") or {}).get("enabled", True):
            source = NotaryService(driver, key_passphrase(settings))
        gate = ContentTrustGate(store, source, PolicyHolder(policy))
        return await apply_retention(store, gate, settings.raw, dry_run, grace)
    finally:
        await driver.close()
