"""OCI distribution-spec v1.1 endpoints against a real server on loopback (every driver)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import OCI_INDEX, OCI_MANIFEST, descriptor, digest_of, image_index, image_manifest


async def push_blob(client: TestClient, name: str, data: bytes) -> str:
    digest = digest_of(data)
    resp = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
    assert resp.status == 201, await resp.text()
    return digest


async def push_image(client: TestClient, name: str, tag: str, seed: bytes = b"") -> tuple[bytes, str]:
    config, layer = b'{"architecture":"amd64","os":"linux"}' + seed, b"layer-bytes" + seed
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    body = image_manifest(config, [layer])
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
    return body, digest_of(body)


async def error_code(resp) -> str:
    body = await resp.json()
    return body["errors"][0]["code"]


# --- base ----------------------------------------------------------------------------------------


async def test_base(client: TestClient) -> None:
    resp = await client.get("/v2/")
    assert resp.status == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert resp.headers["X-Request-Id"]


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    resp = await client.get("/v2/foo/bar/unknown/thing")
    assert resp.status == 404
    assert "errors" in await resp.json()


# --- blob uploads --------------------------------------------------------------------------------


async def test_monolithic_post_and_get(client: TestClient) -> None:
    data = os.urandom(100_000)
    digest = await push_blob(client, "a/b", data)
    resp = await client.get(f"/v2/a/b/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Docker-Content-Digest"] == digest
    resp = await client.head(f"/v2/a/b/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(data))
    assert await resp.read() == b""


async def test_post_put_upload(client: TestClient) -> None:
    data = b"x" * 5000
    resp = await client.post("/v2/r/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    assert resp.headers["Docker-Upload-UUID"] in location
    resp = await client.put(f"{location}?digest={digest_of(data)}", data=data)
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/r/blobs/{digest_of(data)}"


async def test_chunked_upload_with_status(client: TestClient) -> None:
    data = os.urandom(3 * 1024 * 1024 + 11)
    resp = await client.post("/v2/r/blobs/uploads/")
    location = resp.headers["Location"]
    cut = [0, 1_000_000, 2_500_000, len(data)]
    for start, end in zip(cut, cut[1:], strict=False):
        chunk = data[start:end]
        resp = await client.patch(
            location,
            data=chunk,
            headers={"Content-Range": f"{start}-{end - 1}", "Content-Type": "application/octet-stream"},
        )
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{end - 1}"
        location = resp.headers["Location"]
    resp = await client.get(location)
    assert resp.status == 204
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    resp = await client.put(f"{location}?digest={digest_of(data)}")
    assert resp.status == 201
    resp = await client.get(f"/v2/r/blobs/{digest_of(data)}")
    assert await resp.read() == data


async def test_patch_without_content_range_then_final_chunk(client: TestClient) -> None:
    resp = await client.post("/v2/r/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await client.patch(location, data=b"hello ")
    assert resp.status == 202
    resp = await client.put(f"{location}?digest={digest_of(b'hello world')}", data=b"world")
    assert resp.status == 201


async def test_out_of_order_chunk_is_416(client: TestClient) -> None:
    resp = await client.post("/v2/r/blobs/uploads/")
    location = resp.headers["Location"]
    await client.patch(location, data=b"abcd", headers={"Content-Range": "0-3"})
    resp = await client.patch(location, data=b"efgh", headers={"Content-Range": "10-13"})
    assert resp.status == 416
    assert resp.headers["Range"] == "0-3"
    resp = await client.patch(location, data=b"cdef", headers={"Content-Range": "2-5"})  # overlap
    assert resp.status == 416
    resp = await client.patch(location, data=b"ef", headers={"Content-Range": "4-9"})  # length mismatch
    assert resp.status == 416
    resp = await client.patch(location, data=b"ef", headers={"Content-Range": "garbage"})
    assert resp.status == 416
    resp = await client.get(location)
    assert resp.headers["Range"] == "0-3"


async def test_digest_mismatch_stores_nothing(client: TestClient) -> None:
    wrong = digest_of(b"other")
    resp = await client.post(f"/v2/r/blobs/uploads/?digest={wrong}", data=b"content")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await client.head(f"/v2/r/blobs/{wrong}")
    assert resp.status == 404
    resp = await client.head(f"/v2/r/blobs/{digest_of(b'content')}")
    assert resp.status == 404


async def test_chunked_digest_mismatch(client: TestClient) -> None:
    resp = await client.post("/v2/r/blobs/uploads/")
    location = resp.headers["Location"]
    await client.patch(location, data=b"abc")
    resp = await client.put(f"{location}?digest={digest_of(b'xyz')}")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"


async def test_put_without_digest(client: TestClient) -> None:
    resp = await client.post("/v2/r/blobs/uploads/")
    resp = await client.put(resp.headers["Location"], data=b"abc")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"


async def test_invalid_digests(client: TestClient) -> None:
    for bad in ["sha256:zz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "nocolon", "sha256:../../etc"]:
        resp = await client.post(f"/v2/r/blobs/uploads/?digest={bad}", data=b"x")
        assert resp.status == 400, bad
        assert await error_code(resp) == "DIGEST_INVALID"
    resp = await client.get("/v2/r/blobs/sha256:1234")
    assert resp.status == 400


async def test_sha512_upload(client: TestClient) -> None:
    data = b"sha512 content"
    digest = digest_of(data, "sha512")
    resp = await client.post(f"/v2/r/blobs/uploads/?digest={digest}", data=data)
    assert resp.status == 201
    resp = await client.get(f"/v2/r/blobs/{digest}")
    assert await resp.read() == data


async def test_cancel_upload(client: TestClient) -> None:
    resp = await client.post("/v2/r/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await client.delete(location)
    assert resp.status == 204
    resp = await client.get(location)
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UPLOAD_UNKNOWN"
    resp = await client.patch("/v2/r/blobs/uploads/not-a-uuid", data=b"x")
    assert resp.status == 404


async def test_upload_continued_by_another_process(registry) -> None:
    first, second = await registry(), await registry()
    data = os.urandom(200_000)
    resp = await first.post("/v2/shared/blobs/uploads/")
    location = resp.headers["Location"]
    await first.patch(location, data=data[:50_000], headers={"Content-Range": "0-49999"})
    resp = await second.patch(location, data=data[50_000:], headers={"Content-Range": f"50000-{len(data) - 1}"})
    assert resp.status == 202
    resp = await second.put(f"{location}?digest={digest_of(data)}")
    assert resp.status == 201
    resp = await first.get(f"/v2/shared/blobs/{digest_of(data)}")
    assert await resp.read() == data


async def test_mount(client: TestClient) -> None:
    digest = await push_blob(client, "src/repo", b"mount me")
    resp = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await client.head(f"/v2/dst/repo/blobs/{digest}")).status == 200
    missing = digest_of(b"nope")
    resp = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo")
    assert resp.status == 202
    assert "Location" in resp.headers


async def test_blob_not_visible_in_other_repo(client: TestClient) -> None:
    digest = await push_blob(client, "one", b"private bytes")
    resp = await client.get(f"/v2/two/blobs/{digest}")
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UNKNOWN"


async def test_range_requests(client: TestClient) -> None:
    data = bytes(range(256)) * 10
    digest = await push_blob(client, "r", data)
    resp = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert await resp.read() == data[10:20]
    resp = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert await resp.read() == data[-5:]
    resp = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": f"bytes={len(data) + 5}-"})
    assert resp.status == 416


async def test_delete_blob(client: TestClient) -> None:
    digest = await push_blob(client, "r", b"bye")
    assert (await client.delete(f"/v2/r/blobs/{digest}")).status == 202
    assert (await client.head(f"/v2/r/blobs/{digest}")).status == 404
    resp = await client.delete(f"/v2/r/blobs/{digest}")
    assert resp.status == 404


# --- manifests -----------------------------------------------------------------------------------


async def test_manifest_roundtrip(client: TestClient) -> None:
    body, digest = await push_image(client, "lib/app", "1.0")
    for ref in ["1.0", digest]:
        resp = await client.get(f"/v2/lib/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert resp.status == 200
        assert await resp.read() == body
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["ETag"] == f'"{digest}"'
        resp = await client.head(f"/v2/lib/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(body))


async def test_manifest_put_by_digest(client: TestClient) -> None:
    body, digest = await push_image(client, "r", "t")
    resp = await client.put(f"/v2/r/manifests/{digest}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    resp = await client.put(
        f"/v2/r/manifests/{digest_of(b'other')}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"


async def test_manifest_missing_blobs(client: TestClient) -> None:
    body = image_manifest(b"config never pushed", [b"layer"])
    resp = await client.put("/v2/r/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"


async def test_manifest_invalid(client: TestClient) -> None:
    cases = [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 1}).encode(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ]
    for body, content_type in cases:
        resp = await client.put("/v2/r/manifests/t", data=body, headers={"Content-Type": content_type})
        assert resp.status == 400, body
        assert await error_code(resp) == "MANIFEST_INVALID"


async def test_manifest_too_large(client: TestClient) -> None:
    body = b'{"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    resp = await client.put("/v2/r/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 413


async def test_index_requires_children(client: TestClient) -> None:
    child, child_digest = await push_image(client, "r", "child")
    orphan = image_manifest(b"c2", [b"l2"])
    body = image_index([child, orphan])
    resp = await client.put("/v2/r/manifests/multi", data=body, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
    body = image_index([child])
    resp = await client.put("/v2/r/manifests/multi", data=body, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 201
    resp = await client.get("/v2/r/manifests/multi")
    assert resp.headers["Content-Type"] == OCI_INDEX
    assert (await resp.json())["manifests"][0]["digest"] == child_digest


async def test_artifact_manifest_any_media_type(client: TestClient) -> None:
    media_type = "application/vnd.example.thing.v1+json"
    body = json.dumps({"mediaType": media_type, "anything": [1, 2]}).encode()
    resp = await client.put("/v2/r/manifests/art", data=body, headers={"Content-Type": media_type})
    assert resp.status == 201
    resp = await client.get("/v2/r/manifests/art")
    assert resp.headers["Content-Type"] == media_type


async def test_manifest_unknown(client: TestClient) -> None:
    await push_image(client, "r", "exists")
    resp = await client.get("/v2/r/manifests/nope")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
    resp = await client.get(f"/v2/r/manifests/{digest_of(b'x')}")
    assert resp.status == 404
    resp = await client.head("/v2/r/manifests/nope")
    assert resp.status == 404


async def test_delete_manifest_by_tag_and_digest(client: TestClient) -> None:
    _, digest = await push_image(client, "r", "a")
    await push_image(client, "r", "b")  # same content: same digest, second tag
    assert (await client.delete("/v2/r/manifests/a")).status == 202
    assert (await client.get("/v2/r/manifests/a")).status == 404
    assert (await client.get("/v2/r/manifests/b")).status == 200
    assert (await client.delete(f"/v2/r/manifests/{digest}")).status == 202
    assert (await client.get("/v2/r/manifests/b")).status == 404
    assert (await client.get(f"/v2/r/manifests/{digest}")).status == 404
    assert (await client.delete(f"/v2/r/manifests/{digest}")).status == 404


async def test_delete_disabled(registry) -> None:
    client = await registry({"storage": {"delete": False}})
    _, digest = await push_image(client, "r", "a")
    resp = await client.delete(f"/v2/r/manifests/{digest}")
    assert resp.status == 405
    assert await error_code(resp) == "UNSUPPORTED"


async def test_tag_moved_by_another_process_is_seen_at_once(registry) -> None:
    first, second = await registry(), await registry()
    await push_image(first, "r", "t", seed=b"1")
    resp = await first.get("/v2/r/manifests/t")
    old = resp.headers["Docker-Content-Digest"]
    _, new = await push_image(second, "r", "t", seed=b"2")
    assert new != old
    resp = await first.get("/v2/r/manifests/t")
    assert resp.headers["Docker-Content-Digest"] == new
    await second.delete(f"/v2/r/manifests/{new}")
    assert (await first.get(f"/v2/r/manifests/{new}")).status == 404


# --- listings ------------------------------------------------------------------------------------


async def test_tags_list_pagination(client: TestClient) -> None:
    for tag in ["b", "a", "d", "c", "e"]:
        await push_image(client, "r", tag)
    resp = await client.get("/v2/r/tags/list")
    assert (await resp.json()) == {"name": "r", "tags": ["a", "b", "c", "d", "e"]}
    resp = await client.get("/v2/r/tags/list?n=2")
    assert (await resp.json())["tags"] == ["a", "b"]
    assert resp.headers["Link"] == '</v2/r/tags/list?n=2&last=b>; rel="next"'
    resp = await client.get("/v2/r/tags/list?n=2&last=d")
    assert (await resp.json())["tags"] == ["e"]
    assert "Link" not in resp.headers
    resp = await client.get("/v2/r/tags/list?n=0")
    assert (await resp.json())["tags"] == []
    resp = await client.get("/v2/r/tags/list?n=-1")
    assert resp.status == 400
    resp = await client.get("/v2/unknown/tags/list")
    assert resp.status == 404
    assert await error_code(resp) == "NAME_UNKNOWN"


async def test_catalog(client: TestClient) -> None:
    for name in ["zeta", "alpha/one", "alpha/two"]:
        await push_image(client, name, "t")
    resp = await client.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["alpha/one", "alpha/two", "zeta"]
    resp = await client.get("/v2/_catalog?n=1&last=alpha/one")
    assert (await resp.json())["repositories"] == ["alpha/two"]
    assert 'rel="next"' in resp.headers["Link"]


async def test_referrers(client: TestClient) -> None:
    subject_body, subject_digest = await push_image(client, "r", "subject")
    empty = b"{}"
    await push_blob(client, "r", empty)
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_body)}
    referrers = []
    for artifact_type in ["application/vnd.example.sbom", "application/vnd.example.sig"]:
        body = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [descriptor("application/vnd.oci.empty.v1+json", empty)],
            "subject": subject,
            "annotations": {"org.example": artifact_type},
        }).encode()
        digest = digest_of(body)
        resp = await client.put(f"/v2/r/manifests/{digest}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert resp.status == 201
        assert resp.headers["OCI-Subject"] == subject_digest
        referrers.append(digest)
    resp = await client.get(f"/v2/r/referrers/{subject_digest}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    index = await resp.json()
    assert sorted(m["digest"] for m in index["manifests"]) == sorted(referrers)
    assert {m["artifactType"] for m in index["manifests"]} == {
        "application/vnd.example.sbom", "application/vnd.example.sig"}
    resp = await client.get(f"/v2/r/referrers/{subject_digest}?artifactType=application/vnd.example.sig")
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["annotations"]["org.example"] for m in (await resp.json())["manifests"]] == [
        "application/vnd.example.sig"]
    resp = await client.get(f"/v2/r/referrers/{digest_of(b'none')}")
    assert (await resp.json())["manifests"] == []
    await client.delete(f"/v2/r/manifests/{referrers[0]}")
    resp = await client.get(f"/v2/r/referrers/{subject_digest}")
    assert [m["digest"] for m in (await resp.json())["manifests"]] == [referrers[1]]
    resp = await client.get("/v2/r/referrers/sha256:bad")
    assert resp.status == 400


# --- hostile names -------------------------------------------------------------------------------


async def test_invalid_names_never_touch_storage(client: TestClient, tmp_path) -> None:
    for name in ["UPPER", "a/../../etc", "a//b", "-a", "a/_layers", "a%2F..%2Fb"]:
        resp = await client.post(f"/v2/{name}/blobs/uploads/")
        assert resp.status in (400, 404), name
        assert "errors" in await resp.json()
    assert not (tmp_path.parent / "etc").exists()
    resp = await client.get("/v2/r/manifests/bad..tag!")
    assert resp.status == 404  # a malformed tag names no manifest
    resp = await client.put("/v2/r/manifests/bad..tag!", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 400


async def test_blob_stored_once(client: TestClient, make_driver) -> None:
    data = b"dedup" * 1000
    await push_blob(client, "one", data)
    await push_blob(client, "two", data)
    hex_ = hashlib.sha256(data).hexdigest()
    driver = make_driver()
    try:
        keys = [k async for k in driver.walk("blobs") if f"/{hex_}/" in k and k.endswith("/data")]
    finally:
        await driver.close()
    assert keys == [f"blobs/sha256/{hex_[:2]}/{hex_}/data"]


async def test_filesystem_blobs_go_out_with_sendfile(client: TestClient, make_driver, monkeypatch) -> None:
    """Filesystem blob bodies are handed to the kernel (loop.sendfile), never read into Python."""
    import asyncio

    if make_driver.kind != "filesystem":
        pytest.skip("S3 blobs stream or redirect; covered by the range tests and benchmarks/memory.py")
    data = os.urandom(3 * 1024 * 1024)
    digest = await push_blob(client, "r", data)
    loop = asyncio.get_running_loop()
    calls = []
    original = loop.sendfile

    async def counting_sendfile(transport, file, offset=0, count=None, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(count)
        return await original(transport, file, offset, count, **kwargs)

    monkeypatch.setattr(loop, "sendfile", counting_sendfile)
    resp = await client.get(f"/v2/r/blobs/{digest}")
    assert await resp.read() == data
    assert calls == [len(data)]
