"""Immutable tags over the HTTP API (real server on loopback, every storage driver)."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient

from tests.helpers import OCI_INDEX, OCI_MANIFEST, digest_of, image_manifest
from tests.registry.test_api import push_blob, push_image

CONFIG = {"projects": {"secure": {"immutable_tags": ["v*", "release-*"]}}}


async def _error(resp) -> dict:
    body = await resp.json()
    return body["errors"][0]


async def test_first_push_allowed_move_refused(registry) -> None:
    client: TestClient = await registry(CONFIG)
    body, digest = await push_image(client, "secure/app", "v1")
    # re-pushing the same manifest to the tag moves nothing
    resp = await client.put("/v2/secure/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
    # pushing another manifest to it is refused, naming the rule; the tag still points where it did
    other, _ = await _image(client, "secure/app", b"other")
    resp = await client.put("/v2/secure/app/manifests/v1", data=other, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 409
    error = await _error(resp)
    assert error["code"] == "DENIED" and "v*" in error["message"]
    assert error["detail"] == {"repository": "secure/app", "tag": "v1", "rule": "v*", "digest": digest}
    resp = await client.head("/v2/secure/app/manifests/v1")
    assert resp.headers["Docker-Content-Digest"] == digest
    # also through `?tag=` on a push by digest
    resp = await client.put("/v2/secure/app/manifests/latest?tag=release-1&tag=v1", data=other,
                            headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 409 and (await _error(resp))["detail"]["tag"] == "v1"
    # tags no rule matches move freely, in this project and in others
    await push_image(client, "secure/app", "latest", b"a")
    await push_image(client, "secure/app", "latest", b"b")
    await push_image(client, "other/app", "v1", b"a")
    await push_image(client, "other/app", "v1", b"b")


async def _image(client: TestClient, name: str, seed: bytes) -> tuple[bytes, str]:
    """Blobs of an image pushed, its manifest returned unpushed."""
    config, layer = b'{"architecture":"amd64","os":"linux"}' + seed, b"layer-bytes" + seed
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    body = image_manifest(config, [layer])
    return body, digest_of(body)


async def test_delete_refused(registry) -> None:
    client: TestClient = await registry(CONFIG)
    _, digest = await push_image(client, "secure/app", "v1")
    for ref in ("v1", digest):
        resp = await client.delete(f"/v2/secure/app/manifests/{ref}")
        assert resp.status == 409, ref
        assert (await _error(resp))["detail"]["rule"] == "v*"
    assert (await client.head("/v2/secure/app/manifests/v1")).status == 200
    # an absent protected tag is simply unknown; an unprotected tag is deleted as before
    assert (await client.delete("/v2/secure/app/manifests/v2")).status == 404
    await push_image(client, "secure/app", "dev", b"dev")
    assert (await client.delete("/v2/secure/app/manifests/dev")).status == 202


async def test_signature_tags_stay_writable(registry) -> None:
    """cosign rewrites `<alg>-<hex>.sig` for each new signature, the referrers tag schema rewrites the
    `<alg>-<hex>` index: neither is ever protected, even by a rule matching every tag."""
    client: TestClient = await registry({"projects": {"secure": {"immutable_tags": ["*"]}}})
    _, digest = await push_image(client, "secure/app", "v1")
    sig_tag = digest.replace(":", "-") + ".sig"
    for tag in (sig_tag, digest.replace(":", "-") + ".att"):
        await push_image(client, "secure/app", tag, b"first signature")
        await push_image(client, "secure/app", tag, b"two signatures")
    child, child_digest = await push_image(client, "secure/app", "child", b"child")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    schema_tag = digest.replace(":", "-")
    resp = await client.put(f"/v2/secure/app/manifests/{schema_tag}", data=index, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 201
    index2 = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child)}]}).encode()
    resp = await client.put(f"/v2/secure/app/manifests/{schema_tag}", data=index2, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 201
    assert (await client.delete(f"/v2/secure/app/manifests/{sig_tag}")).status == 202
    # a tag only resembling one is protected
    await push_image(client, "secure/app", "sha256-abc.sig", b"x")
    body, _ = await _image(client, "secure/app", b"y")
    resp = await client.put("/v2/secure/app/manifests/sha256-abc.sig", data=body,
                            headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 409


async def test_racing_first_pushes_one_wins(registry) -> None:
    """Two first pushes of one protected tag with different manifests: exactly one lands."""
    client: TestClient = await registry(CONFIG)
    bodies = [(await _image(client, "secure/race", seed))[0] for seed in (b"a", b"b", b"c", b"d")]
    responses = await asyncio.gather(*(
        client.put("/v2/secure/race/manifests/v9", data=b, headers={"Content-Type": OCI_MANIFEST}) for b in bodies))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 409, 409, 409], statuses
    winner = next(b for b, r in zip(bodies, responses, strict=True) if r.status == 201)
    resp = await client.get("/v2/secure/race/manifests/v9")
    assert await resp.read() == winner
