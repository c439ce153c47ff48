"""`trustreg check`: each kind of problem is found on every driver, and --repair removes exactly the
provably broken objects and nothing else."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from registry.check import CheckReport, check_storage
from registry.cli import main
from storage.base import StorageDriver
from storage.filesystem import FilesystemDriver
from storage.references import Digest
from storage.store import RegistryStore, blob_key
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.reliability.support import TrustPublisher
from trust.server import NotaryService
from trust.timeutil import utcnow

REPO = "lib/app"
GUN = f"registry.test/{REPO}"
CONFIG, LAYER = b'{"config":1}', b"layer bytes " * 100


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Fixture:
    """A store with one signed, tagged image, a referrer and a second tag."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.store = RegistryStore(driver)
        self.manifest = image_manifest(CONFIG, [LAYER])
        self.digest = Digest.parse(digest_of(self.manifest))
        self.referrer = image_manifest(CONFIG, [], subject={"mediaType": OCI_MANIFEST, "digest": str(self.digest),
                                                            "size": len(self.manifest)})

    async def build(self) -> Fixture:
        for blob in (CONFIG, LAYER):
            await self.store.put_blob(REPO, once(blob), Digest.of(blob))
        await self.put(self.manifest, ["v1", "latest"])
        ref_digest = Digest.of(self.referrer)
        subject = json.loads(self.referrer)["subject"]
        await self.store.put_manifest(REPO, self.referrer, OCI_MANIFEST, ref_digest, [], subject,
                                      {"mediaType": OCI_MANIFEST, "digest": str(ref_digest), "size": 1})
        service = NotaryService(self.driver, "pw")
        publisher = TrustPublisher(GUN)

        async def get_key(role: str) -> dict:  # type: ignore[type-arg]
            return await service.get_key(REPO, role)

        await service.publish(REPO, GUN, await publisher.parts(get_key, "v1", str(self.digest), len(self.manifest)))
        return self

    async def put(self, body: bytes, tags: list[str]) -> Digest:
        digest = Digest.of(body)
        await self.store.put_manifest(REPO, body, OCI_MANIFEST, digest, tags, None, None)
        return digest

    async def snapshot(self) -> dict[str, bytes]:
        return {k: await self.driver.get(k) async for k in self.driver.walk("")}


@pytest.fixture
async def fx(make_driver) -> AsyncIterator[Fixture]:  # type: ignore[no-untyped-def]
    driver = make_driver()
    yield await Fixture(driver).build()
    await driver.close()


def kinds(report: CheckReport) -> list[str]:
    return sorted(p.kind for p in report.problems)


async def test_clean_storage_has_no_problems(fx: Fixture) -> None:
    report = await check_storage(fx.driver)
    assert report.problems == [], [str(p) for p in report.problems]
    assert (report.blobs, report.repositories, report.manifests, report.tags, report.collections) == (4, 1, 2, 2, 1)
    assert report.ok


async def test_expired_server_timestamp_is_not_a_problem(fx: Fixture) -> None:
    """The server re-signs an expired timestamp on the next read; check verifies the rest."""
    report = await check_storage(fx.driver, clock=lambda: utcnow() + timedelta(days=30))
    assert report.problems == []


async def test_corrupt_blob_found_and_repaired(fx: Fixture) -> None:
    layer = Digest.of(LAYER)
    await fx.driver.put(blob_key(layer), b"flipped bits " * 100)
    before = await fx.snapshot()
    report = await check_storage(fx.driver)
    assert kinds(report) == ["corrupt-blob"]
    assert report.problems[0].key == blob_key(layer) and not report.ok
    assert await fx.snapshot() == before  # without --repair nothing changes

    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["corrupt-blob", "dangling-link"]
    assert report.ok and all(p.repaired for p in report.problems)
    after = await fx.snapshot()
    removed = set(before) - set(after)
    assert removed == {blob_key(layer), f"repositories/{REPO}/_layers/sha256/{layer.hex}",
                       blob_key(layer).replace("/data", "/ref")} & set(before)
    assert all(after[k] == before[k] for k in after)
    assert (await check_storage(fx.driver)).problems == []


async def test_corrupt_manifest_takes_its_tags_with_it(fx: Fixture) -> None:
    await fx.driver.put(blob_key(fx.digest), b'{"torn":')
    report = await check_storage(fx.driver)
    assert "corrupt-blob" in kinds(report)
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["corrupt-blob", "dangling-revision", "dangling-tag", "dangling-tag"]
    assert await fx.store.list_tags(REPO) == []
    assert (await check_storage(fx.driver)).problems == []
    # the referrer manifest itself, the config blob and the trust data are untouched
    assert await fx.store.has_manifest(REPO, Digest.of(fx.referrer))
    assert await fx.store.blob_exists_globally(Digest.of(CONFIG)) == len(CONFIG)


async def test_link_to_missing_blob(fx: Fixture) -> None:
    ghost = Digest.of(b"never pushed")
    await fx.store.link_blob(REPO, ghost)
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["dangling-link"] and report.ok
    assert await fx.driver.list(f"repositories/{REPO}/_layers/sha256") == sorted(
        d.hex for d in (Digest.of(CONFIG), Digest.of(LAYER)))


async def test_tag_pointing_at_missing_manifest(fx: Fixture) -> None:
    ghost = Digest.of(b"no such manifest")
    await fx.driver.put(f"repositories/{REPO}/_manifests/tags/ghost", str(ghost).encode())
    await fx.driver.put(f"repositories/{REPO}/_manifests/tags/garbage", b"\xff\x00not a digest")
    report = await check_storage(fx.driver)
    assert kinds(report) == ["dangling-tag", "dangling-tag"]
    await check_storage(fx.driver, repair=True)
    assert await fx.store.list_tags(REPO) == ["latest", "v1"]


async def test_revision_without_content(fx: Fixture) -> None:
    other = image_manifest(CONFIG, [LAYER], annotations={"x": "y"})
    digest = await fx.put(other, ["other"])
    await fx.driver.delete(blob_key(digest))
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["dangling-revision", "dangling-tag"]
    assert not await fx.store.has_manifest(REPO, digest)
    assert await fx.store.list_tags(REPO) == ["latest", "v1"]


async def test_manifest_that_does_not_parse_is_reported_not_removed(fx: Fixture) -> None:
    body = b"this is not json"
    digest = await fx.put(body, ["junk"])
    other = json.dumps({"mediaType": "application/vnd.docker.distribution.manifest.v2+json"}).encode()
    await fx.put(other, [])
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["bad-manifest", "bad-manifest"]
    assert not report.ok and not any(p.repaired for p in report.problems)
    assert await fx.store.resolve_tag(REPO, "junk") == digest


async def test_referrer_entry_for_missing_manifest(fx: Fixture) -> None:
    ghost = Digest.of(b"ghost referrer")
    key = f"repositories/{REPO}/_referrers/sha256/{fx.digest.hex}/sha256-{ghost.hex}"
    await fx.driver.put(key, json.dumps({"digest": str(ghost)}).encode())
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["dangling-referrer"] and report.ok
    assert [d["digest"] for d in await fx.store.referrers(REPO, fx.digest)] == [str(Digest.of(fx.referrer))]


async def test_tampered_trust_data_is_reported_never_touched(fx: Fixture) -> None:
    current = json.loads(await fx.driver.get(f"trust/{REPO}/_tuf/current.json"))
    version = current["roles"]["targets"]["version"]
    key = f"trust/{REPO}/_tuf/roles/targets/{version}.json"
    doc = json.loads(await fx.driver.get(key))
    doc["signed"]["targets"]["evil"] = doc["signed"]["targets"]["v1"]
    await fx.driver.put(key, json.dumps(doc).encode())
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["bad-trust"] and "checksum" in report.problems[0].message
    assert not report.ok

    # same bytes recorded in the pointer (an attacker rewriting storage): the signature check catches it
    import hashlib

    current["roles"]["targets"]["sha256"] = hashlib.sha256(await fx.driver.get(key)).hexdigest()
    await fx.driver.put(f"trust/{REPO}/_tuf/current.json", json.dumps(current).encode())
    report = await check_storage(fx.driver, repair=True)
    assert kinds(report) == ["bad-trust"] and "does not verify" in report.problems[0].message
    assert json.loads(await fx.driver.get(key)) == doc


async def test_missing_trust_role_version(fx: Fixture) -> None:
    current = json.loads(await fx.driver.get(f"trust/{REPO}/_tuf/current.json"))
    await fx.driver.delete(f"trust/{REPO}/_tuf/roles/snapshot/{current['roles']['snapshot']['version']}.json")
    report = await check_storage(fx.driver)
    assert kinds(report) == ["bad-trust"] and "missing" in report.problems[0].message


async def test_torn_temp_files_old_removed_young_kept(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path / "data"))
    fx = await Fixture(driver).build()
    root = Path(driver.root)
    blob_dir = root / "blobs" / "sha256" / Digest.of(LAYER).hex[:2]
    old_file = blob_dir / ".tmp-0123abcd"
    old_file.write_bytes(b"half a blob")
    old_tree = root / "repositories" / REPO / ".tmp-deadbeef"
    (old_tree / "_manifests" / "tags").mkdir(parents=True)
    (old_tree / "_manifests" / "tags" / "v0").write_bytes(b"sha256:...")
    young = blob_dir / ".tmp-young"
    young.write_bytes(b"being written right now")
    past = time.time() - 3600
    for p in (old_file, old_tree / "_manifests" / "tags" / "v0"):
        os.utime(p, (past, past))
    before = await fx.snapshot()

    report = await check_storage(driver)
    assert kinds(report) == ["torn-temp", "torn-temp"]
    report = await check_storage(driver, repair=True)
    assert report.ok
    assert not old_file.exists() and not old_tree.exists() and young.exists()
    after = await fx.snapshot()
    assert {k: v for k, v in before.items() if ".tmp-" not in k} == {k: v for k, v in after.items() if ".tmp-" not in k}


def test_cli_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    data = tmp_path / "data"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"root": str(data)}}}))
    driver = FilesystemDriver(str(data))
    asyncio.run(Fixture(driver).build())
    assert main(["check", "--config", str(config)]) == 0
    assert "0 problems" in capsys.readouterr().out

    ghost = Digest.of(b"ghost")
    (data / "repositories" / REPO / "_manifests" / "tags" / "ghost").write_text(str(ghost))
    assert main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dangling-tag: tag lib/app:ghost points at missing manifest") and "1 problems" in out[-1]
    assert main(["check", "--config", str(config), "--repair"]) == 0
    assert "(removed)" in capsys.readouterr().out
    assert main(["check", "--config", str(config)]) == 0
