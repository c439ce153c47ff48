"""Private keys: making Notary signatures (the server's timestamp/snapshot keys, and tests).

`ecdsa` signatures are raw r||s (each left-padded to the curve size), over SHA-256 of the message.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from trust.canonical import canonical_json
from trust.keys import PublicKey, b64encode

PrivateKeyObject = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def generate_ecdsa_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (what the server uses for its timestamp and snapshot roles)."""
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key_pem(data: bytes, password: bytes | None = None) -> PrivateKeyObject:
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError("unsupported private key type")
    return key


def encrypt_private_key(key: PrivateKeyObject, passphrase: bytes) -> bytes:
    """PKCS#8 PEM encrypted with cryptography's best available scheme."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def sign_bytes(key: PrivateKeyObject, message: bytes, method: str | None = None) -> tuple[str, bytes]:
    """Sign `message`; returns (method, signature). RSA defaults to `rsapss`."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "eddsa", key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        return "ecdsa", r.to_bytes(size, "big") + s.to_bytes(size, "big")
    method = method or "rsapss"
    pad: padding.AsymmetricPadding = (
        padding.PKCS1v15()
        if method == "rsapkcs1v15"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    )
    return method, key.sign(message, pad, hashes.SHA256())


def sign_signed(signed: dict[str, Any], signers: list[tuple[str, PrivateKeyObject]]) -> bytes:
    """Serialise a metadata file like Notary: `{"signed":<canonical>,"signatures":[…]}`.

    `signers` are (key ID as the role lists it, private key) pairs.
    """
    body = canonical_json(signed)
    sigs = []
    for keyid, key in signers:
        method, sig = sign_bytes(key, body)
        sigs.append({"keyid": keyid, "method": method, "sig": b64encode(sig)})
    sig_json = json.dumps(sigs, separators=(",", ":")).encode("ascii")
    return b'{"signed":' + body + b',"signatures":' + sig_json + b"}"


def public_key_of(key: PrivateKeyObject) -> PublicKey:
    """The bare Notary public key of a private key."""
    return PublicKey.from_crypto(key.public_key())
