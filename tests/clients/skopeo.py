"""skopeo (Debian bookworm: 1.9) against a plain-http registry, and the whole client scenario:
push an OCI image, inspect (digest, raw manifest, config), pull by tag and by digest, push converted
to Docker schema 2, registry-to-registry copy, a multi-arch index (`--all`, `--override-arch`),
list-tags, delete by digest and by tag."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

from tests.clients.image import MARKER, TestImage

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"


class Skopeo:
    """skopeo with a private authfile (never the user's credentials); `creds` logs in first."""

    def __init__(self, workdir: Path, creds: str | None = None, registry: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.authfile = workdir / "auth.json"
        self.authfile.write_text("{}")
        if creds:
            user, password = creds.split(":", 1)
            self("login", "--tls-verify=false", "-u", user, "--password-stdin", str(registry), stdin=password)

    def run(self, *args: str, stdin: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout, input=stdin,
                              env={**os.environ, "REGISTRY_AUTH_FILE": str(self.authfile)})

    def __call__(self, *args: str, stdin: str = "") -> str:
        """Run a command that must succeed; its stdout."""
        result = self.run(*args, stdin=stdin)
        if result.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def inspect(self, ref: str, *args: str) -> str:
        return self("inspect", "--tls-verify=false", *args, ref).strip()

    def raw(self, ref: str) -> bytes:
        return self.inspect(ref, "--raw").encode()


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def check_blobs(folder: Path) -> None:
    """Every blob of a pulled OCI layout has the content its name says."""
    blobs = list((folder / "blobs" / "sha256").iterdir())
    assert blobs
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob


def skopeo_scenario(skopeo: Skopeo, registry: str, image: TestImage, repo: str, work: Path) -> None:
    """The whole skopeo scenario against `registry` (host:port) in repository `repo` (fresh)."""
    ref = f"docker://{registry}/{repo}"
    work.mkdir(parents=True, exist_ok=True)
    # push an OCI image; inspect: digest, raw manifest bytes, config
    skopeo("copy", "--dest-tls-verify=false", image.oci("v1"), f"{ref}:v1")
    assert skopeo.inspect(f"{ref}:v1", "--format", "{{.Digest}}") == image.amd64_manifest
    raw = skopeo.raw(f"{ref}:v1")
    assert sha256(raw) == image.amd64_manifest
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(skopeo.inspect(f"{ref}:v1", "--config"))
    assert config["config"]["Labels"]["org.example.harness"] == "v1-amd64"
    # pull by tag into an OCI layout, by digest into a dir: manifest and every layer verify
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{work}/pulled:v1")
    assert skopeo.inspect(f"oci:{work}/pulled:v1", "--format", "{{.Digest}}") == image.amd64_manifest
    check_blobs(work / "pulled")
    skopeo("copy", "--src-tls-verify=false", f"{ref}@{image.amd64_manifest}", f"dir:{work}/bydigest")
    manifest = (work / "bydigest" / "manifest.json").read_bytes()
    assert sha256(manifest) == image.amd64_manifest
    layers = [layer["digest"].removeprefix("sha256:") for layer in json.loads(manifest)["layers"]]
    for layer in layers:
        assert sha256((work / "bydigest" / layer).read_bytes()) == f"sha256:{layer}"
    with tarfile.open(work / "bydigest" / layers[-1]) as top:
        marker = top.extractfile("etc/harness-test")
        assert marker is not None and marker.read().decode().strip() == MARKER
    # push converted to Docker schema 2
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s2", image.oci("v1"), f"{ref}:v1-v2s2")
    assert json.loads(skopeo.raw(f"{ref}:v1-v2s2"))["mediaType"] == DOCKER_V2S2
    # registry to registry (cross-repository blob mount)
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"{ref}:v1", f"{ref}-copy:v1")
    assert skopeo.inspect(f"{ref}-copy:v1", "--format", "{{.Digest}}") == image.amd64_manifest
    # a multi-arch index: pushed whole, platforms selected, pulled by digest
    skopeo("copy", "--all", "--dest-tls-verify=false", image.oci("multi"), f"{ref}:multi")
    assert sha256(skopeo.raw(f"{ref}:multi")) == image.index
    for arch in ("arm64", "amd64"):
        out = skopeo("--override-arch", arch, "inspect", "--tls-verify=false", "--format", "{{.Architecture}}",
                     f"{ref}:multi")
        assert out.strip() == arch
    skopeo("--override-arch", "arm64", "copy", "--src-tls-verify=false", f"{ref}:multi", f"dir:{work}/arm64")
    assert sha256((work / "arm64" / "manifest.json").read_bytes()) == image.arm64_manifest
    skopeo("copy", "--all", "--src-tls-verify=false", f"{ref}@{image.index}", f"oci:{work}/multi:multi")
    assert json.loads((work / "multi" / "index.json").read_text())["manifests"][0]["digest"] == image.index
    assert (work / "multi" / "blobs" / "sha256" / image.arm64_manifest.removeprefix("sha256:")).is_file()
    check_blobs(work / "multi")
    # tags, then deletes by digest and by tag
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"]
    assert sorted(tags) == ["multi", "v1", "v1-v2s2"]
    skopeo("delete", "--tls-verify=false", f"{ref}-copy@{image.amd64_manifest}")
    gone = skopeo.run("inspect", "--tls-verify=false", "--raw", f"{ref}-copy:v1")
    assert gone.returncode != 0 and any(s in gone.stderr.lower() for s in ("manifest unknown", "not found", "404"))
    skopeo("delete", "--tls-verify=false", f"{ref}:v1-v2s2")
    assert skopeo.run("inspect", "--tls-verify=false", "--raw", f"{ref}:v1-v2s2").returncode != 0
    assert sorted(json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"]) == ["multi", "v1"]
