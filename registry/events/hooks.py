"""What the handlers call, one line each: turn a request's outcome into an event (when an endpoint
wants its type). Signature artifacts are recognised by trust.sources.artifacts' classification."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from registry.access import PRINCIPAL
from registry.events.record import subject
from registry.events.wiring import EVENTS, Events
from registry.middleware import REQUEST_ID
from storage.references import Digest
from storage.store import Manifest, RegistryStore, StoreError
from trust.sources.artifacts import manifest_doc, signature_kind

_COSIGN_TAG = re.compile(r"^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})\.(sig|att)$")


def _events(request: web.Request, event_type: str) -> Events | None:
    events = request.app.get(EVENTS)
    return events if events is not None and events.wanted(event_type) else None


def _common(request: web.Request, repository: str) -> dict[str, Any]:
    return {"principal": request.get(PRINCIPAL), "requestId": request.get(REQUEST_ID), "repository": repository}


def _signed_digest(tag: str | None, manifest_subject: dict[str, Any] | None) -> str | None:
    """What a signature artifact signs: its OCI subject, or the digest a cosign `.sig`/`.att` tag names."""
    if manifest_subject and isinstance(manifest_subject.get("digest"), str):
        return manifest_subject["digest"]
    m = _COSIGN_TAG.match(tag or "")
    return f"{m.group(1)}:{m.group(2)}" if m else None


async def manifest_pushed(request: web.Request, repository: str, tags: list[str], digest: Digest,
                          media_type: str, body: bytes, manifest_subject: dict[str, Any] | None) -> None:
    """artifact.pushed for every manifest PUT; signature.added too when it is a signature artifact."""
    tag = tags[0] if tags else None
    data = {**_common(request, repository), "tag": tag, "tags": tags, "digest": str(digest),
            "mediaType": media_type, "size": len(body)}
    if events := _events(request, "artifact.pushed"):
        await events.emit("artifact.pushed", subject(repository, tag, str(digest)), data)
    if events := _events(request, "signature.added"):
        kind = signature_kind(manifest_doc(Manifest(digest, media_type, body)))
        if kind is not None:
            signed = {"kind": kind, "signedDigest": _signed_digest(tag, manifest_subject)}
            await events.emit("signature.added", subject(repository, tag, str(digest)), {**data, **signed})


async def before_delete(request: web.Request, st: RegistryStore, repository: str, tag: str | None,
                        digest: Digest | None) -> Manifest | None:
    """The manifest a DELETE is about to remove (its type and size go in the event), if wanted."""
    if _events(request, "artifact.deleted") is None:
        return None
    try:
        found = digest if digest is not None else await st.resolve_tag(repository, tag or "")
        return await st.get_manifest(repository, found)
    except (StoreError, ValueError):
        return None


async def manifest_deleted(request: web.Request, repository: str, tag: str | None, digest: Digest | None,
                           deleted: Manifest | None) -> None:
    if not (events := _events(request, "artifact.deleted")):
        return
    known = str(deleted.digest) if deleted is not None else (str(digest) if digest else None)
    data = {**_common(request, repository), "tag": tag, "digest": known,
            "mediaType": deleted.media_type if deleted else None, "size": len(deleted.body) if deleted else None}
    await events.emit("artifact.deleted", subject(repository, tag, known), data)


async def pull_refused(request: web.Request, repository: str, tag: str | None, digest: str | None,
                       reason: str, message: str, manifest: Manifest | None = None) -> None:
    """A manifest read the gate refused: a stored manifest, or an upstream one a proxy project did
    not admit (then only its digest is known)."""
    if not (events := _events(request, "pull.refused")):
        return
    data = {**_common(request, repository), "tag": tag, "digest": digest,
            "mediaType": manifest.media_type if manifest else None, "size": len(manifest.body) if manifest else None,
            "method": request.method, "reason": reason, "message": message}
    await events.emit("pull.refused", subject(repository, tag, digest), data)


async def trust_published(request: web.Request, repository: str, gun: str, roles: list[str]) -> None:
    if not (events := _events(request, "trust.published")):
        return
    data = {**_common(request, repository), "gun": gun, "roles": roles}
    await events.emit("trust.published", repository, data)
