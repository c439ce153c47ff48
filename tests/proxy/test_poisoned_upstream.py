"""A poisoned upstream leaves no trace: tampered blob and manifest bytes in distribution's own storage."""

from __future__ import annotations

import http.client as httpclient
import json
from pathlib import Path

from tests.clients.image import TestImage
from tests.proxy.conftest import Upstream, http, run, storage_files


def _largest_layer(upstream: Upstream, repo: str) -> tuple[str, int]:
    raw = run("skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{upstream.addr}/{repo}:v1").stdout
    layer = max(json.loads(raw)["layers"], key=lambda d: d["size"])
    return layer["digest"], layer["size"]


def _get(addr: str, path: str) -> tuple[int, int, int | None]:
    """(status, bytes received, Content-Length) of a GET whose body may be cut short."""
    host, port = addr.split(":")
    conn = httpclient.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    length = resp.getheader("Content-Length")
    received = 0
    try:
        while chunk := resp.read1(1 << 16):
            received += len(chunk)
    except (httpclient.IncompleteRead, ConnectionError):
        pass
    conn.close()
    return resp.status, received, int(length) if length is not None else None


def test_corrupted_blob_aborted_and_not_cached(upstream_registry, proxy_server, publisher, image: TestImage,
                                               tmp_path: Path) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    layer, size = _largest_layer(upstream, "team/app")
    path = upstream.blob_path(layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length, other bytes
    path.write_bytes(bytes(data))
    proxy = proxy_server(upstream.url)
    status, _, _ = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200  # the manifest is signed and intact: admitted
    for _ in range(2):  # never completed to the client, never cached (the second try fetches again)
        status, received, length = _get(proxy.addr, f"/v2/hub/team/app/blobs/{layer}")
        assert status == 502 or (length == size and received < size), (status, received, length)
    assert upstream.access_log().count(f"/v2/team/app/blobs/{layer}") >= 2
    # only the mark that lets it be fetched (an admitted manifest references it); no content, no link
    assert [f for f in storage_files(proxy) if layer.removeprefix("sha256:") in f] == [
        f"repositories/hub/team/app/_proxy/blobs/sha256/{layer.removeprefix('sha256:')}"]
    assert f"upstream blob {layer} of hub/team/app does not match its digest" in proxy.log()
    result = run("skopeo", "copy", "--src-tls-verify=false", f"docker://{proxy.addr}/hub/team/app:v1",
                 f"dir:{tmp_path / 'pulled'}", check=False)
    assert result.returncode != 0


def test_manifest_not_matching_its_digest_refused_and_not_cached(upstream_registry, proxy_server, publisher,
                                                                 image: TestImage) -> None:
    upstream = upstream_registry()
    digest = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", digest)
    path = upstream.blob_path(digest)
    path.write_bytes(path.read_bytes() + b"\n")  # still valid JSON, another digest
    proxy = proxy_server(upstream.url)
    for ref in ("v1", digest):
        status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/{ref}")
        assert status == 502, body
        assert "does not match" in json.loads(body)["errors"][0]["message"] or "not " in body.decode()
    assert not [f for f in storage_files(proxy) if digest.removeprefix("sha256:") in f or "_manifests" in f]


def test_blob_of_no_admitted_manifest_never_fetched(upstream_registry, proxy_server, publisher,
                                                    image: TestImage) -> None:
    upstream = upstream_registry()
    signed = upstream.push(image, "team/app")
    publisher.sign(upstream, "team/app", signed)
    upstream.push(image, "team/other", ref="v1-arm64")  # unsigned, never asked for
    layer, _ = _largest_layer(upstream, "team/other")
    proxy = proxy_server(upstream.url)
    before = len(upstream.access_log())  # skopeo's own requests while pushing are in the log before
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[0] == 200
    for repo in ("team/other", "team/app"):  # neither in its own repository nor through an admitted one
        status, _, body = http(f"{proxy.url}/v2/hub/{repo}/blobs/{layer}")
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    seen = upstream.access_log()[before:]
    assert "/v2/team/app/manifests/v1" in seen and f"/blobs/{layer}" not in seen
