"""Retention: tags outside the rules go, with their signatures and referrers; signed tags stay."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.loader import parse_settings
from registry.app import create_app
from registry.enforcement import GATE
from registry.handlers.common import STORE
from registry.retention import apply_retention, retention_from_settings
from storage.references import Digest
from tests.e2e.conftest import image, test_image  # noqa: F401  (fixtures)
from tests.helpers import OCI_MANIFEST, digest_of, image_index, image_manifest
from tests.registry.test_api import push_image as push_plain
from tests.signatures.conftest import cosign_policy
from tests.signatures.factory import cosign_bundle, cosign_legacy, ec_key, public_pem, tag_for
from tests.signatures.test_http import NAME, push, push_artifact, push_image


async def test_retention_keeps_signed_and_deletes_unsigned_with_its_signatures(registry) -> None:
    key, stranger = ec_key(), ec_key()
    config = cosign_policy(public_pem(key))
    config["projects"]["secure"]["retention"] = {"keep_last": 1, "keep_tags": ["v*"], "keep_signed": True}
    client = await registry(config)
    images = {}
    for tag in ("v1", "old-signed", "old", "latest"):  # oldest push first
        images[tag] = await push_image(client, tag)
        await asyncio.sleep(1.05)  # distinct push times on every driver (S3: second resolution)
    good_sig = await push_artifact(client, cosign_legacy(images["old-signed"]["digest"], [key]))
    bad_sig = await push_artifact(client, cosign_legacy(images["old"]["digest"], [stranger]))  # does not verify
    bundle = await push_artifact(client, cosign_bundle(images["old"], stranger))
    kept_referrer = await push_artifact(client, cosign_bundle(images["latest"], stranger))  # its subject stays
    store, gate = client.server.app[STORE], client.server.app[GATE]

    async def present(digest: str) -> bool:
        return await store.has_manifest(NAME, Digest.parse(digest))

    immutable = {**config, "projects": {"secure": {**config["projects"]["secure"], "immutable_tags": ["ol*"]}}}
    assert (await apply_retention(store, gate, immutable, dry_run=True)).tags == []  # immutable tags stay
    dry = await apply_retention(store, gate, config, dry_run=True)
    old = images["old"]["digest"]
    assert dry.tags == [(NAME, "old", old)]
    assert sorted(d for _, d in dry.manifests) == sorted([old, bad_sig, bundle])
    assert await present(old) and await present(bad_sig) and await present(bundle)

    report = await apply_retention(store, gate, config)
    assert report.tags == dry.tags and sorted(report.manifests) == sorted(dry.manifests)
    assert not await present(old) and not await present(bad_sig) and not await present(bundle)
    tags = set(await store.list_tags(NAME))
    assert tags == {"v1", "old-signed", "latest", tag_for(images["old-signed"]["digest"], ".sig")}
    assert await present(good_sig) and await present(kept_referrer)
    assert (await client.get(f"/v2/{NAME}/manifests/old-signed")).status == 200  # still signed, still served
    assert await store.referrers(NAME, Digest.parse(old)) == []
    assert (await apply_retention(store, gate, config)).tags == []  # nothing more to do


LOOSE = digest_of(image_manifest(b'{"architecture":"amd64","os":"linux"}3', [b"layer-bytes3"]))


async def _two_tags(tmp_path: Path) -> tuple[dict, Path, str]:  # type: ignore[type-arg]
    """Project `app` keeping the last tag; `app/web:one` pushed, then (a second later) `app/web:two`, and
    the untagged `app/web@LOOSE`.
    Returns the configuration, the storage root and the digest of `one`."""
    root = tmp_path / "data"
    config = {"storage": {"filesystem": {"root": str(root)}}, "trust": {"keys": {"insecure_dev_passphrase": True}},
              "projects": {"app": {"retention": {"keep_last": 1}}}}
    client = TestClient(TestServer(create_app(parse_settings(config))))
    await client.start_server()
    try:
        _, first = await push_plain(client, "app/web", "one", b"1")
        await asyncio.sleep(1.05)
        await push_plain(client, "app/web", "two", b"2")
        await push_plain(client, "app/web", LOOSE, b"3")  # untagged
    finally:
        await client.close()
    return config, root, first


async def test_retention_from_settings_on_stopped_storage(tmp_path: Path) -> None:
    """What `trustreg gc --retention` will run: the configured storage, the server's own gate."""
    config, root, first = await _two_tags(tmp_path)
    settings = parse_settings(config)
    report = await retention_from_settings(settings)
    assert report.tags == [("app/web", "one", first)]
    assert not (root / "repositories" / "app" / "web" / "_manifests" / "tags" / "one").exists()
    assert (root / "repositories" / "app" / "web" / "_manifests" / "tags" / "two").exists()


async def test_gc_retention_command(tmp_path: Path) -> None:
    """`trustreg gc --retention`: a dry run lists the tag the rules let go and the untagged manifest
    (`delete_untagged`) and changes nothing; the real run deletes them (and then sweeps, offline with
    grace 0, which retention's untagged pass honours too)."""
    import subprocess
    import sys

    import yaml

    config, root, first = await _two_tags(tmp_path)
    config["projects"]["app"]["retention"]["delete_untagged"] = True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    tags = root / "repositories" / "app" / "web" / "_manifests" / "tags"

    def gc(*extra: str) -> str:
        result = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--config", str(path), "--retention",
                                 "--offline", "--grace", "0", *extra], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    dry = gc("--dry-run")
    assert f"would delete tag app/web:one ({first}) by retention" in dry
    assert f"would delete manifest app/web@{LOOSE} by retention" in dry
    loose = root / "repositories" / "app" / "web" / "_manifests" / "revisions" / "sha256" / LOOSE.split(":")[1]
    assert (tags / "one").exists() and loose.exists()
    done = gc()
    assert f"deleted tag app/web:one ({first}) by retention" in done
    assert f"deleted manifest app/web@{LOOSE} by retention" in done
    assert not (tags / "one").exists() and (tags / "two").exists() and not loose.exists()


async def test_delete_untagged_keeps_what_kept_manifests_need(registry) -> None:
    """`delete_untagged`: an untagged image goes with its signature and referrer, an untagged index with
    its platform manifest; a tagged multi-arch image keeps its platform manifests (untagged themselves),
    its index signature, and a kept image keeps its signature and referrers. Young manifests are spared."""
    key = ec_key()
    config = cosign_policy(public_pem(key))
    config["projects"]["secure"]["retention"] = {"delete_untagged": True}
    client = await registry(config)
    tagged = await push_image(client, "v1")
    kept = {tagged["digest"], await push_artifact(client, cosign_legacy(tagged["digest"], [key])),
            await push_artifact(client, cosign_bundle(tagged, key))}
    platforms = [image_manifest(f'{{"p":{i}}}'.encode(), [f"platform {i}".encode()]) for i in range(2)]
    for i, body in enumerate(platforms):
        kept.add(await push(client, body, [f'{{"p":{i}}}'.encode(), f"platform {i}".encode()], digest_of(body)))
    index = await push(client, image_index(platforms), [], "multi")
    kept |= {index, await push_artifact(client, cosign_legacy(index, [key]))}

    loose_body = image_manifest(b'{"loose":1}', [b"loose"])
    loose = await push(client, loose_body, [b'{"loose":1}', b"loose"], digest_of(loose_body))
    loose_subject = {"mediaType": OCI_MANIFEST, "digest": loose, "size": len(loose_body)}
    child_body = image_manifest(b'{"child":1}', [b"child"])
    child = await push(client, child_body, [b'{"child":1}', b"child"], digest_of(child_body))
    gone = {loose, await push_artifact(client, cosign_legacy(loose, [key])),
            await push_artifact(client, cosign_bundle(loose_subject, key)),
            child, await push(client, image_index([child_body]), [], digest_of(image_index([child_body])))}
    store, gate = client.server.app[STORE], client.server.app[GATE]

    assert (await apply_retention(store, gate, config, dry_run=True)).manifests == []  # all younger than 1 h
    dry = await apply_retention(store, gate, config, dry_run=True, grace=0)
    assert dry.tags == [] and {d for _, d in dry.manifests} == gone
    assert all([await store.has_manifest(NAME, Digest.parse(d)) for d in gone])
    report = await apply_retention(store, gate, config, grace=0)
    assert sorted(report.manifests) == sorted(dry.manifests)
    assert not any([await store.has_manifest(NAME, Digest.parse(d)) for d in gone])
    assert all([await store.has_manifest(NAME, Digest.parse(d)) for d in kept])
    signature_tags = {tag_for(tagged["digest"], ".sig"), tag_for(index, ".sig")}
    assert set(await store.list_tags(NAME)) == {"v1", "multi", *signature_tags}
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 200  # still signed, still served
    assert (await client.get(f"/v2/{NAME}/manifests/{digest_of(platforms[0])}")).status == 200  # by its index
    assert (await apply_retention(store, gate, config, grace=0)).manifests == []


def test_delete_untagged_with_real_clients(test_image: Path, tmp_path: Path) -> None:  # noqa: F811
    """skopeo pushes, the real cosign signs: an image untagged after its cosign `.sig` was pushed goes
    with it through `trustreg gc --retention`; the tagged image keeps its bundle signature (the real
    `cosign verify` still accepts it) and a multi-arch image whose index alone is signed keeps its
    untagged platform manifests (containerd-style pulls by digest still served)."""
    import subprocess
    import sys

    from tests.e2e.test_keyless import push_multi
    from tests.e2e.test_signatures import ALICE, CAROL, cosign_sign, cosign_verify, make_env

    members = {ALICE[0]: ["pull", "push", "delete"], CAROL[0]: ["pull"]}
    cosign = {"cosign": {"trust_root": "ci"}}
    project = {"members": members, "content_trust": {"enforce": True, "require_any": [cosign]},
               "retention": {"delete_untagged": True}}
    e = make_env(test_image, tmp_path, extra={"projects": {"cosigned": project}})
    try:
        addr = e.server.addr
        kept = e.push("cosigned/app")
        cosign_sign(e, "ci", f"{addr}/cosigned/app@{kept}")  # a bundle referrer
        index = push_multi(e, "cosigned/multi")
        cosign_sign(e, "ci", f"{addr}/cosigned/multi@{index}", "--new-bundle-format=false")
        e.run("skopeo", "copy", "--dest-tls-verify=false", f"--dest-creds={ALICE[0]}:{ALICE[1]}",
              f"oci:{e.image}/oci:v1-arm64", f"docker://{addr}/cosigned/app:tmp")
        loose = e.digests["ARM64_MANIFEST"]
        cosign_sign(e, "ci", f"{addr}/cosigned/app@{loose}", "--new-bundle-format=false")  # a `.sig` tag
        loose_sig = json.loads(e.http("GET", f"/v2/cosigned/app/manifests/{tag_for(loose, '.sig')}"))
        e.http("DELETE", "/v2/cosigned/app/manifests/tmp")

        def gc(*extra: str) -> str:
            result = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--config", str(e.server.config_path),
                                     "--retention", "--offline", "--grace", "0", *extra],
                                    capture_output=True, text=True, timeout=120,
                                    env={**os.environ, "TRUSTREG_TRUST_PASSPHRASE": "e2e-test-passphrase"})
            assert result.returncode == 0, result.stderr
            return "\n".join(line for line in result.stdout.splitlines() if "by retention" in line)

        dry = gc("--dry-run")
        assert f"would delete manifest cosigned/app@{loose} by retention" in dry, dry
        assert len(dry.splitlines()) == 2, dry  # the image and its `.sig` manifest, nothing else
        assert loose_sig["layers"] and e.http("GET", f"/v2/cosigned/app/manifests/{loose}")
        assert dry.replace("would delete", "deleted") == gc()
        with pytest.raises(urllib.error.HTTPError):
            e.http("GET", f"/v2/cosigned/app/manifests/{loose}")
        tags = json.loads(e.http("GET", "/v2/cosigned/app/tags/list"))["tags"]
        assert tags == ["v1"], tags  # the bundle signature is a referrer, not a tag
        cosign_verify(e, e.keys / "ci.pub", f"{addr}/cosigned/app:v1")
        cosign_verify(e, e.keys / "ci.pub", f"{addr}/cosigned/multi:v1")
        e.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"--creds={CAROL[0]}:{CAROL[1]}",
              f"docker://{addr}/cosigned/multi@{e.digests['AMD64_MANIFEST']}")  # served on its index's verdict
    finally:
        e.server.stop()
