"""cosign rules through the gate: both storage forms, key types, every refusal reason."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from storage.references import Digest
from tests.helpers import OCI_INDEX, descriptor
from tests.signatures.conftest import REPO, _once, cosign_policy
from tests.signatures.factory import (
    BUNDLE,
    cosign_bundle,
    cosign_legacy,
    ec_key,
    public_pem,
    rsa_key,
    simple_signing_payload,
    statement,
    tag_for,
)

COSIGN_REFUSAL = "The image is not signed by cosign."


@pytest.mark.parametrize("make_key", [ec_key, rsa_key, ed25519.Ed25519PrivateKey.generate],
                         ids=["ecdsa-p256", "rsa", "ed25519"])
async def test_legacy_signature_served_by_tag_and_digest(registry_store, make_gate, make_key) -> None:
    key = make_key()
    image = await registry_store.image()
    await registry_store.push(cosign_legacy(image.digest, [key]))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert (await gate.decide(REPO, None, image.manifest)).served


async def test_unsigned_refused_with_cosign_message(registry_store, make_gate) -> None:
    image = await registry_store.image()
    verdict = await make_gate(cosign_policy(public_pem(ec_key()))).decide(REPO, "v1", image.manifest)
    assert not verdict.served
    assert verdict.message == COSIGN_REFUSAL
    assert verdict.code == "no signature found"
    assert verdict.detail["repository"] == REPO and verdict.detail["reference"] == "v1"
    assert verdict.detail["digest"] == image.digest and verdict.detail["trust_root"] == "ci"
    assert verdict.detail["reason"] == verdict.reason


async def test_legacy_wrong_key_refused(registry_store, make_gate) -> None:
    image = await registry_store.image()
    await registry_store.push(cosign_legacy(image.digest, [ec_key()]))
    verdict = await make_gate(cosign_policy(public_pem(ec_key()))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature does not verify", verdict.reason
    assert verdict.detail["signatures"][0]["result"] == verdict.reason


async def test_legacy_payload_for_another_digest_refused(registry_store, make_gate) -> None:
    """A valid signature of another image copied to this image's `.sig` tag."""
    key = ec_key()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    copied = cosign_legacy(other.digest, [key])
    copied.tag = tag_for(image.digest, ".sig")
    await registry_store.push(copied)
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signed a different digest", verdict.reason
    assert other.digest in verdict.reason


async def test_legacy_swapped_payload_blob_refused(registry_store, make_gate) -> None:
    """The layer blob replaced (a payload for this digest the key never signed), signature kept."""
    key = ec_key()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    original = cosign_legacy(other.digest, [key])
    annotation = json.loads(original.manifest)["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
    swapped = cosign_legacy(image.digest, [key], payloads=[simple_signing_payload(image.digest, "evil/x")],
                            signatures=[base64.b64decode(annotation)])
    await registry_store.push(swapped)
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature does not verify", verdict.reason


async def test_layer_blob_not_matching_its_digest_refused(registry_store, make_gate, tmp_path) -> None:
    key = ec_key()
    image = await registry_store.image()
    sig = cosign_legacy(image.digest, [key])
    await registry_store.push(sig)
    payload_digest = Digest.parse(json.loads(sig.manifest)["layers"][0]["digest"])
    path = tmp_path / "data" / "blobs" / "sha256" / payload_digest.hex[:2] / payload_digest.hex / "data"
    path.write_bytes(path.read_bytes().replace(b"cosign", b"COSIGN"))  # storage tampered behind our back
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature blob does not verify", verdict.reason
    assert "does not match its digest" in verdict.reason


async def test_min_signatures_counts_distinct_keys(registry_store, make_gate) -> None:
    a, b = ec_key(), rsa_key()
    image, twice, both = [await registry_store.image(t) for t in ("one", "twice", "both")]
    await registry_store.push(cosign_legacy(image.digest, [a]))
    await registry_store.push(cosign_legacy(twice.digest, [a, a]))
    await registry_store.push(cosign_legacy(both.digest, [a]))
    await registry_store.push(cosign_bundle(both.subject, b))  # a second key, in the other storage form
    gate = make_gate(cosign_policy(public_pem(a), public_pem(b), min_signatures=2))
    for tag, img in (("one", image), ("twice", twice)):
        verdict = await gate.decide(REPO, tag, img.manifest)
        assert not verdict.served and verdict.code == "too few signatures", verdict.reason
    assert (await gate.decide(REPO, "both", both.manifest)).served


async def test_bundle_referrer_served(registry_store, make_gate) -> None:
    key = ec_key()
    image = await registry_store.image()
    await registry_store.push(cosign_bundle(image.subject, key))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, "v1", image.manifest)).served


async def test_bundle_untrusted_key_refused(registry_store, make_gate) -> None:
    image = await registry_store.image()
    await registry_store.push(cosign_bundle(image.subject, ec_key()))
    verdict = await make_gate(cosign_policy(public_pem(ec_key()))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signed by an untrusted key", verdict.reason


async def test_bundle_tampered_statement_does_not_verify(registry_store, make_gate) -> None:
    key = ec_key()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    # the statement says this image, the signature covers the statement for another one
    await registry_store.push(cosign_bundle(image.subject, key, signed_body=statement(other.digest)))
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature does not verify", verdict.reason


async def test_bundle_signing_another_digest_refused(registry_store, make_gate) -> None:
    key = ec_key()
    image, other = await registry_store.image("v1"), await registry_store.image("v2")
    await registry_store.push(cosign_bundle(image.subject, key, body=statement(other.digest)))
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signed a different digest", verdict.reason


async def test_bundle_attestation_is_not_a_signature(registry_store, make_gate) -> None:
    key = ec_key()
    image = await registry_store.image()
    body = statement(image.digest, "https://slsa.dev/provenance/v1")
    await registry_store.push(cosign_bundle(image.subject, key, body=body))
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "not a signature", verdict.reason


async def test_keyless_bundle_unsupported(registry_store, make_gate) -> None:
    key = ec_key()
    image = await registry_store.image()
    await registry_store.push(cosign_bundle(image.subject, key, certificate=True))
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and "keyless" in verdict.reason, verdict.reason


async def test_bundle_found_through_tag_schema_index(registry_store, make_gate) -> None:
    """No referrers entry (a registry without the API wrote it): the `sha256-<hex>` index lists it, with
    the wrong artifactType cosign 3.1.1 writes there; the bundle is classified by its own manifest."""
    key = ec_key()
    image = await registry_store.image()
    bundle = cosign_bundle(image.subject, key)
    store = registry_store.store
    for blob in bundle.blobs:
        await store.put_blob(REPO, _once(blob), Digest.of(blob))
    await store.put_manifest(REPO, bundle.manifest, "application/vnd.oci.image.manifest.v1+json",
                             Digest.of(bundle.manifest), [], None, None)
    assert await store.referrers(REPO, image.manifest.digest) == []
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", bundle.manifest,
                       artifactType="application/vnd.oci.empty.v1+json")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    await registry_store.put(index, [], [tag_for(image.digest)])
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, "v1", image.manifest)).served


async def test_signature_artifacts_are_not_gated(registry_store, make_gate) -> None:
    key = ec_key()
    image = await registry_store.image()
    legacy = await registry_store.push(cosign_legacy(image.digest, [key]))
    bundle = await registry_store.push(cosign_bundle(image.subject, key))
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", bundle.body)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    tag_index = await registry_store.put(index, [], [tag_for(image.digest)])
    gate = make_gate(cosign_policy(public_pem(ec_key())))  # nothing here is signed by the trusted key
    assert (await gate.decide(REPO, tag_for(image.digest, ".sig"), legacy)).served
    assert (await gate.decide(REPO, None, legacy)).served
    assert (await gate.decide(REPO, None, bundle)).served
    assert (await gate.decide(REPO, tag_for(image.digest), tag_index)).served
    assert not (await gate.decide(REPO, "v1", image.manifest)).served


async def test_runnable_image_labelled_as_signature_is_gated(registry_store, make_gate) -> None:
    """artifactType alone does not make a signature: an image config and tar layers stay gated."""
    from tests.helpers import image_manifest

    config, layer = b'{"architecture":"amd64","os":"linux"}', b"runnable"
    body = image_manifest(config, [layer], artifactType=BUNDLE)
    manifest = await registry_store.put(body, [config, layer], ["sneaky"])
    verdict = await make_gate(cosign_policy(public_pem(ec_key()))).decide(REPO, "sneaky", manifest)
    assert not verdict.served and verdict.code == "no signature found"
