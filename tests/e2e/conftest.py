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

from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
HARNESS = SHARED / "harness"


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


@pytest.fixture(scope="session")
def test_image() -> Path:
    """The harness's reproducible OCI layout (v1, v1-arm64, multi) and docker-archive.tar."""
    require("skopeo")
    out = Path(tempfile.mkdtemp(prefix="trustreg-img-"))
    subprocess.run([str(HARNESS / "make-test-image.sh"), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def certs() -> Path:
    out = Path(tempfile.mkdtemp(prefix="trustreg-certs-"))
    subprocess.run([str(HARNESS / "gen-certs.sh"), str(out)], check=True, capture_output=True)
    return out


@dataclass
class Dockerd:
    host: str
    root: Path

    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", *args],
            env={**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.root / "config"), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd (vfs, no networking); 127.0.0.0/8 registries are insecure by default."""
    require("dockerd", "docker")
    root = Path(tempfile.mkdtemp(prefix="trustreg-dockerd-", dir="/tmp"))
    sock = root / "docker.sock"
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
         f"--data-root={root}/data", f"--exec-root={root}/exec", f"--pidfile={root}/pid",
         "-H", f"unix://{sock}"],
        stdout=(root / "dockerd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    d = Dockerd(f"unix://{sock}", root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if d.run("version", check=False, timeout=10).returncode == 0:
            break
        time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError((root / "dockerd.log").read_text())
    yield d
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)

