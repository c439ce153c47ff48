"""Keyless bundles under a `sigstore` root with `require_tlog: false` and/or `require_sct: false`: a
private deployment without a Rekor log (signing time proven by an RFC 3161 timestamp of the root's TSAs)
and/or without CT logs.

sigstore-python cannot relax either: its `Bundle` refuses a bundle without exactly one log entry, its
`Verifier` refuses a root without a log and checks an SCT on every certificate, with no option. So when
the entry or the SCT is absent, the steps of its `Verifier._verify_common_signing_cert` + `verify_dsse`
are composed here from its parts, in the same order:
- signing times: each RFC 3161 timestamp over the signature verified against the root's TSAs with
  `rfc3161_client` and the TSA's validity window (sigstore-python's loop is a private method of the
  `Verifier` a root without a log cannot build); plus the log's integrated time when a verified entry
  carries a promise;
- a log entry, when the bundle has one and the root names logs, is verified as sigstore-python does
  (its `Bundle` invariants, inclusion proof, checkpoint, promise, body consistent with the envelope),
  whatever `require_tlog` says: a relaxed root tolerates an absent entry, never a bad one. If the root
  names no log, the entry cannot be checked and proves nothing: the time must come from a TSA;
- the certificate chains to a Fulcio CA and is valid at every verified time; its SCT is verified when
  required, and also when it has one and the root names CT logs (a bad SCT is refused, an absent one
  tolerated);
- code-signing usage, the identity, then the DSSE signature (sigstore-python's `dsse._verify`).
Legacy `.sig`/`.att` layers without a Rekor bundle the root can check take their time from cosign's
`dev.sigstore.cosign/rfc3161timestamp` annotation instead (`legacy_timestamp_times`); the rest of their
checks stay in trust.keyless.
Fail closed: without a verified signing time nothing counts. When nothing is absent (an entry the root's
logs check, an SCT its CT logs check), sigstore-python's full `Verifier.verify_dsse` runs instead.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import TimeStampResponse, VerifierBuilder, decode_timestamp_response
from rfc3161_client import VerificationError as TimestampVerificationError
from sigstore import dsse
from sigstore._internal.trust import KeyringPurpose
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify.verifier import (
    MAX_ALLOWED_TIMESTAMP,
    _validate_dsse_v001_entry_body,
    _validate_hashedrekord_v002_dsse_entry_body,
)
from sigstore_models.bundle.v1 import Bundle as BundleDocument

from trust.identities import CertificateIdentity
from trust.keyless import (
    TIMESTAMP_ANNOTATION,
    KeylessRefusal,
    SigstoreRoot,
    _certificate_at,
    _first_line,
    _verification_reason,
    has_sct,
)


def needs_relaxed(data: bytes, root: SigstoreRoot) -> bool:
    """Whether the bundle lacks what sigstore-python's full verifier demands (a log entry the root's logs
    check, an SCT its CT logs check) and `root` tolerates that absence."""
    try:
        document = BundleDocument.from_json(data)
        cert = _leaf(document)
    except Exception:
        return False  # the full verifier refuses it with its own reason
    checkable_entry = bool(document.verification_material.tlog_entries) and root.has_tlogs
    checkable_sct = has_sct(cert) and root.has_ctlogs
    return (not checkable_entry and not root.require_tlog) or (not checkable_sct and not root.require_sct)


def verify_relaxed_bundle(data: bytes, root: SigstoreRoot,
                          identities: tuple[CertificateIdentity, ...]) -> tuple[str, bytes, str]:
    """A keyless DSSE bundle whose log entry and/or SCT `root` does not require (see the module
    docstring): (payload type, payload, signer identity)."""
    try:
        document = BundleDocument.from_json(data)
        Bundle.BundleType(document.media_type)
        cert = _leaf(document)
        envelope = dsse.Envelope(document.dsse_envelope) if document.dsse_envelope is not None else None
    except Exception as e:  # pydantic's, the DSSE module's, a bad DER certificate: a refusal, never a 500
        raise KeylessRefusal(f"malformed signature: not a verifiable sigstore bundle: {_first_line(e)}") from e
    if envelope is None:
        raise KeylessRefusal("malformed signature: message-signature bundles do not sign an image")
    times = _timestamp_times(document, envelope.signature, root.trusted)
    times += _log_entry_time(document, root)
    identity = _certificate_at(cert, root, times, identities)  # chain at every time, SCT, usage, identity
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeylessRefusal("signature does not verify: unsupported certificate key type")
    try:
        dsse._verify(key, envelope)
    except Exception as e:
        raise KeylessRefusal(f"signature does not verify: {_first_line(e)}") from e
    return envelope._inner.payload_type, envelope._inner.payload, identity


def _leaf(document: BundleDocument) -> x509.Certificate:
    """The signing certificate: v0.3's single certificate, or the first of an older bundle's chain."""
    material = document.verification_material
    if material.certificate is not None:
        return x509.load_der_x509_certificate(material.certificate.raw_bytes)
    if material.x509_certificate_chain is not None and material.x509_certificate_chain.certificates:
        return x509.load_der_x509_certificate(material.x509_certificate_chain.certificates[0].raw_bytes)
    raise ValueError("no signing certificate (keyless needs one)")


def _timestamp_times(document: BundleDocument, signature: bytes, trusted: TrustedRoot) -> list[datetime]:
    """The generation times of the bundle's RFC 3161 timestamps that a TSA of the root signed over
    `signature` (unverifiable ones count for nothing, as in sigstore-python)."""
    data = document.verification_material.timestamp_verification_data
    raw = [t.signed_timestamp for t in (data.rfc3161_timestamps if data is not None else None) or []]
    if len(raw) > MAX_ALLOWED_TIMESTAMP or len(set(raw)) != len(raw):
        raise KeylessRefusal("malformed signature: too many or duplicate timestamps")
    times = []
    for blob in raw:
        try:
            response = decode_timestamp_response(blob)
        except ValueError as e:
            raise KeylessRefusal("malformed signature: a timestamp is not an RFC 3161 response") from e
        when = _tsa_time(response, signature, trusted)
        if when is not None:
            times.append(when)
    return times


def legacy_timestamp_times(annotations: dict[str, Any], timestamped: bytes, trusted: TrustedRoot) -> list[datetime]:
    """The time of a legacy layer's RFC 3161 timestamp annotation (cosign's, over the raw signature of a
    `.sig`, over the layer of an `.att`) if a TSA of the root signed it; [] without one that verifies."""
    raw = annotations.get(TIMESTAMP_ANNOTATION)
    if raw is None:
        return []
    try:
        response = decode_timestamp_response(base64.b64decode(json.loads(raw)["SignedRFC3161Timestamp"]))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise KeylessRefusal("malformed signature: the timestamp annotation is not an RFC 3161 response") from e
    when = _tsa_time(response, timestamped, trusted)
    return [when] if when is not None else []


def _tsa_time(response: TimeStampResponse, signature: bytes, trusted: TrustedRoot) -> datetime | None:
    """The timestamp's time if a TSA of the root (leaf, intermediates, root) signed it over `signature`
    within that TSA's validity window."""
    when = response.tst_info.gen_time
    for authority in trusted.get_timestamp_authorities():
        certificates = authority.certificates(allow_expired=True)
        if len(certificates) < 2:
            continue  # a leaf and its root at least
        builder = VerifierBuilder().tsa_certificate(certificates[0]).add_root_certificate(certificates[-1])
        for intermediate in certificates[1:-1]:
            builder = builder.add_intermediate_certificate(intermediate)
        try:
            builder.build().verify_message(response, signature)
        except TimestampVerificationError:
            continue
        end = authority.validity_period_end
        if authority.validity_period_start <= when and (not end or when < end):
            return when
    return None


def _log_entry_time(document: BundleDocument, root: SigstoreRoot) -> list[datetime]:
    """Verify the bundle's log entry against the root's logs (see the module docstring); its integrated
    time if its promise verified."""
    if not document.verification_material.tlog_entries:
        if root.require_tlog:
            raise KeylessRefusal("transparency log entry does not verify: the bundle has no log entry")
        return []
    if not root.has_tlogs:
        if root.require_tlog:
            raise KeylessRefusal("transparency log entry does not verify: the trusted root names no log")
        return []  # a log the root does not name proves nothing
    try:
        bundle = Bundle(document)  # sigstore-python's invariants: one entry, an inclusion proof with checkpoint
        entry = bundle.log_entry
        entry._verify(root.trusted.rekor_keyring(KeyringPurpose.VERIFY))
        kind = (entry._inner.kind_version.kind, entry._inner.kind_version.version)
        if kind == ("dsse", "0.0.1"):
            _validate_dsse_v001_entry_body(bundle)
        elif kind == ("hashedrekord", "0.0.2"):
            _validate_hashedrekord_v002_dsse_entry_body(bundle)
        else:
            raise ValueError(f"unsupported DSSE log entry type {kind[0]}/{kind[1]}")
    except Exception as e:
        reason = _verification_reason(e)
        raise KeylessRefusal(reason if reason.startswith("transparency log entry")
                             else f"transparency log entry does not verify: {_first_line(e)}") from e
    if entry._inner.inclusion_promise and entry._inner.integrated_time:
        return [datetime.fromtimestamp(int(entry._inner.integrated_time), UTC)]
    return []
