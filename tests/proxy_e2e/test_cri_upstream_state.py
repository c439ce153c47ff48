"""The kubelet's path (containerd's CRI `PullImage`) when the upstream changes under a proxy project:
stopped, the cached image is still pulled (manifest and blobs from the cache); a tag moved upstream to an
unsigned image is refused once `tag_ttl` has passed, and nothing of that image is stored."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.clients.image import TestImage
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)
from tests.e2e.test_keyless import plain_http
from tests.e2e.test_signatures import cosign_sign
from tests.proxy_e2e.conftest import Distribution, Upstream, traces
from tests.s3server import free_port


@pytest.fixture
def app_upstream(upstream: Upstream, image: TestImage, tmp_path: Path) -> Iterator[Distribution]:
    """A distribution 2.8.2 of this test's own holding `app:v1` (the harness image), cosign-signed."""
    registry = Distribution(f"127.0.0.1:{free_port()}", tmp_path / "dist" / "data", tmp_path / "dist", None)
    registry.workdir.mkdir()
    registry.start()
    try:
        registry.push(image, "app")
        cosign_sign(upstream.env, "ci", f"{registry.addr}/app@{image.amd64_manifest}", "--new-bundle-format=false")
        yield registry
    finally:
        registry.stop()


def forget_images(c: Containerd) -> None:  # noqa: F811
    """Remove every CRI image (and, synchronously, the content only they held) from the private containerd."""
    run = ["ctr", "-a", str(c.sock), "-n", "k8s.io", "images"]
    names = subprocess.run([*run, "ls", "-q"], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    if names:
        subprocess.run([*run, "rm", "--sync", *names], capture_output=True, text=True, timeout=120, check=True)


def test_upstream_stopped_cri_still_pulls_the_cached_image(upstream: Upstream, app_upstream: Distribution, proxy,
                                                           containerd: Containerd, image: TestImage) -> None:  # noqa: F811
    server = proxy(url=app_upstream.url, tag_ttl=1)
    plain_http(containerd, server.addr)
    ref = f"{server.addr}/hub/app:v1"
    assert containerd.cri_pull(ref) == image.amd64_config
    forget_images(containerd)  # the next pull needs every blob again
    app_upstream.stop()
    time.sleep(1.2)  # past tag_ttl: the tag is due for re-resolution, and the upstream is gone
    mark = len(server.log())
    assert containerd.cri_pull(ref) == image.amd64_config
    log = server.log()[mark:]
    assert "serving hub/app:v1 stale" in log
    for blob in upstream.blobs():  # containerd fetched the config and layers again: from the cache
        assert f"GET /v2/hub/app/blobs/{blob} 200" in log, log


def test_tag_moved_upstream_to_unsigned_refused_to_cri_after_ttl(upstream: Upstream, app_upstream: Distribution,
                                                                 proxy, containerd: Containerd,  # noqa: F811
                                                                 image: TestImage) -> None:
    server = proxy(url=app_upstream.url, tag_ttl=2)
    plain_http(containerd, server.addr)
    ref = f"{server.addr}/hub/app:v1"
    assert containerd.cri_pull(ref) == image.amd64_config
    started = time.monotonic()
    upstream.env.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{upstream.unsigned_layout}:v1",
                     f"docker://{app_upstream.addr}/app:v1")  # the tag now names an unsigned image
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    with pytest.raises(grpc.RpcError) as refused:
        containerd.cri_pull(ref)
    assert "412" in str(refused.value) or "Precondition" in str(refused.value), refused.value
    assert "no signature found" in server.log()
    assert traces(server.workdir / "data", [upstream.unsigned, *upstream.unsigned_blobs]) == []
    assert not (server.workdir / "data" / "repositories" / "hub" / "app" / "_manifests" / "tags" / "v1").exists()
