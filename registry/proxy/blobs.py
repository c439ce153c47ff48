"""Blobs of proxy repositories: fetched upstream on demand, only those an admitted manifest references.

A blob the cache lacks is fetched only if registry.proxy.records marks it (an admitted manifest
references it, with its size): a refused image's blobs, or any other digest, are never fetched.
The fetch streams into the store's upload path (hashing as it goes) and, for the request that
started it, to the client at the same time; the last chunk is held back until the store has verified
the digest and committed the blob, so a wrong or truncated upstream answer is never completed to the
client (its connection is aborted) nor stored. Other requests for the blob meanwhile wait for the
commit and are then served from the cache. Memory stays flat: a few chunks in flight per fetch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from registry.errors import RegistryError
from registry.metrics import PROXY_UPSTREAM_ERRORS, child
from registry.proxy.flights import Flights
from registry.proxy.records import ProxyRecords
from registry.proxy.upstream import UpstreamInvalidError, UpstreamUnavailableError
from storage.references import Digest
from storage.store import BlobUnknownError, DigestMismatchError, RegistryStore

if TYPE_CHECKING:
    from registry.proxy.service import ProjectProxy

log = logging.getLogger("trustreg.proxy")
CHUNK = 1 << 20
QUEUE_CHUNKS = 4
Feed = Callable[[bytes | None], Awaitable[None]]


class _Tee:
    """Chunks on their way to the leading client; dropped once it has gone."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_CHUNKS)
        self.open = True

    async def feed(self, chunk: bytes | None) -> None:
        if self.open:
            await self.queue.put(chunk)

    def close(self) -> None:
        self.open = False
        while not self.queue.empty():
            self.queue.get_nowait()


class BlobFetcher:
    """Fetches marked blobs upstream into the store, coalesced per (repository, digest)."""

    def __init__(self, store: RegistryStore, records: ProxyRecords, flights: Flights) -> None:
        self.store = store
        self.records = records
        self.flights = flights

    async def serve(self, request: web.Request, project: ProjectProxy, name: str,
                    digest: Digest) -> web.StreamResponse | None:
        """Stream the blob while it is fetched (this request leads), or None once the cache has it."""
        try:
            await self.store.stat_blob(name, digest)
            project.count("blob", "hit")
            return None
        except BlobUnknownError:
            pass
        size = await self.records.blob_size(name, digest)
        if size is None:
            return None  # referenced by no admitted manifest: never fetched (404 from the store)
        if await self.store.blob_exists_globally(digest) is not None:  # content-addressed, verified when stored
            await self.store.link_blob(name, digest)
            project.count("blob", "hit")
            return None
        project.count("blob", "miss")
        key = ("blob", name, str(digest))
        lead = request.method == "GET" and "Range" not in request.headers and not self.flights.running(key)
        tee = _Tee() if lead else None
        task, _ = self.flights.start(key, lambda: self._fetch(project, name, digest, size, tee))
        if tee is None:
            await asyncio.shield(task)
            return None
        return await self._stream(request, task, tee, digest, size)

    async def _stream(self, request: web.Request, task: asyncio.Task[None], tee: _Tee, digest: Digest,
                      size: int) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={
            "Docker-Content-Digest": str(digest), "ETag": f'"{digest}"', "Content-Type": "application/octet-stream",
            "Content-Length": str(size), "X-Trustreg-Proxy": "miss"})
        held: bytes | None = None
        try:
            while (chunk := await _next(tee, task)) is not None:
                if held is not None:
                    if not resp.prepared:
                        await resp.prepare(request)
                    await resp.write(held)
                held = chunk
            await asyncio.shield(task)  # verified and committed, or raises
        except ConnectionError:  # the client went away: the fetch goes on for the cache and the others
            tee.close()
            return resp
        except BaseException:
            tee.close()
            if resp.prepared and request.transport is not None:
                request.transport.abort()  # never complete a body that did not verify
            raise
        if not resp.prepared:
            await resp.prepare(request)
        if held is not None:
            await resp.write(held)
        await resp.write_eof()
        return resp

    async def _fetch(self, project: ProjectProxy, name: str, digest: Digest, size: int, tee: _Tee | None) -> None:
        repository = project.config.upstream_repository(name)
        try:
            async with project.upstream.open_blob(repository, digest) as resp:
                if resp is None:
                    raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in the upstream repository",
                                        {"digest": str(digest)})
                if resp.content_length is not None and resp.content_length != size:
                    raise UpstreamInvalidError(f"blob {digest} is {resp.content_length} bytes, "
                                               f"its descriptor says {size}")
                chunks = _bounded(resp, digest, size, tee.feed if tee is not None else None)
                await self.store.put_blob(name, chunks, digest)
        except DigestMismatchError as e:
            child(PROXY_UPSTREAM_ERRORS, project.config.project).inc()
            log.error("proxy %s: upstream blob %s of %s does not match its digest; not stored",
                      project.config.project, digest, name)
            raise UpstreamInvalidError(f"blob {digest} does not match its digest", e.detail) from e
        except (UpstreamInvalidError, UpstreamUnavailableError) as e:
            child(PROXY_UPSTREAM_ERRORS, project.config.project).inc()
            log.warning("proxy %s: blob %s of %s: %s", project.config.project, digest, name, e.message)
            raise
        finally:
            if tee is not None:
                tee.open = False


async def _next(tee: _Tee, task: asyncio.Task[None]) -> bytes | None:
    """The next chunk for the leading client; the fetch's error if it fails first."""
    getter = asyncio.ensure_future(tee.queue.get())
    try:
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    task.result()  # raises the fetch's error
    return None


async def _bounded(resp: aiohttp.ClientResponse, digest: Digest, size: int,
                   feed: Feed | None) -> AsyncIterator[bytes]:
    """The upstream body, exactly `size` bytes (or an error), copied to `feed`; None fed at the end."""
    received = 0
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            received += len(chunk)
            if received > size:
                raise UpstreamInvalidError(f"blob {digest} is longer than its descriptor's {size} bytes")
            if feed is not None:
                await feed(chunk)
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as e:
        raise UpstreamUnavailableError(f"upstream connection failed while reading blob {digest}: {e}") from e
    if received != size:
        raise UpstreamInvalidError(f"blob {digest} ended after {received} of {size} bytes")
    if feed is not None:
        await feed(None)
