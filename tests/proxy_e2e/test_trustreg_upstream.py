"""A proxy project in front of a second trustreg (token auth, referrers API; signed with the real cosign
and notation): what the kubelet (containerd's CRI `PullImage`) and skopeo get through it, and what the
proxy's storage holds afterwards."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.e2e.conftest import Server
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)
from tests.e2e.test_keyless import plain_http
from tests.e2e.test_signatures import CAROL
from tests.proxy_e2e.conftest import COSIGN, NOTATION, Upstream, traces

REFUSED = "The image is not signed by cosign."



def revision(server: Server, repository: str, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return server.workdir / "data" / "repositories" / repository / "_manifests" / "revisions" / algorithm / hexdigest


def test_signed_image_through_the_proxy_to_cri_and_skopeo(upstream: Upstream, proxy, containerd: Containerd,  # noqa: F811
                                                          skopeo, tmp_path: Path) -> None:
    server = proxy(require_any=[COSIGN, NOTATION])
    plain_http(containerd, server.addr)
    amd64 = upstream.digest("AMD64_MANIFEST")

    # the kubelet's path: the tag resolves through the proxy, the image (its config) lands in containerd
    assert containerd.cri_pull(f"{server.addr}/hub/src/signed:v1") == upstream.digest("AMD64_CONFIG")
    assert revision(server, "hub/src/signed", amd64).exists()
    # what was verified is kept with it: the cosign bundle, a referrer of the image
    with urllib.request.urlopen(f"{server.url}/v2/hub/src/signed/referrers/{amd64}", timeout=30) as resp:
        referrers = json.loads(resp.read())["manifests"]
    assert [r.get("artifactType") for r in referrers] == ["application/vnd.dev.sigstore.bundle.v0.3+json"]

    # skopeo: the notation-signed copy (notation referrer), every blob verified by skopeo against its digest
    out = tmp_path / "notarized"
    skopeo("copy", "--src-tls-verify=false", f"docker://{server.addr}/hub/src/notarized:v1", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [amd64]
    for blob in upstream.blobs():
        assert (out / "blobs" / "sha256" / blob[7:]).is_file()
    assert revision(server, "hub/src/notarized", amd64).exists()
    with urllib.request.urlopen(f"{server.url}/v2/hub/src/notarized/referrers/{amd64}", timeout=30) as resp:
        referrers = json.loads(resp.read())["manifests"]
    assert [r.get("artifactType") for r in referrers] == ["application/vnd.cncf.notary.signature"]
    assert CAROL[1] not in server.log()  # the upstream password, from password_env, is never logged


def test_unsigned_image_refused_to_cri_and_not_stored(upstream: Upstream, proxy, skopeo,
                                                      containerd: Containerd) -> None:  # noqa: F811
    server = proxy()
    plain_http(containerd, server.addr)
    with pytest.raises(grpc.RpcError) as refused:
        containerd.cri_pull(f"{server.addr}/hub/src/unsigned:v1")
    assert "412" in str(refused.value) or "Precondition" in str(refused.value), refused.value
    by_skopeo = skopeo("inspect", "--tls-verify=false", f"docker://{server.addr}/hub/src/unsigned:v1", check=False)
    assert by_skopeo.returncode != 0 and REFUSED in by_skopeo.stderr, by_skopeo.stderr
    # the gate's reason, in the proxy's log
    assert "no signature found" in server.log()
    # not a byte of it: no manifest, config or layer, under any path, in the proxy's storage
    assert traces(server.workdir / "data", [upstream.unsigned, *upstream.unsigned_blobs]) == []
    assert not (server.workdir / "data" / "repositories" / "hub" / "src" / "unsigned" / "_manifests" / "tags"
                / "v1").exists()
    # ...while the upstream does hold it (the refusal is the proxy's)
    present = skopeo("inspect", "--tls-verify=false", "--creds", ":".join(CAROL), "--format",
                     "{{.Digest}}", f"docker://{upstream.server.addr}/src/unsigned:v1")
    assert present.stdout.strip() == upstream.unsigned


def test_index_signed_once_admits_the_platform_manifest_containerd_fetches(upstream: Upstream, proxy, skopeo,
                                                                           containerd: Containerd) -> None:  # noqa: F811
    server = proxy()
    plain_http(containerd, server.addr)
    amd64, index = upstream.digest("AMD64_MANIFEST"), upstream.digest("INDEX_DIGEST")
    # upstream, only the index carries a signature: nothing refers to the platform manifest
    sig = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", ":".join(CAROL),
                 f"docker://{upstream.server.addr}/src/multi:{amd64.replace(':', '-')}.sig", check=False)
    assert sig.returncode != 0

    assert containerd.cri_pull(f"{server.addr}/hub/src/multi:v1") == upstream.digest("AMD64_CONFIG")
    assert revision(server, "hub/src/multi", index).exists()
    assert revision(server, "hub/src/multi", amd64).exists()
    # the platform manifest by digest is served (the index's verdict), to a client that asks for it alone
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.addr}/hub/src/multi@{amd64}")
    stored = upstream.env.image / "oci" / "blobs" / "sha256" / amd64[7:]
    assert raw.stdout.encode().rstrip(b"\n") == stored.read_bytes()
