"""Blob upload sessions: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE."""

from __future__ import annotations

from aiohttp import web

from registry.crossmount import mount_source
from registry.errors import RegistryError
from registry.handlers.common import (
    body_chunks,
    parse_content_range,
    parse_digest,
    repo_name,
    store,
    upload_range,
)
from registry.quota import accountant
from storage.store import Admit, UploadRangeError


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Docker-Upload-UUID": upload_id,
        "Range": upload_range(size),
        "Content-Length": "0",
    }


def _created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest, "Content-Length": "0"},
    )


def _admit(request: web.Request, name: str) -> Admit:
    """The quota check a verified upload passes before it is placed."""
    quotas = accountant(request)
    return lambda digest, size: quotas.admit(name, digest, size)


async def start_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    st = store(request)
    quotas = accountant(request)
    mount = request.query.get("mount")
    if mount is not None:  # with `from`, or automatic: some repository the caller may pull
        digest = parse_digest(mount)
        source = await mount_source(request, st, name, digest, request.query.get("from"))
        size = await st.blob_exists_globally(digest) if source is not None else None
        if source is not None and size is not None:
            await quotas.admit(name, digest, size)
            info = await st.mount_blob(name, digest, source)
            if info is not None:
                await quotas.added(name, info.digest, info.size)
                return _created(name, str(info.digest))
    if "digest" in request.query:
        digest = parse_digest(request.query["digest"])
        if request.content_length is not None:  # refused before a byte is read
            await quotas.admit(name, digest, request.content_length)
        info = await st.put_blob(name, body_chunks(request), digest, _admit(request, name))
        await quotas.added(name, info.digest, info.size)
        return _created(name, str(info.digest))
    upload_id = await st.start_upload(name)
    return web.Response(status=202, headers=_session_headers(name, upload_id, 0))


async def _append(request: web.Request, name: str, upload_id: str) -> int:
    """Append the request body, honouring Content-Range; returns the new size."""
    st = store(request)
    content_range = parse_content_range(request.headers.get("Content-Range"))
    start = None
    if content_range is not None:
        start, end = content_range
        if request.content_length is not None and end - start + 1 != request.content_length:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", "Content-Range does not match Content-Length", status=416
            )
    try:
        return await st.append_upload(name, upload_id, body_chunks(request), start)
    except UploadRangeError as e:
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            e.message,
            status=416,
            headers={**_session_headers(name, upload_id, e.size)},
        ) from e


async def patch_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    upload_id = request.match_info["upload_id"]
    size = await _append(request, name, upload_id)
    return web.Response(status=202, headers=_session_headers(name, upload_id, size))


async def put_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    upload_id = request.match_info["upload_id"]
    digest = parse_digest(request.query.get("digest"))
    st = store(request)
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding") == "chunked"
    if has_body:
        if request.content_length is not None:  # refused before the last chunk is read
            size = await st.upload_size(name, upload_id) + request.content_length
            await accountant(request).admit(name, digest, size)
        await _append(request, name, upload_id)
    info = await st.finish_upload(name, upload_id, digest, _admit(request, name))
    await accountant(request).added(name, info.digest, info.size)
    return _created(name, str(info.digest))


async def get_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    upload_id = request.match_info["upload_id"]
    size = await store(request).upload_size(name, upload_id)
    return web.Response(status=204, headers=_session_headers(name, upload_id, size))


async def delete_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await store(request).cancel_upload(name, request.match_info["upload_id"])
    return web.Response(status=204, headers={"Content-Length": "0"})
