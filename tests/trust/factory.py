"""Build signed Notary collections for tests: helpers over the repository's real vectors and a synthetic repository."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from trust.collection import StoredTrustData
from trust.keys import PublicKey
from trust.metadata import MetaFile
from trust.signing import PrivateKeyObject, load_private_key_pem, sign_signed
from trust.timeutil import format_rfc3339, parse_rfc3339

TESTDATA = Path(__file__).resolve().parents[1] / "vectors" / "notary"  # scripts/gen-notary-vectors.py
EXPECTED: dict[str, Any] = json.loads((TESTDATA / "expected.json").read_text())
GUN: str = EXPECTED["gun"]
NOW: datetime = parse_rfc3339(EXPECTED["generated_at"])


def read(rel: str) -> bytes:
    return (TESTDATA / rel).read_bytes()


def current(role: str) -> bytes:
    return read(f"current/{role}.json")


def history(role: str, version: int) -> bytes:
    return read(f"history/{role}/{version}.json")


def stored_current(base: str = "current") -> StoredTrustData:
    """The collection under tests/vectors/notary/<base>/ as the gate would read it from storage."""
    folder = TESTDATA / base
    delegations = {f"targets/{p.stem}": p.read_bytes() for p in (folder / "targets").glob("*.json")}
    roles = [(folder / f"{r}.json").read_bytes() for r in ("root", "timestamp", "snapshot", "targets")]
    return StoredTrustData(*roles, delegations=delegations)


def throwaway_key(bare_keyid: str) -> PrivateKeyObject:
    """A throwaway private key of the vectors by its bare key ID (see expected.json private_keys)."""
    return load_private_key_pem(read(EXPECTED["private_keys"][bare_keyid]["decrypted_file"]))


def cert_keyid_of(bare_keyid: str) -> str:
    return next(c for c, info in EXPECTED["x509_keys"].items() if info["public_key_id"] == bare_keyid)


def resign(data: bytes, mutate: Callable[[dict[str, Any]], None], signers: list[tuple[str, Any]]) -> bytes:
    """Parse a file, change its `signed` part in place, and sign it anew."""
    signed = json.loads(data)["signed"]
    mutate(signed)
    return sign_signed(signed, signers)


def with_signatures(data: bytes, mutate: Callable[[list[dict[str, Any]]], Any]) -> bytes:
    """The same file with its signature list changed (signed part untouched)."""
    doc = json.loads(data)
    result = mutate(doc["signatures"])
    if result is not None:
        doc["signatures"] = result
    return json.dumps(doc, separators=(",", ":")).encode()


# --- a synthetic repository ---------------------------------------------------------------------


def make_cert(
    key: Any,
    cn: str,
    now: datetime,
    *,
    days: int = 3650,
    algorithm: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    not_after = now + timedelta(days=days)
    not_before = min(now - timedelta(hours=1), not_after - timedelta(days=1))
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, algorithm or hashes.SHA256())
    )


@dataclass
class Signer:
    """A private key and the public key object metadata lists for it."""

    key: PrivateKeyObject
    public: PublicKey

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def pair(self) -> tuple[str, PrivateKeyObject]:
        return (self.keyid, self.key)

    @classmethod
    def ecdsa(cls) -> Signer:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key, PublicKey.from_crypto(key.public_key()))

    @classmethod
    def ed25519(cls) -> Signer:
        key = ed25519.Ed25519PrivateKey.generate()
        return cls(key, PublicKey.from_crypto(key.public_key()))

    @classmethod
    def root_cert(cls, cn: str, now: datetime, key: Any = None, **kwargs: Any) -> Signer:
        key = key or ec.generate_private_key(ec.SECP256R1())
        return cls(key, PublicKey.from_certificate(make_cert(key, cn, now, **kwargs)))


def target_entry(content: bytes) -> dict[str, Any]:
    return MetaFile(len(content), {"sha256": hashlib.sha256(content).digest()}).to_dict()


def expires(now: datetime, days: int) -> str:
    return format_rfc3339(now + timedelta(days=days))


@dataclass
class Delegation:
    name: str
    signers: list[Signer]
    paths: list[str] = field(default_factory=lambda: [""])
    threshold: int = 1


@dataclass
class SyntheticRepo:
    """A repository with generated keys whose every file tests can shape and sign at will."""

    gun: str
    now: datetime
    root: list[Signer] = field(default_factory=list)
    targets: Signer = field(default_factory=Signer.ecdsa)
    snapshot: Signer = field(default_factory=Signer.ecdsa)
    timestamp: Signer = field(default_factory=Signer.ed25519)

    def __post_init__(self) -> None:
        if not self.root:
            self.root = [Signer.root_cert(self.gun, self.now)]

    def root_signed(self, version: int = 1, thresholds: dict[str, int] | None = None) -> dict[str, Any]:
        role_signers = {
            "root": self.root,
            "targets": [self.targets],
            "snapshot": [self.snapshot],
            "timestamp": [self.timestamp],
        }
        keys = {s.keyid: s.public.to_dict() for signers in role_signers.values() for s in signers}
        roles = {
            role: {"keyids": [s.keyid for s in signers], "threshold": (thresholds or {}).get(role, 1)}
            for role, signers in role_signers.items()
        }
        return {
            "_type": "Root",
            "consistent_snapshot": False,
            "expires": expires(self.now, 3650),
            "keys": keys,
            "roles": roles,
            "version": version,
        }

    def targets_signed(
        self,
        targets: dict[str, bytes],
        delegations: list[Delegation] = (),  # type: ignore[assignment]
        version: int = 2,
        days: int = 1095,
    ) -> dict[str, Any]:
        keys = {s.keyid: s.public.to_dict() for d in delegations for s in d.signers}
        roles = [
            {"keyids": [s.keyid for s in d.signers], "name": d.name, "paths": d.paths, "threshold": d.threshold}
            for d in delegations
        ]
        return {
            "_type": "Targets",
            "delegations": {"keys": keys, "roles": roles},
            "expires": expires(self.now, days),
            "targets": {name: target_entry(content) for name, content in targets.items()},
            "version": version,
        }

    def snapshot_signed(self, files: dict[str, bytes], version: int = 2, days: int = 1095) -> dict[str, Any]:
        meta = {role: MetaFile.of_bytes(data).to_dict() for role, data in files.items()}
        return {"_type": "Snapshot", "expires": expires(self.now, days), "meta": meta, "version": version}

    def timestamp_signed(self, snapshot: bytes, version: int = 1, days: int = 14) -> dict[str, Any]:
        meta = {"snapshot": MetaFile.of_bytes(snapshot).to_dict()}
        return {"_type": "Timestamp", "expires": expires(self.now, days), "meta": meta, "version": version}

    def sign_root(self, signed: dict[str, Any], signers: list[Signer] | None = None) -> bytes:
        return sign_signed(signed, [s.pair for s in (signers if signers is not None else self.root)])

    def collection(
        self,
        targets: bytes,
        delegations: dict[str, bytes] | None = None,
        root: bytes | None = None,
        snapshot_files: dict[str, bytes] | None = None,
    ) -> StoredTrustData:
        """A consistent collection around the given targets/delegations (snapshot+timestamp signed)."""
        root = root if root is not None else self.sign_root(self.root_signed())
        delegations = delegations or {}
        files = snapshot_files if snapshot_files is not None else {"root": root, "targets": targets, **delegations}
        snapshot = sign_signed(self.snapshot_signed(files), [self.snapshot.pair])
        timestamp = None
        if self.timestamp.key is not None:  # None: the server holds the timestamp key
            timestamp = sign_signed(self.timestamp_signed(snapshot), [self.timestamp.pair])
        return StoredTrustData(root, timestamp, snapshot, targets, delegations)
