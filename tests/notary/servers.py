"""Start the two trust servers the differential suite compares, over TLS from a throwaway CA.

- notary-server 0.7.0 (Debian package `notary`): memory storage, its own local signing service
  (`trust_service.type: local`), TLS with a certificate of the CA made here.
- trustreg (`python -m registry.cli serve`): filesystem storage in a temporary directory, the same
  certificate, `trust.server_names` set so both servers accept the same GUNs.

Both listen on free loopback ports; `Servers.stop()` ends exactly the processes started here.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "notary.test"  # the server name of every GUN in the suite (trustreg: trust.server_names)


@dataclass
class TrustServer:
    """One running trust server."""

    name: str  # "notary-server" or "trustreg"
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait(server: TrustServer, path: str, ca: Path, timeout: float = 30) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}{path}", timeout=2, context=context) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not become ready:\n{server.log()}")


def start_notary_server(workdir: Path, cert: Path, key: Path, ca: Path) -> TrustServer:
    """notary-server with memory storage and its local signer."""
    port = free_port()
    config = {
        "server": {"http_addr": f"127.0.0.1:{port}", "tls_cert_file": str(cert), "tls_key_file": str(key)},
        "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
        "storage": {"backend": "memory"},
        "logging": {"level": "error"},
    }
    config_path = workdir / "notary-server.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / "notary-server.log"
    proc = subprocess.Popen(["notary-server", "-config", str(config_path), "-logf", "logfmt"],
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = TrustServer("notary-server", port, proc, log_path)
    _wait(server, "/_notary_server/health", ca)
    return server


def start_trustreg(workdir: Path, cert: Path, key: Path, ca: Path) -> TrustServer:
    """trustreg over TLS, filesystem storage, accepting GUNs of SERVER_NAME."""
    port = free_port()
    config = {
        "http": {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(cert), "key": str(key)}},
        "storage": {"filesystem": {"root": str(workdir / "trustreg-data")}},
        "trust": {"server_names": [SERVER_NAME]},
        "log": {"level": "warning"},
    }
    config_path = workdir / "trustreg.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "trustreg.log"
    env = {**os.environ, "TRUSTREG_TRUST_PASSPHRASE": "differential-test-passphrase"}
    proc = subprocess.Popen([sys.executable, "-m", "registry.cli", "serve", "--config", str(config_path)],
                            cwd=REPO, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL)
    server = TrustServer("trustreg", port, proc, log_path)
    _wait(server, "/v2/", ca)
    return server
