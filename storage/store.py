"""Registry semantics over any storage driver, written once.

Layout (every name and digest is validated before it becomes a key):

    blobs/<alg>/<hex[:2]>/<hex>/data                      content-addressed bytes (blobs and manifests)
    repositories/<name>/_layers/<alg>/<hex>               link: the repository may see this blob
    repositories/<name>/_manifests/revisions/<alg>/<hex>  link: JSON {"mediaType": ...}
    repositories/<name>/_manifests/tags/<tag>             the digest the tag points at
    repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   JSON descriptor of a referrer
    repositories/<name>/_parents/<alg>/<child hex>/<alg>-<hex>       link: an index listing the child
    repositories/<name>/_uploads/<uuid>/data              append object of an upload session
    uploads/<uuid>                                        session index: {"repository", "started"}
    index/repositories/<name with '/' as '+'>             catalog entry

Repository path components cannot start with `_`, so `_layers` and friends never clash with names.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from storage.base import (
    AppendSealedError,
    OffsetMismatchError,
    PathNotFoundError,
    Stat,
    StorageDriver,
    TooManyPartsError,
)
from storage.references import Digest, InvalidReferenceError, validate_name, validate_tag

log = logging.getLogger("trustreg.integrity")
# Called with a verified upload's digest and size before it is placed; raising refuses it (nothing is kept).
Admit = Callable[[Digest, int], Awaitable[None]]


class StoreError(Exception):
    """Base of registry-semantic errors; `code` is the OCI error code the HTTP layer answers."""

    code = "UNKNOWN"

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BlobUnknownError(StoreError):
    code = "BLOB_UNKNOWN"


class ManifestUnknownError(StoreError):
    code = "MANIFEST_UNKNOWN"


class ManifestBlobUnknownError(StoreError):
    code = "MANIFEST_BLOB_UNKNOWN"


class UploadUnknownError(StoreError):
    code = "BLOB_UPLOAD_UNKNOWN"


class UploadInvalidError(StoreError):
    code = "BLOB_UPLOAD_INVALID"


class DigestMismatchError(StoreError):
    code = "DIGEST_INVALID"


class TagExistsError(StoreError):
    """A tag written create-only (an immutable one) already points at another manifest."""

    code = "DENIED"

    def __init__(self, tag: str, current: Digest | None) -> None:
        super().__init__(f"tag {tag} already exists", {"tag": tag})
        self.tag = tag
        self.current = current


class UploadRangeError(StoreError):
    """A chunk does not start where the upload ends (416)."""

    code = "BLOB_UPLOAD_INVALID"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass
class BlobInfo:
    digest: Digest
    size: int
    key: str


@dataclass
class Manifest:
    digest: Digest
    media_type: str
    body: bytes


class IntegrityError(StoreError):
    """Stored content does not hash to its digest: it is never served (500, logged)."""

    code = "UNKNOWN"


@dataclass
class _HashState:
    """In-process running hash of an upload's first `size` bytes; a cache, with re-reading the
    upload as fallback. Only the append that committed the part at `size` advances it."""

    size: int
    hasher: hashlib._Hash


def verify_content(digest: Digest, body: bytes) -> None:
    """Raise IntegrityError unless `body` hashes to `digest` (manifests are small: hashed on load)."""
    hasher = digest.hasher()
    hasher.update(body)
    if hasher.hexdigest() != digest.hex:
        raise IntegrityError(
            f"stored content of {digest} does not match its digest",
            {"digest": str(digest)},
        )


INDEX_MEDIA_TYPES = ("application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json")


def index_children(media_type: str, body: bytes) -> list[Digest]:
    """The manifests an index (or manifest list) lists; [] for anything else or unreadable."""
    if media_type not in INDEX_MEDIA_TYPES:
        return []
    try:
        entries = json.loads(body).get("manifests")
    except (ValueError, RecursionError, AttributeError):
        return []
    children = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            children.append(Digest.parse(entry["digest"]))
        except (InvalidReferenceError, KeyError, TypeError):
            continue
    return list(dict.fromkeys(children))


def blob_key(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def blob_ref_key(digest: Digest) -> str:
    """Marker rewritten whenever a manifest push references the blob: the garbage collector never
    sweeps a blob whose marker is younger than its grace period."""
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/ref"


def repo_key(name: str) -> str:
    return f"repositories/{validate_name(name)}"


class RegistryStore:
    """Blobs, manifests, tags, uploads and referrers of every repository, on one driver."""

    def __init__(self, driver: StorageDriver, manifest_cache_size: int = 4096, mark_interval: float = 60.0) -> None:
        self.driver = driver
        self._hash_states: dict[str, _HashState] = {}
        self._manifest_cache: OrderedDict[str, bytes] = OrderedDict()
        self._manifest_cache_size = manifest_cache_size
        self._indexed: set[str] = set()  # repositories known to be in the catalog index
        self.mark_interval = mark_interval  # see _stat_referenced; an online GC needs grace >= 2x this

    # --- blobs ---------------------------------------------------------------------------------
    async def blob_exists_globally(self, digest: Digest) -> int | None:
        try:
            return (await self.driver.stat(blob_key(digest))).size
        except PathNotFoundError:
            return None

    async def stat_blob(self, name: str, digest: Digest) -> BlobInfo:
        """The blob as this repository sees it; BlobUnknownError if not linked or missing."""
        link = f"{repo_key(name)}/_layers/{digest.algorithm}/{digest.hex}"
        try:
            await self.driver.stat(link)
            st = await self.driver.stat(blob_key(digest))
        except PathNotFoundError as e:
            raise BlobUnknownError(f"blob {digest} is not in repository {name}") from e
        return BlobInfo(digest, st.size, blob_key(digest))

    async def link_blob(self, name: str, digest: Digest) -> None:
        await self.driver.put(f"{repo_key(name)}/_layers/{digest.algorithm}/{digest.hex}", str(digest).encode())
        await self._index_repository(name)

    async def delete_blob(self, name: str, digest: Digest) -> None:
        await self.stat_blob(name, digest)
        await self.driver.delete(f"{repo_key(name)}/_layers/{digest.algorithm}/{digest.hex}")

    async def mount_blob(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob of `source` into `name`; None if `source` does not have it."""
        try:
            info = await self.stat_blob(source, digest)
        except BlobUnknownError:
            return None
        await self.link_blob(name, digest)
        return info

    def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.read_stream(info.key, offset, length)

    # --- uploads -------------------------------------------------------------------------------
    def _upload_key(self, name: str, upload_id: str) -> str:
        try:
            uuid.UUID(upload_id)
        except ValueError as e:
            raise UploadUnknownError(f"unknown upload {upload_id!r}") from e
        return f"{repo_key(name)}/_uploads/{upload_id}"

    async def start_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        key = self._upload_key(name, upload_id)
        record = {"repository": name, "started": time.time()}
        await self.driver.put(f"uploads/{upload_id}", json.dumps(record).encode())
        await self.driver.start_append(f"{key}/data")
        self._hash_states[upload_id] = _HashState(0, hashlib.sha256())
        return upload_id

    async def upload_size(self, name: str, upload_id: str) -> int:
        try:
            return await self.driver.append_size(f"{self._upload_key(name, upload_id)}/data")
        except PathNotFoundError as e:
            raise UploadUnknownError(f"unknown upload {upload_id}") from e

    async def append_upload(
        self, name: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None = None
    ) -> int:
        """Append a chunk stream; `start` (from Content-Range) must equal the current size. The chunk
        lands whole or not at all, and never once the upload is finished or cancelled."""
        key = f"{self._upload_key(name, upload_id)}/data"
        size = await self.upload_size(name, upload_id)
        if start is not None and start != size:
            raise UploadRangeError(f"chunk starts at {start}, upload has {size} bytes", size)
        state = self._hash_states.get(upload_id)
        hasher = state.hasher.copy() if state is not None and state.size == size else None

        async def hashed(it: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
            async for chunk in it:
                if hasher is not None:
                    hasher.update(chunk)
                yield chunk

        try:
            new_size = await self.driver.append(key, hashed(chunks), size)
        except OffsetMismatchError as e:
            raise UploadRangeError(str(e), e.actual) from e
        except (AppendSealedError, PathNotFoundError) as e:
            raise UploadUnknownError(f"upload {upload_id} is finished or cancelled") from e
        except TooManyPartsError as e:
            raise UploadInvalidError(f"upload {upload_id} has too many chunks; finish it or start another") from e
        # The part at `size` is this call's alone (committed create-only), so the cache may advance.
        if hasher is not None and state is self._hash_states.get(upload_id) and state.size == size:
            state.size, state.hasher = new_size, hasher
        return new_size

    async def finish_upload(self, name: str, upload_id: str, expected: Digest, admit: Admit | None = None) -> BlobInfo:
        """Seal the upload (no chunk lands after this), verify it against `expected` and place it as
        a new blob linked into `name`. An existing blob is never rewritten. `admit` may refuse the
        verified upload by raising: the session is removed and nothing is placed."""
        key = f"{self._upload_key(name, upload_id)}/data"
        try:
            size = await self.driver.seal_append(key)
        except PathNotFoundError as e:
            raise UploadUnknownError(f"unknown upload {upload_id}") from e
        state = self._hash_states.pop(upload_id, None)
        try:
            if state is not None and state.size == size and expected.algorithm == "sha256":
                actual = state.hasher.hexdigest()
            else:
                hasher = expected.hasher()
                async for chunk in self.driver.read_append(key):
                    hasher.update(chunk)
                actual = hasher.hexdigest()
            if actual != expected.hex:
                await self._end_upload(name, upload_id)
                raise DigestMismatchError(
                    f"upload content has digest {expected.algorithm}:{actual}, not {expected}",
                    {"expected": str(expected), "actual": f"{expected.algorithm}:{actual}"},
                )
            if admit is not None:
                try:
                    await admit(expected, size)
                except BaseException:
                    await self._end_upload(name, upload_id)
                    raise
            if await self.blob_exists_globally(expected) is None:
                await self.driver.commit_append(key, blob_key(expected))
        except PathNotFoundError as e:  # finished or cancelled meanwhile by another request
            raise UploadUnknownError(f"upload {upload_id} is finished or cancelled") from e
        await self._end_upload(name, upload_id)
        await self.link_blob(name, expected)
        return BlobInfo(expected, size, blob_key(expected))

    async def _end_upload(self, name: str, upload_id: str) -> None:
        key = self._upload_key(name, upload_id)
        self._hash_states.pop(upload_id, None)
        await self.driver.abort_append(f"{key}/data")
        await self.driver.delete(key)
        await self.driver.delete(f"uploads/{upload_id}")

    async def open_uploads(self) -> int:
        """How many upload sessions are open, across every process sharing this storage."""
        return len(await self.driver.list("uploads"))

    async def cancel_upload(self, name: str, upload_id: str) -> None:
        await self.upload_size(name, upload_id)
        await self._end_upload(name, upload_id)

    async def put_blob(
        self, name: str, chunks: AsyncIterable[bytes], expected: Digest, admit: Admit | None = None
    ) -> BlobInfo:
        """Monolithic upload: stream, verify, place. Nothing is stored if the digest differs or
        `admit` refuses."""
        upload_id = await self.start_upload(name)
        try:
            await self.append_upload(name, upload_id, chunks, 0)
            return await self.finish_upload(name, upload_id, expected, admit)
        except BaseException:
            try:
                await self.cancel_upload(name, upload_id)
            except UploadUnknownError:
                pass
            raise

    # --- manifests -----------------------------------------------------------------------------
    async def _stat_referenced(self, digest: Digest) -> Stat | None:
        """Stat content a manifest references (None if absent), protecting it from a concurrent GC
        sweep: unless the content itself or its marker is younger than `mark_interval`, the marker is
        rewritten and the content confirmed afterwards. A GC whose grace period is at least twice
        that never sweeps content this touched (it re-reads the marker after moving content aside).
        Young content costs one stat; old content one marker write per `mark_interval` at most."""
        try:
            st = await self.driver.stat(blob_key(digest))
        except PathNotFoundError:
            return None  # nothing to protect: the reference check (or the write that follows) handles it
        now = time.time()
        if now - st.modified < self.mark_interval:
            return st
        try:
            if now - (await self.driver.stat(blob_ref_key(digest))).modified < self.mark_interval:
                return st
        except PathNotFoundError:
            pass
        await self.driver.put(blob_ref_key(digest), b"")
        try:  # a sweep that moved the content aside before the marker landed has not put it back
            return await self.driver.stat(blob_key(digest))
        except PathNotFoundError:
            return None

    async def _check_blob(self, name: str, digest: Digest) -> None:
        """The blob is linked in the repository and its content is there (marker refreshed)."""
        try:
            await self.driver.stat(f"{repo_key(name)}/_layers/{digest.algorithm}/{digest.hex}")
            present = await self._stat_referenced(digest) is not None
        except PathNotFoundError:
            present = False
        if not present:
            raise ManifestBlobUnknownError(f"blob {digest} is not in repository {name}", {"digest": str(digest)})

    async def check_references(self, name: str, blobs: list[Digest], children: list[Digest]) -> None:
        """Every blob and child manifest a manifest references must be in the repository. Blob
        markers are refreshed as they are checked, so a concurrent garbage collection either keeps
        the blobs or this check fails cleanly (see storage.gc)."""
        await asyncio.gather(*(self._check_blob(name, d) for d in blobs))
        present = await asyncio.gather(*(self.has_manifest(name, d) for d in children))
        for digest, ok in zip(children, present, strict=True):
            if not ok:
                raise ManifestBlobUnknownError(
                    f"manifest {digest} is not in repository {name}", {"digest": str(digest)}
                )

    def _revision_key(self, name: str, digest: Digest) -> str:
        return f"{repo_key(name)}/_manifests/revisions/{digest.algorithm}/{digest.hex}"

    def _tag_key(self, name: str, tag: str) -> str:
        return f"{repo_key(name)}/_manifests/tags/{validate_tag(tag)}"

    async def manifest_media_type(self, name: str, digest: Digest) -> str:
        try:
            link = json.loads(await self.driver.get(self._revision_key(name, digest)))
        except PathNotFoundError as e:
            raise ManifestUnknownError(f"manifest {digest} is not in repository {name}") from e
        return str(link["mediaType"])

    async def has_manifest(self, name: str, digest: Digest) -> bool:
        try:
            await self.driver.stat(self._revision_key(name, digest))
            return True
        except PathNotFoundError:
            return False

    async def get_manifest(self, name: str, digest: Digest) -> Manifest:
        media_type = await self.manifest_media_type(name, digest)
        body = self._manifest_cache.get(str(digest))
        if body is None:
            try:
                body = await self.driver.get(blob_key(digest))
            except PathNotFoundError as e:
                raise ManifestUnknownError(f"manifest {digest} content is missing") from e
            try:
                verify_content(digest, body)
            except IntegrityError:
                log.error("integrity error: stored manifest %s does not hash to its digest; not served", digest)
                raise
            self._remember_manifest(digest, body)
        else:
            self._manifest_cache.move_to_end(str(digest))
        return Manifest(digest, media_type, body)

    def _remember_manifest(self, digest: Digest, body: bytes) -> None:
        self._manifest_cache[str(digest)] = body
        if len(self._manifest_cache) > self._manifest_cache_size:
            self._manifest_cache.popitem(last=False)

    async def resolve_tag(self, name: str, tag: str) -> Digest:
        try:
            return Digest.parse((await self.driver.get(self._tag_key(name, tag))).decode())
        except PathNotFoundError as e:
            raise ManifestUnknownError(f"tag {tag} is not in repository {name}") from e

    async def put_manifest(
        self,
        name: str,
        body: bytes,
        media_type: str,
        digest: Digest,
        tags: list[str],
        subject: dict | None,
        referrer_descriptor: dict | None,
        create_only_tags: frozenset[str] = frozenset(),
    ) -> None:
        """Store a validated manifest: content, then its revision link and referrer entry, then tags
        (last, so a tag never points at something not yet stored); one driver call for all of it.
        Tags in `create_only_tags` are written only where absent (or already this digest), else
        TagExistsError: of two pushes racing to create one, one wins."""
        content = [] if await self._stat_referenced(digest) is not None else [(blob_key(digest), body)]
        links = [(self._revision_key(name, digest), json.dumps({"mediaType": media_type}).encode())]
        if subject is not None and referrer_descriptor is not None:
            subject_digest = Digest.parse(subject["digest"])
            links.append((self._referrer_key(name, subject_digest, digest), json.dumps(referrer_descriptor).encode()))
        links += [(self._parent_key(name, child, digest), b"{}") for child in index_children(media_type, body)]
        tag_links = [(self._tag_key(name, tag), str(digest).encode()) for tag in tags if tag not in create_only_tags]
        await self.driver.put_many([batch for batch in (content, links, tag_links) if batch])
        self._remember_manifest(digest, body)
        for tag in create_only_tags & set(tags):
            if not await self.driver.put_if_absent(self._tag_key(name, tag), str(digest).encode()):
                try:
                    current = await self.resolve_tag(name, tag)
                except ManifestUnknownError:
                    current = None
                if current != digest:
                    raise TagExistsError(tag, current)
        await self._index_repository(name)

    async def tag_modified(self, name: str, tag: str) -> float:
        """When the tag was last written (seconds since the epoch): its last push."""
        try:
            return (await self.driver.stat(self._tag_key(name, tag))).modified
        except PathNotFoundError as e:
            raise ManifestUnknownError(f"tag {tag} is not in repository {name}") from e

    async def delete_tag(self, name: str, tag: str) -> None:
        await self.resolve_tag(name, tag)
        await self.driver.delete(self._tag_key(name, tag))

    async def delete_manifest(self, name: str, digest: Digest) -> None:
        """Remove a manifest revision, every tag pointing at it, its referrer entry and parent links."""
        media_type = await self.manifest_media_type(name, digest)
        for tag in await self.list_tags(name):
            try:
                if await self.resolve_tag(name, tag) == digest:
                    await self.driver.delete(self._tag_key(name, tag))
            except ManifestUnknownError:
                continue
        try:
            body = (await self.get_manifest(name, digest)).body
        except (ManifestUnknownError, IntegrityError):
            body = b""
        try:
            subject = json.loads(body).get("subject")
            if isinstance(subject, dict) and "digest" in subject:
                await self.driver.delete(self._referrer_key(name, Digest.parse(subject["digest"]), digest))
        except (ValueError, AttributeError):
            pass
        for child in index_children(media_type, body):
            await self.driver.delete(self._parent_key(name, child, digest))
        await self.driver.delete(self._revision_key(name, digest))

    # --- tags, catalog, referrers --------------------------------------------------------------
    async def repository_exists(self, name: str) -> bool:
        return bool(await self.driver.list(repo_key(name)))

    async def list_tags(self, name: str) -> list[str]:
        return await self.driver.list(f"{repo_key(name)}/_manifests/tags")

    async def catalog(self) -> list[str]:
        return sorted(n.replace("+", "/") for n in await self.driver.list("index/repositories"))

    async def _index_repository(self, name: str) -> None:
        """Make sure the catalog lists `name`. Catalog entries are never removed, so a name seen
        indexed once needs no further look."""
        if name in self._indexed:
            return
        key = f"index/repositories/{validate_name(name).replace('/', '+')}"
        try:
            await self.driver.stat(key)
        except PathNotFoundError:
            await self.driver.put(key, name.encode())
        self._indexed.add(name)

    def _referrer_key(self, name: str, subject: Digest, referrer: Digest) -> str:
        return (
            f"{repo_key(name)}/_referrers/{subject.algorithm}/{subject.hex}/"
            f"{referrer.algorithm}-{referrer.hex}"
        )

    def _parent_key(self, name: str, child: Digest, index: Digest) -> str:
        return f"{repo_key(name)}/_parents/{child.algorithm}/{child.hex}/{index.algorithm}-{index.hex}"

    async def parents(self, name: str, child: Digest, limit: int = 16) -> list[Digest]:
        """Up to `limit` indexes of the repository recorded as listing `child` (links written when an
        index is pushed; a hint only: callers read the index itself before relying on it)."""
        prefix = f"{repo_key(name)}/_parents/{child.algorithm}/{child.hex}"
        found = []
        for entry in sorted(await self.driver.list(prefix))[:limit]:
            try:
                found.append(Digest.parse(entry.replace("-", ":", 1)))
            except InvalidReferenceError:
                continue
        return found

    async def referrers(self, name: str, subject: Digest) -> list[dict]:
        prefix = f"{repo_key(name)}/_referrers/{subject.algorithm}/{subject.hex}"
        result = []
        for entry in await self.driver.list(prefix):
            try:
                result.append(json.loads(await self.driver.get(f"{prefix}/{entry}")))
            except PathNotFoundError:
                continue
        return result
