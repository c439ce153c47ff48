"""Pulls through a proxy project with real clients: distribution 2.8 upstream, cosign, skopeo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.clients.image import TestImage
from tests.proxy.conftest import COSIGN_FLAGS, http, pull, run, storage_files, tool


def test_signed_image_pulled_through_the_proxy(upstream_registry, proxy_server, publisher, image: TestImage,
                                              tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url)
    pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "pulled")
    manifest = (tmp_path / "pulled" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest == image.amd64_manifest
    for layer in json.loads(manifest)["layers"]:
        hex_ = layer["digest"].removeprefix("sha256:")
        assert hashlib.sha256((tmp_path / "pulled" / hex_).read_bytes()).hexdigest() == hex_
    # cached: a second pull by digest is a hit
    status, headers, body = http(f"{proxy.url}/v2/hub/team/app/manifests/{digest}")
    assert status == 200 and headers["X-Trustreg-Proxy"] == "hit" and body == manifest
    files = storage_files(proxy)
    assert any(f.endswith("_manifests/tags/v1") for f in files)
    # the real cosign verifies through the proxy (the signature was stored with the image)
    run(tool("cosign"), "verify", "--key", str(publisher.public_key), "--insecure-ignore-tlog=true", *COSIGN_FLAGS,
        f"{proxy.addr}/hub/team/app:v1", env={"HOME": str(tmp_path)})
    # the tags list is the upstream's; metrics count hits and misses
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/tags/list")
    assert status == 200 and "v1" in json.loads(body)["tags"]
    metrics = http(f"{proxy.url}/metrics")[2].decode()
    assert 'trustreg_proxy_requests_total{kind="manifest",project="hub",result="hit"}' in metrics
    assert 'trustreg_proxy_requests_total{kind="blob",project="hub",result="miss"}' in metrics


def test_head_by_tag_on_a_cold_cache(upstream_registry, proxy_server, publisher, image: TestImage) -> None:
    """containerd resolves a tag with HEAD first: that admits the image too."""
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url)
    status, headers, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/v1", "HEAD")
    assert status == 200 and headers["Docker-Content-Digest"] == digest and headers["X-Trustreg-Proxy"] == "miss"
    unsigned = upstream.push(image, "team/unsigned", ref="v1-arm64")
    status, _, _ = http(f"{proxy.url}/v2/hub/team/unsigned/manifests/v1", "HEAD")
    assert status == 412
    assert not [f for f in storage_files(proxy) if unsigned.removeprefix("sha256:") in f or "team/unsigned" in f]


def test_image_posing_as_its_own_signature_refused(upstream_registry, proxy_server, publisher,
                                                   image: TestImage) -> None:
    """An unsigned image tagged `sha256-<hex>.sig` (its own digest) is no signature: neither the image
    nor that tag is admitted, and none of its blobs is fetched."""
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    upstream.push(image, "team/app", tag=f"sha256-{digest.removeprefix('sha256:')}.sig")
    proxy = proxy_server(upstream.url)
    before = len(upstream.access_log())
    for ref in ("v1", f"sha256-{digest.removeprefix('sha256:')}.sig", digest):
        status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/{ref}")
        assert status == 412, (ref, body)
    assert "/blobs/" not in upstream.access_log()[before:]
    assert not [f for f in storage_files(proxy) if "/_manifests/" in f or f.startswith("blobs/")]


def test_unsigned_image_refused_and_not_stored(upstream_registry, proxy_server, publisher, image: TestImage,
                                               tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/unsigned")
    proxy = proxy_server(upstream.url)
    result = pull(f"{proxy.addr}/hub/team/unsigned:v1", tmp_path / "pulled", check=False)
    assert result.returncode != 0 and "not signed by cosign" in result.stderr, result.stderr
    status, _, body = http(f"{proxy.url}/v2/hub/team/unsigned/manifests/v1")
    assert status == 412 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNVERIFIED"
    status, _, _ = http(f"{proxy.url}/v2/hub/team/unsigned/manifests/{digest}")
    assert status == 412
    config = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--raw",
                            f"docker://{upstream.addr}/team/unsigned:v1").stdout)["config"]["digest"]
    status, _, _ = http(f"{proxy.url}/v2/hub/team/unsigned/blobs/{config}")
    assert status == 404
    files = storage_files(proxy)
    hexes = [digest.removeprefix("sha256:"), config.removeprefix("sha256:")]
    assert not [f for f in files if any(h in f for h in hexes)], files
    assert "proxy hub: refused" in proxy.log()
