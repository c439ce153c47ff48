"""Immutable tags with the real clients: skopeo cannot move a `v*` tag, cosign signs it twice."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Server, require
from tests.e2e.test_signatures import COSIGN_FLAGS, tool
from tests.signatures.factory import tag_for


def run(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / "docker"), "COSIGN_PASSWORD": "e2e"}
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_skopeo_move_refused_cosign_signs_twice(trustreg: Callable[..., Server], test_image: Path,
                                                tmp_path: Path) -> None:
    require("skopeo")
    cosign = tool("cosign")
    home = tmp_path / "home"
    (home / "docker").mkdir(parents=True)
    server = trustreg({"trust": {"keys": {"insecure_dev_passphrase": True}},
                       "projects": {"secure": {"immutable_tags": ["v*"]}}})
    digests = dict(line.split("=", 1) for line in (test_image / "digests.env").read_text().splitlines() if "=" in line)
    dest = f"docker://{server.addr}/secure/app:v1"

    def copy(ref: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:{ref}", dest,
                   home=home, check=check)

    copy("v1")
    copy("v1")  # the same image again: the tag does not move
    refused = copy("v1-arm64", check=False)
    assert refused.returncode != 0 and "immutable" in refused.stderr, refused.stderr

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"{server.url}{path}", timeout=30) as resp:
            return {"digest": resp.headers["Docker-Content-Digest"], "body": json.loads(resp.read())}

    digest = digests["AMD64_MANIFEST"]
    assert get("/v2/secure/app/manifests/v1")["digest"] == digest
    for name in ("one", "two"):
        run(cosign, "generate-key-pair", "--output-key-prefix", str(tmp_path / name), home=home)
    ref = f"{server.addr}/secure/app@{digest}"
    for name in ("one", "two"):  # the second signature rewrites the `.sig` tag with both
        run(cosign, "sign", "--key", str(tmp_path / f"{name}.key"), "--use-signing-config=false",
            "--tlog-upload=false", "--new-bundle-format=false", *COSIGN_FLAGS, "-y", ref, home=home)
    signatures = get(f"/v2/secure/app/manifests/{tag_for(digest, '.sig')}")["body"]
    assert len(signatures["layers"]) == 2, signatures
    for name in ("one", "two"):
        run(cosign, "verify", "--key", str(tmp_path / f"{name}.pub"), "--insecure-ignore-tlog=true",
            *COSIGN_FLAGS, f"{server.addr}/secure/app:v1", home=home)
    assert get("/v2/secure/app/manifests/v1")["digest"] == digest
