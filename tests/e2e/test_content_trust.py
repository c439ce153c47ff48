"""Content trust end to end, with real clients against trustreg over TLS (its own trust server):

- the notary CLI signs (addhash in `targets` and in `targets/releases`), skopeo pulls the signed
  image from an enforced project and is refused the unsigned one with the 412 message;
- docker: `DOCKER_CONTENT_TRUST=1` push signs through trustreg, `docker trust inspect` and content-trust
  pulls work, a plain pull of a signed image succeeds and of an unsigned one fails;
- containerd (`ctr` and the CRI PullImage call the kubelet makes): a signed image and a signed
  multi-arch index pull, an unsigned image is refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.clients.notary import NotaryCLI, notary_scenario
from tests.e2e.conftest import Server, require
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)

REFUSAL = "The image is not signed in Notary."
ENFORCED = {"projects": {"secure": {"content_trust": {"enforce": True}}}}
DCT = {
    "DOCKER_CONTENT_TRUST": "1",
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "e2e-dct-root",
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "e2e-dct-repo",
}


@pytest.fixture
def secure(trustreg, certs: Path) -> Server:
    """trustreg over TLS with project `secure` enforcing content trust."""
    tls = {"certificate": str(certs / "server.crt"), "key": str(certs / "server.key")}
    return trustreg({**ENFORCED, "http": {"tls": tls}})


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def layout_size(image: Path, digest: str) -> int:
    return (image / "oci" / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"skopeo {' '.join(args)}:\n{result.stderr}"
    return result


def push_oci(image: Path, ref: str, dest: str, *extra: str) -> None:
    skopeo("copy", *extra, "--dest-tls-verify=false", f"oci:{image}/oci:{ref}", f"docker://{dest}")


def test_skopeo_with_notary_cli_signatures(secure: Server, certs: Path, test_image: Path, tmp_path: Path) -> None:
    require("skopeo", "notary")
    digests = env_file(test_image / "digests.env")
    amd64, arm64 = digests["AMD64_MANIFEST"], digests["ARM64_MANIFEST"]
    repo = f"{secure.addr}/secure/app"
    push_oci(test_image, "v1", f"{repo}:signed")
    push_oci(test_image, "v1", f"{repo}:released")
    push_oci(test_image, "v1-arm64", f"{repo}:unsigned")
    notary = NotaryCLI(secure.url, tmp_path / "notary", certs / "ca.crt")
    notary("init", repo)
    notary.sign(repo, "signed", amd64, layout_size(test_image, amd64))
    notary.delegate(repo)
    notary.sign(repo, "released", amd64, layout_size(test_image, amd64), role="targets/releases")

    for tag in ("signed", "released"):
        skopeo("copy", "--src-tls-verify=false", f"docker://{repo}:{tag}", f"oci:{tmp_path}/out:{tag}")
    skopeo("copy", "--src-tls-verify=false", f"docker://{repo}@{amd64}", f"oci:{tmp_path}/out:bydigest")
    refused = skopeo("copy", "--src-tls-verify=false", f"docker://{repo}:unsigned", f"oci:{tmp_path}/out:u",
                     check=False)
    assert refused.returncode != 0 and REFUSAL in refused.stderr, refused.stderr
    refused = skopeo("inspect", "--tls-verify=false", f"docker://{repo}@{arm64}", check=False)
    assert refused.returncode != 0 and REFUSAL in refused.stderr, refused.stderr
    # Outside the enforced project nothing is gated.
    push_oci(test_image, "v1-arm64", f"{secure.addr}/open/app:unsigned")
    skopeo("inspect", "--tls-verify=false", f"docker://{secure.addr}/open/app:unsigned")
    assert "content trust refused GET secure/app:unsigned" in secure.log()


def test_docker_content_trust(secure: Server, dockerd, test_image: Path) -> None:
    require("docker")
    dockerd.run("load", "-i", str(test_image / "docker-archive.tar"))
    signed, unsigned = f"{secure.addr}/secure/signed:1", f"{secure.addr}/secure/unsigned:1"
    dockerd.run("tag", "harness/test:v1", signed)
    dockerd.run("tag", "harness/test:v1", unsigned)
    push = dockerd.run("push", signed, env=DCT)
    assert "Successfully signed" in push.stdout + push.stderr, push.stdout + push.stderr
    dockerd.run("push", unsigned)

    inspect = json.loads(dockerd.run("trust", "inspect", signed).stdout)
    assert [t["SignedTag"] for t in inspect[0]["SignedTags"]] == ["1"]

    dockerd.run("rmi", signed, unsigned)
    dockerd.run("pull", signed)  # no content trust on the client: the registry's gate lets it through
    dockerd.run("rmi", signed)
    dockerd.run("pull", signed, env=DCT)  # client-side content trust through trustreg's trust server
    plain = dockerd.run("pull", unsigned, check=False)
    assert plain.returncode != 0 and REFUSAL in plain.stderr, plain.stderr
    dct = dockerd.run("pull", unsigned, env=DCT, check=False)
    assert dct.returncode != 0, dct.stdout
    assert "trust data" in dct.stderr.lower(), dct.stderr


def test_containerd_and_cri(secure: Server, certs: Path, containerd: Containerd,  # noqa: F811
                            test_image: Path, tmp_path: Path) -> None:
    require("skopeo", "notary")
    digests = env_file(test_image / "digests.env")
    amd64, index = digests["AMD64_MANIFEST"], digests["INDEX_DIGEST"]
    repo = f"{secure.addr}/secure/kube"
    push_oci(test_image, "v1", f"{repo}:signed")
    push_oci(test_image, "multi", f"{repo}:multi", "--all")
    push_oci(test_image, "v1-arm64", f"{repo}:unsigned")
    notary = NotaryCLI(secure.url, tmp_path / "notary", certs / "ca.crt")
    notary("init", repo)
    notary("addhash", repo, "signed", str(layout_size(test_image, amd64)), "--sha256", amd64.removeprefix("sha256:"))
    notary.sign(repo, "multi", index, layout_size(test_image, index))
    containerd.trust_registry(secure.addr)
    hosts = ["--hosts-dir", str(containerd.hosts_dir)]

    containerd.ctr("images", "pull", *hosts, f"{repo}:signed")
    # the index by tag, then every platform manifest by digest (children of a signed index)
    containerd.ctr("images", "pull", *hosts, "--all-platforms", f"{repo}:multi")
    refused = containerd.ctr("images", "pull", *hosts, f"{repo}:unsigned", check=False)
    assert refused.returncode != 0 and "412" in refused.stderr + refused.stdout, refused.stderr

    import grpc

    assert containerd.cri_pull(f"{repo}:signed").startswith("sha256:")
    assert containerd.cri_pull(f"{repo}:multi").startswith("sha256:")
    with pytest.raises(grpc.RpcError) as err:
        containerd.cri_pull(f"{repo}:unsigned")
    assert "412" in str(err.value.details()), err.value.details()


def test_notary_cli_scenario(secure: Server, certs: Path, tmp_path: Path) -> None:
    """init, publish, add/addhash, list/lookup/verify, remove, server-managed snapshot key,
    `targets/releases` delegation, a fresh client (TOFU), delete --remote: all over TLS."""
    require("notary")
    notary_scenario(secure.url, certs / "ca.crt", f"{secure.addr}/library/alpine", tmp_path)
