"""A throwaway test CA and a TLS server certificate for 127.0.0.1, ::1 and localhost.

    python -m tests.clients.certs DIR

writes ca.crt, ca.key, server.crt, server.key and server-chain.crt (server.crt then ca.crt) to DIR.
ECDSA P-256, valid 30 days, keys unencrypted: test use only.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
    x509.DNSName("localhost"),
]


@dataclass(frozen=True)
class Certs:
    """Paths of the files `make_certs` wrote."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def server_chain(self) -> Path:
        return self.dir / "server-chain.crt"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed(cn: str, days: int) -> tuple[bytes, bytes]:
    """A fresh P-256 key (unencrypted PKCS#8 PEM) and a self-signed certificate for it (PEM), CN `cn`:
    what `notary delegation add` and `docker trust signer add` take."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = x509.CertificateBuilder(
        subject_name=_name(cn), issuer_name=_name(cn), public_key=key.public_key(),
        serial_number=x509.random_serial_number(), not_valid_before=now - timedelta(minutes=5),
        not_valid_after=now + timedelta(days=days),
    ).sign(key, hashes.SHA256())
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def make_certs(directory: Path, days: int = 30) -> Certs:
    """Write a fresh CA and a server certificate it signed into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    valid = {"not_valid_before": now - timedelta(minutes=5), "not_valid_after": now + timedelta(days=days)}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(subject_name=_name("trustreg-test-ca"), issuer_name=_name("trustreg-test-ca"),
                                public_key=ca_key.public_key(), serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder(subject_name=_name("127.0.0.1"), issuer_name=ca.subject, public_key=key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.SubjectAlternativeName(SERVER_NAMES), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(directory)
    ca_pem, server_pem = ca.public_bytes(serialization.Encoding.PEM), server.public_bytes(serialization.Encoding.PEM)
    for path, data, mode in ((directory / "ca.key", _key_pem(ca_key), 0o600), (certs.server_key, _key_pem(key), 0o600),
                             (certs.ca, ca_pem, 0o644), (certs.server_cert, server_pem, 0o644),
                             (certs.server_chain, server_pem + ca_pem, 0o644)):
        path.write_bytes(data)
        path.chmod(mode)
    return certs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.clients.certs DIR")
    print(make_certs(Path(sys.argv[1])).dir)
