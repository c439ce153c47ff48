"""Keyless cosign signatures, verified offline against a Sigstore `trusted_root.json` (sigstore-python).

A keyless signature counts if its certificate chains to a Fulcio CA of the root and was valid at the
signing time a transparency-log entry of the root's Rekor logs proves (or an RFC 3161 timestamp of the
root's TSAs), carries an SCT of the root's CT logs, names an allowed identity (OIDC issuer extension and
SAN), and signs this manifest's digest. Two forms:
- sigstore bundle v0.3 referrers (cosign 3): `sigstore.verify.Verifier.verify_dsse` does the whole
  chain/SCT/log (inclusion proof, checkpoint, promise)/signature verification; the statement it returns
  is then bound to the digest by the caller;
- the legacy `.sig` layer (cosign 2): the certificate, chain and Rekor bundle (signed entry timestamp)
  are layer annotations, with no inclusion proof, which sigstore-python's bundles require; so the same
  steps are done here with sigstore-python's pieces (keyrings, SCT check) and `cryptography`'s path
  validation: SET over the canonical entry, hashedrekord body consistent with the signature,
  certificate and payload, chain at the integrated time, SCT, then the signature itself; the legacy
  `.att` layer (a DSSE envelope, Rekor `intoto` 0.0.2 entry) the same way.
Identity regexps must match the whole value (`re.fullmatch`; cosign's flags search unanchored).
A root with `require_tlog: false` / `require_sct: false` tolerates a bundle without a log entry (its time
then from a TSA) / a certificate without an SCT: trust.keyless_relaxed, as sigstore-python cannot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError
from sigstore._internal.sct import verify_sct
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import KeyID
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier

from trust.identities import CertificateIdentity

CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"  # {"SignedRFC3161Timestamp": base64 DER}
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string
SCT_EXTENSION = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")  # RFC 6962 embedded SCT list
PUBLIC_GOOD = "https://tuf-repo-cdn.sigstore.dev"


@dataclass(frozen=True)
class SigstoreRoot:
    """A loaded `sigstore` trust root: its trusted_root.json and what it demands of a signature."""

    trusted: TrustedRoot
    require_tlog: bool = True
    require_sct: bool = True

    @property
    def has_tlogs(self) -> bool:
        return bool(self.trusted._inner.tlogs)

    @property
    def has_ctlogs(self) -> bool:
        return bool(self.trusted._inner.ctlogs)


class KeylessRefusal(Exception):
    """One keyless signature does not count; the message is the reason (stable code before `:`)."""


def load_trusted_root(path: str | None) -> TrustedRoot:
    """A `trusted_root.json`, or (None) the public-good root shipped inside sigstore-python."""
    try:
        if path is None:
            shipped = resources.files("sigstore._store") / PUBLIC_GOOD.replace(":", "%3A").replace("/", "%2F")
            with resources.as_file(shipped / "trusted_root.json") as file:
                return TrustedRoot.from_file(str(file))
        return TrustedRoot.from_file(path)
    except SigstoreError as e:
        raise ValueError(f"not a Sigstore trusted root: {e}") from e
    except Exception as e:  # the protobuf/pydantic parser's errors
        if isinstance(e, OSError):
            raise
        raise ValueError(f"not a Sigstore trusted root: {str(e).splitlines()[0]}") from e


def certificate_identity(cert: x509.Certificate) -> tuple[str | None, list[str]]:
    """The certificate's OIDC issuer (Fulcio extension) and its SAN values (URIs, emails, other names)."""
    issuer = None
    for ext in cert.extensions:
        if ext.oid == OIDC_ISSUER_V2 and isinstance(ext.value, x509.UnrecognizedExtension):
            issuer = _utf8_string(ext.value.value)
            break
        if ext.oid == OIDC_ISSUER_V1 and isinstance(ext.value, x509.UnrecognizedExtension):
            issuer = ext.value.value.decode(errors="replace")
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
        sans += [v.value.decode(errors="replace")[2:] for v in san.get_values_for_type(x509.OtherName)]
    except x509.ExtensionNotFound:
        pass
    return issuer, sans


def _utf8_string(der: bytes) -> str | None:
    """A DER UTF8String's text; None if `der` is not exactly one."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2:
            return None
        length, start = int.from_bytes(der[2:2 + count], "big"), 2 + count
    if start + length != len(der):
        return None
    return der[start:].decode(errors="replace")


def check_identity(cert: x509.Certificate, identities: tuple[CertificateIdentity, ...]) -> str:
    """The certificate's subject if an identity allows it; otherwise the refusal names what it holds."""
    issuer, sans = certificate_identity(cert)
    if any(identity.matches(issuer, sans) for identity in identities):
        return sans[0]
    if not any(_issuer_allowed(identity, issuer) for identity in identities):
        raise KeylessRefusal(f"issuer not trusted: {issuer}")
    raise KeylessRefusal(f"identity not trusted: {', '.join(sans) or 'no subject'} (issuer {issuer})")


def _issuer_allowed(identity: CertificateIdentity, issuer: str | None) -> bool:
    any_subject = CertificateIdentity(identity.issuer, identity.issuer_regexp, subject_regexp=".*")
    return any_subject.matches(issuer, [""])


def verify_bundle(data: bytes, root: SigstoreRoot,
                  identities: tuple[CertificateIdentity, ...]) -> tuple[str, bytes, str]:
    """A keyless sigstore bundle with a DSSE envelope: (payload type, payload, signer identity)."""
    if not (root.require_tlog and root.require_sct):
        from trust import keyless_relaxed  # it builds on this module

        if keyless_relaxed.needs_relaxed(data, root):
            return keyless_relaxed.verify_relaxed_bundle(data, root, identities)
    # Anything sigstore-python raises on hostile input (its own errors, pydantic's, the DSSE module's) is a
    # refusal, never a server error.
    try:
        bundle = Bundle.from_json(data)
        envelope = bundle._dsse_envelope
    except Exception as e:
        raise KeylessRefusal(f"malformed signature: not a verifiable sigstore bundle: {_first_line(e)}") from e
    if envelope is None:
        raise KeylessRefusal("malformed signature: message-signature bundles do not sign an image")
    try:
        payload_type, payload = _verifier(root.trusted).verify_dsse(bundle, _IdentityPolicy(identities))
    except KeylessRefusal:
        raise
    except Exception as e:
        raise KeylessRefusal(_verification_reason(e)) from e
    return payload_type, payload, check_identity(bundle.signing_certificate, identities)


@lru_cache(maxsize=32)
def _verifier(root: TrustedRoot) -> Verifier:
    """One sigstore-python verifier per loaded root (a reload loads a new root object)."""
    return Verifier(trusted_root=root)


class _IdentityPolicy:
    """sigstore-python's `VerificationPolicy` protocol over the configured identities."""

    def __init__(self, identities: tuple[CertificateIdentity, ...]) -> None:
        self.identities = identities

    def verify(self, cert: x509.Certificate) -> None:
        check_identity(cert, self.identities)  # KeylessRefusal passes through sigstore-python


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _verification_reason(e: BaseException) -> str:
    """sigstore-python's failure, under this project's stable reason codes."""
    text = _first_line(e)
    lowered = text.lower()
    if "sources of verified time" in lowered:
        return f"no trusted signing time: neither a log entry's promise nor a timestamp of the root's TSAs ({text})"
    if "certificate chain" in lowered or "chain" in lowered and "timestamp" in lowered:
        return f"certificate chain not trusted: {text}"
    if "expired at time of signing" in lowered:
        return f"certificate not valid at signing time: {text}"
    if "sct" in lowered:
        return f"no valid SCT: {text}"
    if "log entry" in lowered or "inclusion" in lowered or "checkpoint" in lowered or "set:" in lowered:
        return f"transparency log entry does not verify: {text}"
    return f"signature does not verify: {text}"


# --- legacy `.sig` keyless --------------------------------------------------------------------


def _pem_certs(text: Any, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(str(text).encode())
    except ValueError as e:
        raise KeylessRefusal(f"malformed signature: {what} is not a PEM certificate") from e
    return certs


def verify_legacy(payload: bytes, signature: bytes, annotations: dict[str, Any], root: SigstoreRoot,
                  identities: tuple[CertificateIdentity, ...]) -> str:
    """A cosign legacy keyless `.sig` layer (see the module docstring); returns the signer identity."""
    cert, body, times = _signing_times(annotations, root, signature)  # (1) when: the log's entry, or a TSA
    if body is not None:
        _check_entry_body(body, payload, signature, cert)  # (2) ... about this signature, certificate, payload
    identity = _certificate_at(cert, root, times, identities)  # (3) chain, SCT, usage, identity
    _verify_signature(cert, signature, payload)  # (4) the signature itself
    return identity


def verify_legacy_attestation(data: bytes, annotations: dict[str, Any], root: SigstoreRoot,
                              identities: tuple[CertificateIdentity, ...]) -> tuple[str, bytes, str]:
    """A cosign legacy keyless `.att` layer (DSSE envelope, Rekor `intoto` 0.0.2 entry in its annotations):
    (payload type, payload, signer identity)."""
    from trust.cosign import pae  # trust.cosign imports this module

    try:
        envelope = json.loads(data)
        payload_type, payload = str(envelope["payloadType"]), base64.b64decode(envelope["payload"])
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
        raise KeylessRefusal("malformed signature: not a DSSE envelope") from e
    cert, body, times = _signing_times(annotations, root, data)  # cosign timestamps an attestation's layer
    if body is not None:
        _check_intoto_body(body, payload, signature, cert)
    identity = _certificate_at(cert, root, times, identities)
    _verify_signature(cert, signature, pae(payload_type, payload))
    return payload_type, payload, identity


def _signing_times(annotations: dict[str, Any], root: SigstoreRoot,
                   timestamped: bytes) -> tuple[x509.Certificate, Any, list[datetime]]:
    """(certificate, Rekor entry body, signing times) of a legacy layer: its Rekor bundle annotation,
    verified; or, under `require_tlog: false` when there is none the root could check, the RFC 3161
    timestamp annotation over `timestamped` (entry body None)."""
    if root.require_tlog or (REKOR_BUNDLE_ANNOTATION in annotations and root.has_tlogs):
        cert, body, integrated = _logged_entry(annotations, root.trusted)
        return cert, body, [integrated]
    from trust.keyless_relaxed import legacy_timestamp_times  # it builds on this module

    cert = _pem_certs(annotations.get(CERTIFICATE_ANNOTATION), "certificate annotation")[0]
    return cert, None, legacy_timestamp_times(annotations, timestamped, root.trusted)


def _logged_entry(annotations: dict[str, Any], root: TrustedRoot) -> tuple[x509.Certificate, Any, datetime]:
    """The certificate annotation, and the Rekor entry of the bundle annotation once its signed entry
    timestamp verifies with a log key of the root: (certificate, entry body, integrated time)."""
    cert = _pem_certs(annotations.get(CERTIFICATE_ANNOTATION), "certificate annotation")[0]
    if REKOR_BUNDLE_ANNOTATION not in annotations:
        raise KeylessRefusal("transparency log entry does not verify: no Rekor bundle annotation")
    try:
        rekor = json.loads(annotations[REKOR_BUNDLE_ANNOTATION])
        entry, set_signature = rekor["Payload"], base64.b64decode(rekor["SignedEntryTimestamp"])
        canonical = rfc8785.dumps({"body": entry["body"], "integratedTime": int(entry["integratedTime"]),
                                   "logID": str(entry["logID"]), "logIndex": int(entry["logIndex"])})
        log_id = bytes.fromhex(entry["logID"])
        body = json.loads(base64.b64decode(entry["body"]))
        integrated = datetime.fromtimestamp(int(entry["integratedTime"]), UTC)
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError, OSError) as e:
        raise KeylessRefusal("malformed signature: the Rekor bundle annotation is not readable") from e
    try:
        root.rekor_keyring(KeyringPurpose.VERIFY).verify(key_id=KeyID(log_id), signature=set_signature, data=canonical)
    except SigstoreError as e:
        raise KeylessRefusal(f"transparency log entry does not verify: {_first_line(e)}") from e
    return cert, body, integrated


def _certificate_at(cert: x509.Certificate, root: SigstoreRoot, times: list[datetime],
                    identities: tuple[CertificateIdentity, ...]) -> str:
    """The certificate chains to a Fulcio CA and was valid at every signing time, carries an SCT of the
    root's CT logs (unless `require_sct: false`; one it has is checked if the root names CT logs), is for
    code signing and names an allowed identity (returned)."""
    if not times:
        raise KeylessRefusal("no trusted signing time: no verified log entry and no timestamp of the root's TSAs")
    for when in times:
        chain = _chain_at(cert, root.trusted, when)
    if root.require_sct or (has_sct(cert) and root.has_ctlogs):
        try:
            verify_sct(cert, chain, root.trusted.ct_keyring(KeyringPurpose.VERIFY))
        except Exception as e:  # sigstore-python's errors, or its parsers' on a hostile SCT list: a refusal
            raise KeylessRefusal(f"no valid SCT: {_first_line(e)}") from e
    _code_signing(cert)
    return check_identity(cert, identities)


def has_sct(cert: x509.Certificate) -> bool:
    """Whether the certificate embeds SCTs (RFC 6962 extension)."""
    return any(ext.oid == SCT_EXTENSION for ext in cert.extensions)


def _verify_signature(cert: x509.Certificate, signature: bytes, message: bytes) -> None:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeylessRefusal("signature does not verify: unsupported certificate key type")
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise KeylessRefusal("signature does not verify: the certificate's key does not verify it") from e


def _check_intoto_body(body: Any, payload: bytes, signature: bytes, cert: x509.Certificate) -> None:
    """A Rekor `intoto` 0.0.2 entry: the payload's hash, and the envelope signature with its certificate."""
    try:
        if (body["kind"], body["apiVersion"]) != ("intoto", "0.0.2"):
            raise KeylessRefusal(f"transparency log entry does not verify: kind {body['kind']!r}")
        content = body["spec"]["content"]
        logged_hash = (content["payloadHash"]["algorithm"], content["payloadHash"]["value"])
        logged = [(base64.b64decode(base64.b64decode(s["sig"])), base64.b64decode(s["publicKey"]))
                  for s in content["envelope"]["signatures"]]
    except (KeyError, TypeError, ValueError) as e:
        raise KeylessRefusal("transparency log entry does not verify: unreadable intoto body") from e
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if logged_hash != ("sha256", hashlib.sha256(payload).hexdigest()) or (signature, pem) not in logged:
        raise KeylessRefusal("transparency log entry does not verify: the entry is of another attestation")


def _check_entry_body(body: Any, payload: bytes, signature: bytes, cert: x509.Certificate) -> None:
    try:
        if (body["kind"], body["apiVersion"]) != ("hashedrekord", "0.0.1"):
            raise KeylessRefusal(f"transparency log entry does not verify: kind {body['kind']!r}")
        spec = body["spec"]
        logged_sig = base64.b64decode(spec["signature"]["content"])
        logged_cert = x509.load_pem_x509_certificate(base64.b64decode(spec["signature"]["publicKey"]["content"]))
        logged_hash = (spec["data"]["hash"]["algorithm"], spec["data"]["hash"]["value"])
    except (KeyError, TypeError, ValueError) as e:
        raise KeylessRefusal("transparency log entry does not verify: unreadable hashedrekord body") from e
    der = serialization.Encoding.DER
    if (logged_sig != signature or logged_cert.public_bytes(der) != cert.public_bytes(der)
            or logged_hash != ("sha256", hashlib.sha256(payload).hexdigest())):
        raise KeylessRefusal("transparency log entry does not verify: the entry is of another signature")


def _chain_at(cert: x509.Certificate, root: TrustedRoot, when: datetime) -> list[x509.Certificate]:
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL,
                                                                    None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL,
                                                                    None)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise KeylessRefusal(f"certificate not valid at signing time: logged at {when.isoformat()}, valid "
                             f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()}")
    try:
        verifier = (PolicyBuilder().store(Store(root.get_fulcio_certs())).time(when)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
        return list(verifier.verify(cert, []).chain[1:])
    except (VerificationError, ValueError) as e:
        raise KeylessRefusal(f"certificate chain not trusted: {_first_line(e)}") from e


def _code_signing(cert: x509.Certificate) -> None:
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise KeylessRefusal("certificate chain not trusted: the certificate's key usage is not digital signature")
    except x509.ExtensionNotFound as e:
        raise KeylessRefusal("certificate chain not trusted: the certificate has no key usage") from e
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        usage = []
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise KeylessRefusal("certificate chain not trusted: the certificate is not for code signing")
