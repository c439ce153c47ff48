"""Real clients against the real server: skopeo (the harness) and docker push/pull."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import HARNESS, require


def run_harness(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(
        [str(HARNESS / script), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})},
    )
    out = result.stdout + result.stderr
    last = [line for line in out.splitlines() if "steps passed" in line]
    assert result.returncode == 0 and last, out
    return last[-1]


def test_skopeo_harness(trustreg) -> None:
    require("skopeo")
    server = trustreg()
    line = run_harness("skopeo-check.sh", server.addr)
    passed, total = line.rsplit(" ", 3)[-3].split("/")
    assert passed == total


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
