"""Online mark-and-sweep garbage collection, safe while the registry serves pushes.

Mark: every manifest linked in a repository is kept (with `delete_untagged`, only tagged ones, the
children of kept indexes, referrers of kept manifests, and manifests younger than the grace period);
the blobs they reference (config, layers) and the manifest contents themselves are marked.
Sweep: an unmarked blob is removed only if its data and its reference marker (rewritten by every
manifest push that references it, see `RegistryStore.check_references`) are both older than the grace
period. The blob is first moved into quarantine, then the marker is read again: a push that
referenced it meanwhile wins and the blob is put back. A push racing the sweep therefore either
completes with all its blobs present or fails cleanly with MANIFEST_BLOB_UNKNOWN.
Upload sessions idle longer than `upload_ttl` are purged (their S3 multipart uploads aborted).
Online safety needs `grace` >= 2 x the registry's `RegistryStore.mark_interval` (60 s): the CLI
enforces `MIN_ONLINE_GRACE` unless told the registry is stopped (`--offline`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from storage.base import PathNotFoundError
from storage.references import ALGORITHMS, Digest, InvalidReferenceError
from storage.store import RegistryStore, blob_key, blob_ref_key, repo_key

log = logging.getLogger("trustreg.gc")
DEFAULT_GRACE = 3600.0
DEFAULT_UPLOAD_TTL = 24 * 3600.0
MIN_ONLINE_GRACE = 120.0


@dataclass
class GCReport:
    dry_run: bool
    blobs: list[tuple[str, int]] = field(default_factory=list)  # (digest, size) removed
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest) removed
    uploads: list[tuple[str, str]] = field(default_factory=list)  # (repository, upload id) purged
    kept_young: int = 0  # unreferenced blobs spared by the grace period

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.blobs)


@dataclass
class _ManifestRefs:
    blobs: list[Digest]
    children: list[Digest]
    subject: Digest | None


def _references(body: bytes) -> _ManifestRefs:
    """What a stored manifest points at; unparseable content references nothing."""
    refs = _ManifestRefs([], [], None)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return refs
    if not isinstance(doc, dict):
        return refs

    def digest_of(desc: object) -> Digest | None:
        if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
            try:
                return Digest.parse(desc["digest"])
            except InvalidReferenceError:
                return None
        return None

    for desc in [doc.get("config"), *(doc.get("layers") or []), *(doc.get("blobs") or [])]:
        d = digest_of(desc)
        if d is not None:
            refs.blobs.append(d)
    for desc in doc.get("manifests") or []:
        d = digest_of(desc)
        if d is not None:
            refs.children.append(d)
    refs.subject = digest_of(doc.get("subject"))
    return refs


class GarbageCollector:
    """One collection run over a store; see the module docstring."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        dry_run: bool = False,
        delete_untagged: bool = False,
        grace: float = DEFAULT_GRACE,
        upload_ttl: float = DEFAULT_UPLOAD_TTL,
    ) -> None:
        self.store = store
        self.driver = store.driver
        self.dry_run = dry_run
        self.delete_untagged = delete_untagged
        self.grace = grace
        self.upload_ttl = upload_ttl
        self.now = time.time()
        self.report = GCReport(dry_run=dry_run)

    async def run(self) -> GCReport:
        marked: set[Digest] = set()
        repositories = await self.store.catalog()
        for name in repositories:
            marked |= await self._mark_repository(name)
        swept = await self._sweep_blobs(marked)
        for name in repositories:
            await self._unlink_swept(name, swept)
        await self._purge_uploads()
        return self.report

    async def _age(self, key: str) -> float | None:
        try:
            return self.now - (await self.driver.stat(key)).modified
        except PathNotFoundError:
            return None

    async def _revisions(self, name: str) -> list[Digest]:
        out = []
        for alg in ALGORITHMS:
            for hex_ in await self.driver.list(f"{repo_key(name)}/_manifests/revisions/{alg}"):
                try:
                    out.append(Digest.parse(f"{alg}:{hex_}"))
                except InvalidReferenceError:
                    continue
        return out

    async def _mark_repository(self, name: str) -> set[Digest]:
        revisions = await self._revisions(name)
        refs: dict[Digest, _ManifestRefs] = {}
        for digest in revisions:
            try:
                refs[digest] = _references((await self.store.get_manifest(name, digest)).body)
            except Exception:  # missing content: nothing to follow, `trustreg check` reports it
                refs[digest] = _ManifestRefs([], [], None)
        keep = set(revisions)
        if self.delete_untagged:
            keep = await self._roots(name, revisions)
            changed = True
            while changed:  # children of kept indexes and referrers of kept subjects
                changed = False
                for digest, r in refs.items():
                    if digest in keep:
                        new = {c for c in r.children if c in refs} - keep
                    elif r.subject is not None and r.subject in keep:
                        new = {digest}
                    else:
                        new = set()
                    if new:
                        keep |= new
                        changed = True
            for digest in revisions:
                if digest not in keep:
                    self.report.manifests.append((name, str(digest)))
                    if not self.dry_run:
                        await self.store.delete_manifest(name, digest)
        marked = set(keep)
        for digest in keep:
            marked.update(refs[digest].blobs)
        return marked

    async def _roots(self, name: str, revisions: list[Digest]) -> set[Digest]:
        roots: set[Digest] = set()
        for tag in await self.store.list_tags(name):
            try:
                roots.add(await self.store.resolve_tag(name, tag))
            except Exception:
                continue
        for digest in revisions:
            age = await self._age(f"{repo_key(name)}/_manifests/revisions/{digest.algorithm}/{digest.hex}")
            if age is not None and age < self.grace:
                roots.add(digest)
        return roots

    async def _sweep_blobs(self, marked: set[Digest]) -> set[Digest]:
        swept: set[Digest] = set()
        async for key in self.driver.walk("blobs"):
            parts = key.split("/")
            if len(parts) != 5 or parts[4] != "data":
                continue
            try:
                digest = Digest.parse(f"{parts[1]}:{parts[3]}")
            except InvalidReferenceError:
                continue
            if digest in marked:
                continue
            if await self._young(digest):
                self.report.kept_young += 1
                continue
            try:
                size = (await self.driver.stat(key)).size
            except PathNotFoundError:
                continue
            if not self.dry_run and not await self._remove_blob(digest):
                continue
            self.report.blobs.append((str(digest), size))
            swept.add(digest)
        return swept

    async def _young(self, digest: Digest) -> bool:
        for key in (blob_key(digest), blob_ref_key(digest)):
            age = await self._age(key)
            if age is not None and age < self.grace:
                return True
        return False

    async def _remove_blob(self, digest: Digest) -> bool:
        """Quarantine, re-check the reference marker, then delete (or restore)."""
        quarantine = f"gc-quarantine/{digest.algorithm}-{digest.hex}"
        try:
            await self.driver.move(blob_key(digest), quarantine)
        except PathNotFoundError:
            return False
        if await self._young(digest):
            await self.driver.move(quarantine, blob_key(digest))
            log.info("kept %s: referenced by a push during collection", digest)
            return False
        await self.driver.delete(quarantine)
        await self.driver.delete(blob_ref_key(digest))
        return True

    async def _unlink_swept(self, name: str, swept: set[Digest]) -> None:
        if self.dry_run or not swept:
            return
        for alg in ALGORITHMS:
            prefix = f"{repo_key(name)}/_layers/{alg}"
            for hex_ in await self.driver.list(prefix):
                if Digest(alg, hex_) in swept:
                    await self.driver.delete(f"{prefix}/{hex_}")

    async def _purge_uploads(self) -> None:
        for upload_id in await self.driver.list("uploads"):
            try:
                record = json.loads(await self.driver.get(f"uploads/{upload_id}"))
                name = str(record["repository"])
                data = f"{repo_key(name)}/_uploads/{upload_id}"
            except (PathNotFoundError, ValueError, KeyError, InvalidReferenceError):
                continue
            ages = [await self._age(f"uploads/{upload_id}"), await self._age(f"{data}/data")]
            if any(age is not None and age < self.upload_ttl for age in ages):
                continue
            self.report.uploads.append((name, upload_id))
            if not self.dry_run:
                await self.driver.abort_append(f"{data}/data")
                await self.driver.delete(data)
                await self.driver.delete(f"uploads/{upload_id}")


async def collect_garbage(store: RegistryStore, **options: object) -> GCReport:
    """Run one collection; options as for GarbageCollector."""
    return await GarbageCollector(store, **options).run()  # type: ignore[arg-type]
