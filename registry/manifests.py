"""Manifest parsing and validation, independent of HTTP.

Image manifests and indexes (OCI and Docker schema 2) are checked field by field against the
image-spec's rules for their properties and descriptors; any other media type is accepted as an
artifact manifest if it is a JSON object. Every manifest is first read the way Go's encoding/json
(containerd, docker) reads it, or refused (trust.strictjson): no duplicate or case-variant keys, so
the gate and the runtime always see the same document; an image manifest never has `manifests`, an
index never `config` or `layers`. Written out rather than run through a JSON-schema engine:
it sits on every manifest push, and costs microseconds instead of a tenth of a millisecond.
References (config, layers, index children) are returned so the caller can check they exist in the
repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from storage.references import Digest, InvalidReferenceError
from trust import strictjson

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
# Real manifests nest a handful of levels; a bound far below Python's recursion limit keeps every
# later reader of stored manifests (gc, check, the gate, the UI) able to parse what was accepted.
MAX_NESTING = 64

# Layers whose bytes live elsewhere (they carry `urls`); a registry need not hold them.
FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)

# RFC 6838 type/subtype, as the image-spec's descriptor schema restricts it.
MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


class ManifestInvalidError(ValueError):
    """The manifest is not acceptable; the message says why."""


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[Digest] = field(default_factory=list)  # config and layers that must be present
    children: list[Digest] = field(default_factory=list)  # index entries that must be present
    subject: dict[str, Any] | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


def _invalid(where: str, message: str) -> ManifestInvalidError:
    return ManifestInvalidError(f"{where}: {message}")


def _optional_string(obj: dict[str, Any], key: str, where: str) -> None:
    if key in obj and not isinstance(obj[key], str):
        raise _invalid(f"{where}{key}", "must be a string")


def _check_annotations(obj: dict[str, Any], where: str) -> None:
    annotations = obj.get("annotations")
    if annotations is None and "annotations" not in obj:
        return
    if not isinstance(annotations, dict):
        raise _invalid(f"{where}annotations", "must be an object")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise _invalid(f"{where}annotations/{key}", "must be a string")


def _check_descriptor(desc: Any, where: str, strict_media_type: bool = True) -> None:
    """A content descriptor: mediaType, digest (its grammar is checked by `_digest`), size >= 0."""
    if not isinstance(desc, dict):
        raise _invalid(where, "must be a descriptor object")
    for key in ("mediaType", "digest", "size"):
        if key not in desc:
            raise _invalid(where, f"{key!r} is a required property")
    media_type = desc["mediaType"]
    if not isinstance(media_type, str):
        raise _invalid(f"{where}/mediaType", "must be a string")
    if strict_media_type and not MEDIA_TYPE_RE.fullmatch(media_type):
        raise _invalid(f"{where}/mediaType", f"{media_type[:200]!r} is not a media type")
    if not isinstance(desc["digest"], str):
        raise _invalid(f"{where}/digest", "must be a string")
    size = desc["size"]
    if not strictjson.is_int64(size) or size < 0:
        raise _invalid(f"{where}/size", "must be a non-negative integer")
    urls = desc.get("urls")
    if "urls" in desc and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise _invalid(f"{where}/urls", "must be an array of strings")
    _optional_string(desc, "artifactType", f"{where}/")
    _optional_string(desc, "data", f"{where}/")
    _check_annotations(desc, f"{where}/")


def _check_common(doc: dict[str, Any]) -> None:
    version = doc.get("schemaVersion")
    if "schemaVersion" not in doc:
        raise _invalid("(root)", "'schemaVersion' is a required property")
    if not strictjson.is_int64(version) or version != 2:
        raise _invalid("schemaVersion", "must be 2")
    _optional_string(doc, "mediaType", "")
    _optional_string(doc, "artifactType", "")
    _check_annotations(doc, "")


def _check_image(doc: dict[str, Any]) -> None:
    _check_common(doc)
    if "manifests" in doc:  # runtimes tell an index from an image by these fields: never both
        raise _invalid("manifests", "an image manifest must not have 'manifests'")
    for key in ("config", "layers"):
        if key not in doc:
            raise _invalid("(root)", f"{key!r} is a required property")
    _check_descriptor(doc["config"], "config")
    if not isinstance(doc["layers"], list):
        raise _invalid("layers", "must be an array")
    for i, layer in enumerate(doc["layers"]):
        _check_descriptor(layer, f"layers/{i}")
    if "subject" in doc:
        _check_descriptor(doc["subject"], "subject")


def _check_index(doc: dict[str, Any]) -> None:
    _check_common(doc)
    for key in ("config", "layers"):
        if key in doc:
            raise _invalid(key, f"an index must not have {key!r}")
    if "manifests" not in doc:
        raise _invalid("(root)", "'manifests' is a required property")
    if not isinstance(doc["manifests"], list):
        raise _invalid("manifests", "must be an array")
    for i, child in enumerate(doc["manifests"]):
        where = f"manifests/{i}"
        _check_descriptor(child, where, strict_media_type=False)
        if "platform" in child:
            platform = child["platform"]
            if not isinstance(platform, dict):
                raise _invalid(f"{where}/platform", "must be an object")
            for key in ("architecture", "os"):
                if not isinstance(platform.get(key), str):
                    raise _invalid(f"{where}/platform/{key}", "is required and must be a string")
    subject = doc.get("subject")
    if "subject" in doc and not (isinstance(subject, dict) and {"mediaType", "digest", "size"} <= subject.keys()):
        raise _invalid("subject", "must be a descriptor object")


def _digest(value: Any, where: str) -> Digest:
    if not isinstance(value, str):
        raise ManifestInvalidError(f"{where}: digest must be a string")
    try:
        return Digest.parse(value)
    except InvalidReferenceError as e:
        raise ManifestInvalidError(f"{where}: {e}") from e


def _nesting_exceeds(doc: Any, limit: int) -> bool:
    """Whether objects/arrays nest more than `limit` levels (iteratively: no recursion of our own)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate `body` as a manifest of the declared `content_type` (or its own `mediaType`)."""
    try:
        doc = strictjson.loads(body, strictjson.MANIFEST_FIELDS)
    except strictjson.AmbiguousJSONError as e:
        raise ManifestInvalidError(f"manifest JSON is ambiguous (clients would read it differently): {e}") from e
    except ValueError as e:  # UnicodeDecodeError included
        raise ManifestInvalidError(f"manifest is not valid JSON: {e}") from e
    except RecursionError as e:  # hostile nesting depth
        raise ManifestInvalidError("manifest JSON is nested too deeply") from e
    if not isinstance(doc, dict):
        raise ManifestInvalidError("manifest must be a JSON object")
    if _nesting_exceeds(doc, MAX_NESTING):
        raise ManifestInvalidError(f"manifest JSON is nested more than {MAX_NESTING} levels deep")
    declared = doc.get("mediaType")
    content_type = (content_type or "").split(";")[0].strip() or None
    media_type = content_type or declared
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalidError("manifest media type unknown: send Content-Type or a mediaType field")
    if declared is not None and content_type is not None and declared != content_type:
        raise ManifestInvalidError(f"mediaType {declared!r} does not match Content-Type {content_type!r}")
    if media_type in DOCKER_SCHEMA1:
        raise ManifestInvalidError("Docker schema 1 manifests are not supported; push schema 2 or OCI")

    parsed = ParsedManifest(media_type=media_type)
    if media_type in IMAGE_TYPES:
        _check_image(doc)
        parsed.blobs.append(_digest(doc["config"]["digest"], "config"))
        for i, layer in enumerate(doc["layers"]):
            if layer.get("mediaType") in FOREIGN_LAYER_TYPES and layer.get("urls"):
                continue
            parsed.blobs.append(_digest(layer["digest"], f"layers/{i}"))
        parsed.artifact_type = doc.get("artifactType") or doc["config"].get("mediaType")
    elif media_type in INDEX_TYPES:
        _check_index(doc)
        for i, child in enumerate(doc["manifests"]):
            parsed.children.append(_digest(child["digest"], f"manifests/{i}"))
        parsed.artifact_type = doc.get("artifactType")
    else:
        parsed.artifact_type = doc.get("artifactType")
    subject = doc.get("subject")
    if subject is not None:
        if not isinstance(subject, dict) or not isinstance(subject.get("mediaType"), str):
            raise ManifestInvalidError("subject must be a descriptor")
        _digest(subject.get("digest"), "subject")
        parsed.subject = subject
    annotations = doc.get("annotations")
    if isinstance(annotations, dict):
        parsed.annotations = annotations
    return parsed


def referrer_descriptor(parsed: ParsedManifest, digest: Digest, size: int) -> dict[str, Any]:
    """The descriptor of this manifest as listed by the referrers API."""
    desc: dict[str, Any] = {"mediaType": parsed.media_type, "digest": str(digest), "size": size}
    if parsed.artifact_type:
        desc["artifactType"] = parsed.artifact_type
    if parsed.annotations:
        desc["annotations"] = parsed.annotations
    return desc
