"""A push that moves a signed tag of an enforced project onto an unsigned manifest is accepted with a
`Warning: 299` header and a log record (every pull of the tag is refused from then on)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.ui.conftest import REPO, SignedRepo


async def put_image(client: Any, tag: str, seed: str) -> tuple[str, Any]:
    """Push a one-layer image to REPO:tag; (its digest, the manifest PUT's response)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    for blob in (config, f"layer {seed}".encode()):
        assert (await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest_of(blob)}", data=blob)).status == 201
    body = image_manifest(config, [f"layer {seed}".encode()])
    resp = await client.put(f"/v2/{REPO}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
    return digest_of(body), resp


async def test_moving_a_signed_tag_warns(signed_repo: SignedRepo, caplog: pytest.LogCaptureFixture) -> None:
    client = signed_repo.client
    signed = signed_repo.digests["signed"]
    with caplog.at_level(logging.WARNING, logger="trustreg.trust.gate"):
        digest, resp = await put_image(client, "signed", "an unsigned rebuild")
    assert resp.headers["Warning"] == (
        f'299 - "{REPO}:signed moved from signed {signed} to {digest}, which is not signed: pulls of {REPO}:signed '
        f'are refused until it is signed (signed for another digest: targets signs signed as {signed})"')
    record = next(r for r in caplog.records if r.getMessage().startswith("push moved a signed tag"))
    fields = ("repository", "reference", "digest", "previous_digest", "principal")
    assert tuple(getattr(record, f) for f in fields) == (REPO, "signed", digest, signed, "anonymous")
    assert (await client.get(f"/v2/{REPO}/manifests/signed")).status == 412

    _, again = await put_image(client, "signed", "another unsigned rebuild")
    assert "Warning" not in again.headers  # the tag was already refused: nothing signed moved
    _, unsigned = await put_image(client, "unsigned", "an unsigned tag")
    assert "Warning" not in unsigned.headers
