"""Quota with the real client: skopeo's push refused mid-way leaves nothing half-stored; a delete and
`trustreg gc` give the space back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.conftest import REPO, require, start_server


def oci_layout(path: Path, layer: bytes) -> None:
    """A one-layer OCI image layout at `path` (tag `big`)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       **put(layer)}]}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                **put(manifest), "annotations": {
                                                    "org.opencontainers.image.ref.name": "big"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def test_skopeo_push_over_quota(test_image: Path, tmp_path: Path) -> None:
    require("skopeo")
    layer = os.urandom(700_000)
    oci_layout(tmp_path / "big", layer)
    root = tmp_path / "data"
    config = {"trust": {"keys": {"insecure_dev_passphrase": True}}, "storage": {"filesystem": {"root": str(root)}},
              "projects": {"secure": {"quota": {"bytes": "1.5MB"}}}}

    def copy(src: str, dest: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", src, f"docker://{server.addr}/{dest}"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 or not check, result.stderr
        return result

    def usage() -> int:
        with urllib.request.urlopen(f"{server.url}/api/v1/projects", timeout=30) as resp:
            return {p["name"]: p["usage"] for p in json.loads(resp.read())}["secure"]["bytes"]

    server = start_server(tmp_path / "srv", config)
    try:
        copy(f"oci:{test_image}/oci:v1", "secure/base:v1")  # about 1 MB
        used = usage()
        refused = copy(f"oci:{tmp_path / 'big'}:big", "secure/big:v1", check=False)
        assert refused.returncode != 0 and "quota of project secure exceeded" in refused.stderr, refused.stderr
        # nothing half-stored: not the layer, no upload session, no manifest or tag
        layer_hex = hashlib.sha256(layer).hexdigest()
        assert not (root / "blobs" / "sha256" / layer_hex[:2] / layer_hex).exists()
        assert not list(root.glob("uploads/*")) and not list(root.glob("repositories/**/_uploads/*"))
        assert not (root / "repositories" / "secure" / "big" / "_manifests").exists()
        assert usage() == used
        digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                                 f"docker://{server.addr}/secure/base:v1"],
                                capture_output=True, text=True, check=True).stdout.strip()
        request = urllib.request.Request(f"{server.url}/v2/secure/base/manifests/{digest}", method="DELETE")
        assert urllib.request.urlopen(request, timeout=30).status == 202
    finally:
        server.stop()
    gc = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--config", str(server.config_path),
                         "--offline", "--grace", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    server = start_server(tmp_path / "srv", config, port=server.port)
    try:
        assert usage() == 0
        copy(f"oci:{tmp_path / 'big'}:big", "secure/big:v1")
        assert usage() > 700_000
    finally:
        server.stop()
