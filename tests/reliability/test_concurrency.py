"""Concurrency on every driver: 50 clients pushing the same blob, and 50 clients moving the same tag,
at once. Every request gets a correct answer, storage ends consistent, the tag ends on a pushed manifest."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from registry.check import check_storage
from registry.handlers.common import DRIVER
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest

CLIENTS = 50
REPO = "conc/app"


async def push_chunked(client: TestClient, data: bytes) -> int:
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    resp = await client.patch(location, data=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert resp.status == 202, await resp.text()
    resp = await client.put(f"{resp.headers['Location']}?digest={digest_of(data)}")
    return resp.status


async def test_fifty_clients_push_the_same_blob(registry) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = await registry()
    data = b"the very same layer " * 20_000
    digest = digest_of(data)

    async def monolithic() -> int:
        resp = await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest}", data=data)
        assert resp.headers.get("Docker-Content-Digest") == digest
        return resp.status

    statuses = await asyncio.gather(*(monolithic() if i % 2 else push_chunked(client, data) for i in range(CLIENTS)))
    assert statuses == [201] * CLIENTS
    resp = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert resp.status == 200 and await resp.read() == data
    report = await check_storage(client.app[DRIVER])
    assert report.problems == [] and report.blobs == 1
    assert [k async for k in client.app[DRIVER].walk("repositories") if "/_uploads/" in k] == []


async def test_fifty_clients_move_the_same_tag(registry) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = await registry()
    config = b'{"shared":"config"}'
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest_of(config)}", data=config)
    assert resp.status == 201
    manifests = [image_manifest(config, [], annotations={"n": str(i)}) for i in range(CLIENTS)]

    async def move(body: bytes) -> None:
        resp = await client.put(f"/v2/{REPO}/manifests/latest", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert resp.status == 201, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest_of(body)

    await asyncio.gather(*(move(m) for m in manifests))
    resp = await client.get(f"/v2/{REPO}/manifests/latest", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200
    assert await resp.read() in manifests
    assert resp.headers["Docker-Content-Digest"] in {digest_of(m) for m in manifests}
    for body in manifests:  # every revision is stored
        assert (await client.get(f"/v2/{REPO}/manifests/{digest_of(body)}")).status == 200
    resp = await client.get(f"/v2/{REPO}/tags/list")
    assert (await resp.json())["tags"] == ["latest"]
    report = await check_storage(client.app[DRIVER])
    assert report.problems == [] and report.manifests == CLIENTS and report.tags == 1
