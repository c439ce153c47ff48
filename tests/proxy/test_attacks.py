"""A hostile upstream against an enforced proxy project: nothing unsigned may be stored, served or fetched.

Each attack is run against the real server; the upstream is either Debian's distribution 2.8 (content
signed with the real cosign) or a scripted one (tests/proxy/fake.py) for documents no real tool makes.
What is asserted is what a runtime could get: the manifest (412 or 404), the blobs (never fetched
upstream for an image that was not admitted) and the cache (no revision, no blob content written).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.clients.image import TestImage
from tests.proxy.conftest import http, run, storage_files
from tests.proxy.fake import OCI_MANIFEST, FakeRegistry, sha256
from tests.proxy.fake import image as image_manifest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
RUNNABLE_CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                              "config": {"Cmd": ["/bin/sh", "-c", "echo pwned"]},
                              "rootfs": {"type": "layers", "diff_ids": []}}).encode()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    """A scripted upstream serving each manifest with its own media type."""
    upstream: FakeRegistry

    def typed(request: web.Request) -> web.StreamResponse | None:
        parts = request.path.split("/")
        body = upstream.manifests.get(parts[-1]) if len(parts) >= 4 and parts[-2] == "manifests" else None
        if body is None:
            return None
        headers = {"Docker-Content-Digest": sha256(body), "Content-Type": json.loads(body)["mediaType"]}
        return web.Response(body=None if request.method == "HEAD" else body, headers=headers)

    upstream = FakeRegistry(typed).start()
    yield upstream
    upstream.stop()


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _stored(server, digest: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Storage files naming `digest`: content, revisions, layer links, tags, referrer entries (not the
    proxy's records, nor an index's `_parents` hint, which names what an index lists, stored or not)."""
    return [f for f in storage_files(server)
            if _hex(digest) in f and "/_proxy/" not in f and "/_parents/" not in f]


def test_tag_schema_index_does_not_admit_what_it_lists(fake: FakeRegistry, proxy_server) -> None:
    """A pure OCI index at a `sha256-<hex>` tag is exempt from the gate (it is the referrers tag schema),
    but it must not carry an unsigned runnable image into the cache as its 'child'."""
    layer = b"attacker layer " * 64
    unsigned = fake.add_image("unsigned", RUNNABLE_CONFIG, layer)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": unsigned, "size": len(fake.manifests[unsigned])}]}).encode()
    tag = "sha256-" + "ab" * 32
    fake.manifests[tag] = fake.manifests[sha256(index)] = index
    proxy = proxy_server(fake.url)
    status, _, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/{tag}")
    assert status in (200, 412)  # the listing itself may be served; what it lists may not
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/{unsigned}")[0] == 412
    assert _stored(proxy, unsigned) == []
    before = len(fake.requests)
    assert http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}")[0] == 404
    assert http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(RUNNABLE_CONFIG)}")[0] == 404
    assert not [r for r in fake.requests[before:] if "/blobs/" in r]  # never fetched upstream
    assert _stored(proxy, sha256(layer)) == []


def test_runnable_image_at_a_cosign_signature_tag_is_refused(fake: FakeRegistry, proxy_server) -> None:
    """An image posing as a cosign signature (`sha256-<hex>.sig`) gets no exemption through the proxy."""
    tag = "sha256-" + "cd" * 32 + ".sig"
    layer = b"not a signature " * 64
    digest = fake.add_image(tag, RUNNABLE_CONFIG, layer)
    proxy = proxy_server(fake.url)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/{tag}")[0] == 412
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/{digest}")[0] == 412
    assert _stored(proxy, digest) == [] and _stored(proxy, sha256(layer)) == []
    assert http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}")[0] == 404


def test_blob_marks_are_per_repository(fake: FakeRegistry, proxy_server) -> None:
    """A blob an admitted manifest of one repository references is not fetchable through another."""
    layer = b"layer of a " * 64
    digest = fake.add_image("v1", b'{"architecture":"amd64","os":"linux"}', layer)
    proxy = proxy_server(fake.url, enforce=False)
    assert http(f"{proxy.url}/v2/hub/team/a/manifests/{digest}")[0] == 200
    before = len(fake.requests)
    assert http(f"{proxy.url}/v2/hub/team/b/blobs/{sha256(layer)}")[0] == 404
    assert fake.requests[before:] == []
    status, _, body = http(f"{proxy.url}/v2/hub/team/a/blobs/{sha256(layer)}")
    assert status == 200 and body == layer


def test_signature_of_another_image_does_not_cover(upstream_registry, proxy_server, publisher,
                                                   image: TestImage) -> None:
    """A valid signature by the trusted key, of image B, copied to A's `.sig` tag upstream."""
    upstream = upstream_registry()
    signed = upstream.push(image, "team/app", tag="signed")
    unsigned = upstream.push(image, "team/app", tag="unsigned", ref="v1-arm64")
    publisher.sign(upstream, "team/app", signed)
    run("skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{upstream.addr}/team/app:sha256-{_hex(signed)}.sig",
        f"docker://{upstream.addr}/team/app:sha256-{_hex(unsigned)}.sig")
    proxy = proxy_server(upstream.url)
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/unsigned")
    assert status == 412, body
    assert _stored(proxy, unsigned) == []
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/signed")[0] == 200  # the key is trusted


def test_referrer_posing_as_signature_is_left_out(fake: FakeRegistry, proxy_server) -> None:
    """The referrers tag schema of an image lists a runnable image that names it as subject: not stored
    with the image, and refused on its own."""
    layer = b"subject layer " * 64
    subject = fake.add_image("v1", b'{"architecture":"amd64","os":"linux"}', layer)
    evil_layer = b"evil " * 100
    evil = json.loads(image_manifest(RUNNABLE_CONFIG, evil_layer))
    evil["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(fake.manifests[subject])}
    evil_body = json.dumps(evil).encode()
    fake.manifests[sha256(evil_body)] = evil_body
    fake.blobs[sha256(RUNNABLE_CONFIG)] = RUNNABLE_CONFIG
    fake.blobs[sha256(evil_layer)] = evil_layer
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(evil_body), "size": len(evil_body)}]}).encode()
    fake.manifests[f"sha256-{_hex(subject)}"] = index
    proxy = proxy_server(fake.url)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[0] == 412  # unsigned subject
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/{sha256(evil_body)}")[0] == 412
    for digest in (subject, sha256(evil_body), sha256(evil_layer)):
        assert _stored(proxy, digest) == []
    assert http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(evil_layer)}")[0] == 404


def test_repeated_refused_pulls_do_not_hammer_the_upstream(fake: FakeRegistry, proxy_server) -> None:
    """Anyone may repeat a refused pull; the proxy answers it again from the refusal it met (for a
    while), instead of fetching the manifest and its signatures upstream each time."""
    digest = fake.add_image("v1", RUNNABLE_CONFIG, b"unsigned layer " * 64)
    proxy = proxy_server(fake.url)
    for reference in ("v1", digest):
        status, _, first = http(f"{proxy.url}/v2/hub/team/app/manifests/{reference}")
        assert status == 412
        asked = len(fake.requests)
        for _ in range(5):
            status, _, again = http(f"{proxy.url}/v2/hub/team/app/manifests/{reference}")
            assert status == 412
            assert json.loads(again)["errors"][0]["code"] == json.loads(first)["errors"][0]["code"]
        assert len(fake.requests) == asked, fake.requests[asked:]
    assert _stored(proxy, digest) == []
