"""The /api/v1/ JSON API on a real loopback server (every storage driver), signatures by the real notary CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import OCI_INDEX, OCI_MANIFEST, descriptor, digest_of, image_index
from tests.ui.conftest import ENFORCED, REPO, SignedRepo, push

TAGS = f"/api/v1/repositories/{REPO}/tags"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_tag_reports_every_field(signed_repo: SignedRepo) -> None:
    resp = await signed_repo.client.get(TAGS)
    assert resp.status == 200
    reports = {r["tag"]: r for r in await resp.json()}
    assert list(reports) == ["moved", "signed", "unsigned"]  # sorted like the tags list
    now = datetime.now(UTC)
    for tag, r in reports.items():
        assert set(r) == {"tag", "digest", "mediaType", "kind", "artifactType", "platforms", "size", "pushed",
                          "signatures", "decision"}
        assert r["digest"] == signed_repo.digests[tag]
        assert r["mediaType"] == OCI_MANIFEST and r["kind"] == "image" and r["artifactType"] == ""
        assert r["platforms"] == ["linux/amd64"]
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": "moved again" if tag == "moved" else tag})
        layer = f"layer {'moved again' if tag == 'moved' else tag}"
        assert r["size"] == signed_repo.sizes[tag] + len(config) + len(layer)
        assert abs(when(r["pushed"]) - now) < timedelta(minutes=5)
        assert [s["source"] for s in r["signatures"]] == ["notary"]
        assert set(r["signatures"][0]) == {"source", "status", "signer", "keyids", "expires", "reason"}

    signed = reports["signed"]
    sig = signed["signatures"][0]
    assert sig["status"] == "signed" and sig["signer"] == "targets" and sig["reason"] == ""
    assert len(sig["keyids"]) == 1 and len(sig["keyids"][0]) == 64
    assert when(sig["expires"]) > now  # earliest expiry of the verified metadata (the timestamp)
    assert signed["decision"] == {"served": True, "reason": "signed"}

    unsigned = reports["unsigned"]
    assert unsigned["signatures"][0]["status"] == "unsigned"
    assert unsigned["signatures"][0]["reason"] == "tag not signed"
    assert unsigned["decision"] == {"served": False, "reason": "tag not signed"}

    moved = reports["moved"]
    why = f"signed for another digest: targets signs moved as {signed_repo.moved_from}"
    assert moved["signatures"][0]["status"] == "invalid"
    assert moved["signatures"][0]["signer"] == "targets"
    assert moved["signatures"][0]["reason"] == why
    assert moved["decision"] == {"served": False, "reason": why}


async def test_decisions_match_real_pulls(signed_repo: SignedRepo) -> None:
    """The API's decision is the gate's: a pull of each tag gets exactly that answer."""
    client = signed_repo.client
    for r in await (await client.get(TAGS)).json():
        pull = await client.get(f"/v2/{REPO}/manifests/{r['tag']}")
        if r["decision"]["served"]:
            assert pull.status == 200
        else:
            assert pull.status == 412
            assert (await pull.json())["errors"][0]["detail"]["reason"] == r["decision"]["reason"]


async def test_single_tag_and_unknowns(signed_repo: SignedRepo) -> None:
    client = signed_repo.client
    resp = await client.get(f"{TAGS}/signed")
    assert resp.status == 200
    assert (await resp.json())["decision"]["served"] is True
    resp = await client.get(f"{TAGS}/nope")
    assert resp.status == 404 and (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    resp = await client.get("/api/v1/repositories/secure/none/tags")
    assert resp.status == 404 and (await resp.json())["errors"][0]["code"] == "NAME_UNKNOWN"
    resp = await client.get("/api/v1/repositories/Bad_Name/tags")
    assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == "NAME_INVALID"


async def test_pagination_like_the_tags_list(signed_repo: SignedRepo) -> None:
    client = signed_repo.client
    resp = await client.get(TAGS, params={"n": "2"})
    assert [r["tag"] for r in await resp.json()] == ["moved", "signed"]
    assert resp.headers["Link"] == f'</api/v1/repositories/{REPO}/tags?n=2&last=signed>; rel="next"'
    resp = await client.get(resp.headers["Link"].split(";")[0].strip("<>"))
    assert [r["tag"] for r in await resp.json()] == ["unsigned"]
    assert "Link" not in resp.headers
    resp = await client.get(TAGS, params={"last": "moved"})
    assert [r["tag"] for r in await resp.json()] == ["signed", "unsigned"] and "Link" not in resp.headers
    resp = await client.get(TAGS, params={"n": "3"})
    assert len(await resp.json()) == 3 and "Link" not in resp.headers
    resp = await client.get(TAGS, params={"n": "x"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


async def test_manifest_by_digest(signed_repo: SignedRepo) -> None:
    client = signed_repo.client
    digest = signed_repo.digests["signed"]
    # an artifact referring to the signed image (an SBOM, say)
    sbom = b'{"sbom":true}'
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest_of(sbom)}", data=sbom)
    assert resp.status == 201
    subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": signed_repo.sizes["signed"]}
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(b"{}"), "size": 2},
        "layers": [descriptor("application/spdx+json", sbom)], "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }).encode()
    resp = await client.post(f"/v2/{REPO}/blobs/uploads/?digest={digest_of(b'{}')}", data=b"{}")
    resp = await client.put(f"/v2/{REPO}/manifests/{digest_of(artifact)}", data=artifact,
                            headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()

    resp = await client.get(f"/api/v1/repositories/{REPO}/manifests/{digest}")
    assert resp.status == 200
    r = await resp.json()
    assert r["digest"] == digest and r["kind"] == "image" and r["tags"] == ["signed"]
    assert r["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [layer["mediaType"] for layer in r["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert r["decision"] == {"served": True, "reason": "signed"}  # by digest: targets signs that digest
    assert r["signatures"][0]["status"] == "signed" and r["signed_tags"] == [{"tag": "signed", "role": "targets"}]
    assert [d["digest"] for d in r["referrers"]] == [digest_of(artifact)]
    assert r["referrers"][0]["artifactType"] == "application/spdx+json"

    r = await (await client.get(f"/api/v1/repositories/{REPO}/manifests/{digest_of(artifact)}")).json()
    assert r["kind"] == "artifact" and r["artifactType"] == "application/spdx+json"
    assert r["subject"]["digest"] == digest and r["tags"] == []
    assert r["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert r["decision"] == {"served": False, "reason": "digest not signed: no trusted role signs this manifest"}

    resp = await client.get(f"/api/v1/repositories/{REPO}/manifests/{signed_repo.moved_from}")
    r = await resp.json()  # still stored, no tag: by digest it is what `moved` was signed for
    assert r["tags"] == [] and r["decision"]["served"] is True
    resp = await client.get(f"/api/v1/repositories/{REPO}/manifests/sha256:{'0' * 64}")
    assert resp.status == 404
    resp = await client.get(f"/api/v1/repositories/{REPO}/manifests/nope")
    assert resp.status == 400


async def test_index_platforms_and_children(registry) -> None:
    client = await registry(ENFORCED)
    children = []
    for arch in ("amd64", "arm64"):
        _, body = await push(client, "open/multi", arch, arch)
        children.append(body)
    index = image_index(children)
    resp = await client.put("/v2/open/multi/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX})
    assert resp.status == 201
    r = await (await client.get("/api/v1/repositories/open/multi/tags/multi")).json()
    assert r["kind"] == "index" and r["platforms"] == ["linux/amd64", "linux/arm64"]
    child_total = sum(len(c) for c in children) + sum(
        len(json.dumps({"architecture": "amd64", "os": "linux", "seed": a})) + len(f"layer {a}")
        for a in ("amd64", "arm64"))
    assert r["size"] == len(index) + child_total
    # project `open` does not enforce: served, and Notary knows nothing about it
    assert r["decision"] == {"served": True, "reason": "content trust not enforced in this project"}
    assert r["signatures"][0]["status"] == "unsigned"
    assert r["signatures"][0]["reason"].startswith("no trust data")
    m = await (await client.get(f"/api/v1/repositories/open/multi/manifests/{digest_of(index)}")).json()
    assert [c["platform"]["architecture"] for c in m["manifests"]] == ["amd64", "arm64"]
    assert m["layers"] == [] and m["config"] is None


async def test_projects_and_policies(registry) -> None:
    config = {"projects": {
        "secure": {"content_trust": {"enforce": True, "signers": ["targets/releases"], "root_keys": ["ab" * 32],
                                     "inherit_index": False}},
        "pub": {"public": True},
    }}
    client = await registry(config)
    await push(client, "secure/app", "1", "a")
    await push(client, "other/app", "1", "b")
    await push(client, "alpine", "1", "c")
    resp = await client.get("/api/v1/projects")
    assert resp.status == 200
    projects = {p["name"]: p for p in await resp.json()}
    assert list(projects) == ["library", "other", "pub", "secure"]
    usage = projects["secure"].pop("usage")  # (quotas: tests/hygiene/test_quota.py)
    assert usage["quota"] is None and usage["bytes"] > 0
    assert projects["secure"] == {
        "name": "secure", "public": False, "repositories": ["secure/app"],
        "content_trust": {"enforced": True, "sources": ["notary"], "signers": ["targets/releases"],
                          "root_keys": ["ab" * 32], "inherit_index": False,
                          "require_any": [{"source": "notary", "signers": ["targets/releases"],
                                           "root_keys": ["ab" * 32], "inherit_index": False}]},
    }
    assert projects["pub"]["public"] is True and projects["pub"]["repositories"] == []
    assert projects["library"]["repositories"] == ["alpine"]
    assert projects["other"]["content_trust"]["enforced"] is False
    assert projects["other"]["content_trust"]["signers"] == ["targets/releases", "targets"]


def test_cosign_and_notation_entries() -> None:
    """Other sources' answers (the gate's own `SourceResult`s) as signature entries."""
    sources = pytest.importorskip("trust.sources")
    from registry.api.inspect import source_signature

    until = datetime(2030, 1, 1, tzinfo=UTC)
    ok = source_signature("cosign", sources.SourceResult(True, detail={"trust_root": "ci", "keys": ["k1"]},
                                                         valid_until=until))
    assert (ok.status, ok.signer, ok.keyids, ok.expires, ok.reason) == ("signed", "trust root ci", ("k1",),
                                                                         "2030-01-01T00:00:00Z", "")
    none = source_signature("notation", sources.SourceResult(False, "no signature found: none refers to it"))
    assert (none.source, none.status, none.reason) == ("notation", "unsigned", "no signature found: none refers to it")
    bad = source_signature("cosign", sources.SourceResult(False, "signed by an untrusted key: k", {"trust_root": "ci"}))
    assert (bad.status, bad.signer) == ("invalid", "trust root ci")
