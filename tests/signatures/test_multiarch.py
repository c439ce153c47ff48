"""Multi-arch images signed once: a platform manifest fetched by digest is judged by the verified index
of the same repository that lists it (trust.index_verdict), for cosign, notation and Notary alike."""

from __future__ import annotations

import json
from typing import Any

from storage.gc import collect_garbage
from storage.references import Digest
from tests.helpers import OCI_INDEX, image_index
from tests.signatures.conftest import REPO, Image, Registry, cosign_policy, notation_policy
from tests.signatures.factory import cosign_legacy, ec_key, make_pki, notation_signature, public_pem, tag_for


async def push_index(registry: Registry, images: list[Image], tag: str = "multi", repo: str = REPO,
                     **extra: Any) -> Image:
    body = image_index([i.manifest.body for i in images], **extra)
    return Image(await registry.put(body, [], [tag] if tag else [], repo))


async def test_platform_manifest_served_by_digest_when_its_index_is_signed(registry_store, make_gate) -> None:
    key = ec_key()
    amd64, arm64 = await registry_store.image("amd64"), await registry_store.image("arm64")
    index = await push_index(registry_store, [amd64, arm64])
    await registry_store.push(cosign_legacy(index.digest, [key]))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, "multi", index.manifest)).served
    for platform in (amd64, arm64):
        assert (await gate.decide(REPO, None, platform.manifest)).served
    # by tag, the tag names the platform manifest itself: judged on its own
    refused = await gate.decide(REPO, "amd64", amd64.manifest)
    assert not refused.served and refused.code == "no signature found"


async def test_inherit_index_false_opts_out(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64])
    await registry_store.push(cosign_legacy(index.digest, [key]))
    policy = cosign_policy(public_pem(key))
    policy["projects"]["secure"]["content_trust"]["inherit_index"] = False
    gate = make_gate(policy)
    assert (await gate.decide(REPO, "multi", index.manifest)).served
    assert not (await gate.decide(REPO, None, amd64.manifest)).served


async def test_unsigned_index_does_not_help(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64])
    await registry_store.push(cosign_legacy(index.digest, [ec_key()]))  # signed, by an untrusted key
    verdict = await make_gate(cosign_policy(public_pem(key))).decide(REPO, None, amd64.manifest)
    assert not verdict.served and verdict.code == "no signature found"
    assert verdict.detail["indexes"] == [{"index": index.digest, "result": verdict.detail["indexes"][0]["result"]}]
    assert "signature does not verify" in verdict.detail["indexes"][0]["result"]


async def test_signed_index_of_another_repository_does_not_help(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    await registry_store.put(amd64.manifest.body, [], ["amd64"], "secure/other")
    index = await push_index(registry_store, [amd64], repo="secure/other")
    await registry_store.push(cosign_legacy(index.digest, [key]), repo="secure/other")
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide("secure/other", None, amd64.manifest)).served
    assert not (await gate.decide(REPO, None, amd64.manifest)).served


async def test_index_entry_with_another_size_does_not_list_the_manifest(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    doc = json.loads(image_index([amd64.manifest.body]))
    doc["manifests"][0]["size"] += 1
    index = Image(await registry_store.put(json.dumps(doc).encode(), [], ["multi"]))
    await registry_store.push(cosign_legacy(index.digest, [key]))
    assert not (await make_gate(cosign_policy(public_pem(key))).decide(REPO, None, amd64.manifest)).served


async def test_ambiguous_index_does_not_list_the_manifest(registry_store, make_gate) -> None:
    """`manifests` and `Manifests` (refused at push today; stored by an older version): Python reads
    the first, Go clients (case-insensitive, last wins) the decoy, so the index lists nothing."""
    key = ec_key()
    amd64, decoy = await registry_store.image("amd64"), await registry_store.image("decoy")
    listed = json.loads(image_index([amd64.manifest.body]))["manifests"]
    other = json.loads(image_index([decoy.manifest.body]))["manifests"]
    body = (f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", '
            f'"manifests": {json.dumps(listed)}, "Manifests": {json.dumps(other)}}}').encode()
    digest = Digest.of(body)
    await registry_store.store.put_manifest(REPO, body, OCI_INDEX, digest, ["multi"], None, None)
    await registry_store.push(cosign_legacy(str(digest), [key]))
    assert await registry_store.store.parents(REPO, amd64.manifest.digest) == [digest]
    assert not (await make_gate(cosign_policy(public_pem(key))).decide(REPO, None, amd64.manifest)).served


async def test_exempt_referrers_tag_index_does_not_pass_its_exemption_on(registry_store, make_gate) -> None:
    """The `<alg>-<hex>` referrers-tag index is served unjudged, but it is not a verified index."""
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64], tag=tag_for(amd64.digest))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, tag_for(amd64.digest), index.manifest)).served
    assert not (await gate.decide(REPO, None, amd64.manifest)).served


async def test_only_one_level_deep(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    inner = await push_index(registry_store, [amd64], tag="inner")
    outer = await push_index(registry_store, [inner], tag="outer")
    await registry_store.push(cosign_legacy(outer.digest, [key]))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert not (await gate.decide(REPO, None, inner.manifest)).served  # an index never inherits
    assert not (await gate.decide(REPO, None, amd64.manifest)).served  # the grandparent is not a parent


async def test_notation_signed_index(registry_store, make_gate) -> None:
    pki = make_pki()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64])
    await registry_store.push(notation_signature(pki, index.subject))
    assert (await make_gate(notation_policy(pki.root_pem())).decide(REPO, None, amd64.manifest)).served


async def test_deleted_index_no_longer_lists(registry_store, make_gate) -> None:
    key = ec_key()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64])
    await registry_store.push(cosign_legacy(index.digest, [key]))
    gate = make_gate(cosign_policy(public_pem(key)))
    assert (await gate.decide(REPO, None, amd64.manifest)).served
    await registry_store.store.delete_manifest(REPO, index.manifest.digest)
    assert await registry_store.store.parents(REPO, amd64.manifest.digest) == []
    assert not (await gate.decide(REPO, None, amd64.manifest)).served


async def test_gc_removes_links_of_collected_indexes(registry_store) -> None:
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64], tag="")
    assert await registry_store.store.parents(REPO, amd64.manifest.digest) == [index.manifest.digest]
    await collect_garbage(registry_store.store, delete_untagged=True, grace=0)
    assert not await registry_store.store.has_manifest(REPO, index.manifest.digest)
    assert await registry_store.store.parents(REPO, amd64.manifest.digest) == []


async def test_storage_check_accepts_parent_links(registry_store) -> None:
    """`trustreg check` knows the `_parents` layout: a pushed index's links are no problem."""
    from registry.check import check_storage

    amd64 = await registry_store.image("amd64")
    await push_index(registry_store, [amd64])
    report = await check_storage(registry_store.store.driver)
    assert report.problems == [], report.problems
