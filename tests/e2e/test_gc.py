"""`trustreg gc` against a running registry, with real skopeo pushes and pulls."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.conftest import REPO, Server, require


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300, check=check)


def gc(server: Server, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--config", str(server.config_path), *args],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def age_blobs(root: Path, seconds: float) -> None:
    """Make every stored blob (and reference marker) look `seconds` old, as if pushed long ago."""
    old = time.time() - seconds
    for path in (root / "blobs").rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))


def blob_lines(out: str, prefix: str) -> list[str]:
    return sorted(line.split()[2 if prefix == "removed" else 3] for line in out.splitlines()
                  if line.startswith(f"{prefix} blob"))


def test_gc_frees_exactly_the_unreferenced(trustreg, test_image: Path, tmp_path: Path) -> None:
    require("skopeo")
    server = trustreg()
    keep, drop = f"{server.addr}/gc/keep:v1", f"{server.addr}/gc/drop:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1", f"docker://{keep}")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1-arm64", f"docker://{drop}")
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{drop}").stdout.strip()
    skopeo("delete", "--tls-verify=false", f"docker://{server.addr}/gc/drop@{digest}")
    age_blobs(server.workdir / "data", 7200)

    dry = gc(server, "--dry-run")
    would = blob_lines(dry, "would remove")
    assert digest in would and len(would) >= 3, dry  # the manifest, its config and its layer
    assert "would be freed" in dry
    out = gc(server)
    assert blob_lines(out, "removed") == would, out
    skopeo("copy", "--src-tls-verify=false", f"docker://{keep}", f"oci:{tmp_path}/pulled:keep")
    assert "0 blobs" in gc(server, "--dry-run").splitlines()[-1]


def test_push_racing_gc_stays_pullable(trustreg, test_image: Path, tmp_path: Path) -> None:
    """Old unreferenced blobs re-referenced by a push while the sweep runs: the push either
    completes with all its blobs present, or fails cleanly and succeeds when retried."""
    require("skopeo")
    server = trustreg()
    for round_ in range(3):
        old = f"{server.addr}/race/old{round_}:v1"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1-arm64", f"docker://{old}")
        digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{old}").stdout.strip()
        skopeo("delete", "--tls-verify=false", f"docker://{server.addr}/race/old{round_}@{digest}")
        age_blobs(server.workdir / "data", 7200)
        target = f"{server.addr}/race/multi{round_}:multi"
        result: dict[str, subprocess.CompletedProcess] = {}

        def push(ref: str = target, result: dict = result) -> None:
            result["push"] = skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{test_image}/oci:multi",
                                    f"docker://{ref}", check=False)

        t = threading.Thread(target=push)
        t.start()
        gc(server)
        t.join()
        if result["push"].returncode != 0:
            assert "blob unknown" in result["push"].stderr.lower(), result["push"].stderr
            push()
            assert result["push"].returncode == 0, result["push"].stderr
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path}/p{round_}:multi")


def test_short_grace_needs_offline(trustreg) -> None:
    server = trustreg()
    result = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--config", str(server.config_path),
                             "--grace", "10"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--offline" in result.stderr
    assert "0 blobs" in gc(server, "--grace", "0", "--offline")
