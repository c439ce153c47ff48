"""The OCI distribution-spec conformance sequences, replayed against a real trustreg server.

The upstream conformance suite (opencontainers/distribution-spec, `conformance/`) is Go and cannot be
built here, so this module re-expresses its request sequences and the checks it makes, organised by
its four workflows: pull, push, content discovery (tags and referrers) and content management
(deletion). Like the suite, every workflow has a setup, the checks, and a teardown whose order is
controlled by OCI_DELETE_MANIFEST_BEFORE_BLOBS (here: the `delete_order` parameter). A final test
runs all four workflows in order in one namespace, as the suite does, so that the workflows see each
other's leftovers. A last section covers the checks added by the rewritten suite (range requests,
bad-digest uploads, out-of-order chunk recovery, manifest error conditions).

Where the suite tolerates several answers (e.g. 201 or 202 for a monolithic POST) the tolerated set
is written out, so a failure here is a failure there. Checks already covered in tests/registry are
not repeated outside these sequences.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import tarfile
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.conftest import ClientFactory
from tests.helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, digest_of

NAMESPACE = "conformance/oci"  # OCI_NAMESPACE
CROSSMOUNT_NAMESPACE = "conformance-crossmount"  # OCI_CROSSMOUNT_NAMESPACE
OCTET = "application/octet-stream"
EMPTY_JSON_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
DUMMY_DIGEST = digest_of(b"hello world")  # never pushed
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"  # the suite's "nonexistent manifest" reference
TEST_TAG = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
ARTIFACT_TYPE_A = "application/vnd.example.conformance.a"
ARTIFACT_TYPE_B = "application/vnd.example.conformance.b"
ARTIFACT_TYPE_INDEX = "application/vnd.example.conformance.index"

# The error codes the suite recognises in an error body (the spec's list plus TAG_INVALID).
ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN",
    "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
}

SUCCESS = range(200, 300)
OK_OR_405 = (*SUCCESS, 405)
OK_404_OR_405 = (*SUCCESS, 404, 405)



# --- test data -----------------------------------------------------------------------------------


@dataclass
class Blob:
    content: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


def _pretty(doc: dict[str, Any]) -> bytes:
    """The suite sends indented JSON; digests are over these exact bytes."""
    return json.dumps(doc, indent="\t").encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _descriptor(media_type: str, blob: Blob | bytes, **extra: Any) -> dict[str, Any]:
    content = blob.content if isinstance(blob, Blob) else blob
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


def _layer_tarball() -> bytes:
    """A tiny gzipped tar holding one text file (deterministic bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        payload = b"conformance layer payload\n"
        info = tarfile.TarInfo("test.txt")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@dataclass
class SuiteData:
    """What the suite generates at start-up: one config and one image manifest per workflow, a layer,
    an empty-layer manifest, blobs for uploads, and the artifacts pointing at manifests[4]."""

    configs: list[Blob] = field(default_factory=list)
    manifests: list[Blob] = field(default_factory=list)
    layer: Blob = field(default_factory=lambda: Blob(_layer_tarball()))
    empty_layer_manifest: Blob = field(default_factory=lambda: Blob(b""))
    blob_a: Blob = field(default_factory=lambda: Blob(os.urandom(42)))
    blob_b: Blob = field(default_factory=lambda: Blob(b""))
    chunk1: bytes = b""
    chunk2: bytes = b""
    ref_blob_a: Blob = field(default_factory=lambda: Blob(b"conformance referrer blob A"))
    ref_blob_b: Blob = field(default_factory=lambda: Blob(b"conformance referrer blob B, a little longer"))
    refs: dict[str, Blob] = field(default_factory=dict)  # AConfig, ALayer, BConfig, BLayer, C, Index
    annotations: dict[str, str] = field(default_factory=dict)  # referrer digest -> annotation value

    def chunked_blob(self, size: int) -> None:
        """The chunked-upload blob, cut after size/2+1 bytes (the suite's split)."""
        self.blob_b = Blob(os.urandom(size))
        cut = size // 2 + 1
        self.chunk1, self.chunk2 = self.blob_b.content[:cut], self.blob_b.content[cut:]

    @property
    def chunk1_range(self) -> str:
        return f"0-{len(self.chunk1) - 1}"

    @property
    def chunk2_range(self) -> str:
        return f"{len(self.chunk1)}-{len(self.blob_b.content) - 1}"


def make_suite_data(chunk_size: int = 42) -> SuiteData:
    data = SuiteData()
    for _ in range(5):  # unique config per workflow: a random author
        config = {
            "author": secrets.token_urlsafe(12),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        data.configs.append(Blob(_pretty(config)))
    layer_desc = _descriptor(OCI_LAYER, data.layer, newUnspecifiedField=None)
    for config in data.configs:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(
                OCI_CONFIG, config,
                data=_b64(config.content),  # an embedded copy of the config
                newUnspecifiedField=_b64(b"hello world"),  # unknown fields must be kept
            ),
            "layers": [layer_desc],
        }
        data.manifests.append(Blob(_pretty(manifest)))
    # no mediaType field and no layers: still a valid image manifest
    data.empty_layer_manifest = Blob(_pretty({
        "schemaVersion": 2,
        "config": _descriptor(OCI_CONFIG, data.configs[1], newUnspecifiedField=None),
        "layers": [],
    }))
    data.chunked_blob(chunk_size)

    empty_desc = _descriptor(EMPTY_JSON_MEDIA_TYPE, EMPTY_JSON, newUnspecifiedField=None)
    subject = _descriptor(OCI_MANIFEST, data.manifests[4], newUnspecifiedField=None)
    missing_subject = _descriptor(OCI_MANIFEST, data.manifests[3], newUnspecifiedField=None)

    def artifact(key: str, doc: dict[str, Any], note: str | None) -> None:
        if note is not None:
            doc["annotations"] = {ANNOTATION_KEY: note}
        blob = Blob(_pretty(doc))
        data.refs[key] = blob
        if note is not None:
            data.annotations[blob.digest] = note

    kinds = [("A", data.ref_blob_a, ARTIFACT_TYPE_A), ("B", data.ref_blob_b, ARTIFACT_TYPE_B)]
    for letter, blob, artifact_type in kinds:
        # the artifact type carried by config.mediaType ...
        artifact(f"{letter}Config", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": _descriptor(artifact_type, blob, newUnspecifiedField=None),
            "layers": [empty_desc], "subject": subject,
        }, f"test config {letter.lower()}")
        # ... or by artifactType, with the empty JSON config
        artifact(f"{letter}Layer", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": empty_desc,
            "layers": [_descriptor(artifact_type, blob, newUnspecifiedField=None)],
            "subject": subject,
        }, f"test layer {letter.lower()}")
    # same as BLayer but its subject (manifests[3]) is never pushed in this workflow; no annotations
    artifact("C", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE_B,
        "config": empty_desc,
        "layers": [_descriptor(ARTIFACT_TYPE_B, data.ref_blob_b, newUnspecifiedField=None)],
        "subject": missing_subject,
    }, None)
    # an index that is itself a referrer, listing two of the artifacts
    artifact("Index", {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": ARTIFACT_TYPE_INDEX,
        "manifests": [
            _descriptor(OCI_MANIFEST, data.refs["AConfig"], newUnspecifiedField=None),
            _descriptor(OCI_MANIFEST, data.refs["ALayer"], newUnspecifiedField=None),
        ],
        "subject": subject,
    }, "test index")
    return data


# --- request helpers -----------------------------------------------------------------------------


def with_query(location: str, **params: str) -> str:
    """Add query parameters to a (relative) Location, keeping the ones it already has."""
    url = URL(location)
    return str(url.update_query(params))


def relative(location: str) -> str:
    """The path and query of a Location, whether the server sent it absolute or relative."""
    url = URL(location)
    return str(url.relative()) if url.is_absolute() else location


def expect(resp: ClientResponse, accepted: Collection[int], step: str) -> None:
    assert resp.status in accepted, f"{step}: {resp.method} {resp.url.path_qs} -> {resp.status}"


async def error_codes(resp: ClientResponse) -> list[str]:
    body = await resp.json(content_type=None)
    assert isinstance(body.get("errors"), list) and body["errors"], f"no OCI error body: {body}"
    return [e["code"] for e in body["errors"]]


async def post_put_blob(client: TestClient, name: str, blob: Blob, step: str) -> ClientResponse:
    """The suite's usual blob push: POST a session, PUT the whole blob with ?digest=."""
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    expect(resp, (202,), f"{step} (POST)")
    resp = await client.put(
        with_query(relative(resp.headers["Location"]), digest=blob.digest),
        data=blob.content,
        headers={"Content-Type": OCTET, "Content-Length": blob.length},
    )
    expect(resp, SUCCESS, f"{step} (PUT)")
    return resp


async def put_manifest(
    client: TestClient, name: str, reference: str, blob: Blob, step: str, media_type: str = OCI_MANIFEST
) -> ClientResponse:
    resp = await client.put(
        f"/v2/{name}/manifests/{reference}", data=blob.content, headers={"Content-Type": media_type}
    )
    expect(resp, SUCCESS, step)
    return resp


async def delete(client: TestClient, path: str, accepted: Collection[int], step: str) -> int:
    resp = await client.delete(path)
    expect(resp, accepted, step)
    return resp.status


async def tag_list(client: TestClient, name: str, **params: str) -> list[str]:
    resp = await client.get(f"/v2/{name}/tags/list", params=params)
    expect(resp, (200,), f"tags list {params}")
    tags = (await resp.json())["tags"]
    assert isinstance(tags, list)
    return tags


async def tags_after_teardown(client: TestClient, name: str) -> list[str]:
    """The tag list of a repository whose content was all deleted: 200 with the remaining tags, or
    404 NAME_UNKNOWN once nothing is left (the filesystem driver keeps the repository, S3 does not)."""
    resp = await client.get(f"/v2/{name}/tags/list")
    if resp.status == 404:
        assert await error_codes(resp) == ["NAME_UNKNOWN"]
        return []
    expect(resp, (200,), "tags list after teardown")
    return list((await resp.json())["tags"])


@pytest.fixture
def data() -> SuiteData:
    return make_suite_data()


@pytest.fixture(params=[True, False], ids=["manifests-before-blobs", "blobs-before-manifests"])
def delete_manifest_before_blobs(request: pytest.FixtureRequest) -> bool:
    """OCI_DELETE_MANIFEST_BEFORE_BLOBS: the order of every teardown (default: manifests first)."""
    return bool(request.param)


# --- workflow: pull ------------------------------------------------------------------------------


async def pull_setup(client: TestClient, ns: str, d: SuiteData) -> None:
    await post_put_blob(client, ns, d.configs[0], "pull setup: config[0]")
    await post_put_blob(client, ns, d.configs[1], "pull setup: config[1]")
    await post_put_blob(client, ns, d.layer, "pull setup: layer")
    await put_manifest(client, ns, TEST_TAG, d.manifests[0], "pull setup: manifest[0] by tag")
    await put_manifest(client, ns, d.manifests[1].digest, d.manifests[1], "pull setup: manifest[1] by digest")


async def pull_checks(client: TestClient, ns: str, d: SuiteData) -> None:
    # blobs
    resp = await client.head(f"/v2/{ns}/blobs/{DUMMY_DIGEST}")
    expect(resp, (404,), "HEAD nonexistent blob")
    resp = await client.head(f"/v2/{ns}/blobs/{d.configs[0].digest}")
    expect(resp, (200,), "HEAD existing blob")
    assert resp.headers.get("Docker-Content-Digest", d.configs[0].digest) == d.configs[0].digest
    resp = await client.get(f"/v2/{ns}/blobs/{DUMMY_DIGEST}")
    expect(resp, (404,), "GET nonexistent blob")
    resp = await client.get(f"/v2/{ns}/blobs/{d.configs[0].digest}")
    expect(resp, (200,), "GET existing blob")
    assert await resp.read() == d.configs[0].content
    # manifests (the nonexistent-manifest checks are separate tests below)
    accept = {"Accept": OCI_MANIFEST}
    for ref, manifest in [(d.manifests[0].digest, d.manifests[0]), (d.manifests[1].digest, d.manifests[1]),
                          (TEST_TAG, d.manifests[0])]:
        resp = await client.head(f"/v2/{ns}/manifests/{ref}", headers=accept)
        expect(resp, (200,), f"HEAD manifest {ref}")
        assert resp.headers.get("Docker-Content-Digest", manifest.digest) == manifest.digest
        resp = await client.get(f"/v2/{ns}/manifests/{ref}", headers=accept)
        expect(resp, (200,), f"GET manifest {ref}")
        assert await resp.read() == manifest.content, "the manifest must come back byte for byte"


async def pull_teardown(client: TestClient, ns: str, d: SuiteData, manifests_first: bool) -> None:
    async def manifests() -> None:
        for m in d.manifests[:2]:
            await delete(client, f"/v2/{ns}/manifests/{m.digest}", OK_OR_405, "pull teardown: manifest")

    if manifests_first:
        await manifests()
    for blob in (d.configs[0], d.configs[1], d.layer):
        await delete(client, f"/v2/{ns}/blobs/{blob.digest}", OK_404_OR_405, "pull teardown: blob")
    if not manifests_first:
        await manifests()


class TestPull:
    async def test_pull_workflow(self, client: TestClient, data: SuiteData, delete_manifest_before_blobs: bool) -> None:
        await pull_setup(client, NAMESPACE, data)
        await pull_checks(client, NAMESPACE, data)
        await pull_teardown(client, NAMESPACE, data, delete_manifest_before_blobs)
        # the teardown really removed what it deleted (the server answers 202, not 405)
        for m in data.manifests[:2]:
            assert (await client.get(f"/v2/{NAMESPACE}/manifests/{m.digest}")).status == 404
        assert (await client.head(f"/v2/{NAMESPACE}/blobs/{data.layer.digest}")).status == 404

    @pytest.mark.parametrize("method", ["HEAD", "GET"])
    async def test_nonexistent_manifest_is_404(self, client: TestClient, data: SuiteData, method: str) -> None:
        """Pull (and push: "GET nonexistent manifest") ask for `.INVALID_MANIFEST_NAME` and want 404."""
        await pull_setup(client, NAMESPACE, data)
        resp = await client.request(method, f"/v2/{NAMESPACE}/manifests/{NONEXISTENT_MANIFEST}")
        assert resp.status == 404

    async def test_nonexistent_valid_tag_is_404(self, client: TestClient, data: SuiteData) -> None:
        """The same check with a well-formed tag passes: only the tag syntax makes the difference."""
        await pull_setup(client, NAMESPACE, data)
        for method in ("HEAD", "GET"):
            resp = await client.request(method, f"/v2/{NAMESPACE}/manifests/INVALID_MANIFEST_NAME")
            assert resp.status == 404, method

    async def test_error_codes(self, client: TestClient, data: SuiteData) -> None:
        """A GET of a malformed digest reference (with a stray body): 400 with a known code, or 404."""
        await pull_setup(client, NAMESPACE, data)
        resp = await client.get(
            f"/v2/{NAMESPACE}/manifests/sha256:totallywrong",
            data=b"blablabla", headers={"Content-Type": OCI_MANIFEST},
        )
        expect(resp, (400, 404), "GET sha256:totallywrong")
        if resp.status == 400:
            assert (await error_codes(resp))[0] in ERROR_CODES

    async def test_teardown_with_deletion_disabled(self, registry: ClientFactory, data: SuiteData) -> None:
        """The suite accepts 405 from every teardown delete; a registry with deletion off gives that."""
        client = await registry({"storage": {"delete": False}})
        await pull_setup(client, NAMESPACE, data)
        await pull_teardown(client, NAMESPACE, data, manifests_first=True)
        resp = await client.delete(f"/v2/{NAMESPACE}/manifests/{data.manifests[0].digest}")
        assert resp.status == 405
        assert await error_codes(resp) == ["UNSUPPORTED"]


# --- workflow: push ------------------------------------------------------------------------------


async def push_streamed(client: TestClient, ns: str, d: SuiteData) -> None:
    resp = await client.post(f"/v2/{ns}/blobs/uploads/")
    assert resp.headers.get("Location"), "POST must give a session Location"
    resp = await client.patch(
        relative(resp.headers["Location"]), data=d.blob_a.content, headers={"Content-Type": OCTET}
    )
    expect(resp, (202,), "streamed PATCH")
    resp = await client.put(with_query(relative(resp.headers["Location"]), digest=d.blob_a.digest),
                            headers={"Content-Type": OCTET})
    expect(resp, (201,), "streamed PUT")
    assert resp.headers.get("Location")


async def push_monolithic(client: TestClient, ns: str, d: SuiteData) -> None:
    resp = await client.get(f"/v2/{ns}/blobs/{DUMMY_DIGEST}")
    expect(resp, (404,), "GET nonexistent blob")
    config = d.configs[1]
    resp = await client.post(
        f"/v2/{ns}/blobs/uploads/", params={"digest": config.digest}, data=config.content,
        headers={"Content-Type": OCTET, "Content-Length": config.length},
    )
    expect(resp, (201, 202), "POST with digest and blob")
    assert resp.headers.get("Location")
    posted = resp.status
    resp = await client.get(f"/v2/{ns}/blobs/{config.digest}")
    expect(resp, (404,) if posted == 202 else (200,), "GET blob after monolithic POST")

    resp = await client.post(f"/v2/{ns}/blobs/uploads/")
    expect(resp, (202,), "POST for a session")
    resp = await client.put(
        with_query(relative(resp.headers["Location"]), digest=config.digest), data=config.content,
        headers={"Content-Type": OCTET, "Content-Length": config.length},
    )
    expect(resp, (201,), "PUT whole blob")
    assert resp.headers.get("Location")
    expect(await client.get(f"/v2/{ns}/blobs/{config.digest}"), (200,), "GET pushed config")

    resp = await post_put_blob(client, ns, d.layer, "PUT layer blob")
    expect(resp, (201,), "PUT layer blob")
    assert resp.headers.get("Location")
    expect(await client.get(f"/v2/{ns}/blobs/{d.layer.digest}"), (200,), "GET pushed layer")


async def push_chunked(client: TestClient, ns: str, d: SuiteData) -> None:
    # a chunk that does not start at 0 on a fresh session
    resp = await client.post(f"/v2/{ns}/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.headers.get("Location")
    min_length = resp.headers.get("OCI-Chunk-Min-Length")
    if min_length and int(min_length) > len(d.chunk1):
        d.chunked_blob(int(min_length) * 2 - 2)
    resp = await client.patch(
        relative(resp.headers["Location"]), data=d.chunk2,
        headers={"Content-Type": OCTET, "Content-Length": str(len(d.chunk2)), "Content-Range": d.chunk2_range},
    )
    expect(resp, (416,), "out-of-order chunk")

    resp = await client.post(f"/v2/{ns}/blobs/uploads/", headers={"Content-Length": "0"})
    session = relative(resp.headers["Location"])
    first = {"Content-Type": OCTET, "Content-Length": str(len(d.chunk1)), "Content-Range": d.chunk1_range}
    resp = await client.patch(session, data=d.chunk1, headers=first)
    expect(resp, (202,), "first chunk")
    assert resp.headers.get("Range") == d.chunk1_range
    # the same chunk again, on the original session URL
    resp = await client.patch(session, data=d.chunk1, headers=first)
    expect(resp, (416,), "retried chunk")
    resp = await client.get(session)
    expect(resp, (204,), "GET stale session")
    assert resp.headers.get("Location")
    assert resp.headers.get("Range") == d.chunk1_range
    resp = await client.patch(
        relative(resp.headers["Location"]), data=d.chunk2,
        headers={"Content-Type": OCTET, "Content-Length": str(len(d.chunk2)), "Content-Range": d.chunk2_range},
    )
    expect(resp, (202,), "second chunk")
    assert resp.headers.get("Location")
    resp = await client.put(
        with_query(relative(resp.headers["Location"]), digest=d.blob_b.digest),
        headers={"Content-Type": OCTET, "Content-Length": "0"},
    )
    expect(resp, (201,), "closing PUT")
    assert resp.headers.get("Location")
    resp = await client.get(f"/v2/{ns}/blobs/{d.blob_b.digest}")
    assert await resp.read() == d.blob_b.content


async def push_crossmount(client: TestClient, ns: str, d: SuiteData, automatic_crossmount: bool | None) -> None:
    target = CROSSMOUNT_NAMESPACE
    resp = await client.post(f"/v2/{target}/blobs/uploads/", params={"mount": DUMMY_DIGEST})
    expect(resp, (202,), "mount without from")
    assert resp.headers.get("Location")
    resp = await client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d.blob_a.digest, "from": ns})
    expect(resp, (201, 202), "mount from another repository")
    location = relative(resp.headers["Location"])
    if resp.status == 201:
        assert location == f"/v2/{target}/blobs/{d.blob_a.digest}"
        expect(await client.get(location), (200,), "GET mounted blob")
        if automatic_crossmount is not None:  # OCI_AUTOMATIC_CROSSMOUNT set
            resp = await client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d.blob_a.digest})
            expect(resp, (201,) if automatic_crossmount else (202,), "mount without from, automatic discovery")
    else:
        assert location.startswith(f"/v2/{target}/blobs/uploads/")


async def push_manifests(client: TestClient, ns: str, d: SuiteData) -> None:
    resp = await client.get(f"/v2/{ns}/manifests/INVALID_MANIFEST_NAME")  # see test_nonexistent_manifest_is_404
    expect(resp, (404,), "GET nonexistent manifest")
    for i in range(4):
        resp = await client.put(f"/v2/{ns}/manifests/test{i}", data=d.manifests[1].content,
                                headers={"Content-Type": OCI_MANIFEST})
        expect(resp, (201,), f"PUT manifest as test{i}")
        assert resp.headers.get("Location")
    resp = await client.put(f"/v2/{ns}/manifests/{EMPTY_LAYER_TAG}", data=d.empty_layer_manifest.content,
                            headers={"Content-Type": OCI_MANIFEST})
    # the suite only warns when this is refused; image-spec v1.1 allows it, so we require it
    expect(resp, (201,), "PUT manifest without layers (and without mediaType)")
    assert resp.headers.get("Location")
    resp = await client.get(f"/v2/{ns}/manifests/{d.manifests[1].digest}", headers={"Accept": OCI_MANIFEST})
    expect(resp, (200,), "GET pushed manifest by digest")


async def push_teardown(client: TestClient, ns: str, d: SuiteData, manifests_first: bool) -> None:
    async def manifests() -> None:
        await delete(client, f"/v2/{ns}/manifests/{d.manifests[1].digest}", OK_OR_405, "push teardown: manifest")
        await delete(client, f"/v2/{ns}/manifests/{d.empty_layer_manifest.digest}", OK_OR_405,
                     "push teardown: empty-layer manifest")

    if manifests_first:
        await manifests()
    for blob in (d.configs[1], d.layer):
        await delete(client, f"/v2/{ns}/blobs/{blob.digest}", OK_404_OR_405, "push teardown: blob")
    if not manifests_first:
        await manifests()


class TestPush:
    async def test_blob_upload_streamed(self, client: TestClient, data: SuiteData) -> None:
        await push_streamed(client, NAMESPACE, data)
        resp = await client.get(f"/v2/{NAMESPACE}/blobs/{data.blob_a.digest}")
        assert await resp.read() == data.blob_a.content

    async def test_blob_upload_monolithic(self, client: TestClient, data: SuiteData) -> None:
        await push_monolithic(client, NAMESPACE, data)

    @pytest.mark.parametrize("size", [42, 3 * 1024 * 1024 + 7], ids=["small", "3MiB"])
    async def test_blob_upload_chunked(self, client: TestClient, size: int) -> None:
        await push_chunked(client, NAMESPACE, make_suite_data(chunk_size=size))

    @pytest.mark.parametrize("automatic", [None, True], ids=["unset", "enabled"])
    async def test_cross_repository_mount(self, client: TestClient, data: SuiteData, automatic: bool | None) -> None:
        """OCI_AUTOMATIC_CROSSMOUNT unset or 1: trustreg discovers the source of a mount without `from`
        (registry.crossmount)."""
        await push_streamed(client, NAMESPACE, data)
        await push_crossmount(client, NAMESPACE, data, automatic)

    async def test_manifest_upload(
        self, client: TestClient, data: SuiteData, delete_manifest_before_blobs: bool
    ) -> None:
        await push_monolithic(client, NAMESPACE, data)
        await push_manifests(client, NAMESPACE, data)
        assert set(await tag_list(client, NAMESPACE)) == {"test0", "test1", "test2", "test3", EMPTY_LAYER_TAG}
        await push_teardown(client, NAMESPACE, data, delete_manifest_before_blobs)
        assert await tags_after_teardown(client, NAMESPACE) == []


# --- workflow: content discovery -----------------------------------------------------------------


async def discovery_setup(client: TestClient, ns: str, d: SuiteData) -> None:
    await post_put_blob(client, ns, d.configs[2], "discovery setup: config[2]")
    await post_put_blob(client, ns, d.layer, "discovery setup: layer")
    for i in range(4):
        await put_manifest(client, ns, f"test{i}", d.manifests[2], f"discovery setup: tag test{i}")
    # referrers: pushed before their subject exists, then the subject, then more referrers
    assert digest_of(EMPTY_JSON) == EMPTY_JSON_DIGEST
    await post_put_blob(client, ns, Blob(EMPTY_JSON), "discovery setup: empty JSON blob")
    await post_put_blob(client, ns, d.ref_blob_a, "discovery setup: referrer blob A")
    subject = d.manifests[4].digest
    for key in ("AConfig", "ALayer"):
        resp = await put_manifest(client, ns, d.refs[key].digest, d.refs[key], f"discovery setup: {key}")
        assert resp.headers.get("OCI-Subject") == subject, key
    resp = await put_manifest(client, ns, d.refs["Index"].digest, d.refs["Index"], "discovery setup: index",
                              media_type=OCI_INDEX)
    assert resp.headers.get("OCI-Subject") == subject
    await post_put_blob(client, ns, d.configs[4], "discovery setup: config[4]")
    await post_put_blob(client, ns, d.layer, "discovery setup: layer again")
    await put_manifest(client, ns, TEST_TAG, d.manifests[4], "discovery setup: subject manifest[4]")
    await post_put_blob(client, ns, d.ref_blob_b, "discovery setup: referrer blob B")
    for key in ("BConfig", "BLayer"):
        resp = await put_manifest(client, ns, d.refs[key].digest, d.refs[key], f"discovery setup: {key}")
        assert resp.headers.get("OCI-Subject") == subject, key
    resp = await put_manifest(client, ns, d.refs["C"].digest, d.refs["C"], "discovery setup: C (missing subject)")
    assert resp.headers.get("OCI-Subject") == d.manifests[3].digest


async def discovery_tag_checks(client: TestClient, ns: str) -> None:
    tags = await tag_list(client, ns)
    half = len(tags) // 2
    assert half > 0
    page = await tag_list(client, ns, n=str(half))
    assert len(page) == half, "n must limit the number of tags"
    after = await tag_list(client, ns, n=str(half), last=page[-1])
    assert len(after) <= half
    # (the suite's `last` check is vacuous; the spec says the listing resumes after `last`)
    assert all(tag > page[-1] for tag in after)
    assert after == sorted(tags)[half:2 * half]


async def referrers(client: TestClient, ns: str, digest: str, **params: str) -> tuple[ClientResponse, list[dict]]:
    resp = await client.get(f"/v2/{ns}/referrers/{digest}", params=params)
    expect(resp, (200,), f"GET referrers {params}")
    assert resp.headers.get("Content-Type") == OCI_INDEX
    index = await resp.json(content_type=None)
    assert index.get("schemaVersion") == 2 and index.get("mediaType") == OCI_INDEX
    return resp, index["manifests"]


async def discovery_referrer_checks(client: TestClient, ns: str, d: SuiteData) -> None:
    _, listed = await referrers(client, ns, DUMMY_DIGEST)
    assert listed == [], "an unknown subject has an empty (200) referrers list"

    _, listed = await referrers(client, ns, d.manifests[4].digest)
    assert len(listed) == 5
    assert len({m["digest"] for m in listed}) == 5
    for m in listed:
        assert m.get("annotations") == {ANNOTATION_KEY: d.annotations[m["digest"]]}, m["digest"]

    resp, listed = await referrers(client, ns, d.manifests[4].digest, artifactType=ARTIFACT_TYPE_A)
    if resp.headers.get("OCI-Filters-Applied"):
        assert resp.headers["OCI-Filters-Applied"] == "artifactType"
        # one carries the type in config.mediaType, the other in artifactType
        assert {m["digest"] for m in listed} == {d.refs["AConfig"].digest, d.refs["ALayer"].digest}
    else:
        assert len(listed) == 5
    for m in listed:
        assert m.get("annotations") == {ANNOTATION_KEY: d.annotations[m["digest"]]}

    _, listed = await referrers(client, ns, d.manifests[3].digest)
    assert [m["digest"] for m in listed] == [d.refs["C"].digest], "referrers of a subject never pushed"


async def discovery_teardown(client: TestClient, ns: str, d: SuiteData, manifests_first: bool) -> None:
    refs = d.refs
    references = [refs["Index"].digest, d.manifests[2].digest, d.manifests[4].digest, refs["AConfig"].digest,
                  refs["ALayer"].digest, TEST_TAG, refs["BConfig"].digest, refs["BLayer"].digest, refs["C"].digest]

    async def manifests() -> None:
        for ref in references:
            await delete(client, f"/v2/{ns}/manifests/{ref}", OK_404_OR_405, f"discovery teardown: {ref}")

    if manifests_first:
        await manifests()
    # here 404 is NOT accepted: the config and layer must still be there to delete
    await delete(client, f"/v2/{ns}/blobs/{d.configs[2].digest}", OK_OR_405, "discovery teardown: config[2]")
    await delete(client, f"/v2/{ns}/blobs/{d.layer.digest}", OK_OR_405, "discovery teardown: layer")
    if not manifests_first:
        await manifests()

    # references teardown
    ref_manifests = [refs["Index"].digest, refs["AConfig"].digest, refs["ALayer"].digest, d.manifests[4].digest,
                     refs["BConfig"].digest, refs["BLayer"].digest]
    if manifests_first:
        for ref in ref_manifests:
            await delete(client, f"/v2/{ns}/manifests/{ref}", OK_404_OR_405, f"references teardown: {ref}")
    for blob in (d.configs[4].digest, d.ref_blob_a.digest, d.ref_blob_b.digest, EMPTY_JSON_DIGEST):
        await delete(client, f"/v2/{ns}/blobs/{blob}", OK_404_OR_405, f"references teardown: blob {blob}")
    if not manifests_first:
        for ref in ref_manifests:
            await delete(client, f"/v2/{ns}/manifests/{ref}", OK_404_OR_405, f"references teardown: {ref}")


class TestContentDiscovery:
    async def test_list_tags(self, client: TestClient, data: SuiteData) -> None:
        await discovery_setup(client, NAMESPACE, data)
        assert await tag_list(client, NAMESPACE) == ["tagtest0", "test0", "test1", "test2", "test3"]
        await discovery_tag_checks(client, NAMESPACE)

    async def test_list_referrers(self, client: TestClient, data: SuiteData) -> None:
        await discovery_setup(client, NAMESPACE, data)
        await discovery_referrer_checks(client, NAMESPACE, data)

    async def test_referrer_descriptors(self, client: TestClient, data: SuiteData) -> None:
        """What the suite relies on implicitly: each listed descriptor is the referrer's own, with the
        artifact type taken from artifactType or, failing that, config.mediaType (spec)."""
        await discovery_setup(client, NAMESPACE, data)
        _, listed = await referrers(client, NAMESPACE, data.manifests[4].digest)
        by_digest = {m["digest"]: m for m in listed}
        expected_types = {"AConfig": ARTIFACT_TYPE_A, "ALayer": ARTIFACT_TYPE_A, "BConfig": ARTIFACT_TYPE_B,
                          "BLayer": ARTIFACT_TYPE_B, "Index": ARTIFACT_TYPE_INDEX}
        for key, artifact_type in expected_types.items():
            blob = data.refs[key]
            m = by_digest[blob.digest]
            assert m["size"] == len(blob.content), key
            assert m["mediaType"] == (OCI_INDEX if key == "Index" else OCI_MANIFEST), key
            assert m["artifactType"] == artifact_type, key

    async def test_teardown(self, client: TestClient, data: SuiteData, delete_manifest_before_blobs: bool) -> None:
        await discovery_setup(client, NAMESPACE, data)
        await discovery_teardown(client, NAMESPACE, data, delete_manifest_before_blobs)
        # deleting manifest[2] by digest removed test0..test3 as well
        assert await tags_after_teardown(client, NAMESPACE) == []
        _, listed = await referrers(client, NAMESPACE, data.manifests[4].digest)
        assert listed == [], "deleted referrers must disappear from the list"


# --- workflow: content management ----------------------------------------------------------------


async def management_setup(client: TestClient, ns: str, d: SuiteData) -> int:
    await post_put_blob(client, ns, d.configs[3], "management setup: config[3]")
    await post_put_blob(client, ns, d.layer, "management setup: layer")
    await put_manifest(client, ns, TEST_TAG, d.manifests[3], "management setup: tag")
    return len(await tag_list(client, ns))


async def management_checks(client: TestClient, ns: str, d: SuiteData, tags_before: int) -> None:
    resp = await client.delete(f"/v2/{ns}/manifests/{TEST_TAG}")
    expect(resp, (400, 202, 405), "DELETE tag")
    if resp.status == 400:
        assert (await error_codes(resp))[0] == "UNSUPPORTED"
    resp = await client.delete(f"/v2/{ns}/manifests/{d.manifests[3].digest}")
    expect(resp, (202, 404), "DELETE manifest by digest")
    resp = await client.get(f"/v2/{ns}/manifests/{d.manifests[3].digest}")
    expect(resp, (404, 200), "GET deleted manifest")
    assert resp.status == 404, "trustreg deletes for real: the manifest must be gone"
    assert len(await tag_list(client, ns)) < tags_before, "the tag list must reflect the deletion"

    status = await delete(client, f"/v2/{ns}/blobs/{d.configs[3].digest}", (202, 404, 405), "DELETE config blob")
    assert status == 202
    status = await delete(client, f"/v2/{ns}/blobs/{d.layer.digest}", (202, 404, 405), "DELETE layer blob")
    if status != 405:
        expect(await client.get(f"/v2/{ns}/blobs/{d.configs[3].digest}"), (404,), "GET deleted blob")


class TestContentManagement:
    async def test_manifest_and_blob_delete(self, client: TestClient, data: SuiteData) -> None:
        tags_before = await management_setup(client, NAMESPACE, data)
        await management_checks(client, NAMESPACE, data, tags_before)

    async def test_tag_delete_keeps_manifest(self, client: TestClient, data: SuiteData) -> None:
        """Deleting a tag (202) removes the tag only; the digest stays pullable until deleted."""
        await management_setup(client, NAMESPACE, data)
        expect(await client.delete(f"/v2/{NAMESPACE}/manifests/{TEST_TAG}"), (202,), "DELETE tag")
        expect(await client.get(f"/v2/{NAMESPACE}/manifests/{TEST_TAG}"), (404,), "GET deleted tag")
        expect(await client.get(f"/v2/{NAMESPACE}/manifests/{data.manifests[3].digest}"), (200,), "GET by digest")


# --- the whole suite, in one namespace -----------------------------------------------------------


async def test_all_workflows_in_one_namespace(client: TestClient, delete_manifest_before_blobs: bool) -> None:
    """Pull, push, discovery and management in order, as one suite run does, sharing a namespace."""
    d, ns, first = make_suite_data(), NAMESPACE, delete_manifest_before_blobs
    expect(await client.get("/v2/"), (200,), "base route")
    await pull_setup(client, ns, d)
    await pull_checks(client, ns, d)
    await pull_teardown(client, ns, d, first)

    await push_streamed(client, ns, d)
    await push_monolithic(client, ns, d)
    await push_chunked(client, ns, d)
    await push_crossmount(client, ns, d, None)
    await push_manifests(client, ns, d)
    await push_teardown(client, ns, d, first)

    await discovery_setup(client, ns, d)
    await discovery_tag_checks(client, ns)
    await discovery_referrer_checks(client, ns, d)
    await discovery_teardown(client, ns, d, first)

    tags_before = await management_setup(client, ns, d)
    await management_checks(client, ns, d, tags_before)


# --- checks added by the rewritten suite ---------------------------------------------------------


BLOB_LEN = 2048


@pytest.mark.parametrize(
    ("range_header", "expected"),
    [
        ("bytes=500-1499", (500, 1499)),
        ("bytes=500-", (500, BLOB_LEN - 1)),
        ("bytes=-500", (BLOB_LEN - 500, BLOB_LEN - 1)),
        ("bytes=2000-5000", (2000, BLOB_LEN - 1)),
        ("bytes=500-0", None),
        ("bytes=5000-10000", None),
    ],
)
async def test_pull_blob_range(client: TestClient, range_header: str, expected: tuple[int, int] | None) -> None:
    """206 with Content-Length and Content-Range (total or `*`) for a satisfiable range, 416 otherwise;
    the suite counts a plain 200 with the whole blob as "range requests unsupported" (a failure)."""
    blob = Blob(os.urandom(BLOB_LEN))
    await post_put_blob(client, NAMESPACE, blob, "push blob")
    resp = await client.get(f"/v2/{NAMESPACE}/blobs/{blob.digest}", headers={"Range": range_header})
    if expected is None:
        assert resp.status == 416
        return
    first, last = expected
    assert resp.status == 206
    assert await resp.read() == blob.content[first:last + 1]
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.headers["Content-Range"] in (f"bytes {first}-{last}/{BLOB_LEN}", f"bytes {first}-{last}/*")


@pytest.mark.parametrize("content", [b"", EMPTY_JSON], ids=["empty", "emptyJSON"])
async def test_well_known_blobs(client: TestClient, content: bytes) -> None:
    blob = Blob(content)
    await post_put_blob(client, NAMESPACE, blob, "push")
    resp = await client.head(f"/v2/{NAMESPACE}/blobs/{blob.digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(content))
    assert resp.headers.get("Docker-Content-Digest", blob.digest) == blob.digest
    resp = await client.get(f"/v2/{NAMESPACE}/blobs/{blob.digest}")
    assert resp.status == 200
    assert await resp.read() == content
    assert (await client.delete(f"/v2/{NAMESPACE}/blobs/{blob.digest}")).status in (202, 404, 405)
    assert (await client.head(f"/v2/{NAMESPACE}/blobs/{blob.digest}")).status == 404


async def _bad_digest_upload(client: TestClient, method: str, content: bytes, digest: str) -> ClientResponse:
    ns = NAMESPACE
    if method == "post only":
        return await client.post(f"/v2/{ns}/blobs/uploads/", params={"digest": digest}, data=content)
    resp = await client.post(f"/v2/{ns}/blobs/uploads/", headers={"Content-Length": "0"})
    location = relative(resp.headers["Location"])
    if method == "post+put":
        return await client.put(with_query(location, digest=digest), data=content)
    if method == "stream":
        resp = await client.patch(location, data=content, headers={"Content-Type": OCTET})
        assert resp.status == 202
        return await client.put(with_query(relative(resp.headers["Location"]), digest=digest))
    third = len(content) // 3 + 1
    cuts = [0, third, 2 * third, len(content)]
    for i, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        headers = {"Content-Type": OCTET, "Content-Range": f"{start}-{end - 1}"}
        if method == "chunked and put chunk" and i == 2:
            return await client.put(with_query(location, digest=digest), data=content[start:end], headers=headers)
        resp = await client.patch(location, data=content[start:end], headers=headers)
        assert resp.status == 202
        location = relative(resp.headers["Location"])
    return await client.put(with_query(location, digest=digest), headers={"Content-Length": "0"})


@pytest.mark.parametrize("method", ["post only", "post+put", "chunked", "chunked and put chunk", "stream"])
async def test_push_blob_bad_digest(client: TestClient, method: str) -> None:
    """Bytes that do not match the digest given are refused with 400, whatever the upload method."""
    good = os.urandom(3000)
    resp = await _bad_digest_upload(client, method, good + b"oh no", digest_of(good))
    assert resp.status == 400
    assert (await error_codes(resp))[0] in ERROR_CODES
    assert (await client.head(f"/v2/{NAMESPACE}/blobs/{digest_of(good)}")).status == 404


async def test_push_chunked_out_of_order_recovery(client: TestClient) -> None:
    """Before each chunk, send one that skips ahead (or back to 0): 416; then GET the session (204,
    Range 0-<last byte received>) and carry on from there; finish with the last chunk in the PUT."""
    content = os.urandom(3 * 1024 - 5)
    chunk = len(content) // 3 + 1
    resp = await client.post(f"/v2/{NAMESPACE}/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.status == 202
    location, last = relative(resp.headers["Location"]), -1
    while last < len(content) - 1:
        bad_start = last + 1 + chunk
        if bad_start >= len(content):
            bad_start = 0
        bad_end = min(bad_start + chunk, len(content)) - 1
        resp = await client.patch(location, data=content[bad_start:bad_end + 1],
                                  headers={"Content-Type": OCTET, "Content-Range": f"{bad_start}-{bad_end}"})
        assert resp.status == 416
        location = relative(resp.headers.get("Location", location))
        resp = await client.get(location)
        assert resp.status == 204
        location = relative(resp.headers["Location"])
        assert resp.headers["Range"].startswith("0-")
        if last >= 0:
            assert resp.headers["Range"] == f"0-{last}"
        start, last = last + 1, min(last + chunk, len(content) - 1)
        headers = {"Content-Type": OCTET, "Content-Range": f"{start}-{last}"}
        if last == len(content) - 1:
            resp = await client.put(with_query(location, digest=digest_of(content)),
                                    data=content[start:last + 1], headers=headers)
            assert resp.status == 201
        else:
            resp = await client.patch(location, data=content[start:last + 1], headers=headers)
            assert resp.status == 202
            location = relative(resp.headers["Location"])
    resp = await client.get(f"/v2/{NAMESPACE}/blobs/{digest_of(content)}")
    assert await resp.read() == content


async def test_manifest_error_conditions(client: TestClient, data: SuiteData) -> None:
    ns = NAMESPACE
    expect(await client.get(f"/v2/{ns}/manifests/{digest_of(os.urandom(1024))}"), (404,), "missing by digest")
    expect(await client.get(f"/v2/{ns}/manifests/missing-{secrets.token_hex(10)}"), (404,), "missing by tag")
    await post_put_blob(client, ns, data.configs[0], "config")
    await post_put_blob(client, ns, data.layer, "layer")
    resp = await client.put(f"/v2/{ns}/manifests/sha256:baddigeststring", data=data.manifests[0].content,
                            headers={"Content-Type": OCI_MANIFEST})
    expect(resp, (400,), "PUT to a malformed digest")
    expect(await client.get(f"/v2/{ns}/manifests/sha256:baddigeststring"), (400, 404), "GET a malformed digest")
    # a manifest whose bytes do not match the digest it is pushed to
    resp = await client.put(f"/v2/{ns}/manifests/{data.manifests[0].digest}", data=data.manifests[0].content + b"  ",
                            headers={"Content-Type": OCI_MANIFEST})
    expect(resp, (400,), "PUT with a mismatched digest")


async def test_manifest_put_location_and_head(client: TestClient, data: SuiteData) -> None:
    """After a PUT: Docker-Content-Digest (if sent) is the digest; the Location serves the exact bytes
    with Content-Type and Content-Length; HEAD (two Accept headers) has the same and an empty body."""
    ns, manifest = NAMESPACE, data.manifests[0]
    await post_put_blob(client, ns, data.configs[0], "config")
    await post_put_blob(client, ns, data.layer, "layer")
    resp = await put_manifest(client, ns, "image", manifest, "PUT manifest")
    assert resp.status == 201
    assert resp.headers.get("Docker-Content-Digest", manifest.digest) == manifest.digest
    accept = [("Accept", OCI_INDEX), ("Accept", OCI_MANIFEST)]
    resp = await client.get(relative(resp.headers["Location"]), headers=accept)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_MANIFEST
    assert resp.headers["Content-Length"] == str(len(manifest.content))
    assert await resp.read() == manifest.content
    for ref in ("image", manifest.digest):
        resp = await client.head(f"/v2/{ns}/manifests/{ref}", headers=accept)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Content-Length"] == str(len(manifest.content))
        assert await resp.read() == b""


async def test_large_manifest(client: TestClient, data: SuiteData) -> None:
    """The rewritten suite pushes a ~3.9 MB manifest (390 annotations of 10000 bytes): under the 4 MiB
    the spec says registries SHOULD accept."""
    ns = NAMESPACE
    await post_put_blob(client, ns, data.configs[0], "config")
    await post_put_blob(client, ns, data.layer, "layer")
    doc = json.loads(data.manifests[0].content)
    doc["annotations"] = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
    manifest = Blob(_pretty(doc))
    assert len(manifest.content) < 4 * 1024 * 1024
    resp = await put_manifest(client, ns, "large-manifest", manifest, "PUT large manifest")
    assert resp.status == 201
    resp = await client.get(f"/v2/{ns}/manifests/large-manifest", headers={"Accept": OCI_MANIFEST})
    assert await resp.read() == manifest.content


async def test_empty_repository_listings(client: TestClient) -> None:
    """Before anything is pushed: the tag list is 200 or 404, the referrers list an empty 200 index."""
    resp = await client.get(f"/v2/{NAMESPACE}/tags/list")
    assert resp.status in (200, 404)
    _, listed = await referrers(client, NAMESPACE, digest_of(os.urandom(16)))
    assert listed == []
