"""A private dockerd (vfs, no networking) and the docker CLI pointed at it, and a private
distribution registry (Debian `docker-registry`) for docker to push to."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Dockerd:
    """`run(...)` is the docker CLI with this daemon and a private DOCKER_CONFIG."""

    host: str
    root: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", *args],
            env={**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.config_dir), **(env or {})},
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def trust_ca(self, host: str, ca: Path) -> None:
        """Make the docker CLI trust `ca` for the trust server at `host` (host:port)."""
        tls = self.config_dir / "tls" / host
        tls.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, tls / "ca.crt")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_dockerd(timeout: float = 60) -> Dockerd:
    """Start a private dockerd; 127.0.0.0/8 registries are plain-http ("insecure") by default."""
    root = Path(tempfile.mkdtemp(prefix="trustreg-dockerd-", dir="/tmp"))
    sock = root / "docker.sock"
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
         f"--data-root={root}/data", f"--exec-root={root}/exec", f"--pidfile={root}/pid", "-H", f"unix://{sock}"],
        stdout=(root / "dockerd.log").open("wb"), stderr=subprocess.STDOUT,
    )
    dockerd = Dockerd(f"unix://{sock}", root, proc)
    deadline = time.monotonic() + timeout
    while dockerd.run("version", check=False, timeout=10).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (root / "dockerd.log").read_text(errors="replace")
            dockerd.stop()
            raise RuntimeError(f"dockerd did not start:\n{log}")
        time.sleep(0.5)
    return dockerd


@dataclass
class Distribution:
    """The reference registry (distribution 2.8, `/usr/bin/docker-registry`), plain http, filesystem."""

    addr: str
    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def start_distribution(workdir: Path, port: int, timeout: float = 20) -> Distribution:
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"version": 0.1, "log": {"level": "warn"}, "http": {"addr": f"127.0.0.1:{port}"},
              "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}}}
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log = workdir / "registry.log"
    proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    registry = Distribution(f"127.0.0.1:{port}", proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{registry.addr}/v2/", timeout=2):
                return registry
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                registry.stop()
                raise RuntimeError(f"docker-registry did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.1)
