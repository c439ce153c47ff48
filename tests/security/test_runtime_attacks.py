"""Issue 15 §1 with the real runtimes: containerd (`ctr pull`/`ctr run`), the CRI `PullImage` call the
kubelet makes, and docker, each running the attack; no unsigned code may start.

Project `cosigned` is enforced (cosign, one trusted key) and public, with no authentication: every
pull is anonymous, like a kubelet without a pull secret. `cosigned/app:v1` is the test image signed
with the trusted key; containerd pulls and unpacks it first, so its snapshots exist on the node. Each
attack then tries to get a runtime to start `echo PWNED` inside that filesystem:
- re-typed layers: the signed image's layers re-typed as cosign simple-signing layers and a new image
  config (same `rootfs.diff_ids`, an attacker's command) — valid JSON, so the push is accepted; the
  gate must refuse the pull (before the fix it served it as a "signature" and containerd ran it);
- case-variant keys (`layers` + `Layers`, `config` + `Config`, notation and Docker schema 2 forms):
  refused at push; and the same bytes written straight into storage (data from before the fix) are
  refused at pull.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.filesystem import FilesystemDriver
from storage.references import Digest
from storage.store import RegistryStore
from tests.e2e.conftest import Dockerd, Server, dockerd, image, require, start_server, test_image  # noqa: F401,F811
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401
from tests.helpers import descriptor, digest_of
from tests.signatures.factory import (
    EMPTY,
    JWS,
    NOTATION,
    SIMPLESIGNING,
    cosign_legacy,
    ec_key,
    public_pem,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MARKER = "PWNED-BY-UNSIGNED-CODE"


@dataclass
class Attack:
    server: Server
    image: dict[str, Any]  # the signed image's manifest
    blobs: dict[str, bytes]  # digest -> bytes of the signed image's config and layers
    config: dict[str, Any]  # its config

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if content_type else {}
        req = urllib.request.Request(f"{self.server.url}{path}", data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def blob(self, repo: str, data: bytes) -> dict[str, Any]:
        status, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest_of(data)}", data)
        assert status == 201, status
        return {"digest": digest_of(data), "size": len(data)}

    def evil_config(self) -> bytes:
        """The signed image's config with the attacker's command (its rootfs: the signed layers)."""
        doc = {**self.config, "config": {**self.config.get("config", {}),
                                          "Entrypoint": None, "Cmd": ["/bin/busybox", "echo", MARKER]}}
        return json.dumps(doc).encode()

    def put(self, repo: str, tag: str, body: bytes, media_type: str) -> int:
        return self.request("PUT", f"/v2/{repo}/manifests/{tag}", body, media_type)[0]

    def store_raw(self, repo: str, tag: str, body: bytes, media_type: str) -> None:
        """Write a manifest into the server's storage without the push path (as before the fix)."""
        import asyncio

        store = RegistryStore(FilesystemDriver(str(self.server.workdir / "data")))
        digest = Digest.of(body)
        asyncio.run(store.put_manifest(repo, body, media_type, digest, [tag], None, None))


def _layout(image_dir: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    layout = image_dir / "oci"
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1")

    def read(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    manifest = json.loads(read(entry["digest"]))
    blobs = {d["digest"]: read(d["digest"]) for d in [manifest["config"], *manifest["layers"]]}
    return manifest, blobs


@pytest.fixture
def attack(test_image: Path, tmp_path: Path, containerd: Containerd) -> Iterator[Attack]:  # noqa: F811
    require("skopeo", "ctr", "runc")
    key = ec_key()
    config = {"trust_roots": {"ci": {"type": "cosign-key", "public_keys": [public_pem(key)]}},
              "projects": {"cosigned": {"public": True, "content_trust": {
                  "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}]}}}}
    server = start_server(tmp_path / "srv", config)
    manifest, blobs = _layout(test_image)
    a = Attack(server, manifest, blobs, json.loads(blobs[manifest["config"]["digest"]]))
    body = json.dumps(manifest).encode()
    for data in blobs.values():
        a.blob("cosigned/app", data)
    assert a.put("cosigned/app", "v1", body, OCI_MANIFEST) == 201
    signature = cosign_legacy(digest_of(body), [key])
    for data in signature.blobs:
        a.blob("cosigned/app", data)
    assert a.put("cosigned/app", signature.tag or "", signature.manifest, OCI_MANIFEST) == 201
    # the node already runs the signed image: its snapshots are unpacked
    containerd.ctr("images", "pull", "--plain-http", f"{server.addr}/cosigned/app:v1")
    yield a
    server.stop()


def _runs(containerd: Containerd, ref: str, name: str) -> str:  # noqa: F811
    """Pull and run `ref` with containerd; returns everything it printed (the marker if it ran)."""
    pulled = containerd.ctr("images", "pull", "--plain-http", ref, check=False)
    out = pulled.stdout + pulled.stderr
    if pulled.returncode == 0:
        ran = containerd.ctr("run", "--rm", ref, name, check=False, timeout=120)
        out += ran.stdout + ran.stderr
    return out


def _retyped(a: Attack, repo: str, media_type: str = OCI_MANIFEST) -> bytes:
    config = a.evil_config()
    config_type = OCI_CONFIG if media_type == OCI_MANIFEST else DOCKER_CONFIG
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, **a.blob(repo, config)},
           "layers": [{**layer, "mediaType": SIMPLESIGNING} for layer in a.image["layers"]]}
    return json.dumps(doc).encode()


def test_retyped_signed_layers_with_an_attackers_command(attack: Attack, containerd: Containerd) -> None:  # noqa: F811
    for data in attack.blobs.values():
        attack.blob("cosigned/evil", data)
    for media_type, tag in ((OCI_MANIFEST, "oci"), (DOCKER_MANIFEST, "docker")):
        body = _retyped(attack, "cosigned/evil", media_type)
        assert attack.put("cosigned/evil", tag, body, media_type) == 201  # well-formed: accepted
        ref = f"{attack.server.addr}/cosigned/evil:{tag}"
        output = _runs(containerd, ref, f"evil-{tag}")
        assert MARKER not in output, output
        assert "412" in output or "not signed" in output, output
        assert attack.request("GET", f"/v2/cosigned/evil/manifests/{tag}")[0] == 412
    # the kubelet's path
    with pytest.raises(Exception) as refused:
        containerd.cri_pull(f"{attack.server.addr}/cosigned/evil:oci")
    assert "412" in str(refused.value) or "not signed" in str(refused.value)


def _case_variants(a: Attack, repo: str) -> list[tuple[str, bytes, str]]:
    sig = cosign_legacy("sha256:" + "0" * 64, [ec_key()])
    for data in [*sig.blobs, *a.blobs.values()]:
        a.blob(repo, data)
    sig_doc = json.loads(sig.manifest)
    config = a.evil_config()
    evil_config = {"mediaType": OCI_CONFIG, **a.blob(repo, config)}
    real_layers = json.dumps(a.image["layers"])
    sig_layers = json.dumps(sig_doc["layers"])
    head = f'"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"'
    empty = json.dumps({"mediaType": EMPTY, **a.blob(repo, b"{}")})
    jws = json.dumps([descriptor(JWS, a.blobs[a.image["layers"][0]["digest"]])])
    docker_layers = json.dumps([{**layer, "mediaType": DOCKER_LAYER} for layer in a.image["layers"]])
    docker_config = json.dumps({**evil_config, "mediaType": DOCKER_CONFIG})
    return [
        ("Layers", f'{{{head},"config":{json.dumps(evil_config)},"layers":{sig_layers},"Layers":{real_layers}}}'
         .encode(), OCI_MANIFEST),
        ("Config", f'{{{head},"config":{json.dumps(sig_doc["config"])},"layers":{real_layers},'
                   f'"Config":{json.dumps(evil_config)}}}'.encode(), OCI_MANIFEST),
        ("notation", f'{{{head},"artifactType":"{NOTATION}","config":{empty},"layers":{jws},'
                     f'"Config":{json.dumps(evil_config)},"Layers":{real_layers}}}'.encode(), OCI_MANIFEST),
        ("docker", f'{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{docker_config},'
                   f'"layers":{sig_layers},"Layers":{docker_layers}}}'.encode(), DOCKER_MANIFEST),
    ]


def test_case_variant_keys_refused_at_push_and_at_pull(attack: Attack, containerd: Containerd) -> None:  # noqa: F811
    for name, body, media_type in _case_variants(attack, "cosigned/case"):
        tag = name.lower()
        status, answer = attack.request("PUT", f"/v2/cosigned/case/manifests/{tag}", body, media_type)
        assert status == 400 and b"MANIFEST_INVALID" in answer, (name, status, answer)
        attack.store_raw("cosigned/case", tag, body, media_type)  # as if stored before the fix
        output = _runs(containerd, f"{attack.server.addr}/cosigned/case:{tag}", f"case-{tag}")
        assert MARKER not in output, (name, output)
        assert attack.request("GET", f"/v2/cosigned/case/manifests/{tag}")[0] == 412, name


def test_docker_refuses_the_attack(attack: Attack, dockerd: Dockerd) -> None:  # noqa: F811
    for data in attack.blobs.values():
        attack.blob("cosigned/dock", data)
    body = _retyped(attack, "cosigned/dock", DOCKER_MANIFEST)
    assert attack.put("cosigned/dock", "v1", body, DOCKER_MANIFEST) == 201
    ref = f"{attack.server.addr}/cosigned/dock:v1"
    pulled = dockerd.run("pull", ref, check=False)
    assert pulled.returncode != 0 and "not signed" in pulled.stderr, pulled.stdout + pulled.stderr
    ran = dockerd.run("run", "--rm", ref, check=False, timeout=120)
    assert MARKER not in ran.stdout + ran.stderr


def test_the_signed_image_itself_still_runs(attack: Attack, containerd: Containerd) -> None:  # noqa: F811
    """Guard: the runtime here can run a container, so the refusals above are the gate's doing."""
    ran = containerd.ctr("run", "--rm", f"{attack.server.addr}/cosigned/app:v1", "signed-ok",
                         "/bin/busybox", "echo", "signed-runs", check=False, timeout=120)
    assert "signed-runs" in ran.stdout, ran.stdout + ran.stderr
