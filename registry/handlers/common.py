"""Helpers shared by the handlers: typed app keys, request parsing, common headers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from aiohttp import web

from config.loader import Settings
from registry.errors import RegistryError
from registry.ranges import MAX_DIGITS
from storage.base import StorageDriver
from storage.references import Digest, InvalidReferenceError, is_valid_name
from storage.store import RegistryStore

SETTINGS = web.AppKey("settings", Settings)
DRIVER = web.AppKey("driver", StorageDriver)
STORE = web.AppKey("store", RegistryStore)

CHUNK = 1 << 20
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")


def store(request: web.Request) -> RegistryStore:
    return request.app[STORE]


def repo_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not is_valid_name(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", {"name": name[:300]})
    return name


def parse_digest(value: str | None, code: str = "DIGEST_INVALID") -> Digest:
    if not value:
        raise RegistryError(code, "digest parameter missing")
    try:
        return Digest.parse(value)
    except InvalidReferenceError as e:
        raise RegistryError(code, str(e), {"digest": value[:300]}) from e


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """`Content-Range: <start>-<end>` (inclusive) of an upload chunk."""
    if header is None:
        return None
    m = _RANGE_RE.match(header.strip().removeprefix("bytes ").removeprefix("bytes="))
    if not m:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"malformed Content-Range {header[:100]!r}", status=416)
    if max(len(m.group(1)), len(m.group(2))) > MAX_DIGITS:
        raise RegistryError("BLOB_UPLOAD_INVALID", "Content-Range position out of range", status=416)
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError("BLOB_UPLOAD_INVALID", "Content-Range end before start", status=416)
    return start, end


def upload_range(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


async def read_body_chunk(request: web.Request, size: int = CHUNK) -> bytes:
    """The next chunk of the body (b"" at the end); 408 if the client sends nothing for
    `http.client_timeout` seconds (a stalled or slowloris client must not hold a request forever)."""
    timeout = request.app[SETTINGS].client_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.content.read(size)
    except TimeoutError:
        raise RegistryError("UNKNOWN", f"client sent no data for {timeout:g} seconds", status=408) from None


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as a stream of chunks; nothing is buffered whole."""
    while chunk := await read_body_chunk(request):
        yield chunk


async def read_limited(request: web.Request, limit: int, what: str) -> bytes:
    """Read a small body, refusing it (413) once it exceeds `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise RegistryError("SIZE_INVALID", f"{what} larger than {limit} bytes", status=413)
    data = bytearray()
    while chunk := await read_body_chunk(request):
        data += chunk
        if len(data) > limit:
            raise RegistryError("SIZE_INVALID", f"{what} larger than {limit} bytes", status=413)
    return bytes(data)


def parse_page(request: web.Request) -> tuple[int | None, str | None]:
    """`n` and `last` pagination parameters."""
    n_raw = request.query.get("n")
    n = None
    if n_raw is not None:
        if not n_raw.isdigit() or len(n_raw) > 9:
            raise RegistryError("PAGINATION_NUMBER_INVALID", "n must be a non-negative integer", {"n": n_raw[:50]})
        n = int(n_raw)
    return n, request.query.get("last")


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Sorted items after `last`, at most `n`; and whether more remain."""
    if last is not None:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n
