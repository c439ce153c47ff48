"""notation (Notary Project v2) signatures, verified against the CA certificates of an `x509-ca` root.

A notation signature is a referrer of the manifest whose own artifactType (OCI 1.1) or config media
type (OCI 1.0 form) is `application/vnd.cncf.notary.signature`; its one layer is the envelope, JWS
(`application/jose+json`, flattened JSON) or COSE (`application/cose`, COSE_Sign1). A signature counts
when, in notation's order (signature specification; trust store and trust policy specification):
1. integrity: the layer blob matches its digest; the envelope parses, its `cty` is the notation
   payload, every `crit` header is understood, `alg` matches the leaf key, the signature verifies
   with the leaf key; the payload's `targetArtifact` has the manifest's digest, size and media type;
2. authenticity: the `x5c`/x5chain is a valid chain leaf -> ... -> self-signed root (each certificate
   signed by the next, CA and code-signing certificate rules, no SHA-1, RSA >= 2048 / EC >= 256), one
   of its certificates is a CA of the trust root, and the leaf's subject matches an identity;
3. expiry: `io.cncf.notary.expiry`, if present, is in the future;
4. authentic timestamp: every certificate is valid now (`notary.x509`; no TSA countersignatures are
   evaluated) or at the signed, critical `authenticSigningTime` (`notary.x509.signingAuthority`).
As in notation, the signing scheme must match the trust store: `notary.x509` signatures verify only
against an `x509-ca` root (notation's `ca` store), `notary.x509.signingAuthority` ones only against an
`x509-signing-authority` root (its `signingAuthority` store), so a signer cannot choose the back-dated
time rule by claiming the other scheme.
Revocation (OCSP/CRL) is not checked: it needs the network at pull time.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from storage.store import Manifest, RegistryStore
from trust.errors import Malformed
from trust.policy import X509_CA, X509_SIGNING_AUTHORITY, NotationRequirement, Requirement, identity_matches
from trust.sources import SourceResult, Subject
from trust.sources.artifacts import BlobError, load_manifest, read_layer, signature_kind
from trust.timeutil import parse_rfc3339

JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SCHEME = "io.cncf.notary.signingScheme"
EXPIRY = "io.cncf.notary.expiry"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
SIGNING_TIME = "io.cncf.notary.signingTime"
X509 = "notary.x509"
SIGNING_AUTHORITY = "notary.x509.signingAuthority"
KNOWN_CRITICAL = {SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME}
COSE_ALGORITHMS = {-37: "PS256", -38: "PS384", -39: "PS512", -7: "ES256", -35: "ES384", -36: "ES512"}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
REFUSAL = "The image is not signed by notation."


class NotationRefusal(Exception):
    """One signature does not count; the message is the reason (stable code before the first `:`)."""


@dataclass
class Envelope:
    """What the verifier needs from either envelope format."""

    alg: str
    protected: dict[Any, Any]
    payload: bytes
    signed_bytes: bytes
    signature: bytes
    chain: list[bytes]


def _b64url(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise NotationRefusal(f"malformed envelope: {what} missing")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as e:
        raise NotationRefusal(f"malformed envelope: {what} is not base64url") from e


def parse_jws(blob: bytes) -> Envelope:
    """JWS JSON flattened serialization; the chain is `header.x5c` (standard base64 DER)."""
    try:
        doc = json.loads(blob)
        protected_b64, payload_b64 = doc["protected"], doc["payload"]
        protected = json.loads(_b64url(protected_b64, "protected header"))
        chain = [base64.b64decode(c, validate=True) for c in doc["header"]["x5c"]]
    except NotationRefusal:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise NotationRefusal("malformed envelope: not a notation JWS envelope") from e
    if not isinstance(protected, dict):
        raise NotationRefusal("malformed envelope: protected header is not an object")
    return Envelope(str(protected.get("alg")), protected, _b64url(payload_b64, "payload"),
                    f"{protected_b64}.{payload_b64}".encode(), _b64url(doc.get("signature"), "signature"), chain)


def parse_cose(blob: bytes) -> Envelope:
    """COSE_Sign1_Tagged; signed bytes are Sig_structure over the ORIGINAL protected bytes."""
    try:
        import cbor2
    except ImportError as e:  # pragma: no cover - cbor2 is a declared dependency
        raise NotationRefusal("unsupported envelope: COSE needs the cbor2 package") from e
    try:
        tagged = cbor2.loads(blob)
        if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != 18 or len(tagged.value) != 4:
            raise ValueError("not COSE_Sign1_Tagged")
        protected_bytes, unprotected, payload, signature = tagged.value
        protected = cbor2.loads(protected_bytes)
        chain = unprotected[33]
        chain = [chain] if isinstance(chain, bytes) else list(chain)
        signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    except (ValueError, KeyError, TypeError, IndexError, cbor2.CBORDecodeError) as e:
        raise NotationRefusal("malformed envelope: not a notation COSE_Sign1 envelope") from e
    if not isinstance(protected, dict) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise NotationRefusal("malformed envelope: COSE_Sign1 fields of the wrong types")
    alg = COSE_ALGORITHMS.get(protected.get(1), f"COSE algorithm {protected.get(1)!r}")
    normalized = {k: v for k, v in protected.items() if isinstance(k, str)}
    normalized["cty"] = protected.get(3)
    normalized["crit"] = protected.get(2, [])
    return Envelope(alg, normalized, payload, signed, signature, chain)


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_rfc3339(value)
        except Malformed as e:
            raise NotationRefusal(f"malformed envelope: {what} {value!r} is not a time") from e
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise NotationRefusal(f"malformed envelope: {what} is not a time")


def expected_alg(key: Any) -> str:
    """The JWS/COSE algorithm notation requires for a leaf key (anti-substitution)."""
    if isinstance(key, rsa.RSAPublicKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size, f"RSA-{key.key_size}")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, f"EC-{key.curve.key_size}")
    return type(key).__name__


def verify_envelope_signature(envelope: Envelope, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if envelope.alg != expected_alg(key):
        raise NotationRefusal(f"signature does not verify: alg {envelope.alg} does not match the "
                              f"signing key ({expected_alg(key)})")
    algorithm = HASHES[envelope.alg[2:]]()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(envelope.signature, envelope.signed_bytes,
                       padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm)
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            size = (key.curve.key_size + 7) // 8
            if len(envelope.signature) != 2 * size:
                raise InvalidSignature
            r = int.from_bytes(envelope.signature[:size], "big")
            s = int.from_bytes(envelope.signature[size:], "big")
            key.verify(encode_dss_signature(r, s), envelope.signed_bytes, ec.ECDSA(algorithm))
    except InvalidSignature as e:
        raise NotationRefusal("signature does not verify: not with the signing certificate's key") from e


def check_headers(envelope: Envelope) -> str:
    """cty, crit and signing scheme; returns the scheme."""
    headers = envelope.protected
    if headers.get("cty") != PAYLOAD_TYPE:
        raise NotationRefusal(f"malformed envelope: content type {headers.get('cty')!r}")
    crit = headers.get("crit") or []
    if not isinstance(crit, list | tuple) or SCHEME not in crit:
        raise NotationRefusal(f"malformed envelope: crit must list {SCHEME}")
    unknown = [c for c in crit if c not in KNOWN_CRITICAL]
    if unknown:
        raise NotationRefusal(f"unsupported envelope: critical headers {unknown} (verification plugins)")
    scheme = headers.get(SCHEME)
    if scheme not in (X509, SIGNING_AUTHORITY):
        raise NotationRefusal(f"unsupported envelope: signing scheme {scheme!r}")
    return str(scheme)


def check_payload(payload: bytes, manifest: Manifest) -> None:
    try:
        target = json.loads(payload)["targetArtifact"]
        signed = (target["digest"], target["size"], target["mediaType"])
    except (ValueError, KeyError, TypeError) as e:
        raise NotationRefusal("malformed envelope: the payload has no targetArtifact descriptor") from e
    actual = (str(manifest.digest), len(manifest.body), manifest.media_type)
    if signed[0] != actual[0]:
        raise NotationRefusal(f"signed a different digest: the signature is for {signed[0]}")
    if signed[1] != actual[1]:
        raise NotationRefusal(f"signed a different digest: the signature is for {signed[1]} bytes, not {actual[1]}")
    if signed[2] != actual[2]:
        raise NotationRefusal(f"signed a different digest: the signature is for media type {signed[2]}")


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _check_key_and_hash(cert: x509.Certificate, name: str) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise NotationRefusal(f"certificate chain not trusted: {name} has an RSA key under 2048 bits")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        raise NotationRefusal(f"certificate chain not trusted: {name} has an EC key under 256 bits")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise NotationRefusal(f"certificate chain not trusted: {name} has an unsupported key type")
    if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
        raise NotationRefusal(f"certificate chain not trusted: {name} is signed with SHA-1")


def _check_leaf(leaf: x509.Certificate, name: str) -> None:
    ku = _ext(leaf, x509.KeyUsage)
    if ku is None or not ku.value.digital_signature:
        raise NotationRefusal(f"certificate chain not trusted: signing certificate {name} lacks digitalSignature")
    v = ku.value
    if v.key_cert_sign or v.crl_sign or v.key_encipherment or v.data_encipherment or v.key_agreement:
        raise NotationRefusal(f"certificate chain not trusted: signing certificate {name} has CA or encryption "
                              "key usages")
    bc = _ext(leaf, x509.BasicConstraints)
    if bc is not None and bc.value.ca:
        raise NotationRefusal(f"certificate chain not trusted: signing certificate {name} is a CA")
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if eku is not None:
        usages = set(eku.value)
        forbidden = {ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, ExtendedKeyUsageOID.SERVER_AUTH,
                     ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION,
                     ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.OCSP_SIGNING}
        if ExtendedKeyUsageOID.CODE_SIGNING not in usages or usages & forbidden:
            raise NotationRefusal(f"certificate chain not trusted: signing certificate {name} is not for code "
                                  "signing")


def _check_ca(cert: x509.Certificate, name: str, below: int) -> None:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        raise NotationRefusal(f"certificate chain not trusted: {name} is not a CA certificate")
    if bc.value.path_length is not None and below > bc.value.path_length:
        raise NotationRefusal(f"certificate chain not trusted: path length of {name} exceeded")
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.value.key_cert_sign:
        raise NotationRefusal(f"certificate chain not trusted: {name} may not sign certificates")


def verify_chain(chain_der: list[bytes], trusted: set[bytes], root_name: str) -> list[x509.Certificate]:
    """The chain rules of step 2 (without times); returns the parsed chain, leaf first."""
    if not chain_der:
        raise NotationRefusal("certificate chain not trusted: the envelope carries no certificate")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as e:
        raise NotationRefusal("malformed envelope: a certificate of the chain does not parse") from e
    names = [c.subject.rfc4514_string() or f"certificate {i}" for i, c in enumerate(chain)]
    for i, cert in enumerate(chain):
        _check_key_and_hash(cert, names[i])
        issuer = chain[i + 1] if i + 1 < len(chain) else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            if i + 1 == len(chain):
                raise NotationRefusal(f"certificate chain not trusted: the chain does not end in a self-signed "
                                      f"root ({names[i]})") from e
            raise NotationRefusal(f"certificate chain not trusted: {names[i]} is not issued by {names[i + 1]}") from e
        if i > 0:
            _check_ca(cert, names[i], i - 1)
    _check_leaf(chain[0], names[0])
    if not any(der in trusted for der in chain_der):
        raise NotationRefusal(f"certificate chain not trusted: no certificate of the chain ({names[-1]}) is a CA "
                              f"of trust root {root_name!r}")
    return chain


def verify_notation(blob: bytes, media_type: str, manifest: Manifest, requirement: NotationRequirement,
                    now: datetime) -> datetime | None:
    """Verify one envelope for `manifest`; returns when the acceptance stops holding (the earliest
    certificate or signature expiry). Raises NotationRefusal with the reason."""
    envelope = parse_jws(blob) if media_type == JWS else parse_cose(blob)
    scheme = check_headers(envelope)
    wanted = SIGNING_AUTHORITY if requirement.trust_root.type == X509_SIGNING_AUTHORITY else X509
    if scheme != wanted:
        raise NotationRefusal(f"signing scheme not trusted: {scheme} signatures need a trust root of type "
                              f"{X509_CA if scheme == X509 else X509_SIGNING_AUTHORITY}; "
                              f"{requirement.trust_root.name!r} is a {requirement.trust_root.type}")
    trusted = {c.der for c in requirement.trust_root.certificates}
    try:
        leaf = x509.load_der_x509_certificate(envelope.chain[0]) if envelope.chain else None
    except ValueError as e:
        raise NotationRefusal("malformed envelope: the signing certificate does not parse") from e
    if leaf is None:
        raise NotationRefusal("certificate chain not trusted: the envelope carries no certificate")
    verify_envelope_signature(envelope, leaf)
    check_payload(envelope.payload, manifest)
    chain = verify_chain(envelope.chain, trusted, requirement.trust_root.name)
    subject = chain[0].subject
    if not any(identity_matches(i, subject) for i in requirement.parsed_identities):
        raise NotationRefusal(f"identity not trusted: {subject.rfc4514_string()} matches none of "
                              f"{list(requirement.identities)}")
    expiry = _time(envelope.protected[EXPIRY], "expiry") if EXPIRY in envelope.protected else None
    if expiry is not None and expiry <= now:
        raise NotationRefusal(f"signature expired: at {expiry.isoformat()}")
    moment = now
    if scheme == SIGNING_AUTHORITY:
        if AUTHENTIC_SIGNING_TIME not in envelope.protected or AUTHENTIC_SIGNING_TIME not in envelope.protected["crit"]:
            raise NotationRefusal("malformed envelope: signingAuthority scheme without a critical authenticSigningTime")
        moment = _time(envelope.protected[AUTHENTIC_SIGNING_TIME], "authenticSigningTime")
    for cert in chain:
        if cert.not_valid_after_utc < moment:
            raise NotationRefusal(f"certificate expired: {cert.subject.rfc4514_string()} expired at "
                                  f"{cert.not_valid_after_utc.isoformat()}")
        if cert.not_valid_before_utc > moment:
            raise NotationRefusal(f"certificate not yet valid: {cert.subject.rfc4514_string()}")
    ends = [c.not_valid_after_utc for c in chain] if scheme == X509 else []
    if expiry is not None:
        ends.append(expiry)
    return min(ends) if ends else None


class NotationSource:
    """The `notation:` requirement: see the module docstring."""

    kind = "notation"
    refusal = REFUSAL

    def __init__(self, store: RegistryStore, clock: Any) -> None:
        self.store = store
        self.clock = clock

    def invalidate(self, repository: str) -> None:
        """Nothing cached here (the gate caches verdicts by signature set)."""

    async def check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        assert isinstance(requirement, NotationRequirement)
        now = self.clock()
        found = await subject.signatures()
        results: list[dict[str, str]] = []
        reasons: list[str] = []
        for ref in found.referrers:
            loaded = await load_manifest(self.store, subject.repository, ref)
            if loaded is None or signature_kind(loaded[1]) != "notation":
                continue
            layers = loaded[1].get("layers") or []
            layer = layers[0] if layers and isinstance(layers[0], dict) else {}
            media_type = layer.get("mediaType")
            try:
                if media_type not in (JWS, COSE):
                    raise NotationRefusal(f"unsupported envelope: media type {media_type!r}")
                blob = await read_layer(self.store, subject.repository, layer)
                valid_until = verify_notation(blob, str(media_type), subject.manifest, requirement, now)
            except BlobError as e:
                reason = f"signature blob does not verify: {e}"
            except NotationRefusal as e:
                reason = str(e)
            else:
                return SourceResult(True, detail={"trust_root": requirement.trust_root.name, "signature": ref},
                                    valid_until=valid_until)
            reasons.append(reason)
            results.append({"signature": ref, "result": reason})
        detail: dict[str, Any] = {"trust_root": requirement.trust_root.name}
        if not results:
            return SourceResult(False, f"no signature found: no notation signature refers to "
                                       f"{subject.manifest.digest}", detail)
        detail["signatures"] = results[:16]
        return SourceResult(False, reasons[0], detail)
