"""Proxy projects with real clients: Basic auth upstream, multi-arch index, cosign bundle (referrers tag
schema), read-only, coalescing."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.clients.image import TestImage
from tests.proxy.conftest import COSIGN_FLAGS, UPSTREAM_USER, http, pull, run, storage_files, tool


def test_basic_auth_upstream(upstream_registry, proxy_server, publisher, image: TestImage, tmp_path: Path) -> None:
    upstream = upstream_registry(basic_auth=True)
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url, username=UPSTREAM_USER[0], password_env="MIRROR_PASSWORD",
                         env={"MIRROR_PASSWORD": UPSTREAM_USER[1]})
    pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "pulled")
    manifest = (tmp_path / "pulled" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
    assert UPSTREAM_USER[1] not in (proxy.config_path.read_text() + proxy.log())
    # without credentials the upstream refuses: a clear error, never a 500
    anonymous = proxy_server(upstream.url)
    status, _, body = http(f"{anonymous.url}/v2/hub/team/app/manifests/v1")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"
    assert "denied access" in json.loads(body)["errors"][0]["message"]


def test_signed_index_admits_its_platform_manifests(upstream_registry, proxy_server, publisher,
                                                     image: TestImage, tmp_path: Path) -> None:
    upstream = upstream_registry()
    run("skopeo", "copy", "--all", "--dest-tls-verify=false", "--preserve-digests", image.oci("multi"),
        f"docker://{upstream.addr}/team/multi:v1")
    assert upstream.digest("team/multi", "v1") == image.index
    publisher.sign(upstream, "team/multi", image.index)  # the index only, as multi-arch images are signed
    proxy = proxy_server(upstream.url)
    pull(f"{proxy.addr}/hub/team/multi:v1", tmp_path / "arm", "--override-arch=arm64")
    manifest = (tmp_path / "arm" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == image.arm64_manifest
    status, headers, _ = http(f"{proxy.url}/v2/hub/team/multi/manifests/{image.amd64_manifest}")
    assert status == 200 and headers["X-Trustreg-Proxy"] == "hit"  # stored with the index


def test_cosign_bundle_found_through_the_referrers_tag_schema(upstream_registry, proxy_server, publisher,
                                                               image: TestImage, tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/bundle")
    publisher.sign(upstream, "team/bundle", digest, "--new-bundle-format=true")
    tag_index = f"sha256-{digest.removeprefix('sha256:')}"
    index_accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
    assert http(f"{upstream.url}/v2/team/bundle/manifests/{tag_index}", headers=index_accept)[0] == 200
    assert http(f"{upstream.url}/v2/team/bundle/referrers/{digest}")[0] == 404  # no referrers API upstream
    proxy = proxy_server(upstream.url)
    status, _, body = http(f"{proxy.url}/v2/hub/team/bundle/referrers/{digest}")  # cold: admits the subject
    assert status == 200
    listed = json.loads(body)["manifests"]
    assert [d["artifactType"] for d in listed] == ["application/vnd.dev.sigstore.bundle.v0.3+json"]
    pull(f"{proxy.addr}/hub/team/bundle:v1", tmp_path / "pulled")
    run(tool("cosign"), "verify", "--key", str(publisher.public_key), "--insecure-ignore-tlog=true", *COSIGN_FLAGS,
        f"{proxy.addr}/hub/team/bundle:v1", env={"HOME": str(tmp_path)})


def test_writes_refused_unsupported(upstream_registry, proxy_server, publisher, image: TestImage) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[0] == 200
    attempts = [("PUT", "/v2/hub/team/app/manifests/v2"), ("DELETE", f"/v2/hub/team/app/manifests/{digest}"),
                ("DELETE", "/v2/hub/team/app/manifests/v1"), ("POST", "/v2/hub/team/app/blobs/uploads/"),
                ("POST", f"/v2/hub/team/app/blobs/uploads/?mount={digest}&from=other/app"),
                ("DELETE", f"/v2/hub/team/app/blobs/{digest}")]
    for method, path in attempts:
        status, _, body = http(f"{proxy.url}{path}", method, {"Content-Type": "application/json"}, b"{}")
        assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED", (method, path, body)
    result = run("skopeo", "copy", "--dest-tls-verify=false", image.oci("v1"),
                 f"docker://{proxy.addr}/hub/team/pushed:v1", check=False)
    assert result.returncode != 0
    assert not [f for f in storage_files(proxy) if "team/pushed" in f]
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[0] == 200  # still there


def test_concurrent_misses_fetch_each_object_once(upstream_registry, proxy_server, publisher,
                                                  image: TestImage) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url)
    before = len(upstream.access_log())
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: http(f"{proxy.url}/v2/hub/team/app/manifests/v1"), range(12)))
    assert {status for status, _, _ in answers} == {200}
    layers = [d["digest"] for d in json.loads(answers[0][2])["layers"]]
    with ThreadPoolExecutor(12) as pool:
        blobs = list(pool.map(lambda i: http(f"{proxy.url}/v2/hub/team/app/blobs/{layers[i % len(layers)]}"),
                              range(12)))
    for i, (status, _, body) in enumerate(blobs):
        assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == layers[i % len(layers)]
    seen = upstream.access_log()[before:]  # the access log's lines: "GET <path> HTTP/1.1" <status>
    assert seen.count('"GET /v2/team/app/manifests/v1 HTTP/1.1"') == 1, seen
    for layer in layers:
        assert seen.count(f'"GET /v2/team/app/blobs/{layer} HTTP/1.1"') == 1, seen
