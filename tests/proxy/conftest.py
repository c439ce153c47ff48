"""Proxy project fixtures: real upstreams on loopback and trustreg proxying them.

- `upstream_registry`: Debian's distribution 2.8 (`docker-registry`, no referrers API) on a free port,
  optionally behind htpasswd Basic auth; `push` copies the harness image into it with skopeo.
- `publisher`: a cosign key pair (the real `cosign`), `sign` signs an upstream image offline.
- `proxy_server`: `trustreg serve` with project `hub` proxying an upstream, enforcing cosign signatures
  by the publisher's key (trust root `upstream-publisher`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.clients.image import TestImage
from tests.e2e.conftest import Server, certs, image, require, start_server  # noqa: F401  (fixtures)
from tests.s3server import free_port

TOOLS = Path(os.environ.get("TRUSTREG_SIGNING_TOOLS", "/opt/trustreg-signing-tools"))
COSIGN_FLAGS = ("--allow-http-registry", "--allow-insecure-registry")
UPSTREAM_USER = ("mirror", "mirror-secret")


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS / "bin" / name) if (TOOLS / "bin" / name).exists() else None)
    if found:
        return found
    if os.environ.get("TRUSTREG_REQUIRE_E2E") == "1":
        pytest.fail(f"{name} not installed (scripts/install-signing-tools.sh)")
    pytest.skip(f"{name} not installed (scripts/install-signing-tools.sh)")


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@dataclass
class Upstream:
    """A distribution registry on loopback (plain http)."""

    addr: str
    root: Path  # its filesystem storage
    workdir: Path
    proc: subprocess.Popen | None
    creds: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def _creds(self, flag: str) -> list[str]:
        return [f"{flag}={self.creds[0]}:{self.creds[1]}"] if self.creds else []

    def push(self, source: TestImage, repo: str, tag: str = "v1", ref: str = "v1") -> str:
        """skopeo copies the harness image `ref` to `<repo>:<tag>`; returns the manifest digest pushed."""
        run("skopeo", "copy", "--dest-tls-verify=false", *self._creds("--dest-creds"), "--preserve-digests",
            source.oci(ref), f"docker://{self.addr}/{repo}:{tag}")
        return self.digest(repo, tag)

    def digest(self, repo: str, tag: str) -> str:
        out = run("skopeo", "inspect", "--tls-verify=false", *self._creds("--creds"), "--raw",
                  f"docker://{self.addr}/{repo}:{tag}").stdout
        return "sha256:" + hashlib.sha256(out.encode()).hexdigest()

    def blob_path(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def access_log(self) -> str:
        return (self.workdir / "registry.log").read_text(errors="replace")

    def start(self, timeout: float = 20) -> None:
        config = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
                  "http": {"addr": self.addr}, "storage": {"filesystem": {"rootdirectory": str(self.root)},
                                                           "delete": {"enabled": True}}}
        if self.creds:
            htpasswd = self.workdir / "htpasswd"
            hashed = bcrypt.hashpw(self.creds[1].encode(), bcrypt.gensalt(5)).decode()
            htpasswd.write_text(f"{self.creds[0]}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "upstream", "path": str(htpasswd)}}
        (self.workdir / "config.yml").write_text(yaml.safe_dump(config))
        log = (self.workdir / "registry.log").open("ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.workdir / "config.yml")],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2):
                    return
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start:\n{self.access_log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def upstream_registry(tmp_path: Path) -> Iterator[Callable[..., Upstream]]:
    """`upstream_registry(basic_auth=False)` starts a distribution 2.8 upstream; stopped after the test."""
    require("docker-registry", "skopeo")
    started: list[Upstream] = []

    def start(basic_auth: bool = False) -> Upstream:
        workdir = tmp_path / f"upstream{len(started)}"
        workdir.mkdir()
        upstream = Upstream(f"127.0.0.1:{free_port()}", workdir / "data", workdir, None,
                            UPSTREAM_USER if basic_auth else None)
        upstream.start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


@dataclass
class Publisher:
    """The upstream image publisher's cosign key pair."""

    keys: Path
    home: Path

    @property
    def public_key(self) -> Path:
        return self.keys / "publisher.pub"

    def sign(self, upstream: Upstream, repo: str, digest: str, *extra: str) -> None:
        """`cosign sign --key` offline (no transparency log); legacy `.sig` tag unless told otherwise."""
        docker_config = self.home / "docker"
        docker_config.mkdir(exist_ok=True)
        auths = {}
        if upstream.creds:
            import base64

            auths[upstream.addr] = {"auth": base64.b64encode(":".join(upstream.creds).encode()).decode()}
        (docker_config / "config.json").write_text(json.dumps({"auths": auths}))
        run(tool("cosign"), "sign", "--key", str(self.keys / "publisher.key"), "--use-signing-config=false",
            "--tlog-upload=false", *COSIGN_FLAGS, "-y", *(extra or ("--new-bundle-format=false",)),
            f"{upstream.addr}/{repo}@{digest}",
            env={"COSIGN_PASSWORD": "e2e", "HOME": str(self.home), "DOCKER_CONFIG": str(docker_config)})


@pytest.fixture(scope="session")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    root = tmp_path_factory.mktemp("publisher")
    keys, home = root / "keys", root / "home"
    keys.mkdir()
    home.mkdir()
    run(tool("cosign"), "generate-key-pair", "--output-key-prefix", str(keys / "publisher"),
        env={"COSIGN_PASSWORD": "e2e", "HOME": str(home)})
    return Publisher(keys, home)


def proxy_config(upstream_url: str, public_key: Path, tag_ttl: int = 300, enforce: bool = True,
                 **proxy: Any) -> dict[str, Any]:
    """A configuration with project `hub` proxying `upstream_url` (cosign by the publisher's key)."""
    return {
        "trust": {"enabled": False},
        "trust_roots": {"upstream-publisher": {"type": "cosign-key", "public_keys": [str(public_key)]}},
        "projects": {"hub": {"public": True, "proxy": {"url": upstream_url, "tag_ttl": tag_ttl, **proxy},
                             "content_trust": {"enforce": enforce,
                                               "require_any": [{"cosign": {"trust_root": "upstream-publisher"}}]}}},
    }


@pytest.fixture
def proxy_server(tmp_path: Path, publisher: Publisher) -> Iterator[Callable[..., Server]]:
    """`proxy_server(upstream_url, tag_ttl=300, enforce=True, env=None, **proxy_keys)` starts trustreg."""
    servers: list[Server] = []

    def start(upstream_url: str, tag_ttl: int = 300, enforce: bool = True, env: dict[str, str] | None = None,
              **proxy: Any) -> Server:
        config = proxy_config(upstream_url, publisher.public_key, tag_ttl, enforce, **proxy)
        server = start_server(tmp_path / f"proxy{len(servers)}", config, env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def pull(ref: str, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """`skopeo copy` of `ref` (plain-http registry) into directory `out`."""
    return run("skopeo", "copy", "--src-tls-verify=false", *extra, f"docker://{ref}", f"dir:{out}", check=check)


def storage_files(server: Server) -> list[str]:
    """Every file under the server's storage root (relative paths)."""
    root = server.workdir / "data"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
