"""What each client prints when the content-trust gate refuses a pull (README "What each client
prints"): docker, podman, skopeo, ctr and the CRI PullImage the kubelet calls all state the reason, and
none suggests `docker login`. The refused HEAD carries the reason in its status line and no
Docker-Content-Digest (no client may match it against a copy it holds)."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, require
from tests.e2e.conftest_containerd import containerd  # noqa: F401  (fixture)
from tests.helpers import digest_of

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDR = "127.0.0.1:5000"  # the registry address in README's "What each client prints"
MESSAGE = "The image is not signed in Notary. Reason: no trust data: no trust data for secure/app."
STATUS = f"412 Precondition Failed: {MESSAGE}"


def push_unsigned(url: str, repository: str, tag: str) -> str:
    """A one-layer docker image pushed over the API; returns its manifest digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(raw.getvalue())]}}).encode()
    for blob in (config, layer):
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/v2/{repository}/blobs/uploads/?digest={digest_of(blob)}", data=blob, method="POST"), timeout=10)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest_of(layer),
                    "size": len(layer)}]}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{url}/v2/{repository}/manifests/{tag}", data=manifest,
                                                  method="PUT", headers={"Content-Type": DOCKER_MANIFEST}), timeout=10)
    return digest_of(manifest)


def readme_line(client: str, addr: str) -> str:
    """README's documented output line for `client` (e.g. "docker pull"), for the registry at `addr`."""
    lines = [line[len(client):].strip() for line in README.read_text().splitlines()
             if line.startswith(f"{client}  ")]
    assert len(lines) == 1, f"README documents {client} {len(lines)} times"
    return lines[0].replace(README_ADDR, addr)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture
def refused(trustreg) -> tuple[Server, str]:
    """trustreg (plain http on loopback) enforcing `secure`, holding unsigned `secure/app:1`."""
    server = trustreg({"projects": {"secure": {"content_trust": {"enforce": True}}}})
    return server, push_unsigned(server.url, "secure/app", "1")


def test_refused_head_states_the_reason_in_its_status_line(refused: tuple[Server, str]) -> None:
    server, digest = refused
    for method in ("HEAD", "GET"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request(method, "/v2/secure/app/manifests/1")
        resp = conn.getresponse()
        body = resp.read()
        assert f"{resp.status} {resp.reason}" == STATUS
        assert "Docker-Content-Digest" not in resp.headers
        if method == "GET":
            error = json.loads(body)["errors"][0]
            assert error["code"] == "MANIFEST_UNVERIFIED" and error["message"] == MESSAGE
            assert error["detail"] == {"repository": "secure/app", "reference": "1", "digest": digest,
                                       "reason": "no trust data: no trust data for secure/app"}
        conn.close()


def test_docker_skopeo_and_podman_print_the_reason(refused: tuple[Server, str], dockerd, tmp_path: Path) -> None:
    server, digest = refused
    ref = f"{server.addr}/secure/app:1"
    docker = dockerd.run("pull", ref, check=False)
    assert docker.returncode != 0
    assert docker.stderr.strip() == f"Error response from daemon: manifest unverified: {MESSAGE}"
    assert docker.stderr.strip() == readme_line("docker pull", server.addr)
    docker = dockerd.run("pull", f"{server.addr}/secure/app@{digest}", check=False)
    assert docker.stderr.strip() == f"Error response from daemon: manifest unverified: {MESSAGE}"

    require("skopeo")
    skopeo = run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path}/out:1")
    assert skopeo.returncode != 0
    assert (f'msg="initializing source docker://{ref}: reading manifest 1 in {server.addr}/secure/app: '
            f'manifest unverified: {MESSAGE}"') in skopeo.stderr
    assert skopeo.stderr.strip().endswith(readme_line("skopeo copy", server.addr))

    require("podman")
    runroot = tempfile.mkdtemp(prefix="podman-", dir="/tmp")  # podman wants a runroot under 50 characters
    podman = run("podman", "--root", str(tmp_path / "podman"), "--runroot", runroot, "--storage-driver=vfs",
                 "pull", "--tls-verify=false", ref)
    shutil.rmtree(runroot, ignore_errors=True)
    assert podman.returncode == 125
    assert podman.stderr.strip().splitlines()[-1] == (
        f"Error: initializing source docker://{ref}: reading manifest 1 in {server.addr}/secure/app: "
        f"manifest unverified: {MESSAGE}")
    assert podman.stderr.strip().splitlines()[-1] == readme_line("podman pull", server.addr)
    for output in (docker.stderr, skopeo.stderr, podman.stderr):
        assert "login" not in output


def test_ctr_and_the_cri_print_the_reason(refused: tuple[Server, str], containerd) -> None:  # noqa: F811
    server, _ = refused
    ref = f"{server.addr}/secure/app:1"
    ctr = containerd.ctr("images", "pull", "--plain-http", ref, check=False)
    assert ctr.returncode != 0
    assert ctr.stderr.strip().splitlines()[-1] == (
        f'ctr: failed to resolve reference "{ref}": pulling from host {server.addr} failed with status code '
        f"[manifests 1]: {STATUS}")
    assert ctr.stderr.strip().splitlines()[-1] == readme_line("ctr pull", server.addr)

    import grpc

    hosts = containerd.hosts_dir / server.addr
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(
        f'server = "http://{server.addr}"\n\n[host."http://{server.addr}"]\n  capabilities = ["pull", "resolve"]\n')
    with pytest.raises(grpc.RpcError) as err:
        containerd.cri_pull(ref)
    assert err.value.details() == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": pulling from host '
        f"{server.addr} failed with status code [manifests 1]: {STATUS}")
    assert err.value.details() == readme_line("CRI PullImage", server.addr)
    assert "login" not in ctr.stderr + str(err.value.details())
