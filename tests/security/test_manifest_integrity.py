"""Issue 15 §3: a stored manifest is served only if its bytes hash to its digest.

A signed tag in an enforced project; then the manifest's stored bytes are replaced by others of the
same length (pointing at an unsigned layer) behind the registry's back, and the registry restarts
(empty manifest cache). The gate judged tag, digest and length: without hashing the body it served
the substitute. Now the read is an integrity error (500 in the spec's error format, logged, the bytes
never sent), and `trustreg check` reports the manifest. Runs on the filesystem and on S3 (moto).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import yaml

from registry.cli import main
from storage.references import Digest
from storage.store import blob_key
from tests.conftest import ClientFactory, DriverFactory
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.reliability.support import TrustPublisher, publish_http

REPO = "secure/app"
SERVER_NAME = "registry.test"
CONFIG = {
    "trust": {"keys": {"insecure_dev_passphrase": True}, "server_names": [SERVER_NAME]},
    "projects": {"secure": {"content_trust": {"enforce": True}}},
}
SIGNED_LAYER = b"signed layer bytes " * 50
EVIL_LAYER = b"unsigned evil code " * 50  # same length: the manifest's size field keeps its length


async def push(client, data: bytes) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert resp.status == 201, await resp.text()


@pytest.fixture
async def tampered(registry: ClientFactory, make_driver: DriverFactory) -> tuple[str, bytes, bytes]:
    """A signed `secure/app:v1` whose stored manifest bytes were then swapped; (digest, good, evil)."""
    client = await registry(CONFIG)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    for blob in (config, SIGNED_LAYER, EVIL_LAYER):
        await push(client, blob)
    good = image_manifest(config, [SIGNED_LAYER])
    evil = image_manifest(config, [EVIL_LAYER])
    assert len(good) == len(evil) and good != evil
    resp = await client.put(f"/v2/{REPO}/manifests/v1", data=good, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
    digest = digest_of(good)
    assert await publish_http(client, "", TrustPublisher(f"{SERVER_NAME}/{REPO}"), "v1", digest, len(good)) == 200
    resp = await client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status == 200 and await resp.read() == good  # signed: served

    driver = make_driver()
    await driver.put(blob_key(Digest.parse(digest)), evil)  # the substitution, behind the registry's back
    await driver.close()
    return digest, good, evil


async def test_tampered_manifest_is_not_served_and_check_reports_it(
    registry: ClientFactory,
    make_driver: DriverFactory,
    tampered: tuple[str, bytes, bytes],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    digest, _good, evil = tampered
    restarted = await registry(CONFIG)  # a new process: nothing cached
    with caplog.at_level(logging.ERROR, logger="trustreg.integrity"):
        for ref in ("v1", digest):
            resp = await restarted.get(f"/v2/{REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            body = await resp.read()
            assert resp.status == 500, ref
            assert evil not in body and b"evil" not in body
            assert json.loads(body)["errors"][0]["code"] == "UNKNOWN"
            head = await restarted.head(f"/v2/{REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            assert head.status == 500
    assert any(digest in r.getMessage() and "integrity" in r.getMessage() for r in caplog.records)

    config = tmp_path / "check.yaml"
    config.write_text(yaml.safe_dump({"storage": {make_driver.kind: make_driver.config}}))
    assert await asyncio.to_thread(main, ["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("corrupt-blob") and digest in line for line in out.splitlines()), out
