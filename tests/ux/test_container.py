"""The container image's health check works when the registry serves TLS (which content trust needs),
and a data directory the registry's uid cannot write is refused naming that uid."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import REPO, Server
from tests.ux.conftest import CLEAN_ENV, write_config


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def dockerfile_healthcheck() -> list[str]:
    """The command of the Dockerfile's HEALTHCHECK (exec form)."""
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
    assert match, "the Dockerfile has no exec-form HEALTHCHECK"
    return json.loads(match.group(1))


def test_the_image_healthcheck_passes_under_tls_and_fails_when_down(trustreg, tmp_path: Path) -> None:
    crt, key = self_signed(tmp_path)
    server: Server = trustreg({"http": {"tls": {"certificate": str(crt), "key": str(key)}}})
    assert server.scheme == "https"
    command = [str(server.config_path) if arg == "/etc/trustreg/config.yaml" else arg
               for arg in dockerfile_healthcheck()]
    assert str(server.config_path) in command  # the check reads the configuration the server runs with
    if command[0] == "trustreg":
        command = [sys.executable, "-m", "registry.cli", *command[1:]]
    env = {**CLEAN_ENV, "PYTHONPATH": str(REPO)}
    healthy = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    server.stop()
    down = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and f"https://127.0.0.1:{server.port}/healthz" in down.stderr


def _reachable_by_others(path: Path) -> bool:
    """Whether another uid can reach `path` (every directory on the way is world-searchable)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None, reason="needs root to act as another uid")
@pytest.mark.skipif(not _reachable_by_others(Path(sys.executable).parent) or not _reachable_by_others(REPO),
                    reason="the checkout is not reachable by another uid (a parent directory is not world-searchable)")
def test_unwritable_data_directory_names_the_uid() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="trustreg-volume-"))  # pytest's own tmp dirs are 0700
    tmp_path.chmod(0o755)
    root = tmp_path / "volume"
    root.mkdir(mode=0o755)  # root-owned, like a fresh host directory mounted into the container
    config = write_config(tmp_path / "c.yaml", {"http": {"addr": "127.0.0.1:0"},
                                                 "storage": {"filesystem": {"root": str(root)}}})
    config.chmod(0o644)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "registry.cli",
         "serve", "--config", str(config)],
        cwd="/", env={**CLEAN_ENV, "PYTHONPATH": str(REPO), "TRUSTREG_TRUST_PASSPHRASE": "x"},
        capture_output=True, text=True, timeout=60)
    shutil.rmtree(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Permission denied; trustreg runs as uid 65534 (gid 65534), which must own or be able to write " \
           f"{root} (e.g. `chown -R 65534:65534 {root}`" in result.stderr
