"""Issue 15 §1: the signature-artifact exemption serves only what its content proves is a signature.

Every look-alike below is something a container runtime could run (or whose classification rests on
labels alone): the gate must judge it like any image, and refuse it in an enforced project. Real
signature artifacts (shaped like cosign's, cosign 3's bundles and notation's) stay served. Bodies that
the push path now refuses are written straight into storage, as data stored before the fix would be.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage.references import Digest
from tests.helpers import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, descriptor, digest_of
from tests.signatures.conftest import REPO, Registry, _once, cosign_policy, make_gate, registry_store  # noqa: F401
from tests.signatures.factory import (
    BUNDLE,
    EMPTY,
    JWS,
    NOTATION,
    SIMPLESIGNING,
    cosign_bundle,
    cosign_legacy,
    ec_key,
    make_pki,
    notation_signature,
    public_pem,
    referrer,
    simple_signing_payload,
    tag_for,
)

DSSE = "application/vnd.dsse.envelope.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
TARGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER = b"\x1f\x8b\x08\x00 runnable layer bytes"
RUN_CONFIG = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh", "-c", "echo PWNED"]},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}


def cosign_config(layers: list[bytes], **overrides: Any) -> bytes:
    doc = {"architecture": "", "os": "", "config": {}, "created": "0001-01-01T00:00:00Z",
           "history": [{"created": "0001-01-01T00:00:00Z"}],
           "rootfs": {"type": "layers", "diff_ids": [digest_of(b) for b in layers]}, **overrides}
    return json.dumps(doc).encode()


def manifest(config: tuple[str, bytes], layers: list[tuple[str, bytes]], media_type: str = OCI_MANIFEST,
             **extra: Any) -> tuple[bytes, list[bytes]]:
    doc = {"schemaVersion": 2, "mediaType": media_type, **extra, "config": descriptor(*config),
           "layers": [descriptor(t, b) for t, b in layers]}
    return json.dumps(doc).encode(), [config[1], *(b for _, b in layers)]


async def store_raw(reg: Registry, body: bytes, blobs: list[bytes], media_type: str, tag: str) -> Any:
    """Store bytes as a manifest without the push path's validation (data from before the fix)."""
    for blob in blobs:
        await reg.store.put_blob(REPO, _once(blob), Digest.of(blob))
    digest = Digest.of(body)
    await reg.store.put_manifest(REPO, body, media_type, digest, [tag], None, None)
    return await reg.store.get_manifest(REPO, digest)


@pytest.fixture
def gate(make_gate):  # noqa: F811
    return make_gate(cosign_policy(public_pem(ec_key())))


async def _served(gate, reg: Registry, body: bytes, blobs: list[bytes], tag: str = "evil",
                  media_type: str = OCI_MANIFEST, raw: bool = False) -> bool:
    if raw:
        stored = await store_raw(reg, body, blobs, media_type, tag)
    else:
        for blob in blobs:
            await reg.store.put_blob(REPO, _once(blob), Digest.of(blob))
        from registry.manifests import parse_manifest
        parse_manifest(body, media_type)  # the push path accepts it
        digest = Digest.of(body)
        await reg.store.put_manifest(REPO, body, media_type, digest, [tag], None, None)
        stored = await reg.store.get_manifest(REPO, digest)
    by_tag = (await gate.decide(REPO, tag, stored)).served
    by_digest = (await gate.decide(REPO, None, stored)).served
    assert by_tag == by_digest
    return by_tag


# --- real signature artifacts stay served ---------------------------------------------------------

async def test_real_signature_artifacts_are_served(gate, registry_store) -> None:  # noqa: F811
    key, image = ec_key(), await registry_store.image()
    legacy = await registry_store.push(cosign_legacy(image.digest, [key, ec_key()]))
    bundle = await registry_store.push(cosign_bundle(image.subject, key))
    pki = make_pki()
    jws = await registry_store.push(notation_signature(pki, image.subject))
    cose = await registry_store.push(notation_signature(pki, image.subject, cose=True))
    old_form = await registry_store.push(notation_signature(pki, image.subject, oci11=False))
    for stored in (legacy, bundle, jws, cose, old_form):
        assert (await gate.decide(REPO, None, stored)).served, stored.body[:300]
    assert (await gate.decide(REPO, tag_for(image.digest, ".sig"), legacy)).served
    assert not (await gate.decide(REPO, "v1", image.manifest)).served  # the image itself is unsigned


# --- look-alikes: refused --------------------------------------------------------------------------

async def test_signed_layers_retyped_with_a_new_command(gate, registry_store) -> None:  # noqa: F811
    """The issue's variant: re-typed layers and a config whose rootfs names an unpacked image."""
    body, blobs = manifest((OCI_CONFIG, json.dumps(RUN_CONFIG).encode()), [(SIMPLESIGNING, LAYER)])
    assert not await _served(gate, registry_store, body, blobs)


@pytest.mark.parametrize("overrides", [
    {"config": {"Cmd": ["/bin/sh"]}},
    {"config": {"Entrypoint": ["/x"]}},
    {"os": "linux", "architecture": "amd64"},
    {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}},  # someone else's unpacked layers
    {"container_config": {"Cmd": ["/bin/sh"]}},
], ids=["Cmd", "Entrypoint", "platform", "foreign-diff-ids", "container_config"])
async def test_cosign_config_that_gives_a_runtime_something(gate, registry_store, overrides) -> None:  # noqa: F811
    payload = simple_signing_payload("sha256:" + "0" * 64)
    body, blobs = manifest((OCI_CONFIG, cosign_config([payload], **overrides)), [(SIMPLESIGNING, payload)])
    assert not await _served(gate, registry_store, body, blobs)


async def test_cosign_config_with_case_variant_runtime_config(gate, registry_store) -> None:  # noqa: F811
    payload = simple_signing_payload("sha256:" + "0" * 64)
    config = cosign_config([payload])[:-1] + b',"Config":{"Cmd":["/bin/sh"]}}'
    body, blobs = manifest((OCI_CONFIG, config), [(SIMPLESIGNING, payload)])
    assert not await _served(gate, registry_store, body, blobs)


@pytest.mark.parametrize("layer", [LAYER, b"{}", b'{"critical":{"type":"other"}}', b"[1]"],
                         ids=["tar-gzip", "empty-object", "wrong-type", "array"])
async def test_simple_signing_layer_that_is_not_a_payload(gate, registry_store, layer) -> None:  # noqa: F811
    body, blobs = manifest((OCI_CONFIG, cosign_config([layer])), [(SIMPLESIGNING, layer)])
    assert not await _served(gate, registry_store, body, blobs)


async def test_dsse_layer_that_is_not_an_envelope(gate, registry_store) -> None:  # noqa: F811
    body, blobs = manifest((OCI_CONFIG, cosign_config([LAYER])), [(DSSE, LAYER)])
    assert not await _served(gate, registry_store, body, blobs)


async def test_notation_look_alike_with_an_image_config(gate, registry_store) -> None:  # noqa: F811
    body, blobs = manifest((EMPTY, json.dumps(RUN_CONFIG).encode()), [(JWS, LAYER)], artifactType=NOTATION)
    assert not await _served(gate, registry_store, body, blobs)


async def test_notation_look_alike_with_a_tar_envelope(gate, registry_store) -> None:  # noqa: F811
    body, blobs = manifest((EMPTY, b"{}"), [(JWS, LAYER)], artifactType=NOTATION)
    assert not await _served(gate, registry_store, body, blobs)


async def test_bundle_look_alike_with_a_tar_layer(gate, registry_store) -> None:  # noqa: F811
    body, blobs = manifest((EMPTY, b"{}"), [(BUNDLE, LAYER)], artifactType=BUNDLE)
    assert not await _served(gate, registry_store, body, blobs)


async def test_missing_signature_blob(gate, registry_store) -> None:  # noqa: F811
    payload = simple_signing_payload("sha256:" + "0" * 64)
    body, blobs = manifest((OCI_CONFIG, cosign_config([payload])), [(SIMPLESIGNING, payload)])
    assert not await _served(gate, registry_store, body, blobs[:1])


async def test_signature_whose_blob_arrives_later_is_then_served(gate, registry_store) -> None:  # noqa: F811
    """A refusal for a missing blob is not remembered; a proven outcome is."""
    payload = simple_signing_payload("sha256:" + "0" * 64)
    body, blobs = manifest((OCI_CONFIG, cosign_config([payload])), [(SIMPLESIGNING, payload)])
    assert not await _served(gate, registry_store, body, blobs[:1])
    await registry_store.store.put_blob(REPO, _once(payload), Digest.of(payload))
    assert await _served(gate, registry_store, body, blobs)


async def test_outcome_is_per_media_type_served(gate, registry_store) -> None:  # noqa: F811
    """Bytes without a `mediaType` field can be re-pushed under another Content-Type: a notation
    signature proven as an OCI manifest is not exempt once it is served as a Docker manifest."""
    image = await registry_store.image()
    artifact = notation_signature(make_pki(), image.subject)
    doc = json.loads(artifact.manifest)
    del doc["mediaType"]
    body = json.dumps(doc).encode()
    assert await _served(gate, registry_store, body, artifact.blobs, tag="sig")
    assert not await _served(gate, registry_store, body, artifact.blobs, tag="sig", media_type=DOCKER_MANIFEST,
                             raw=True)


async def test_docker_schema2_look_alike(gate, registry_store) -> None:  # noqa: F811
    config = (("application/vnd.docker.container.image.v1+json"), json.dumps(RUN_CONFIG).encode())
    body, blobs = manifest(config, [(SIMPLESIGNING, LAYER)], media_type=DOCKER_MANIFEST)
    assert not await _served(gate, registry_store, body, blobs, media_type=DOCKER_MANIFEST)


async def test_cosign_signature_served_under_another_media_type(gate, registry_store) -> None:  # noqa: F811
    """Only an image manifest media type counts: what a client does with others is not ours to guess."""
    payload = simple_signing_payload("sha256:" + "0" * 64)
    body, blobs = manifest((OCI_CONFIG, cosign_config([payload])), [(SIMPLESIGNING, payload)],
                           media_type="application/vnd.example+json")
    assert not await _served(gate, registry_store, body, blobs, media_type="application/vnd.example+json")


@pytest.mark.parametrize("extra", [b',"Layers":[%s]', b',"layers":[%s]', b',"LAYER\xc5\xbf":[%s]'],
                         ids=["Layers", "duplicate-layers", "long-s"])
async def test_stored_ambiguous_manifest_is_never_exempt(gate, registry_store, extra) -> None:  # noqa: F811
    """Stored before the push check existed: Python would see the signature, Go the tar layer."""
    payload = simple_signing_payload("sha256:" + "0" * 64)
    body, blobs = manifest((OCI_CONFIG, cosign_config([payload])), [(SIMPLESIGNING, payload)])
    body = body[:-1] + extra % json.dumps(descriptor(TARGZ, LAYER)).encode() + b"}"
    assert not await _served(gate, registry_store, body, [*blobs, LAYER], raw=True)


async def test_tag_schema_tag_on_an_image_is_gated(gate, registry_store) -> None:  # noqa: F811
    image = await registry_store.image()
    tag = tag_for("sha256:" + "2" * 64)
    await registry_store.store.put_manifest(REPO, image.manifest.body, OCI_MANIFEST, image.manifest.digest,
                                            [tag], None, None)
    assert not (await gate.decide(REPO, tag, image.manifest)).served


async def test_tag_schema_index_is_served_but_what_it_lists_is_gated(gate, registry_store) -> None:  # noqa: F811
    image = await registry_store.image()
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [image.subject]}).encode()
    stored = await store_raw(registry_store, index, [], OCI_INDEX, tag_for(image.digest))
    assert (await gate.decide(REPO, tag_for(image.digest), stored)).served
    assert not (await gate.decide(REPO, "some-tag", stored)).served
    assert not (await gate.decide(REPO, None, image.manifest)).served


async def test_tag_schema_index_that_also_carries_an_image_is_gated(gate, registry_store) -> None:  # noqa: F811
    image = await registry_store.image()
    doc = json.loads(image.manifest.body)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.subject],
                        "config": doc["config"], "layers": doc["layers"]}).encode()
    stored = await store_raw(registry_store, index, [], OCI_INDEX, tag_for(image.digest))
    assert not (await gate.decide(REPO, tag_for(image.digest), stored)).served


async def test_referrer_with_runnable_config(gate, registry_store) -> None:  # noqa: F811
    """An OCI 1.0-form notation referrer whose config blob is an image config, not `{}`."""
    image = await registry_store.image()
    artifact = referrer(NOTATION, image.subject, LAYER, JWS, oci11=False)
    doc = json.loads(artifact.manifest)
    config = json.dumps(RUN_CONFIG).encode()
    doc["config"] = descriptor(NOTATION, config)
    body = json.dumps(doc).encode()
    assert not await _served(gate, registry_store, body, [config, LAYER])
