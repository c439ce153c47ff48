"""Start the two trust servers the differential suite compares, over TLS from a throwaway CA.

- notary-server 0.7.0 (Debian package `notary`): memory storage, its own local signing service
  (`trust_service.type: local`), TLS with a certificate of the CA made here.
- trustreg (`python -m registry.cli serve`): filesystem storage in a temporary directory, the same
  certificate, `trust.server_names` set so both servers accept the same GUNs.

Both listen on free loopback ports; `Servers.stop()` ends exactly the processes started here.
"""

from __future__ import annotations

import datetime
import ipaddress
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "notary.test"  # the server name of every GUN in the suite (trustreg: trust.server_names)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca.crt, server.crt, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("trustreg differential CA")).issuer_name(
        _name("trustreg differential CA")).public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


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
