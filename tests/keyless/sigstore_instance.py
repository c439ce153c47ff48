"""A private Sigstore instance made in Python: a Fulcio-like CA issuing short-lived code-signing
certificates with the OIDC extensions and an embedded SCT of a CT log, a Rekor-like log signing entries
(signed entry timestamps, inclusion proofs in a two-leaf tree, signed checkpoints), and the
`trusted_root.json` naming them. It makes keyless cosign signatures in both storage forms: the
sigstore bundle v0.3 referrer (DSSE, as cosign 3 writes it) and the legacy `.sig` layer (certificate,
chain and Rekor bundle annotations, as cosign 2 writes it). Options make every tampered variant."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import OCI_CONFIG, OCI_MANIFEST, descriptor, digest_of
from tests.signatures.factory import BUNDLE, SIMPLESIGNING, Artifact, pae, referrer, simple_signing_payload, statement
from tests.signatures.factory import tag_for as factory_tag_for

GITHUB = "https://token.actions.githubusercontent.com"
RELEASE = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0"
IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
DER = serialization.Encoding.DER
TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {dir}/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.2
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def log_id(key: ec.EllipticCurvePrivateKey) -> bytes:
    return hashlib.sha256(spki(key.public_key())).digest()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustreg test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Signing:
    """One keyless signing: the leaf key and certificate, and when it happened."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    when: datetime
    logged: datetime | None = None  # when the log integrates the entry (default: 5 s after `when`)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class SigstoreInstance:
    """Fulcio CA, CT log and Rekor log keys; `trusted_root()` names them."""

    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    rekor_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    tsa_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    origin: str = "rekor.trustreg.test - 1"
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))

    def __post_init__(self) -> None:
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (x509.CertificateBuilder().subject_name(_name("fulcio")).issuer_name(_name("fulcio"))
                   .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self.start).not_valid_after(self.start + timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
                   .add_extension(ski, critical=False)
                   .sign(self.ca_key, hashes.SHA384()))
        self.tsa_cert = (x509.CertificateBuilder().subject_name(_name("tsa")).issuer_name(self.ca.subject)
                         .public_key(self.tsa_key.public_key()).serial_number(x509.random_serial_number())
                         .not_valid_before(self.start).not_valid_after(self.start + timedelta(days=3650))
                         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
                         .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.tsa_key.public_key()), False)
                         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                                        False)
                         .sign(self.ca_key, hashes.SHA384()))

    def trusted_root(self, *, tlogs: bool = True, ctlogs: bool = True) -> dict[str, Any]:
        """The instance's trusted_root.json; `tlogs`/`ctlogs` False: a deployment without Rekor / CT."""
        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": b64(spki(key.public_key())), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                  "validFor": {"start": _ts(self.start)}},
                    "logId": {"keyId": b64(log_id(key))}}
        return {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [log(self.rekor_key, "https://rekor.trustreg.test")] if tlogs else [],
                "certificateAuthorities": [{
                    "subject": {"organization": "trustreg test", "commonName": "fulcio"},
                    "uri": "https://fulcio.trustreg.test",
                    "certChain": {"certificates": [{"rawBytes": b64(self.ca.public_bytes(DER))}]},
                    "validFor": {"start": _ts(self.start)}}],
                "ctlogs": [log(self.ct_key, "https://ctfe.trustreg.test")] if ctlogs else [],
                "timestampAuthorities": [{
                    "subject": {"organization": "trustreg test", "commonName": "tsa"},
                    "uri": "https://tsa.trustreg.test",
                    "certChain": {"certificates": [{"rawBytes": b64(self.tsa_cert.public_bytes(DER))},
                                                   {"rawBytes": b64(self.ca.public_bytes(DER))}]},
                    "validFor": {"start": _ts(self.start)}}]}

    # --- TSA (the real `openssl ts` signs the RFC 3161 response) -------------------------------
    def timestamp(self, message: bytes) -> bytes:
        """An RFC 3161 timestamp response over sha256(`message`), signed by this instance's TSA."""
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "msg").write_bytes(message)
            (d / "tsa.key").write_bytes(self.tsa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            (d / "tsa.pem").write_bytes(self.tsa_cert.public_bytes(serialization.Encoding.PEM))
            (d / "serial").write_text("01\n")
            (d / "ts.cnf").write_text(TSA_CONFIG.format(dir=d))
            subprocess.run(["openssl", "ts", "-query", "-data", str(d / "msg"), "-sha256", "-cert", "-no_nonce",
                            "-out", str(d / "req.tsq")], check=True, capture_output=True)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(d / "ts.cnf"), "-queryfile", str(d / "req.tsq"),
                            "-signer", str(d / "tsa.pem"), "-inkey", str(d / "tsa.key"), "-out", str(d / "resp.tsr")],
                           check=True, capture_output=True)
            return (d / "resp.tsr").read_bytes()

    # --- Fulcio ---------------------------------------------------------------------------------
    def issue(self, subject: str = RELEASE, issuer: str = GITHUB, *, when: datetime | None = None,
              lifetime: timedelta = timedelta(minutes=10), sct: bool = True,
              ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None) -> Signing:
        """A code-signing certificate for `subject` (URI, or email if it has an @), valid from `when`."""
        ca_key, ca_cert = ca or (self.ca_key, self.ca)
        when = when or datetime.now(UTC) - timedelta(minutes=1)
        key = ec.generate_private_key(ec.SECP256R1())
        san: x509.GeneralName = (x509.RFC822Name(subject) if "@" in subject and "://" not in subject
                                 else x509.UniformResourceIdentifier(subject))
        issuer_der = b"\x0c" + _der_length(len(issuer.encode())) + issuer.encode()
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(when).not_valid_after(when + lifetime)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
                   .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                   .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"),
                                                             issuer.encode()), critical=False)
                   .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"),
                                                             issuer_der), critical=False))
        if sct:
            precert = builder.sign(ca_key, hashes.SHA384())
            builder = builder.add_extension(
                x509.UnrecognizedExtension(SCT_OID, self._sct_list(precert, ca_key, when)), critical=False)
        return Signing(key, builder.sign(ca_key, hashes.SHA384()), when)

    def _sct_list(self, precert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, when: datetime) -> bytes:
        """RFC 6962 SCT over the precertificate TBS (the final TBS without this extension)."""
        tbs = precert.tbs_certificate_bytes
        issuer_hash = hashlib.sha256(spki(ca_key.public_key())).digest()
        millis = int(when.timestamp() * 1000)
        signed = (struct.pack("!BBQH", 0, 0, millis, 1) + issuer_hash + len(tbs).to_bytes(3, "big") + tbs
                  + struct.pack("!H", 0))
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (b"\x00" + log_id(self.ct_key) + struct.pack("!QH", millis, 0) + b"\x04\x03"
               + struct.pack("!H", len(signature)) + signature)
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        return b"\x04" + _der_length(len(sct_list)) + sct_list  # DER OCTET STRING

    # --- Rekor ----------------------------------------------------------------------------------
    def log_entry(self, body: dict[str, Any], signing: Signing, *, index: int = 1) -> dict[str, Any]:
        """A Rekor v1 entry for `body` at leaf `index` of a two-leaf tree: SET, inclusion proof, checkpoint."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        other = b'{"other":"entry"}'
        leaves = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in ((other, canonical) if index else
                                                                      (canonical, other))]
        root = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
        integrated = int((signing.logged or signing.when + timedelta(seconds=5)).timestamp())
        lid = log_id(self.rekor_key)
        promise = rfc8785.dumps({"body": b64(canonical), "integratedTime": integrated, "logID": lid.hex(),
                                 "logIndex": index})
        note = f"{self.origin}\n2\n{b64(root)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 {self.origin.split()[0]} {b64(lid[:4] + note_sig)}\n"
        return {"logIndex": str(index), "logId": {"keyId": b64(lid)},
                "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
                "integratedTime": str(integrated),
                "inclusionPromise": {"signedEntryTimestamp": b64(self.rekor_key.sign(promise,
                                                                                   ec.ECDSA(hashes.SHA256())))},
                "inclusionProof": {"logIndex": str(index), "rootHash": b64(root), "treeSize": "2",
                                   "hashes": [b64(leaves[1 - index])], "checkpoint": {"envelope": checkpoint}},
                "canonicalizedBody": b64(canonical)}

    # --- signatures -----------------------------------------------------------------------------
    def bundle(self, subject: dict[str, Any], signing: Signing | None = None, *, body: bytes | None = None,
               logged_body: bytes | None = None, tamper: str = "", promise: bool = True,
               timestamp_by: SigstoreInstance | None = None, tlog: bool = True) -> Artifact:
        """A keyless sigstore bundle v0.3 referrer (DSSE, `cosign sign` v3). `logged_body`: the payload the
        log entry records (default: the signed one); `tamper`: "proof" alters the inclusion proof;
        `promise`: whether the entry carries its signed entry timestamp; `timestamp_by`: add an RFC 3161
        timestamp of that instance's TSA over the signature; `tlog`: False leaves the log entry out (a
        deployment without Rekor)."""
        signing = signing or self.issue()
        body = body if body is not None else statement(subject["digest"])
        signature = signing.key.sign(pae(IN_TOTO, body), ec.ECDSA(hashes.SHA256()))
        entry_sig = signature if logged_body is None else signing.key.sign(pae(IN_TOTO, logged_body),
                                                                          ec.ECDSA(hashes.SHA256()))
        logged = logged_body if logged_body is not None else body
        dsse_body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(b"envelope").hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(logged).hexdigest()},
            "signatures": [{"signature": b64(entry_sig), "verifier": b64(signing.pem)}]}}
        entry = self.log_entry(dsse_body, signing)
        if tamper == "proof":
            entry["inclusionProof"]["hashes"] = [b64(hashlib.sha256(b"forged").digest())]
        if not promise:
            del entry["inclusionPromise"]
        material: dict[str, Any] = {"certificate": {"rawBytes": b64(signing.cert.public_bytes(DER))},
                                    "tlogEntries": [entry] if tlog else []}
        if timestamp_by is not None:
            material["timestampVerificationData"] = {"rfc3161Timestamps": [
                {"signedTimestamp": b64(timestamp_by.timestamp(signature))}]}
        doc = {"mediaType": BUNDLE, "verificationMaterial": material,
               "dsseEnvelope": {"payload": b64(body), "payloadType": IN_TOTO, "signatures": [{"sig": b64(signature)}]}}
        predicate = json.loads(body).get("predicateType", "")
        annotations = {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate}
        return referrer(BUNDLE, subject, json.dumps(doc).encode(), BUNDLE, annotations)

    def legacy(self, digest: str, signing: Signing | None = None, *, logged_payload: bytes | None = None,
               tamper: str = "", tlog: bool = True, timestamp_by: SigstoreInstance | None = None) -> Artifact:
        """A keyless legacy `.sig` (cosign 2): simple-signing layer with certificate, chain and Rekor
        bundle annotations. `logged_payload`: what the hashedrekord entry records; `tamper`: "set"
        corrupts the signed entry timestamp; `tlog`: False leaves the Rekor bundle out; `timestamp_by`:
        cosign's RFC 3161 timestamp annotation over the raw signature, by that instance's TSA."""
        signing = signing or self.issue()
        payload = simple_signing_payload(digest)
        signature = signing.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        logged = logged_payload if logged_payload is not None else payload
        body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(logged).hexdigest()}},
            "signature": {"content": b64(signature), "publicKey": {"content": b64(signing.pem)}}}}
        entry = self.log_entry(body, signing)
        set_sig = base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"])
        if tamper == "set":
            set_sig = self.ct_key.sign(b"not the entry", ec.ECDSA(hashes.SHA256()))
        rekor = {"SignedEntryTimestamp": b64(set_sig), "Payload": {
            "body": entry["canonicalizedBody"], "integratedTime": int(entry["integratedTime"]),
            "logIndex": int(entry["logIndex"]), "logID": base64.b64decode(entry["logId"]["keyId"]).hex()}}
        annotations = {"dev.cosignproject.cosign/signature": b64(signature),
                       "dev.sigstore.cosign/certificate": signing.pem.decode(),
                       "dev.sigstore.cosign/chain": self.ca.public_bytes(serialization.Encoding.PEM).decode(),
                       "dev.sigstore.cosign/bundle": json.dumps(rekor)}
        if not tlog:
            del annotations["dev.sigstore.cosign/bundle"]
        if timestamp_by is not None:
            annotations["dev.sigstore.cosign/rfc3161timestamp"] = json.dumps(
                {"SignedRFC3161Timestamp": b64(timestamp_by.timestamp(signature))})
        config = json.dumps({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(payload)]}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                    "layers": [descriptor(SIMPLESIGNING, payload, annotations=annotations)]}
        return Artifact(json.dumps(manifest).encode(), [config, payload], factory_tag_for(digest, ".sig"))


def legacy_attestation(instance: SigstoreInstance, digest: str, body: bytes, signing: Signing | None = None,
                       *, tlog: bool = True, timestamp_by: SigstoreInstance | None = None) -> Artifact:
    """A keyless legacy `.att` (cosign 2 `attest`): a DSSE envelope layer whose certificate, chain and
    Rekor bundle (an `intoto` 0.0.2 entry) are annotations; `tlog`/`timestamp_by` as in `legacy` (the
    timestamp is over the envelope, as cosign's)."""
    signing = signing or instance.issue()
    signature = signing.key.sign(pae(IN_TOTO, body), ec.ECDSA(hashes.SHA256()))
    envelope = json.dumps({"payloadType": IN_TOTO, "payload": b64(body),
                           "signatures": [{"keyid": "", "sig": b64(signature)}]}).encode()
    entry_body = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
        "envelope": {"payloadType": IN_TOTO, "signatures": [{"publicKey": b64(signing.pem),
                                                            "sig": b64(b64(signature).encode())}]},
        "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(body).hexdigest()}}}}
    entry = instance.log_entry(entry_body, signing)
    rekor = {"SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"], "Payload": {
        "body": entry["canonicalizedBody"], "integratedTime": int(entry["integratedTime"]),
        "logIndex": int(entry["logIndex"]), "logID": base64.b64decode(entry["logId"]["keyId"]).hex()}}
    annotations = {"predicateType": json.loads(body)["predicateType"], "dev.cosignproject.cosign/signature": "",
                   "dev.sigstore.cosign/certificate": signing.pem.decode(),
                   "dev.sigstore.cosign/chain": instance.ca.public_bytes(serialization.Encoding.PEM).decode(),
                   "dev.sigstore.cosign/bundle": json.dumps(rekor)}
    if not tlog:
        del annotations["dev.sigstore.cosign/bundle"]
    if timestamp_by is not None:
        annotations["dev.sigstore.cosign/rfc3161timestamp"] = json.dumps(
            {"SignedRFC3161Timestamp": b64(timestamp_by.timestamp(envelope))})
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(envelope)]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(DSSE, envelope, annotations=annotations)]}
    return Artifact(json.dumps(manifest).encode(), [config, envelope], factory_tag_for(digest, ".att"))


def other_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA no trusted root names."""
    other = SigstoreInstance()
    return other.ca_key, other.ca


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
