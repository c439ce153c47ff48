"""An unsigned push moving a signed tag in an enforced project: accepted with a Warning header, logged;
with an immutable_tags rule for the tag it is refused instead (the rule comes first)."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.signatures.conftest import cosign_policy
from tests.signatures.factory import cosign_legacy, ec_key, public_pem
from tests.signatures.test_http import NAME, push_artifact, push_image


async def _put(client, tag: str, seed: str):  # type: ignore[no-untyped-def]
    config, layer = f'{{"seed":"{seed}"}}'.encode(), f"layer {seed}".encode()
    body = image_manifest(config, [layer])
    for blob in (config, layer):
        await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest_of(blob)}", data=blob)
    return body, await client.put(f"/v2/{NAME}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})


async def test_unsigned_push_over_a_signed_tag_warns(registry, caplog: pytest.LogCaptureFixture) -> None:
    key = ec_key()
    client = await registry(cosign_policy(public_pem(key)))
    signed = await push_image(client, "v1")
    await push_artifact(client, cosign_legacy(signed["digest"], [key]))
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 200
    with caplog.at_level(logging.WARNING, logger="trustreg.trust.gate"):
        body, resp = await _put(client, "v1", "unsigned")
    assert resp.status == 201
    warning = resp.headers["Warning"]
    assert warning.startswith('299 - "') and ":v1 moved from signed" in warning and digest_of(body) in warning
    assert any("push moved a signed tag" in r.getMessage() and signed["digest"] in r.getMessage()
               for r in caplog.records)
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 412
    # moving it back onto the signed manifest, or pushing an unsigned tag over an unsigned one: no warning
    resp = await client.put(f"/v2/{NAME}/manifests/v1", data=await (await client.get(
        f"/v2/{NAME}/manifests/{signed['digest']}")).read(), headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201 and "Warning" not in resp.headers
    await _put(client, "dev", "a")
    _, resp = await _put(client, "dev", "b")
    assert resp.status == 201 and "Warning" not in resp.headers


async def test_immutable_rule_comes_first(registry) -> None:
    key = ec_key()
    config = cosign_policy(public_pem(key))
    config["projects"]["secure"]["immutable_tags"] = ["v*"]
    client = await registry(config)
    signed = await push_image(client, "v1")
    await push_artifact(client, cosign_legacy(signed["digest"], [key]))
    _, resp = await _put(client, "v1", "unsigned")
    assert resp.status == 409 and "Warning" not in resp.headers
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 200
