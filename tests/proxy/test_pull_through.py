"""Pulls through a proxy project with real clients: distribution 2.8 upstream, cosign, skopeo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.clients.image import TestImage
from tests.proxy.conftest import http, run, storage_files


def skopeo_pull(ref: str, out: Path, check: bool = True):  # type: ignore[no-untyped-def]
    return run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{out}", check=check)


def test_signed_image_pulled_through_the_proxy(upstream_registry, proxy_server, publisher, image: TestImage,
                                              tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url)
    skopeo_pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "pulled")
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


def test_unsigned_image_refused_and_not_stored(upstream_registry, proxy_server, publisher, image: TestImage,
                                               tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/unsigned")
    proxy = proxy_server(upstream.url)
    result = skopeo_pull(f"{proxy.addr}/hub/team/unsigned:v1", tmp_path / "pulled", check=False)
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
