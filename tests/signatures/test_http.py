"""The gate over HTTP, on every storage driver: 412 bodies, signature artifacts served, signer exemption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.auth.conftest import auth_config, basic, write_htpasswd
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.signatures.conftest import cosign_policy
from tests.signatures.factory import Artifact, cosign_bundle, cosign_legacy, ec_key, public_pem, tag_for

NAME = "secure/app"


async def push(client: Any, body: bytes, blobs: list[bytes], ref: str, headers: dict[str, str] | None = None) -> str:
    headers = headers or {}
    for blob in blobs:
        resp = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest_of(blob)}", data=blob, headers=headers)
        assert resp.status == 201, await resp.text()
    resp = await client.put(f"/v2/{NAME}/manifests/{ref}", data=body,
                            headers={**headers, "Content-Type": json.loads(body)["mediaType"]})
    assert resp.status == 201, await resp.text()
    return digest_of(body)


async def push_artifact(client: Any, artifact: Artifact, headers: dict[str, str] | None = None) -> str:
    return await push(client, artifact.manifest, artifact.blobs, artifact.tag or digest_of(artifact.manifest), headers)


async def push_image(client: Any, tag: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    config, layer = f'{{"tag":"{tag}"}}'.encode(), f"layer {tag}".encode()
    body = image_manifest(config, [layer])
    digest = await push(client, body, [config, layer], tag, headers)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}


async def test_refusal_body_and_signature_artifacts_served(registry) -> None:
    key = ec_key()
    client = await registry(cosign_policy(public_pem(key)))
    image = await push_image(client, "v1")
    resp = await client.get(f"/v2/{NAME}/manifests/v1")
    assert resp.status == 412
    error = (await resp.json())["errors"][0]
    assert error["code"] == "MANIFEST_UNVERIFIED"
    assert error["message"] == f"The image is not signed by cosign. Reason: {error['detail']['reason']}."
    assert error["detail"]["reason"].startswith("no signature found") and error["detail"]["digest"] == image["digest"]
    assert (await client.head(f"/v2/{NAME}/manifests/{image['digest']}")).status == 412
    assert (await client.get(f"/v2/{NAME}/manifests/{tag_for(image['digest'], '.sig')}")).status == 404

    legacy = await push_artifact(client, cosign_legacy(image["digest"], [key]))
    bundle = await push_artifact(client, cosign_bundle(image, key))
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 200
    assert (await client.head(f"/v2/{NAME}/manifests/{image['digest']}")).status == 200
    for ref in (tag_for(image["digest"], ".sig"), legacy, bundle):
        assert (await client.get(f"/v2/{NAME}/manifests/{ref}")).status == 200, ref
    listing = await (await client.get(f"/v2/{NAME}/referrers/{image['digest']}")).json()
    assert [m["digest"] for m in listing["manifests"]] == [bundle]


async def test_signers_exempt_for_head_and_get_by_digest(registry, tmp_path: Path) -> None:
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw", "carol": "carol-pw"}))
    config["trust_roots"] = {"ci": {"type": "cosign-key", "public_keys": [public_pem(ec_key())]}}
    config["projects"]["secure"]["content_trust"] = {"enforce": True,
                                                     "require_any": [{"cosign": {"trust_root": "ci"}}]}
    client = await registry(config)
    alice, carol = basic("alice"), basic("carol")
    image = await push_image(client, "v1", alice)
    by_digest = f"/v2/{NAME}/manifests/{image['digest']}"
    assert (await client.get(by_digest, headers=alice)).status == 200  # cosign sign reads the subject
    assert (await client.head(by_digest, headers=alice)).status == 200
    assert (await client.head(f"/v2/{NAME}/manifests/v1", headers=alice)).status == 200
    assert (await client.get(f"/v2/{NAME}/manifests/v1", headers=alice)).status == 412  # a pull by tag is gated
    for method in (client.get, client.head):
        assert (await method(by_digest, headers=carol)).status == 412  # pull-only: gated


async def test_refused_anonymous_head_is_challenged_with_token_auth(registry, tmp_path: Path) -> None:
    """`notation sign` probes the subject with an anonymous HEAD and authenticates only when challenged:
    with token auth a refused anonymous HEAD gets the 401 challenge; a client that comes back with a
    token gets what its principal may have (push holder: served; anonymous token: the 412)."""
    from tests.auth.conftest import SERVICE, bearer

    config = auth_config(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"}), token=True)
    config["trust_roots"] = {"ci": {"type": "cosign-key", "public_keys": [public_pem(ec_key())]}}
    config["projects"]["secure"].update(public=True, content_trust={
        "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}]})
    client = await registry(config)

    async def token(*scopes: str, user: str | None = None) -> dict[str, str]:
        params = [("service", SERVICE), *(("scope", s) for s in scopes)]
        resp = await client.get("/auth/token", params=params, headers=basic(user) if user else {})
        assert resp.status == 200, await resp.text()
        return bearer((await resp.json())["token"])

    alice = await token(f"repository:{NAME}:pull,push", user="alice")
    image = await push_image(client, "v1", alice)
    by_digest = f"/v2/{NAME}/manifests/{image['digest']}"
    probe = await client.head(by_digest)
    assert probe.status == 401
    challenge = probe.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="') and f'scope="repository:{NAME}:pull"' in challenge
    assert (await client.head(by_digest, headers=alice)).status == 200
    anonymous = await token(f"repository:{NAME}:pull")
    assert (await client.head(by_digest, headers=anonymous)).status == 412
    resp = await client.get(by_digest)  # a pull (GET) still gets the refusal and its reason at once
    assert resp.status == 412 and (await resp.json())["errors"][0]["code"] == "MANIFEST_UNVERIFIED"


async def test_refused_anonymous_head_with_basic_auth_stays_412(registry, tmp_path: Path) -> None:
    """With Basic auth a client without credentials could not answer a challenge: keep the 412."""
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"}))
    config["trust_roots"] = {"ci": {"type": "cosign-key", "public_keys": [public_pem(ec_key())]}}
    config["projects"]["secure"].update(public=True, content_trust={
        "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}]})
    client = await registry(config)
    image = await push_image(client, "v1", basic("alice"))
    assert (await client.head(f"/v2/{NAME}/manifests/{image['digest']}")).status == 412
