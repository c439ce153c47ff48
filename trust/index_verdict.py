"""Multi-arch images signed once: a platform manifest requested by digest is judged by its index.

Signing tools sign a multi-arch image's index; a runtime resolves the tag to the index, then fetches
the platform manifest BY DIGEST. Such a manifest, when not accepted itself, is served if an index that
lists it is accepted by the gate's own decision (its requirements and attestations; never the signature
exemption nor the push-holder exemption). The candidate indexes are:
- found through the links the store writes when an index is pushed (`RegistryStore.parents`, at most
  `MAX_PARENTS`), so only indexes of the SAME repository are candidates;
- read strictly (`strict_doc`, as Go clients read them), of an index media type agreeing with the
  document's own `mediaType`, with no image fields (`config`, `layers`), and listing the manifest by
  digest with its exact size;
- one level deep: a manifest that is itself an index never inherits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from storage.store import INDEX_MEDIA_TYPES, Manifest, ManifestUnknownError, RegistryStore
from trust.sources.artifacts import strict_doc

MAX_PARENTS = 16


def lists(index: Manifest, child: Manifest) -> bool:
    """Whether `index` is an unambiguous index that lists `child` (by digest, with its size)."""
    if index.media_type not in INDEX_MEDIA_TYPES:
        return False
    doc = strict_doc(index)
    if doc is None or doc.get("mediaType", index.media_type) != index.media_type or "config" in doc or "layers" in doc:
        return False
    entries = doc.get("manifests")
    return any(
        isinstance(e, dict) and e.get("digest") == str(child.digest) and e.get("size") == len(child.body)
        for e in (entries if isinstance(entries, list) else [])
    )


async def listing_indexes(store: RegistryStore, repository: str, child: Manifest) -> list[Manifest]:
    """The indexes of `repository` that list `child` (none when `child` is itself an index)."""
    if child.media_type in INDEX_MEDIA_TYPES:
        return []
    found = []
    for digest in await store.parents(repository, child.digest, MAX_PARENTS):
        try:
            index = await store.get_manifest(repository, digest)
        except ManifestUnknownError:  # a link left by an interrupted delete: the index is gone
            continue
        if lists(index, child):
            found.append(index)
    return found


async def inherited(
    store: RegistryStore, repository: str, child: Manifest,
    judge: Callable[[Manifest], Awaitable[tuple[bool, str]]],
) -> tuple[bool, list[dict[str, Any]]]:
    """Whether an index listing `child` is accepted by `judge` (served, reason); with what was tried."""
    tried: list[dict[str, Any]] = []
    for index in await listing_indexes(store, repository, child):
        served, reason = await judge(index)
        if served:
            return True, [{"index": str(index.digest), "result": "accepted"}]
        tried.append({"index": str(index.digest), "result": reason})
    return False, tried
