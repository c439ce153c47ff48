"""cosign and notation signatures made in Python (`cryptography`, `cbor2`), shaped like the real tools'.

Every builder returns an `Artifact`: the blobs to upload and the manifest to put (with the tag it goes
under, if any). Options make the tampered variants the tests need.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import OCI_CONFIG, OCI_MANIFEST, descriptor, digest_of

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
NOTATION = "application/vnd.cncf.notary.signature"
EMPTY = "application/vnd.oci.empty.v1+json"
JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_CTY = "application/vnd.cncf.notary.payload.v1+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
RELEASE_DN = "C=US, ST=WA, O=TrustReg Test, CN=release"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Artifact:
    """A signature artifact ready to push: blobs, then `manifest` (under `tag`, if any)."""

    manifest: bytes
    blobs: list[bytes] = field(default_factory=list)
    tag: str | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def public_pem(key: PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_hint(key: PrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64(hashlib.sha256(der).digest())


def cosign_sign(key: PrivateKey, message: bytes) -> bytes:
    """As cosign signs: ECDSA-SHA256 DER, RSA PKCS#1 v1.5 SHA256, ed25519 raw."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message)


def tag_for(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + suffix


# --- cosign -----------------------------------------------------------------------------------


def simple_signing_payload(digest: str, reference: str = "registry.example/secure/app") -> bytes:
    doc = {"critical": {"identity": {"docker-reference": reference}, "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"}, "optional": None}
    return json.dumps(doc).encode()


def cosign_legacy(digest: str, keys: list[PrivateKey], *, payloads: list[bytes] | None = None,
                  signatures: list[bytes] | None = None) -> Artifact:
    """The `sha256-<hex>.sig` manifest: one simple-signing layer per key. `payloads` replaces the
    layer blobs (after signing, unless `signatures` are given too: a swapped blob)."""
    signed = [simple_signing_payload(digest) for _ in keys]
    sigs = signatures or [cosign_sign(k, p) for k, p in zip(keys, signed, strict=True)]
    blobs = payloads or signed
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(b) for b in blobs]}}).encode()
    layers = [descriptor(SIMPLESIGNING, blob, annotations={"dev.cosignproject.cosign/signature": b64(sig)})
              for blob, sig in zip(blobs, sigs, strict=True)]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": layers}
    return Artifact(json.dumps(manifest).encode(), [config, *blobs], tag_for(digest, ".sig"))


def pae(payload_type: str, body: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(body), body)


def statement(digest: str, predicate_type: str = SIGN_PREDICATE) -> bytes:
    alg, hexd = digest.split(":")
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": "registry.example/secure/app", "digest": {alg: hexd}}],
                       "predicateType": predicate_type, "predicate": {}}).encode()


def cosign_bundle(subject: dict[str, Any], key: PrivateKey, *, body: bytes | None = None,
                  signed_body: bytes | None = None, hint: bool = True, certificate: bool = False) -> Artifact:
    """A sigstore bundle referrer (key-based DSSE, as `cosign sign` v3 writes it). `signed_body` is what
    the signature covers (default: `body`, default: a statement for the subject digest)."""
    body = body if body is not None else statement(subject["digest"])
    signature = cosign_sign(key, pae("application/vnd.in-toto+json", signed_body or body))
    material: dict[str, Any] = {"publicKey": {"hint": key_hint(key)}} if hint else {}
    if certificate:
        material = {"certificate": {"rawBytes": b64(b"not a real certificate")}}
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": material,
                         "dsseEnvelope": {"payload": b64(body), "payloadType": "application/vnd.in-toto+json",
                                          "signatures": [{"sig": b64(signature)}]}}).encode()
    return referrer(BUNDLE, subject, bundle, BUNDLE, {"dev.sigstore.bundle.content": "dsse-envelope",
                                                      "dev.sigstore.bundle.predicateType": SIGN_PREDICATE})


def referrer(artifact_type: str, subject: dict[str, Any], blob: bytes, layer_type: str,
             annotations: dict[str, str] | None = None, *, oci11: bool = True) -> Artifact:
    """An OCI 1.1 referrer (artifactType + empty config), or the OCI 1.0 form (config media type)."""
    config = b"{}"
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if oci11:
        manifest["artifactType"] = artifact_type
        manifest["config"] = {**descriptor(EMPTY, config), "data": b64(config)}
    else:
        manifest["config"] = descriptor(artifact_type, config)
    manifest["layers"] = [descriptor(layer_type, blob)]
    manifest["subject"] = subject
    manifest["annotations"] = {**(annotations or {}), "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    return Artifact(json.dumps(manifest).encode(), [config, blob])


# --- notation ---------------------------------------------------------------------------------


@dataclass
class Pki:
    """A CA and a code-signing leaf it issued; `chain` is leaf first, root last."""

    root_key: PrivateKey
    root: x509.Certificate
    leaf_key: PrivateKey
    leaf: x509.Certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf, self.root]

    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def dn(text: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "O": NameOID.ORGANIZATION_NAME,
            "CN": NameOID.COMMON_NAME, "L": NameOID.LOCALITY_NAME}
    return x509.Name([x509.NameAttribute(oids[k.strip()], v.strip())
                      for k, v in (p.split("=", 1) for p in text.split(","))])


def make_pki(leaf_dn: str = RELEASE_DN, *, root_dn: str = "C=US, ST=WA, O=TrustReg Test, CN=Test Root CA",
             leaf_key: PrivateKey | None = None, root: tuple[PrivateKey, x509.Certificate] | None = None,
             not_after: datetime | None = None, code_signing: bool = True) -> Pki:
    now = datetime.now(UTC)
    if root is None:
        root_key = ec_key()
        root_cert = (x509.CertificateBuilder().subject_name(dn(root_dn)).issuer_name(dn(root_dn))
                     .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(root_key, hashes.SHA256()))
    else:
        root_key, root_cert = root
    leaf_key = leaf_key or ec_key()
    builder = (x509.CertificateBuilder().subject_name(dn(leaf_dn)).issuer_name(root_cert.subject)
               .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(not_after or now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                              critical=True))
    usage = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return Pki(root_key, root_cert, leaf_key, builder.sign(root_key, hashes.SHA256()))


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _notation_alg(key: PrivateKey) -> tuple[str, hashes.HashAlgorithm]:
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: ("PS256", hashes.SHA256()), 3072: ("PS384", hashes.SHA384()),
                4096: ("PS512", hashes.SHA512())}[key.key_size]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return {256: ("ES256", hashes.SHA256()), 384: ("ES384", hashes.SHA384()),
            521: ("ES512", hashes.SHA512())}[key.curve.key_size]


def notation_sign(key: PrivateKey, message: bytes) -> bytes:
    """PS* with salt = hash length; ES* as raw r||s."""
    _, algorithm = _notation_alg(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(algorithm)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def target_payload(subject: dict[str, Any]) -> bytes:
    return json.dumps({"targetArtifact": {k: subject[k] for k in ("mediaType", "digest", "size")}}).encode()


def jws_envelope(pki: Pki, subject: dict[str, Any], *, expiry: datetime | None = None,
                 payload: bytes | None = None, chain: list[x509.Certificate] | None = None,
                 alg: str | None = None, authentic_time: datetime | None = None) -> bytes:
    """`authentic_time`: the `notary.x509.signingAuthority` scheme, claiming that signing time."""
    protected: dict[str, Any] = {
        "alg": alg or _notation_alg(pki.leaf_key)[0], "crit": ["io.cncf.notary.signingScheme"], "cty": PAYLOAD_CTY,
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if authentic_time is not None:
        protected["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority"
        protected["crit"].append("io.cncf.notary.authenticSigningTime")
        protected["io.cncf.notary.authenticSigningTime"] = authentic_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    if expiry is not None:
        protected["crit"].append("io.cncf.notary.expiry")
        protected["io.cncf.notary.expiry"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    protected_b64 = b64url(json.dumps(protected).encode())
    payload_b64 = b64url(payload or target_payload(subject))
    signature = notation_sign(pki.leaf_key, f"{protected_b64}.{payload_b64}".encode())
    return json.dumps({"payload": payload_b64, "protected": protected_b64,
                       "header": {"x5c": [b64(_der(c)) for c in chain or pki.chain],
                                  "io.cncf.notary.signingAgent": "trustreg-tests/1.0"},
                       "signature": b64url(signature)}).encode()


def cose_envelope(pki: Pki, subject: dict[str, Any], *, expiry: datetime | None = None,
                  payload: bytes | None = None) -> bytes:
    alg = {"PS256": -37, "PS384": -38, "PS512": -39, "ES256": -7, "ES384": -35, "ES512": -36}
    crit = ["io.cncf.notary.signingScheme"]
    protected: dict[Any, Any] = {1: alg[_notation_alg(pki.leaf_key)[0]], 2: crit, 3: PAYLOAD_CTY,
                                 "io.cncf.notary.signingScheme": "notary.x509",
                                 "io.cncf.notary.signingTime": cbor2.CBORTag(1, int(datetime.now(UTC).timestamp()))}
    if expiry is not None:
        crit.append("io.cncf.notary.expiry")
        protected["io.cncf.notary.expiry"] = cbor2.CBORTag(1, int(expiry.timestamp()))
    protected_bytes = cbor2.dumps(protected)
    body = payload or target_payload(subject)
    signature = notation_sign(pki.leaf_key, cbor2.dumps(["Signature1", protected_bytes, b"", body]))
    unprotected = {33: [_der(c) for c in pki.chain], "io.cncf.notary.signingAgent": "trustreg-tests/1.0"}
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, unprotected, body, signature]))


def notation_signature(pki: Pki, subject: dict[str, Any], envelope: bytes | None = None, *, cose: bool = False,
                       oci11: bool = True) -> Artifact:
    """A notation signature referrer, with the thumbprint annotation notation writes."""
    if envelope is None:
        envelope = cose_envelope(pki, subject) if cose else jws_envelope(pki, subject)
    thumbprints = json.dumps([c.fingerprint(hashes.SHA256()).hex() for c in pki.chain])
    return referrer(NOTATION, subject, envelope, COSE if cose else JWS,
                    {"io.cncf.notary.x509chain.thumbprint#S256": thumbprints}, oci11=oci11)
