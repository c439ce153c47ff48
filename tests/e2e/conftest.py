"""End-to-end fixtures: the real `trustreg serve` process on a free loopback port, real clients.

A missing client binary skips its tests, unless TRUSTREG_REQUIRE_E2E=1 (set by CI), which makes it
a failure: CI installs every client, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clients.certs import make_certs
from tests.clients.docker import Dockerd, start_dockerd
from tests.clients.image import TestImage, make_test_image
from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]


def require(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        if os.environ.get("TRUSTREG_REQUIRE_E2E") == "1":
            pytest.fail(f"required client binaries missing: {missing}")
        pytest.skip(f"client binaries missing: {missing}")


@dataclass
class Server:
    """A running `trustreg serve` process."""

    port: int
    proc: subprocess.Popen
    workdir: Path
    config_path: Path
    log_path: Path
    scheme: str = "http"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.addr}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(server: Server, timeout: float = 20) -> None:
    import ssl

    ctx = ssl._create_unverified_context()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"trustreg exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/v2/", timeout=2, context=ctx) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as e:
            if e.code == 401:  # authentication configured: the server answers
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"trustreg did not become ready:\n{server.log()}")


def start_server(workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                 port: int | None = None) -> Server:
    port = port or free_port()
    config = {**config, "http": {**config.get("http", {}), "addr": f"127.0.0.1:{port}"}}
    config.setdefault("storage", {"filesystem": {"root": str(workdir / "data")}})
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"config-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve", "--config", str(config_path)],
        cwd=REPO,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "TRUSTREG_TRUST_PASSPHRASE": "e2e-test-passphrase", **(env or {})},
    )
    server = Server(port, proc, workdir, config_path, log_path, "https" if "tls" in config["http"] else "http")
    try:
        wait_ready(server)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture
def trustreg(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`trustreg(config)` starts a server; every server started is stopped after the test."""
    servers: list[Server] = []

    def start(config: dict[str, Any] | None = None, **kwargs: Any) -> Server:
        server = start_server(tmp_path / f"srv{len(servers)}", config or {}, **kwargs)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def skopeo(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run skopeo with an empty private authfile: only the credentials on the command line count."""
    authfile = tmp_path / "auth.json"
    authfile.write_text("{}")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "REGISTRY_AUTH_FILE": str(authfile)})
        if check and result.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def image() -> TestImage:
    """The reproducible test image (tests/clients/image.py), with its digests as attributes."""
    require("skopeo")
    return make_test_image(Path(tempfile.mkdtemp(prefix="trustreg-img-")))


@pytest.fixture(scope="session")
def test_image(image: TestImage) -> Path:
    """The test image's folder: OCI layout `oci/` (v1, v1-arm64, multi), docker-archive.tar, digests.env."""
    return image.dir


@pytest.fixture(scope="session")
def certs() -> Path:
    """A throwaway CA (ca.crt) and a server certificate for 127.0.0.1, ::1 and localhost (server.crt/.key)."""
    return make_certs(Path(tempfile.mkdtemp(prefix="trustreg-certs-"))).dir


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd (vfs, no networking); 127.0.0.0/8 registries are insecure by default."""
    require("dockerd", "docker")
    daemon = start_dockerd()
    yield daemon
    daemon.stop()
