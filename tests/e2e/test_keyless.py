"""Signing like 2026, end to end with the real tools: a multi-arch image whose index alone is signed by
the real `cosign sign` is pulled by containerd's CRI `PullImage` (the kubelet's path: the tag resolves
to the index, the platform manifest is fetched by digest), and an unsigned multi-arch image is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)
from tests.e2e.test_signatures import ALICE, CAROL, COSIGN_REFUSAL, Env, cosign_sign, make_env


@pytest.fixture
def public_env(test_image: Path, tmp_path: Path) -> Iterator[Env]:
    """trustreg with public enforced projects (anonymous pulls are gated, as the kubelet's are)."""
    e = make_env(test_image, tmp_path, public=True)
    yield e
    e.server.stop()


def push_multi(e: Env, repo: str) -> str:
    """skopeo copies the harness's multi-arch image (index and both platforms) to `<repo>:v1`."""
    e.run("skopeo", "copy", "--all", "--dest-tls-verify=false", f"--dest-creds={ALICE[0]}:{ALICE[1]}",
          f"oci:{e.image}/oci:multi", f"docker://{e.server.addr}/{repo}:v1")
    return e.digests["INDEX_DIGEST"]


def plain_http(containerd: Containerd, addr: str) -> None:  # noqa: F811
    """The CRI plugin talks plain HTTP to `addr` (registry config_path hosts.toml)."""
    d = containerd.hosts_dir / addr
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(f'server = "http://{addr}"\n\n[host."http://{addr}"]\n'
                                  '  capabilities = ["pull", "resolve"]\n')


def test_cri_pulls_multiarch_image_whose_index_alone_is_cosign_signed(public_env: Env,
                                                                      containerd: Containerd) -> None:  # noqa: F811
    e, addr = public_env, public_env.server.addr
    plain_http(containerd, addr)
    index = push_multi(e, "cosigned/multi")
    push_multi(e, "cosigned/multiunsigned")
    cosign_sign(e, "ci", f"{addr}/cosigned/multi@{index}", "--new-bundle-format=false")
    # only the index is signed: nothing refers to the platform manifests
    for platform in ("AMD64_MANIFEST", "ARM64_MANIFEST"):
        sig = e.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"--creds={ALICE[0]}:{ALICE[1]}",
                    f"docker://{addr}/cosigned/multi:{e.digests[platform].replace(':', '-')}.sig", check=False)
        assert sig.returncode != 0, sig.stdout

    # the platform image was pulled: its manifest came by digest, served on the index's verdict
    assert containerd.cri_pull(f"{addr}/cosigned/multi:v1") == e.digests["AMD64_CONFIG"]
    with pytest.raises(grpc.RpcError) as refused:
        containerd.cri_pull(f"{addr}/cosigned/multiunsigned:v1")
    assert "412" in str(refused.value) or "Precondition" in str(refused.value), refused.value
    # the unsigned image's platform manifest, by digest, is refused with the cosign reason too
    by_digest = e.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"--creds={CAROL[0]}:{CAROL[1]}",
                      f"docker://{addr}/cosigned/multiunsigned@{e.digests['AMD64_MANIFEST']}", check=False)
    assert by_digest.returncode != 0 and COSIGN_REFUSAL in by_digest.stderr, by_digest.stderr
