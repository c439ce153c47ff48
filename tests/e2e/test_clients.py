"""Real clients against the real server: skopeo (the whole scenario) and docker push/pull."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.clients.image import TestImage
from tests.clients.skopeo import Skopeo, skopeo_scenario
from tests.e2e.conftest import require


def test_skopeo_scenario(trustreg, image: TestImage, tmp_path: Path) -> None:
    require("skopeo")
    server = trustreg()
    skopeo_scenario(Skopeo(tmp_path), server.addr, image, "harness/skopeo", tmp_path)


def test_docker_push_pull(trustreg, dockerd, test_image: Path) -> None:
    server = trustreg()
    ref = f"{server.addr}/library/busybox:v1"
    dockerd.run("load", "-i", str(test_image / "docker-archive.tar"))
    dockerd.run("tag", "harness/test:v1", ref)
    push = dockerd.run("push", ref)
    digest = [w for w in push.stdout.split() if w.startswith("sha256:")][0]
    dockerd.run("rmi", ref)
    dockerd.run("pull", ref)
    dockerd.run("pull", f"{server.addr}/library/busybox@{digest}")
    inspect = dockerd.run("image", "inspect", "--format", "{{index .RepoDigests 0}}", ref)
    assert digest in inspect.stdout


def test_docker_multi_arch_pull(trustreg, dockerd, test_image: Path) -> None:
    server = trustreg()
    ref = f"{server.addr}/multi/busybox:multi"
    subprocess.run(
        ["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{test_image}/oci:multi", f"docker://{ref}"],
        check=True, capture_output=True, timeout=300,
    )
    dockerd.run("pull", "--platform", "linux/amd64", ref)
    out = dockerd.run("image", "inspect", "--format", "{{.Architecture}}", ref).stdout.strip()
    assert out == "amd64"
