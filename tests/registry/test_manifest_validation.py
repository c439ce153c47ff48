"""Manifest validation rules (registry.manifests), without HTTP."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInvalidError,
    parse_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def image(media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 10},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 20,
             "annotations": {"a": "b"}},
        ],
        "annotations": {"org.opencontainers.image.created": "2026-11-24T00:00:00Z"},
    }


def index(media_type: str = OCI_INDEX) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": D1, "size": 500,
             "platform": {"architecture": "amd64", "os": "linux", "variant": "v3"}},
            {"mediaType": OCI_MANIFEST, "digest": D2, "size": 501},
        ],
    }


def parse(doc: dict[str, Any], content_type: str | None = None):
    return parse_manifest(json.dumps(doc).encode(), content_type or doc.get("mediaType"))


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_valid_image_manifest_returns_its_references(media_type: str) -> None:
    parsed = parse(image(media_type))
    assert parsed.media_type == media_type
    assert [str(d) for d in parsed.blobs] == [D1, D2]
    assert parsed.children == []
    assert parsed.artifact_type == "application/vnd.oci.image.config.v1+json"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_valid_index_returns_its_children(media_type: str) -> None:
    parsed = parse(index(media_type))
    assert [str(d) for d in parsed.children] == [D1, D2]
    assert parsed.blobs == []


def test_subject_and_artifact_type_are_reported() -> None:
    doc = image()
    doc["artifactType"] = "application/example+type"
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": D3, "size": 7}
    parsed = parse(doc)
    assert parsed.subject == doc["subject"]
    assert parsed.artifact_type == "application/example+type"


def test_foreign_layers_with_urls_are_not_required() -> None:
    doc = image(DOCKER_MANIFEST)
    doc["layers"].append({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                          "digest": D3, "size": 5, "urls": ["https://example.com/layer"]})
    assert [str(d) for d in parse(doc).blobs] == [D1, D2]


@pytest.mark.parametrize("path, value", [("schemaVersion", 2.0), ("config/size", 10.0),
                                         ("layers/0/size", 2**63), ("config/size", True)])
def test_sizes_and_version_are_int64_literals_as_go_decodes_them(path: str, value: Any) -> None:
    """Go's encoding/json cannot put 10.0 or 2**63 into an int64: containerd would fail the document
    that Python's json reads happily, so it is refused at push."""
    with pytest.raises(ManifestInvalidError):
        parse(_set(image(), path, value))


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split("/")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()


def _ids(cases: list[tuple[str, Any, str]]) -> list[str]:
    return [f"{path}={'(deleted)' if value is _DELETE else repr(value)}" for path, value, _ in cases]

IMAGE_BREAKAGES = [
    ("schemaVersion", _DELETE, "'schemaVersion' is a required property"),
    ("schemaVersion", 1, "schemaVersion: must be 2"),
    ("schemaVersion", True, "schemaVersion: must be 2"),
    ("schemaVersion", "2", "schemaVersion: must be 2"),
    ("config", _DELETE, "'config' is a required property"),
    ("layers", _DELETE, "'layers' is a required property"),
    ("layers", {}, "layers: must be an array"),
    ("config", [], "config: must be a descriptor object"),
    ("config/mediaType", _DELETE, "config: 'mediaType' is a required property"),
    ("config/mediaType", 5, "config/mediaType: must be a string"),
    ("config/mediaType", "not a media type", "config/mediaType: 'not a media type' is not a media type"),
    ("config/digest", _DELETE, "config: 'digest' is a required property"),
    ("config/digest", 12, "config/digest: must be a string"),
    ("config/digest", "sha256:short", "config: "),
    ("config/size", _DELETE, "config: 'size' is a required property"),
    ("config/size", -1, "config/size: must be a non-negative integer"),
    ("config/size", 1.5, "config/size: must be a non-negative integer"),
    ("config/size", False, "config/size: must be a non-negative integer"),
    ("config/size", "10", "config/size: must be a non-negative integer"),
    ("layers/0/urls", "https://x", "layers/0/urls: must be an array of strings"),
    ("layers/0/urls", [1], "layers/0/urls: must be an array of strings"),
    ("layers/0/annotations", {"a": 1}, "layers/0/annotations/a: must be a string"),
    ("layers/0/annotations", None, "layers/0/annotations: must be an object"),
    ("layers/0/artifactType", 3, "layers/0/artifactType: must be a string"),
    ("layers/0/data", 3, "layers/0/data: must be a string"),
    ("annotations", ["x"], "annotations: must be an object"),
    ("annotations", {"k": None}, "annotations/k: must be a string"),
    ("artifactType", 1, "artifactType: must be a string"),
    ("subject", {"mediaType": OCI_MANIFEST, "digest": D3}, "subject: 'size' is a required property"),
]


@pytest.mark.parametrize(("path", "value", "message"), IMAGE_BREAKAGES, ids=_ids(IMAGE_BREAKAGES))
def test_invalid_image_manifest_is_refused_with_the_field_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ManifestInvalidError) as e:
        parse(_set(image(), path, value))
    assert message in str(e.value)


INDEX_BREAKAGES = [
    ("manifests", _DELETE, "'manifests' is a required property"),
    ("manifests", "x", "manifests: must be an array"),
    ("manifests/0", "x", "manifests/0: must be a descriptor object"),
    ("manifests/1/size", -5, "manifests/1/size: must be a non-negative integer"),
    ("manifests/0/platform", "linux", "manifests/0/platform: must be an object"),
    ("manifests/0/platform", {"os": "linux"}, "manifests/0/platform/architecture: is required"),
    ("manifests/0/platform", {"architecture": "arm64", "os": 1}, "manifests/0/platform/os: is required"),
    ("manifests/0/annotations", {"x": []}, "manifests/0/annotations/x: must be a string"),
    ("subject", {"digest": D3}, "subject: must be a descriptor object"),
    ("schemaVersion", 3, "schemaVersion: must be 2"),
]


@pytest.mark.parametrize(("path", "value", "message"), INDEX_BREAKAGES, ids=_ids(INDEX_BREAKAGES))
def test_invalid_index_is_refused_with_the_field_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ManifestInvalidError) as e:
        parse(_set(index(), path, value))
    assert message in str(e.value)


def test_index_children_media_types_are_not_restricted() -> None:
    # The index schema leaves a child's mediaType free-form (only a string is required).
    doc = _set(index(), "manifests/0/mediaType", "unusual media type")
    assert len(parse(doc).children) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", OCI_MANIFEST, "not valid JSON"),
        (b"[]", OCI_MANIFEST, "must be a JSON object"),
        (json.dumps(image()).encode(), OCI_INDEX, "does not match Content-Type"),
        (b'{"schemaVersion": 2}', None, "media type unknown"),
        (b'{"schemaVersion": 1}', "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    ],
)
def test_unparseable_or_mislabelled_manifests_are_refused(body: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(ManifestInvalidError, match=message):
        parse_manifest(body, content_type)


@pytest.mark.parametrize("content_type", [OCI_MANIFEST, "application/x-custom+json"])
def test_nesting_is_bounded(content_type: str) -> None:
    """Documents any later reader can parse: a fixed nesting bound, whatever the media type."""
    from registry.manifests import MAX_NESTING

    def nested(levels: int) -> bytes:  # `levels` objects, one inside the other
        return b'{"a":' * levels + b"1" + b"}" * levels

    doc = json.loads(nested(MAX_NESTING))
    assert parse_manifest(json.dumps(doc).encode(), "application/x-custom+json").media_type
    with pytest.raises(ManifestInvalidError, match="nested more than"):
        parse_manifest(nested(MAX_NESTING + 1), content_type)
    with pytest.raises(ManifestInvalidError, match="nested more than"):
        parse_manifest(b'{"a":' + b"[" * MAX_NESTING + b"]" * MAX_NESTING + b"}", content_type)


def test_unknown_media_types_are_accepted_as_artifacts() -> None:
    parsed = parse_manifest(b'{"artifactType": "application/x-thing", "blobs": []}', "application/x-custom+json")
    assert parsed.media_type == "application/x-custom+json"
    assert parsed.artifact_type == "application/x-thing"
    assert parsed.blobs == [] and parsed.children == []
