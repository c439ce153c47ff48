"""cosign (sigstore) signatures, verified with the public keys of a `cosign-key` trust root.

Two storage forms, both found for a manifest digest D (see trust.sources.artifacts for discovery):
- legacy: the manifest at tag `sha256-<hex>.sig` (or a referrer whose layers are simple-signing
  payloads); each layer is one signature: the blob is the simple-signing payload, the annotation
  `dev.cosignproject.cosign/signature` the base64 signature over the blob's bytes;
- sigstore bundle: a referrer whose own artifactType is `application/vnd.dev.sigstore.bundle...`; its
  layer is a bundle with a DSSE envelope (signature over the DSSE PAE) around an in-toto statement.

A signature counts only if, in order: the layer blob matches its digest; the signature verifies with a
key of the trust root (ECDSA P-256/384/521 DER, RSA PKCS#1 v1.5, ed25519); the signed digest (the
payload's `critical.image.docker-manifest-digest`, or the statement's subject) equals D. A manifest is
accepted when signatures by `min_signatures` distinct keys count; `critical.identity.docker-reference`
is ignored, as cosign ignores it. With a `sigstore` trust root the same two forms are verified keyless
(trust.keyless: certificate, log entry, SCT, identity), and signers are certificate identities.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from storage.references import Digest
from storage.store import RegistryStore
from trust import keyless
from trust.policy import SIGSTORE, CosignPublicKey, CosignRequirement, Requirement, TrustedKey
from trust.sources import SourceResult, Subject
from trust.sources.artifacts import (
    COSIGN_SIMPLESIGNING,
    SIGSTORE_BUNDLE_PREFIX,
    BlobError,
    load_manifest,
    read_layer,
    signature_kind,
)

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
IN_TOTO_STATEMENTS = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
REFUSAL = "The image is not signed by cosign."


class CosignRefusal(Exception):
    """One signature does not count; the message is the reason (stable code before the first `:`)."""


def verify_signature(key: CosignPublicKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` over `message` verifies with `key`, the way cosign signs with it."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
            if key.curve.key_size == 384:
                algorithms.append(hashes.SHA384())
            elif key.curve.key_size == 521:
                algorithms.append(hashes.SHA512())
            for algorithm in algorithms:
                try:
                    key.verify(signature, message, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return True
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _first_key(keys: tuple[TrustedKey, ...], signature: bytes, message: bytes) -> TrustedKey | None:
    for key in keys:
        if verify_signature(key.key, signature, message):
            return key
    return None


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise CosignRefusal(f"malformed signature: {what} missing")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except ValueError as e:
        raise CosignRefusal(f"malformed signature: {what} is not base64") from e


def check_simple_signing(payload: bytes, digest: Digest) -> None:
    """The payload must be a cosign simple-signing claim about `digest`."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        claimed, kind = critical["image"]["docker-manifest-digest"], critical["type"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CosignRefusal("malformed signature: the payload is not a simple-signing document") from e
    if kind != SIMPLE_SIGNING_TYPE:
        raise CosignRefusal(f"malformed signature: payload type {kind!r} is not {SIMPLE_SIGNING_TYPE!r}")
    if claimed != str(digest):
        raise CosignRefusal(f"signed a different digest: the payload signs {claimed}")


def verify_simple_signing(payload: bytes, annotations: Any, keys: tuple[TrustedKey, ...], root: str,
                          digest: Digest) -> TrustedKey:
    """A legacy layer: signature annotation over the payload bytes, then the digest claim."""
    annotations = annotations if isinstance(annotations, dict) else {}
    if SIGNATURE_ANNOTATION not in annotations:
        raise CosignRefusal(f"malformed signature: no {SIGNATURE_ANNOTATION} annotation")
    signature = _b64(annotations[SIGNATURE_ANNOTATION], "signature annotation")
    key = _first_key(keys, signature, payload)
    if key is None:
        if CERTIFICATE_ANNOTATION in annotations:
            raise CosignRefusal("signed by an untrusted key: keyless (certificate) signatures are not supported")
        raise CosignRefusal(f"signature does not verify: no key of trust root {root!r} verifies it "
                            "(signed by an untrusted key, or tampered)")
    check_simple_signing(payload, digest)
    return key


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def verify_bundle(data: bytes, keys: tuple[TrustedKey, ...], root: str, digest: Digest) -> TrustedKey:
    """A sigstore bundle (key-based, DSSE): key hint, signature over the PAE, then the statement."""
    key, payload_type, body = open_keyed_bundle(data, keys, root)
    check_signature_statement(payload_type, body, digest)
    return key


def open_keyed_bundle(data: bytes, keys: tuple[TrustedKey, ...], root: str) -> tuple[TrustedKey, str, bytes]:
    """A key-based sigstore bundle's DSSE envelope, verified: (key, payload type, payload)."""
    try:
        bundle = json.loads(data)
        material = bundle.get("verificationMaterial") or {}
        envelope = bundle["dsseEnvelope"]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        if isinstance(bundle, dict) and "messageSignature" in bundle:
            raise CosignRefusal("malformed signature: message-signature bundles do not sign an image") from e
        raise CosignRefusal("malformed signature: not a sigstore bundle with a DSSE envelope") from e
    if not isinstance(material, dict) or ("certificate" in material or "x509CertificateChain" in material):
        raise CosignRefusal(f"signed by an untrusted key: a keyless (certificate) signature; trust root {root!r} "
                            "holds keys")
    hint = (material.get("publicKey") or {}).get("hint") if isinstance(material.get("publicKey"), dict) else None
    return verify_envelope(envelope, keys, root, hint if isinstance(hint, str) and hint else None)


def verify_envelope(envelope: Any, keys: tuple[TrustedKey, ...], root: str,
                    hint: str | None = None) -> tuple[TrustedKey, str, bytes]:
    """A DSSE envelope signed by a key of the root (the one `hint` names, if given)."""
    try:
        payload_type, signatures = str(envelope["payloadType"]), envelope["signatures"]
    except (KeyError, TypeError) as e:
        raise CosignRefusal("malformed signature: not a DSSE envelope") from e
    candidates = keys
    if hint:
        candidates = tuple(k for k in keys if k.key_id == hint)
        if not candidates:
            raise CosignRefusal(f"signed by an untrusted key: key {hint} is not in trust root {root!r}")
    body = _b64(envelope.get("payload"), "DSSE payload")
    message = pae(payload_type, body)
    for entry in signatures if isinstance(signatures, list) else []:
        if isinstance(entry, dict):
            key = _first_key(candidates, _b64(entry.get("sig"), "DSSE signature"), message)
            if key is not None:
                return key, payload_type, body
    which = f"key {hint}" if hint else f"no key of trust root {root!r}"
    raise CosignRefusal(f"signature does not verify: {which} verifies the DSSE envelope")


def statement_about(payload_type: str, body: bytes, digest: Digest) -> dict[str, Any]:
    """The in-toto statement of a DSSE payload, which must list `digest` among its subjects."""
    if payload_type != IN_TOTO_PAYLOAD:
        raise CosignRefusal(f"malformed signature: DSSE payload type {payload_type!r}")
    try:
        statement = json.loads(body)
        kind, subjects = statement["_type"], statement["subject"]
        signed = [s["digest"].get(digest.algorithm) for s in subjects]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise CosignRefusal("malformed signature: the payload is not an in-toto statement") from e
    if kind not in IN_TOTO_STATEMENTS:
        raise CosignRefusal(f"malformed signature: statement type {kind!r}")
    if digest.hex not in signed:
        others = ", ".join(f"{digest.algorithm}:{s}" for s in signed if s) or "nothing"
        raise CosignRefusal(f"signed a different digest: the statement signs {others}")
    return statement


def check_signature_statement(payload_type: str, body: bytes, digest: Digest) -> None:
    """A cosign signature statement (predicate `cosign/sign/v1`) about `digest`."""
    try:
        predicate = json.loads(body).get("predicateType") if payload_type == IN_TOTO_PAYLOAD else None
    except (ValueError, AttributeError, RecursionError):
        predicate = None
    if predicate is not None and predicate != COSIGN_SIGN_PREDICATE:
        raise CosignRefusal(f"not a signature: an attestation with predicate {predicate!r}")
    statement_about(payload_type, body, digest)


@dataclass
class _Finding:
    where: str
    signer: str | None = None
    reason: str = ""


def verify_layer(media_type: str, data: bytes, annotations: Any, requirement: CosignRequirement,
                 digest: Digest) -> str:
    """One signature layer under `requirement`: the signer (key id or certificate identity), or
    CosignRefusal / KeylessRefusal with the reason."""
    root = requirement.trust_root
    if root.type != SIGSTORE:
        if media_type == COSIGN_SIMPLESIGNING:
            return verify_simple_signing(data, annotations, root.keys, root.name, digest).key_id
        return verify_bundle(data, root.keys, root.name, digest).key_id
    if media_type == COSIGN_SIMPLESIGNING:
        annotations = annotations if isinstance(annotations, dict) else {}
        if CERTIFICATE_ANNOTATION not in annotations:
            raise CosignRefusal("signed by an untrusted key: a key-based signature, keyless required")
        signature = _b64(annotations.get(SIGNATURE_ANNOTATION), "signature annotation")
        signer = keyless.verify_legacy(data, signature, annotations, root.sigstore, requirement.identities)
        check_simple_signing(data, digest)
        return signer
    payload_type, body, signer = keyless.verify_bundle(data, root.sigstore, requirement.identities)
    check_signature_statement(payload_type, body, digest)
    return signer


class CosignSource:
    """The `cosign:` requirement: see the module docstring."""

    kind = "cosign"
    refusal = REFUSAL

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    def invalidate(self, repository: str) -> None:
        """Nothing cached here (the gate caches verdicts by signature set)."""

    async def check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        assert isinstance(requirement, CosignRequirement)
        root = requirement.trust_root
        digest = subject.manifest.digest
        found = await subject.signatures()
        findings: list[_Finding] = []
        manifests = ([found.legacy_sig] if found.legacy_sig else []) + list(found.referrers)
        for ref in dict.fromkeys(manifests):
            loaded = await load_manifest(self.store, subject.repository, ref)
            if loaded is None:
                continue
            _, doc = loaded
            kind = signature_kind(doc)
            if kind not in ("cosign", "sigstore-bundle"):
                continue
            for i, layer in enumerate(doc.get("layers") or []):
                media_type = layer.get("mediaType", "") if isinstance(layer, dict) else ""
                if media_type != COSIGN_SIMPLESIGNING and not media_type.startswith(SIGSTORE_BUNDLE_PREFIX):
                    continue
                finding = _Finding(f"{ref} layer {i}")
                findings.append(finding)
                try:
                    data = await read_layer(self.store, subject.repository, layer)
                    finding.signer = verify_layer(media_type, data, layer.get("annotations"), requirement, digest)
                except BlobError as e:
                    finding.reason = f"signature blob does not verify: {e}"
                except (CosignRefusal, keyless.KeylessRefusal) as e:
                    finding.reason = str(e)
        signers = sorted({f.signer for f in findings if f.signer is not None})
        one, many = ("identity", "identities") if root.type == SIGSTORE else ("key", "keys")
        detail: dict[str, Any] = {"trust_root": root.name}
        if findings:
            detail["signatures"] = [{"signature": f.where, **({one: f.signer} if f.signer else {}),
                                     "result": "verified" if f.signer else f.reason} for f in findings[:16]]
        if len(signers) >= requirement.min_signatures:
            return SourceResult(True, detail={**detail, many: signers})
        if not findings:
            return SourceResult(False, f"no signature found: no cosign signature refers to {digest}", detail)
        if signers:
            reason = (f"too few signatures: {len(signers)} distinct trusted signer(s) sign {digest}, "
                      f"{requirement.min_signatures} required")
        else:
            reason = next(f.reason for f in findings if f.reason)
        return SourceResult(False, reason, detail)
