"""Online garbage collection over every storage driver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from storage.gc import collect_garbage
from storage.references import Digest
from storage.store import ManifestBlobUnknownError, RegistryStore, UploadUnknownError
from tests.helpers import OCI_INDEX, OCI_MANIFEST, descriptor, image_index, image_manifest


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def store(make_driver) -> AsyncIterator[RegistryStore]:
    driver = make_driver()
    yield RegistryStore(driver)
    await driver.close()


async def push_blob(store: RegistryStore, name: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    await store.put_blob(name, once(data), digest)
    return digest


async def push_manifest(store: RegistryStore, name: str, body: bytes, tag: str | None, media_type: str = OCI_MANIFEST,
                        subject: dict | None = None) -> Digest:
    digest = Digest.of(body)
    doc = json.loads(body)
    blobs = [Digest.parse(d["digest"]) for d in [doc.get("config"), *doc.get("layers", [])] if d]
    children = [Digest.parse(d["digest"]) for d in doc.get("manifests", [])]
    await store.check_references(name, blobs, children)
    await store.put_manifest(name, body, media_type, digest, [tag] if tag else [], subject,
                             {"mediaType": media_type, "digest": str(digest), "size": len(body)} if subject else None)
    return digest


async def push_image(
    store: RegistryStore, name: str, tag: str | None, seed: bytes
) -> tuple[bytes, Digest, list[Digest]]:
    config, layer = b"config-" + seed, b"layer-" + seed
    blobs = [await push_blob(store, name, config), await push_blob(store, name, layer)]
    body = image_manifest(config, [layer])
    return body, await push_manifest(store, name, body, tag), blobs


async def test_dry_run_lists_exactly_the_unreferenced(store: RegistryStore) -> None:
    _, kept_digest, kept_blobs = await push_image(store, "app", "v1", b"kept")
    _, gone_digest, gone_blobs = await push_image(store, "app", "v2", b"gone")
    orphan = await push_blob(store, "app", b"orphan upload never referenced")
    await store.delete_manifest("app", gone_digest)

    report = await collect_garbage(store, dry_run=True, grace=0)
    expected = {str(d) for d in [*gone_blobs, gone_digest, orphan]}
    assert {d for d, _ in report.blobs} == expected
    for digest in expected:  # dry run changed nothing
        assert await store.blob_exists_globally(Digest.parse(digest)) is not None

    report = await collect_garbage(store, grace=0)
    assert {d for d, _ in report.blobs} == expected
    assert report.bytes_freed > 0
    for digest in expected:
        assert await store.blob_exists_globally(Digest.parse(digest)) is None
    manifest = await store.get_manifest("app", await store.resolve_tag("app", "v1"))
    assert manifest.digest == kept_digest
    for blob in kept_blobs:
        await store.stat_blob("app", blob)
    assert (await collect_garbage(store, grace=0)).blobs == []


async def test_grace_period_spares_new_blobs(store: RegistryStore) -> None:
    await push_blob(store, "app", b"just uploaded, manifest not pushed yet")
    report = await collect_garbage(store, grace=3600)
    assert report.blobs == [] and report.kept_young == 1


async def test_delete_untagged_keeps_index_children_and_referrers(store: RegistryStore) -> None:
    child_body, child, _ = await push_image(store, "app", None, b"child")
    index = image_index([child_body])
    index_digest = await push_manifest(store, "app", index, "multi", OCI_INDEX)
    _, untagged, untagged_blobs = await push_image(store, "app", None, b"untagged")
    empty = await push_blob(store, "app", b"{}")
    sig = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/example.sig",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/vnd.oci.empty.v1+json", b"{}")],
        "subject": {"mediaType": OCI_INDEX, "digest": str(index_digest), "size": len(index)},
    }).encode()
    sig_digest = await push_manifest(store, "app", sig, None,
                                     subject={"mediaType": OCI_INDEX, "digest": str(index_digest)})
    await asyncio.sleep(1.1)

    report = await collect_garbage(store, delete_untagged=True, grace=1)
    assert report.manifests == [("app", str(untagged))]
    assert {d for d, _ in report.blobs} == {str(d) for d in [untagged, *untagged_blobs]}
    for digest in (child, index_digest, sig_digest):
        assert await store.has_manifest("app", digest)
    assert await store.blob_exists_globally(empty) is not None


async def test_push_racing_the_sweep_keeps_its_blobs(store: RegistryStore) -> None:
    """Blobs uploaded earlier and unreferenced: a manifest push referencing them while GC sweeps
    either succeeds with every blob present or fails cleanly."""
    store.mark_interval = 0.4  # the registry's side of the protocol; the GC below runs with grace 1 >= 2x
    config, layer = b"race-config", b"race-layer"
    blobs = [await push_blob(store, "race", config), await push_blob(store, "race", layer)]
    await asyncio.sleep(1.1)
    body = image_manifest(config, [layer])

    async def push() -> bool:
        try:
            await push_manifest(store, "race", body, "t")
            return True
        except ManifestBlobUnknownError:
            return False

    pushed, _ = await asyncio.gather(push(), collect_garbage(store, grace=1))
    if pushed:
        for blob in blobs:
            await store.stat_blob("race", blob)
        assert (await collect_garbage(store, grace=1)).blobs == []


async def test_idle_upload_sessions_purged(store: RegistryStore) -> None:
    upload_id = await store.start_upload("app")
    await store.append_upload("app", upload_id, once(b"partial"), 0)
    assert (await collect_garbage(store, grace=0)).uploads == []  # younger than a day
    report = await collect_garbage(store, grace=0, upload_ttl=0)
    assert report.uploads == [("app", upload_id)]
    with pytest.raises(UploadUnknownError):
        await store.upload_size("app", upload_id)


def test_unparseably_deep_stored_content_references_nothing() -> None:
    """Content stored before pushes bounded nesting (or written by hand) must not crash a GC run."""
    from storage.gc import _references

    refs = _references(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert refs.blobs == [] and refs.children == [] and refs.subject is None
