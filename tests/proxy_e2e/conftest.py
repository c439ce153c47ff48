"""Proxy projects end to end: a second trustreg as the upstream (token auth, referrers API), populated
with skopeo and signed with the real cosign and notation; a proxy trustreg in front of it.

- `upstream` (session scope; tests use repositories of their own or read logs from a mark on):
  `tests.e2e.test_signatures.make_env` with token auth and one private,
  unenforced project `src` holding
    src/signed:v1      the harness image (amd64), signed by `cosign sign` (bundle, in the referrers API)
    src/notarized:v1   the same image, signed by `notation sign` (referrers API)
    src/multi:v1       the harness's multi-arch index, the index alone signed by `cosign sign`
    src/unsigned:v1    an image of its own (unique layer and config), signed by nobody
    src/crowd:v1       the harness image again, signed by `cosign sign` (legacy `.sig` tag)
  alice pushes and signs; carol (pull only) is the proxy's upstream account.
- `proxy(...)` starts a trustreg whose project `hub` proxies the upstream as carol (`username` and
  `password_env`), enforcing `cosign` (trust root `ci`) or `notation` (trust root `corp`); anonymous
  pulls; fresh storage per server.
- `distribution` (module scope): distribution 2.8.2 holding `crowd:v1`, cosign-signed (bundle format).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.image import TestImage, _Layout
from tests.e2e.conftest import Server, image, require, skopeo, start_server, test_image  # noqa: F401  (fixtures)
from tests.e2e.test_signatures import ALICE, CAROL, Env, cosign_sign, make_env, notation_setup, notation_sign
from tests.proxy.conftest import Upstream as Distribution
from tests.s3server import free_port
from tests.signatures.factory import RELEASE_DN

PASSWORD_ENV = "TRUSTREG_E2E_UPSTREAM_PASSWORD"


@dataclass
class Upstream:
    """The populated upstream trustreg and the digests of what it holds."""

    env: Env
    unsigned_layout: Path  # the OCI layout holding the unsigned image (`v1`)
    unsigned: str  # manifest digest of src/unsigned:v1
    unsigned_blobs: list[str]  # its config and layer digests

    @property
    def server(self) -> Server:
        return self.env.server

    def digest(self, name: str) -> str:
        """A harness digest by its digests.env name (AMD64_MANIFEST, INDEX_DIGEST, AMD64_CONFIG...)."""
        return self.env.digests[name]

    def blobs(self, manifest: str = "AMD64_MANIFEST") -> list[str]:
        """The config and layer digests of a harness manifest."""
        doc = json.loads((self.env.image / "oci" / "blobs" / "sha256" / self.digest(manifest)[7:]).read_bytes())
        return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


def unsigned_image(root: Path) -> tuple[str, list[str]]:
    """An OCI layout at `root` with `v1`: a one-layer amd64 image nothing else shares a blob with."""
    layout = _Layout(root)
    files = [("etc", "dir", None, 0o755), ("etc/unsigned", "file", b"proxy e2e: nobody signed this\n", 0o644)]
    descriptor = layout.image("amd64", [files], "proxy-e2e-unsigned")
    manifest = json.loads((layout.blobs / descriptor["digest"][7:]).read_bytes())
    ref = {k: v for k, v in descriptor.items() if k != "platform"}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**ref, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return descriptor["digest"], [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]


def push(e: Env, source: str, repo: str, *flags: str) -> None:
    e.run("skopeo", "copy", *flags, "--dest-tls-verify=false", f"--dest-creds={ALICE[0]}:{ALICE[1]}",
          source, f"docker://{e.server.addr}/{repo}:v1")


@pytest.fixture(scope="session")
def upstream(test_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:  # noqa: F811
    e = make_env(test_image, tmp_path_factory.mktemp("upstream"), token_auth=True, extra={"projects": {"src": {}}})
    try:
        addr = e.server.addr
        notation_setup(e)
        for repo in ("src/signed", "src/notarized", "src/crowd"):
            push(e, f"oci:{test_image}/oci:v1", repo)
        push(e, f"oci:{test_image}/oci:multi", "src/multi", "--all")
        layout = tmp_path_factory.mktemp("unsigned") / "oci"
        unsigned, unsigned_blobs = unsigned_image(layout)
        push(e, f"oci:{layout}:v1", "src/unsigned")
        amd64, index = e.digests["AMD64_MANIFEST"], e.digests["INDEX_DIGEST"]
        cosign_sign(e, "ci", f"{addr}/src/signed@{amd64}")
        cosign_sign(e, "ci", f"{addr}/src/crowd@{amd64}", "--new-bundle-format=false")
        cosign_sign(e, "ci", f"{addr}/src/multi@{index}", "--new-bundle-format=false")
        notation_sign(e, "release", f"{addr}/src/notarized@{amd64}")
        yield Upstream(e, layout, unsigned, unsigned_blobs)
    finally:
        e.server.stop()


COSIGN = {"cosign": {"trust_root": "ci"}}
NOTATION = {"notation": {"trust_root": "corp", "identities": [f"x509.subject: {RELEASE_DN}"]}}


@pytest.fixture
def proxy(upstream: Upstream, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`proxy(require_any=[COSIGN], url=None, enforce=True, **proxy_keys)`: a trustreg whose project `hub`
    proxies the upstream trustreg as carol (or, anonymously, the registry at `url`), enforcing `require_any`;
    project `local` is an ordinary one. Stopped after the test."""
    servers: list[Server] = []

    def start(require_any: list[dict[str, Any]] | None = None, url: str | None = None, enforce: bool = True,
              **proxy_keys: Any) -> Server:
        keys = upstream.env.keys
        account = {"username": CAROL[0], "password_env": PASSWORD_ENV} if url is None else {}
        config = {
            "trust": {"keys": {"insecure_dev_passphrase": True}},
            "trust_roots": {"ci": {"type": "cosign-key", "public_keys": [str(keys / "ci.pub")]},
                            "corp": {"type": "x509-ca", "certificates": [str(keys / "root.pem")]}},
            "projects": {
                "hub": {"proxy": {"url": url or upstream.server.url, **account, **proxy_keys},
                        "content_trust": {"enforce": enforce, "require_any": require_any or [COSIGN]}},
                "local": {},
            },
        }
        server = start_server(tmp_path / f"proxy{len(servers)}", config, env={PASSWORD_ENV: CAROL[1]})
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def distribution(upstream: Upstream, image: TestImage,  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """distribution 2.8.2 (tests/proxy's `Upstream`: no auth, no referrers API, access log on) holding
    `crowd:v1` (the harness image), signed by `cosign sign` in its default (bundle) format: with no
    referrers API there, cosign files it under the `sha256-<hex>` tag."""
    require("docker-registry")
    workdir = tmp_path_factory.mktemp("distribution")
    registry = Distribution(f"127.0.0.1:{free_port()}", workdir / "data", workdir, None)
    registry.start()
    try:
        registry.push(image, "crowd")
        cosign_sign(upstream.env, "ci", f"{registry.addr}/crowd@{image.amd64_manifest}")
        yield registry
    finally:
        registry.stop()


def traces(root: Path, digests: list[str]) -> list[Path]:
    """Every path under a storage root that names one of `digests` (blob data, links, revisions)."""
    hexes = [d.split(":", 1)[1] for d in digests]
    return [p for p in root.rglob("*") if any(h in p.as_posix() for h in hexes)]
