"""Blob upload sessions: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE."""

from __future__ import annotations

from aiohttp import web

from registry.access import AUTHORIZER
from registry.crossmount import auto_mount
from registry.errors import RegistryError
from registry.handlers.common import (
    body_chunks,
    parse_content_range,
    parse_digest,
    repo_name,
    store,
    upload_range,
)
from storage.references import is_valid_name
from storage.store import UploadRangeError


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


async def start_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    st = store(request)
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount is not None and source is not None:
        digest = parse_digest(mount)
        if is_valid_name(source) and await request.app[AUTHORIZER].allowed(request, source, "pull"):
            info = await st.mount_blob(name, digest, source)
            if info is not None:
                return _created(name, str(info.digest))
    elif mount is not None:  # automatic cross-mount: some repository the caller may pull
        info = await auto_mount(request, st, name, parse_digest(mount))
        if info is not None:
            return _created(name, str(info.digest))
    if "digest" in request.query:
        digest = parse_digest(request.query["digest"])
        info = await st.put_blob(name, body_chunks(request), digest)
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
        await _append(request, name, upload_id)
    info = await st.finish_upload(name, upload_id, digest)
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
