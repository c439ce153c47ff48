"""Automatic cross-repository mount (OCI distribution-spec: `POST .../blobs/uploads/?mount=<digest>`
without `from`): the blob is linked from some repository that holds it and that the caller may pull.

Existence never leaks across permissions: repositories the caller may not pull are not even looked
at, so a blob only they hold answers exactly like an unknown one (202, a fresh upload session).
"""

from __future__ import annotations

from aiohttp import web

from registry.access import AUTHORIZER
from storage.references import Digest
from storage.store import BlobInfo, BlobUnknownError, RegistryStore


async def pullable_holder(request: web.Request, st: RegistryStore, name: str, digest: Digest) -> str | None:
    """A repository holding `digest` that the caller may pull (the target itself first), or None."""
    if await st.blob_exists_globally(digest) is None:  # nobody holds it: no repository to look at
        return None
    authorizer = request.app[AUTHORIZER]
    for repository in [name, *(r for r in await st.catalog() if r != name)]:
        if not await authorizer.allowed(request, repository, "pull"):
            continue
        try:
            await st.stat_blob(repository, digest)
        except BlobUnknownError:
            continue
        return repository
    return None


async def auto_mount(request: web.Request, st: RegistryStore, name: str, digest: Digest) -> BlobInfo | None:
    """Link `digest` into `name` from a repository the caller may pull; None when there is none."""
    source = await pullable_holder(request, st, name, digest)
    return None if source is None else await st.mount_blob(name, digest, source)
