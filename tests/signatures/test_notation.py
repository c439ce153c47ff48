"""notation rules through the gate: JWS and COSE, chain, identity, expiry, signed descriptor."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.signatures.conftest import REPO, notation_policy
from tests.signatures.factory import (
    RELEASE_DN,
    cose_envelope,
    jws_envelope,
    make_pki,
    notation_signature,
    rsa_key,
    target_payload,
)
from trust.policy import parse_identity

NOTATION_REFUSAL = "The image is not signed by notation."
RELEASE = f"x509.subject: {RELEASE_DN}"


@pytest.mark.parametrize("cose", [False, True], ids=["jws", "cose"])
@pytest.mark.parametrize("rsa", [False, True], ids=["ecdsa", "rsa-pss"])
async def test_signed_served(registry_store, make_gate, cose, rsa) -> None:
    pki = make_pki(leaf_key=rsa_key() if rsa else None)
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject, cose=cose))
    gate = make_gate(notation_policy(pki.root_pem(), identities=[RELEASE]))
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert (await gate.decide(REPO, None, image.manifest)).served


async def test_oci_1_0_form_served(registry_store, make_gate) -> None:
    """No artifactType; config.mediaType is the notation signature type (what notation writes to
    registries without OCI 1.1 support)."""
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject, oci11=False))
    assert (await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)).served


async def test_unsigned_refused_with_notation_message(registry_store, make_gate) -> None:
    image = await registry_store.image()
    verdict = await make_gate(notation_policy(make_pki().root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.message == NOTATION_REFUSAL
    assert verdict.code == "no signature found" and verdict.detail["trust_root"] == "pki"


async def test_other_ca_refused(registry_store, make_gate) -> None:
    image = await registry_store.image()
    await registry_store.push(notation_signature(make_pki(), image.subject))
    verdict = await make_gate(notation_policy(make_pki().root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "certificate chain not trusted", verdict.reason


async def test_identity_mismatch_refused(registry_store, make_gate) -> None:
    pki = make_pki("C=US, ST=WA, O=TrustReg Test, CN=intern")
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    verdict = await make_gate(notation_policy(pki.root_pem(), identities=[RELEASE])).decide(REPO, "v1",
                                                                                              image.manifest)
    assert not verdict.served and verdict.code == "identity not trusted", verdict.reason


async def test_identity_subset_and_wildcard(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    for identities in (["x509.subject: C=US, ST=WA, O=TrustReg Test"], ["*"]):
        gate = make_gate(notation_policy(pki.root_pem(), identities=identities))
        assert (await gate.decide(REPO, "v1", image.manifest)).served, identities


async def test_expired_signature_refused(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    envelope = jws_envelope(pki, image.subject, expiry=datetime.now(UTC) - timedelta(minutes=1))
    await registry_store.push(notation_signature(pki, image.subject, envelope))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature expired", verdict.reason


async def test_expired_certificate_refused(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    later = pki.leaf.not_valid_after_utc + timedelta(days=1)
    verdict = await make_gate(notation_policy(pki.root_pem()), now=later).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "certificate expired", verdict.reason


@pytest.mark.parametrize("field", ["digest", "size", "mediaType"])
async def test_signed_descriptor_must_equal_the_manifest(registry_store, make_gate, field) -> None:
    pki = make_pki()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    signed = {**image.subject, field: {"digest": other.digest, "size": image.subject["size"] + 1,
                                       "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}[field]}
    envelope = cose_envelope(pki, image.subject, payload=target_payload(signed))
    await registry_store.push(notation_signature(pki, image.subject, envelope, cose=True))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signed a different digest", verdict.reason


async def test_tampered_envelope_refused(registry_store, make_gate) -> None:
    pki = make_pki()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    envelope = json.loads(jws_envelope(pki, other.subject))
    envelope["payload"] = base64.urlsafe_b64encode(target_payload(image.subject)).rstrip(b"=").decode()
    await registry_store.push(notation_signature(pki, image.subject, json.dumps(envelope).encode()))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature does not verify", verdict.reason


async def test_alg_must_match_the_signing_key(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject, jws_envelope(pki, image.subject, alg="ES384")))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and "alg ES384" in verdict.reason, verdict.reason


async def test_incomplete_chain_refused(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    envelope = jws_envelope(pki, image.subject, chain=[pki.leaf])
    await registry_store.push(notation_signature(pki, image.subject, envelope))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and "self-signed root" in verdict.reason, verdict.reason


async def test_leaf_not_for_code_signing_refused(registry_store, make_gate) -> None:
    pki = make_pki(code_signing=False)
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    verdict = await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and "not for code signing" in verdict.reason, verdict.reason


async def test_any_good_signature_suffices(registry_store, make_gate) -> None:
    trusted, other = make_pki(), make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(other, image.subject))
    await registry_store.push(notation_signature(trusted, image.subject, cose=True))
    assert (await make_gate(notation_policy(trusted.root_pem())).decide(REPO, "v1", image.manifest)).served


def test_identity_format() -> None:
    assert parse_identity("*") is None
    assert len(parse_identity(r"x509.subject: C=US, ST=WA, O=Acme\, Inc., CN=x") or ()) == 4
    for bad in ("x509.subject: C=US, O=Acme, CN=x", "C=US, ST=WA, O=Acme", "x509.subject: C=US, ST=WA, O=A, XX=1"):
        with pytest.raises(ValueError):
            parse_identity(bad)
