"""Issue 15 §3: stored content always equals its digest.

A chunk (PATCH) still streaming when its upload is finished, cancelled or raced by another chunk at the
same offset must never change the blob: every test runs on the filesystem and on S3 (moto server mode),
with the PATCH on one replica and the PUT/DELETE on another (two apps sharing one storage). The slow
chunk is a PATCH written on a raw connection and held open on an event, so the order of
events is fixed by the test, not by timing luck.
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp.test_utils import TestClient

from tests.conftest import ClientFactory
from tests.helpers import digest_of

REPO = "attacker/tool"
DELIVERY = 0.5  # seconds for a sent chunk to reach the server's write


class SlowPatch:
    """A PATCH written by hand on a raw connection: headers and `first` go out at once, then it waits
    for `release` and sends `rest` (or drops the connection if `fail`). (aiohttp's client holds back
    the last chunk an async generator yielded, so it cannot keep a chunk half-delivered.)"""

    def __init__(
        self,
        client: TestClient,
        location: str,
        first: bytes,
        rest: bytes = b"",
        *,
        content_range: str | None = None,
        fail: bool = False,
    ) -> None:
        self.client, self.location = client, location
        self.first, self.rest, self.content_range, self.fail = first, rest, content_range, fail
        self.release = asyncio.Event()
        self.task: asyncio.Task[int] = asyncio.create_task(self._run())

    async def _run(self) -> int:
        host, port = self.client.host, self.client.port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = [
                f"PATCH {self.location} HTTP/1.1",
                f"Host: {host}:{port}",
                "Transfer-Encoding: chunked",
                "Content-Type: application/octet-stream",
            ]
            if self.content_range:
                head.append(f"Content-Range: {self.content_range}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + _chunk(self.first))
            await writer.drain()
            await self.release.wait()
            if self.fail:
                writer.transport.abort()
                return 0
            writer.write(_chunk(self.rest) + b"0\r\n\r\n")
            await writer.drain()
            status_line = await reader.readline()
            return int(status_line.split()[1]) if status_line else 0
        finally:
            writer.close()

    async def status(self) -> int:
        """The response status; 0 if the server cut the connection (a refusal too)."""
        try:
            return await self.task
        except OSError:
            return 0


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


async def replicas(registry: ClientFactory) -> tuple[TestClient, TestClient]:
    """Two registry processes' worth of apps on one shared storage."""
    return await registry(), await registry()


async def start_session(client: TestClient, committed: bytes) -> str:
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    if committed:
        resp = await client.patch(location, data=committed, headers={"Content-Range": f"0-{len(committed) - 1}"})
        assert resp.status == 202, await resp.text()
    return location


async def assert_blob_intact(client: TestClient, data: bytes) -> None:
    """The blob named by `data`'s digest is served, and exactly with bytes that hash to it."""
    digest = digest_of(data)
    resp = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert resp.status == 200
    body = await resp.read()
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == digest
    assert body == data


async def test_chunk_streaming_while_upload_finishes_cannot_extend_the_blob(registry: ClientFactory) -> None:
    a, b = await replicas(registry)
    committed = b"legitimate content " * 64
    location = await start_session(a, committed)
    slow = SlowPatch(a, location, b"PLANTED" * 100, b"MORE" * 1000)
    await asyncio.sleep(DELIVERY)

    resp = await b.put(f"{location}?digest={digest_of(committed)}")
    assert resp.status == 201
    slow.release.set()
    assert await slow.status() in (404, 416)
    await assert_blob_intact(a, committed)
    await assert_blob_intact(b, committed)


async def test_two_chunks_at_one_offset_cannot_overwrite_the_blob(registry: ClientFactory) -> None:
    """The slow chunk opened first at offset 0; the fast one lands and is finished; the slow one must
    not write its bytes over the blob (same length: a silent substitution)."""
    a, b = await replicas(registry)
    location = await start_session(a, b"")
    good = b"G" * 4096
    evil = b"E" * 4096
    slow = SlowPatch(a, location, evil[:2048], evil[2048:], content_range="0-4095")
    await asyncio.sleep(DELIVERY)

    resp = await b.patch(location, data=good, headers={"Content-Range": "0-4095"})
    assert resp.status == 202
    resp = await b.put(f"{location}?digest={digest_of(good)}")
    assert resp.status == 201
    slow.release.set()
    assert await slow.status() in (404, 416)
    await assert_blob_intact(a, good)


async def test_aborted_chunk_cannot_truncate_the_blob(registry: ClientFactory) -> None:
    """The attacker finishes the upload with the digest of committed + in-flight bytes, then drops the
    in-flight chunk: the bytes not committed never count, so that digest is refused, and no blob under
    it holds other bytes."""
    a, b = await replicas(registry)
    committed = b"head " * 200
    location = await start_session(a, committed)
    in_flight = b"tail " * 4000  # more than a write buffer: on disk at once
    slow = SlowPatch(a, location, in_flight, fail=True)
    await asyncio.sleep(DELIVERY)

    # The attacker reads how far the in-flight bytes got and finishes with the digest of all of it.
    size = int((await b.get(location)).headers["Range"].split("-")[1]) + 1
    whole = committed + in_flight[: size - len(committed)] if size > len(committed) else committed + in_flight
    resp = await b.put(f"{location}?digest={digest_of(whole)}")
    slow.release.set()
    await slow.status()
    await asyncio.sleep(DELIVERY)  # the server notices the dropped connection and cleans up after it
    if resp.status == 201:
        await assert_blob_intact(a, whole)
    else:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == "DIGEST_INVALID"
        assert (await a.head(f"/v2/{REPO}/blobs/{digest_of(whole)}")).status == 404
        assert (await a.head(f"/v2/{REPO}/blobs/{digest_of(committed)}")).status == 404


async def test_chunk_streaming_while_upload_is_cancelled_leaves_nothing(registry: ClientFactory) -> None:
    a, b = await replicas(registry)
    location = await start_session(a, b"abc")
    slow = SlowPatch(a, location, b"x" * 1000, b"y" * 1000)
    await asyncio.sleep(DELIVERY)
    assert (await b.delete(location)).status == 204
    slow.release.set()
    assert await slow.status() in (404, 416)
    assert (await a.get(location)).status == 404
    resp = await a.put(f"{location}?digest={digest_of(b'abc' + b'x' * 1000 + b'y' * 1000)}")
    assert resp.status == 404


async def test_planting_bytes_under_a_later_push_fails(registry: ClientFactory) -> None:
    """The attack of the issue end to end: an attacker with push in one repository keeps a chunk open
    into an upload he finished, hoping to rewrite the shared blob that a victim pushes later under the
    same digest elsewhere. The victim's content is what gets served."""
    a, b = await replicas(registry)
    victim_content = b"victim layer " * 300
    location = await start_session(a, victim_content)  # the attacker knows (or guesses) the content
    slow = SlowPatch(a, location, b"\x00" * 1024, b"\x00" * 1024)
    await asyncio.sleep(DELIVERY)
    assert (await b.put(f"{location}?digest={digest_of(victim_content)}")).status == 201
    slow.release.set()
    await slow.status()

    resp = await b.post(f"/v2/victim/app/blobs/uploads/?digest={digest_of(victim_content)}", data=victim_content)
    assert resp.status == 201
    resp = await b.get(f"/v2/victim/app/blobs/{digest_of(victim_content)}")
    assert await resp.read() == victim_content
