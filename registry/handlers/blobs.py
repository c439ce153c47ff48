"""Blob GET/HEAD/DELETE. Filesystem blobs go out through sendfile; other drivers stream or redirect."""

from __future__ import annotations

from aiohttp import web

from registry.errors import RegistryError
from registry.handlers.common import DRIVER, SETTINGS, parse_digest, repo_name, store
from registry.proxy.service import PROXY
from registry.quota import accountant
from registry.ranges import parse_range, sendfile_can_serve
from storage.references import Digest
from storage.store import BlobInfo, BlobUnknownError


def _headers(digest: str, size: int) -> dict[str, str]:
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
        "Content-Length": str(size),
    }


async def _stat(request: web.Request, name: str, digest: Digest) -> BlobInfo | web.StreamResponse:
    """The stored blob; in a proxy project a missing one is fetched upstream first (and the request
    that starts the fetch gets it streamed: a response)."""
    proxy = request.app.get(PROXY)
    try:
        info = await store(request).stat_blob(name, digest)
    except BlobUnknownError:
        if proxy is None:
            raise
        streamed = await proxy.blob(request, name, digest)
        return streamed if streamed is not None else await store(request).stat_blob(name, digest)
    if proxy is not None:
        proxy.hit(name, "blob")
    return info


async def head_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    info = await _stat(request, name, parse_digest(request.match_info["digest"]))
    if isinstance(info, web.StreamResponse):
        return info
    return web.Response(status=200, headers=_headers(str(info.digest), info.size))


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    info = await _stat(request, name, parse_digest(request.match_info["digest"]))
    if isinstance(info, web.StreamResponse):
        return info
    driver = request.app[DRIVER]
    headers = _headers(str(info.digest), info.size)
    rng = parse_range(request.headers.get("Range"), info.size)  # 416 before any body is chosen
    path = await driver.local_path(info.key)
    # A Range header we ignore (malformed, multi-range) or with huge numbers is not handed to sendfile,
    # which would refuse it with a bare 416: it is streamed below instead.
    if path is not None and sendfile_can_serve(request.headers.get("Range"), rng):
        del headers["Content-Length"]
        return web.FileResponse(path, headers=headers, chunk_size=1 << 20)
    url = await driver.redirect_url(info.key)
    if url is not None:
        raise web.HTTPTemporaryRedirect(url, headers={"Docker-Content-Digest": str(info.digest)})
    if rng is None:
        offset, length, status = 0, info.size, 200
    else:
        offset, length, status = rng[0], rng[1] - rng[0] + 1, 206
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{info.size}"
    headers["Content-Length"] = str(length)
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    async for chunk in store(request).read_blob(info, offset, length):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    if not request.app[SETTINGS].delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletion is disabled on this registry")
    await store(request).delete_blob(name, parse_digest(request.match_info["digest"]))
    accountant(request).removed(name)
    return web.Response(status=202, headers={"Content-Length": "0"})
