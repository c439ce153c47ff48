"""Public keys as Notary writes them, their IDs, and signature verification.

A key is `{"keytype": T, "keyval": {"private": null, "public": <b64>}}`; its ID is the lowercase hex
SHA-256 of that object's canonical JSON. `public` holds: `ecdsa`/`rsa` DER SubjectPublicKeyInfo,
`ed25519` the raw 32 bytes, `ecdsa-x509`/`rsa-x509` the PEM text of an X.509 certificate.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from trust.canonical import canonical_json
from trust.errors import Malformed

KEY_TYPES = ("ecdsa", "ecdsa-x509", "rsa", "rsa-x509", "ed25519")
X509_KEY_TYPES = ("ecdsa-x509", "rsa-x509")
MIN_RSA_BITS = 2048

# signature method -> key types it may be used with
METHOD_KEY_TYPES: dict[str, tuple[str, ...]] = {
    "ecdsa": ("ecdsa", "ecdsa-x509"),
    "eddsa": ("ed25519",),
    "rsapss": ("rsa", "rsa-x509"),
    "pycrypto-pkcs#1 pss": ("rsa", "rsa-x509"),
    "rsapkcs1v15": ("rsa", "rsa-x509"),
}

PublicKeyObject = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (with padding) as Go's encoding/json writes []byte."""
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise Malformed(f"{what} is not valid base64") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def key_id_for(keytype: str, public: bytes) -> str:
    """Notary's key ID: sha256 of the canonical `{"keytype","keyval":{"private":null,"public"}}`."""
    obj = {"keytype": keytype, "keyval": {"private": None, "public": b64encode(public)}}
    return hashlib.sha256(canonical_json(obj)).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """One Notary public key; `public` is the decoded `keyval.public` bytes."""

    keytype: str
    public: bytes
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> PublicKey:
        keytype = obj["keytype"]
        if keytype not in KEY_TYPES:
            raise Malformed(f"unsupported key type {keytype!r}")
        return cls(keytype, b64decode(obj["keyval"]["public"], "key public value"))

    @classmethod
    def from_crypto(cls, key: PublicKeyObject) -> PublicKey:
        """A bare (non-certificate) key from a cryptography public key object."""
        if isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return cls("ed25519", raw)
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls("ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa", der)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PublicKey:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        pub = cert.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            return cls("ecdsa-x509", pem)
        if isinstance(pub, rsa.RSAPublicKey):
            return cls("rsa-x509", pem)
        raise Malformed("certificate keys must be ECDSA or RSA")

    def to_dict(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "keyval": {"private": None, "public": b64encode(self.public)}}

    @cached_property
    def keyid(self) -> str:
        return key_id_for(self.keytype, self.public)

    @property
    def is_x509(self) -> bool:
        return self.keytype in X509_KEY_TYPES

    def certificate(self) -> x509.Certificate:
        """The X.509 certificate of an `*-x509` key; raises Malformed if it does not parse."""
        if not self.is_x509:
            raise Malformed(f"key {self.keyid} is a bare {self.keytype} key, not a certificate")
        if "cert" not in self._cache:
            try:
                self._cache["cert"] = x509.load_pem_x509_certificate(self.public)
            except ValueError as exc:
                raise Malformed(f"key {self.keyid} is not a valid X.509 certificate") from exc
        return self._cache["cert"]

    def crypto_key(self) -> PublicKeyObject:
        """The cryptography key object; raises Malformed if the bytes are not a key of this type."""
        if "key" in self._cache:
            return self._cache["key"]
        try:
            if self.keytype == "ed25519":
                key: Any = ed25519.Ed25519PublicKey.from_public_bytes(self.public)
            elif self.is_x509:
                key = self.certificate().public_key()
            else:
                key = serialization.load_der_public_key(self.public)
        except ValueError as exc:
            raise Malformed(f"key {self.keyid} ({self.keytype}) does not parse") from exc
        expected = ec.EllipticCurvePublicKey if self.keytype.startswith("ecdsa") else rsa.RSAPublicKey
        if self.keytype != "ed25519" and not isinstance(key, expected):
            raise Malformed(f"key {self.keyid} is not an {self.keytype} key")
        self._cache["key"] = key
        return key

    def bare_keyid(self) -> str:
        """The ID of the same key pair as a bare key (what `notary key list` shows for certificates)."""
        if not self.is_x509:
            return self.keyid
        return PublicKey.from_crypto(self.crypto_key()).keyid

    def verify(self, method: str, signature: bytes, message: bytes) -> bool:
        """True if `signature` made with `method` over `message` verifies with this key."""
        method = method.lower()
        if self.keytype not in METHOD_KEY_TYPES.get(method, ()):
            return False
        try:
            key = self.crypto_key()
        except Malformed:
            return False
        try:
            if method == "eddsa":
                assert isinstance(key, ed25519.Ed25519PublicKey)
                key.verify(signature, message)
            elif method == "ecdsa":
                assert isinstance(key, ec.EllipticCurvePublicKey)
                size = (key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                digest = hashlib.sha256(message).digest()
                key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            else:
                assert isinstance(key, rsa.RSAPublicKey)
                if key.key_size < MIN_RSA_BITS:
                    return False
                pad: padding.AsymmetricPadding = (
                    padding.PKCS1v15()
                    if method == "rsapkcs1v15"
                    else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
                )
                key.verify(signature, message, pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True
