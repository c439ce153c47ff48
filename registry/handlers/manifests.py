"""Manifest GET/HEAD/PUT/DELETE by tag or digest. GET and HEAD pass through the content-trust gate."""

from __future__ import annotations

from aiohttp import web

from registry import immutable
from registry.errors import RegistryError
from registry.handlers.common import SETTINGS, parse_digest, read_limited, repo_name, store
from registry.manifests import MAX_MANIFEST_SIZE, ManifestInvalidError, parse_manifest, referrer_descriptor
from registry.proxy.service import PROXY
from registry.quota import accountant
from storage.references import Digest, is_digest, is_valid_tag
from storage.store import Manifest, ManifestUnknownError, RegistryStore, TagExistsError

MANIFEST_GATE = web.AppKey("manifest_gate", object)
TAG_MOVES = web.AppKey("tag_moves", object)  # registry.tag_moves: warns when a push moves a signed tag


def _reference(request: web.Request, *, writing: bool = False) -> tuple[str | None, Digest | None]:
    """(tag, None) or (None, digest) from the URL. A malformed tag cannot name a stored manifest:
    reads and deletes answer 404 MANIFEST_UNKNOWN (as the spec requires), a PUT 400 MANIFEST_INVALID."""
    ref = request.match_info["reference"]
    if is_digest(ref):
        return None, parse_digest(ref)
    if not is_valid_tag(ref):
        if writing:
            raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": ref[:200]})
        raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown: invalid tag", {"tag": ref[:200]})
    return ref, None


async def _resolve(st: RegistryStore, name: str, tag: str | None, digest: Digest | None) -> Manifest:
    if digest is None:
        assert tag is not None
        digest = await st.resolve_tag(name, tag)
    return await st.get_manifest(name, digest)


def _headers(manifest: Manifest) -> dict[str, str]:
    return {
        "Content-Type": manifest.media_type,
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
        "Content-Length": str(len(manifest.body)),
    }


async def _fetch(request: web.Request) -> tuple[Manifest, dict[str, str]]:
    """The manifest, gated; and headers a proxy project adds (cache hit, miss or stale)."""
    name = repo_name(request)
    tag, digest = _reference(request)
    proxy = request.app.get(PROXY)
    extra = await proxy.tag(name, tag) if proxy is not None and tag is not None else {}  # within tag_ttl
    try:
        manifest = await _resolve(store(request), name, tag, digest)
        if proxy is not None and digest is not None:
            extra = proxy.hit(name)
    except ManifestUnknownError:
        if proxy is None:
            raise
        again = await (proxy.missing_digest(name, digest) if digest is not None else proxy.missing_tag(name, tag))
        if again is None:
            raise
        extra = again
        manifest = await _resolve(store(request), name, tag, digest)  # admitted from the upstream
    gate = request.app.get(MANIFEST_GATE)
    if gate is not None:
        await gate(request, name, tag, manifest)  # raises RegistryError (412) to refuse
    return manifest, extra


async def get_manifest(request: web.Request) -> web.StreamResponse:
    manifest, extra = await _fetch(request)
    headers = {**_headers(manifest), **extra}
    del headers["Content-Type"]
    return web.Response(body=manifest.body, headers=headers, content_type=manifest.media_type)


async def head_manifest(request: web.Request) -> web.StreamResponse:
    manifest, extra = await _fetch(request)
    return web.Response(headers={**_headers(manifest), **extra})


async def put_manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    tag, ref_digest = _reference(request, writing=True)
    st = store(request)
    body = await read_limited(request, MAX_MANIFEST_SIZE, "manifest")
    algorithm = ref_digest.algorithm if ref_digest else "sha256"
    digest = Digest.of(body, algorithm)
    if ref_digest is not None and digest != ref_digest:
        raise RegistryError(
            "DIGEST_INVALID",
            "manifest digest does not match the reference",
            {"reference": str(ref_digest), "actual": str(digest)},
        )
    try:
        parsed = parse_manifest(body, request.headers.get("Content-Type"))
    except ManifestInvalidError as e:
        raise RegistryError("MANIFEST_INVALID", str(e)) from e
    await st.check_references(name, parsed.blobs, parsed.children)
    tags = [tag] if tag else []
    for extra in request.query.getall("tag", []):
        if not is_valid_tag(extra):
            raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": extra[:200]})
        tags.append(extra)
    raw = request.app[SETTINGS].raw
    protected = await immutable.check_push(raw, st, name, tags, digest)
    await accountant(request).admit(name, digest, len(body))
    descriptor = referrer_descriptor(parsed, digest, len(body)) if parsed.subject else None
    moves = request.app.get(TAG_MOVES)
    served_before = await moves.served_tags(request, name, tags) if moves else {}
    try:
        await st.put_manifest(name, body, parsed.media_type, digest, tags, parsed.subject, descriptor,
                              create_only_tags=frozenset(protected))
    except TagExistsError as e:
        raise immutable.moved_error(name, e.tag, raw, e.current) from e
    await accountant(request).added(name, digest, len(body))
    headers = {
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": str(digest),
        "Content-Length": "0",
    }
    if served_before and (warning := await moves.moved_tag_warning(
            request, name, served_before, digest, parsed.media_type, body)):
        headers["Warning"] = '299 - "' + warning.replace('"', "'") + '"'  # RFC 7234 §5.5
    if parsed.subject:
        headers["OCI-Subject"] = parsed.subject["digest"]
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    if not request.app[SETTINGS].delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletion is disabled on this registry")
    tag, digest = _reference(request)
    st = store(request)
    await immutable.check_delete(request.app[SETTINGS].raw, st, name, tag, digest)
    if digest is None:
        assert tag is not None
        await st.delete_tag(name, tag)
    else:
        await st.delete_manifest(name, digest)
        accountant(request).removed(name)
    return web.Response(status=202, headers={"Content-Length": "0"})
