"""Automatic cross-repository mount (OCI distribution-spec: `POST .../blobs/uploads/?mount=<digest>`
without `from`): the blob is linked from some repository that holds it and that the caller may pull.

Existence never leaks across permissions: repositories the caller may not pull are not even looked
at, so a blob only they hold answers exactly like an unknown one (202, a fresh upload session).
"""

from __future__ import annotations

from aiohttp import web

from registry.access import AUTHORIZER
from storage.references import Digest, is_valid_name
from storage.store import BlobUnknownError, RegistryStore


async def holds(st: RegistryStore, repository: str, digest: Digest) -> bool:
    try:
        await st.stat_blob(repository, digest)
    except BlobUnknownError:
        return False
    return True


async def mount_source(request: web.Request, st: RegistryStore, name: str, digest: Digest,
                       source: str | None) -> str | None:
    """The repository to mount `digest` from: `source` (the `from` parameter) if the caller may pull
    it and it holds the blob; without `from`, any repository that qualifies; else None."""
    if source is None:
        return await pullable_holder(request, st, name, digest)
    if is_valid_name(source) and await request.app[AUTHORIZER].allowed(request, source, "pull") \
            and await holds(st, source, digest):
        return source
    return None


async def pullable_holder(request: web.Request, st: RegistryStore, name: str, digest: Digest) -> str | None:
    """A repository holding `digest` that the caller may pull (the target itself first), or None."""
    if await st.blob_exists_globally(digest) is None:  # nobody holds it: no repository to look at
        return None
    authorizer = request.app[AUTHORIZER]
    for repository in [name, *(r for r in await st.catalog() if r != name)]:
        if await authorizer.allowed(request, repository, "pull") and await holds(st, repository, digest):
            return repository
    return None
