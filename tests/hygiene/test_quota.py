"""Project quotas over the HTTP API (real server on loopback, every storage driver)."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp.test_utils import TestClient

from config.loader import ConfigError, parse_settings
from registry.handlers.common import STORE
from registry.quota import parse_bytes
from storage.gc import collect_garbage
from storage.references import Digest
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest

QUOTA = 10_000
CONFIG = {"projects": {"secure": {"quota": {"bytes": "10KB"}}}}


async def _refused(resp) -> dict:
    assert resp.status == 403, await resp.text()
    error = (await resp.json())["errors"][0]
    assert error["code"] == "DENIED" and "quota" in error["message"]
    return error["detail"]


async def _usage(client: TestClient, project: str = "secure") -> dict:
    resp = await client.get("/api/v1/projects")
    return {p["name"]: p["usage"] for p in await resp.json()}[project]


async def _nothing_stored(client: TestClient, digest: str) -> None:
    st = client.server.app[STORE]
    assert await st.blob_exists_globally(Digest.parse(digest)) is None
    assert await st.open_uploads() == 0


def test_units() -> None:
    assert parse_bytes("20GiB") == 20 * 2**30 and parse_bytes("1.5 MB") == 1_500_000 and parse_bytes(7) == 7
    parse_settings({"projects": {"p": {"quota": {"bytes": "20GiB"}}}})
    for bad in ("20 GiBs", "-1", "lots"):
        with pytest.raises(ConfigError, match="projects.p.quota.bytes"):
            parse_settings({"projects": {"p": {"quota": {"bytes": bad}}}})


async def test_monolithic_refused_before_the_body(registry) -> None:
    client: TestClient = await registry(CONFIG)
    data = os.urandom(QUOTA + 1)
    # announced size over the quota: the answer comes before a single body byte is sent
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"POST /v2/secure/app/blobs/uploads/?digest={digest_of(data)} HTTP/1.1\r\n"
                 f"Host: x\r\nContent-Length: {len(data)}\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 403"), status
    writer.close()
    resp = await client.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert await _refused(resp) == {"project": "secure", "quota": QUOTA, "used": 0, "requested": QUOTA + 1}
    await _nothing_stored(client, digest_of(data))
    # other projects have no quota
    resp = await client.post(f"/v2/other/app/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert resp.status == 201


async def test_chunked_refused_at_completion(registry) -> None:
    client: TestClient = await registry(CONFIG)
    first = os.urandom(6000)
    resp = await client.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(first)}", data=first)
    assert resp.status == 201
    data = os.urandom(5000)

    async def stream():  # no Content-Length: the size is known only at the end
        yield data[:2000]
        yield data[2000:]

    resp = await client.post("/v2/secure/app/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await client.patch(location, data=stream())
    assert resp.status == 202
    resp = await client.put(f"{location}?digest={digest_of(data)}")
    assert await _refused(resp) == {"project": "secure", "quota": QUOTA, "used": 6000, "requested": 5000}
    await _nothing_stored(client, digest_of(data))
    assert (await client.get(location)).status == 404  # the session is gone
    # the final PUT carrying the rest with its length is refused before it is read
    resp = await client.post("/v2/secure/app/blobs/uploads/")
    location = resp.headers["Location"]
    assert (await client.patch(location, data=data[:2000])).status == 202
    resp = await client.put(f"{location}?digest={digest_of(data)}", data=data[2000:])
    assert (await _refused(resp))["requested"] == 5000
    await client.delete(location)
    # a blob the project already holds costs nothing, in any of its repositories
    resp = await client.post(f"/v2/secure/other/blobs/uploads/?digest={digest_of(first)}", data=first)
    assert resp.status == 201
    resp = await client.post(f"/v2/secure/third/blobs/uploads/?mount={digest_of(first)}&from=secure/app")
    assert resp.status == 201
    assert await _usage(client) == {"bytes": 6000, "quota": QUOTA}
    # mounting a blob from another project counts
    big = os.urandom(5000)
    await client.post(f"/v2/other/app/blobs/uploads/?digest={digest_of(big)}", data=big)
    resp = await client.post(f"/v2/secure/app/blobs/uploads/?mount={digest_of(big)}&from=other/app")
    assert (await _refused(resp))["requested"] == 5000
    assert (await client.head(f"/v2/secure/app/blobs/{digest_of(big)}")).status == 404


async def test_manifest_refused_then_freed_by_delete_and_gc(registry) -> None:
    client: TestClient = await registry(CONFIG)
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(9000)
    for blob in (config, layer):
        assert (await client.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(blob)}", data=blob)).status == 201
    manifest = image_manifest(config, [layer], annotations={"pad": "x" * 2000})
    resp = await client.put("/v2/secure/app/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST})
    detail = await _refused(resp)
    assert detail == {"project": "secure", "quota": QUOTA, "used": 9000 + len(config), "requested": len(manifest)}
    assert (await client.get("/v2/secure/app/manifests/v1")).status == 404
    assert (await client.head(f"/v2/secure/app/manifests/{digest_of(manifest)}")).status == 404
    # a smaller manifest fits; usage (API and metrics) shows every linked byte once
    small = image_manifest(config, [layer])
    resp = await client.put("/v2/secure/app/manifests/v1", data=small, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    used = 9000 + len(config) + len(small)
    assert await _usage(client) == {"bytes": used, "quota": QUOTA}
    metrics = await (await client.get("/metrics")).text()
    assert f'trustreg_project_used_bytes{{project="secure"}} {float(used)}' in metrics
    assert f'trustreg_project_quota_bytes{{project="secure"}} {float(QUOTA)}' in metrics
    # the next image does not fit until the first is deleted and collected
    layer2 = os.urandom(8000)
    resp = await client.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(layer2)}", data=layer2)
    await _refused(resp)
    assert (await client.delete(f"/v2/secure/app/manifests/{digest_of(small)}")).status == 202
    assert (await _usage(client))["bytes"] == 9000 + len(config)  # the blobs are still linked
    await collect_garbage(client.server.app[STORE], grace=0)  # as `trustreg gc` would, from outside
    resp = await client.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(layer2)}", data=layer2)
    assert resp.status == 201, await resp.text()
    assert await _usage(client) == {"bytes": 8000, "quota": QUOTA}


async def test_replicas_on_one_storage(registry) -> None:
    """Two registry processes on one storage: a push through one counts at once in the other."""
    a: TestClient = await registry(CONFIG)
    b: TestClient = await registry(CONFIG)
    small = os.urandom(1000)
    assert (await b.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(small)}", data=small)).status == 201
    assert await _usage(b) == {"bytes": 1000, "quota": QUOTA}  # b has a fresh cached usage
    first = os.urandom(6000)
    assert (await a.post(f"/v2/secure/app/blobs/uploads/?digest={digest_of(first)}", data=first)).status == 201
    second = os.urandom(5000)
    resp = await b.post(f"/v2/secure/other/blobs/uploads/?digest={digest_of(second)}", data=second)
    assert (await _refused(resp))["used"] == 7000
    assert await _usage(b) == {"bytes": 7000, "quota": QUOTA}
    # a deletion through one frees room for a push through the other
    assert (await a.delete(f"/v2/secure/app/blobs/{digest_of(first)}")).status == 202
    resp = await b.post(f"/v2/secure/other/blobs/uploads/?digest={digest_of(second)}", data=second)
    assert resp.status == 201, await resp.text()
