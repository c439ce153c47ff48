"""The cache against the upstream's state: upstream stopped (stale serving), a tag moved upstream."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.clients.image import TestImage
from tests.proxy.conftest import http, pull


def test_upstream_stopped_cached_image_still_pulled(upstream_registry, proxy_server, publisher, image: TestImage,
                                                    tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    proxy = proxy_server(upstream.url, tag_ttl=1)
    pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "first")
    upstream.stop()
    time.sleep(1.2)  # past tag_ttl: the tag would be re-resolved, the upstream is down
    status, headers, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200, body
    assert headers["X-Trustreg-Proxy"] == "stale" and headers["Warning"] == '110 - "Response is stale"'
    assert headers["Docker-Content-Digest"] == digest
    pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "by-tag")
    pull(f"{proxy.addr}/hub/team/app@{digest}", tmp_path / "by-digest")
    assert (tmp_path / "by-digest" / "manifest.json").read_bytes() == body
    assert "serving hub/team/app:v1 stale" in proxy.log()
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/tags/list")  # the cache's tags meanwhile
    assert status == 200 and "v1" in json.loads(body)["tags"]
    # what was never cached is not served: the upstream's absence is an error, not a 500
    status, _, body = http(f"{proxy.url}/v2/hub/team/other/manifests/v1")
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"


def test_tag_moved_upstream_to_unsigned_refused_after_ttl(upstream_registry, proxy_server, publisher,
                                                          image: TestImage, tmp_path: Path) -> None:
    upstream = upstream_registry()
    signed = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", signed)
    proxy = proxy_server(upstream.url, tag_ttl=2)
    pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "first")
    started = time.monotonic()
    unsigned = upstream.push(image, "team/app", ref="v1-arm64")  # the tag now names an unsigned manifest
    assert unsigned != signed
    status, headers, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    if time.monotonic() - started < 1.5:  # within tag_ttl: the cached resolution, no upstream contact
        assert status == 200 and headers["X-Trustreg-Proxy"] == "hit"
        assert headers["Docker-Content-Digest"] == signed
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 412, body
    assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNVERIFIED"
    result = pull(f"{proxy.addr}/hub/team/app:v1", tmp_path / "moved", check=False)
    assert result.returncode != 0 and "not signed by cosign" in result.stderr
    status, _, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/{unsigned}")
    assert status == 412
    record = json.loads((proxy.workdir / "data/repositories/hub/team/app/_proxy/tags/v1").read_text())
    assert record["refused"] and record["digest"] == unsigned and "no signature found" in record["verdict"]
    assert record["upstream"] == f"{upstream.url}/team/app:v1"
    # the signed manifest stays available by digest
    status, _, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/{signed}")
    assert status == 200
