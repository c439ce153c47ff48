"""Manifest parsing and validation, independent of HTTP.

Known media types are validated against JSON schemas (registry/schemas/); any other media type is
accepted as an artifact manifest if it is a JSON object. References (config, layers, index children)
are returned so the caller can check they exist in the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from storage.references import Digest, InvalidReferenceError

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

# Layers whose bytes live elsewhere (they carry `urls`); a registry need not hold them.
FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)

_SCHEMA_FILES = {
    OCI_MANIFEST: "oci-image-manifest.json",
    DOCKER_MANIFEST: "oci-image-manifest.json",
    OCI_INDEX: "oci-image-index.json",
    DOCKER_LIST: "oci-image-index.json",
}


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


@cache
def _schema(filename: str) -> dict[str, Any]:
    return json.loads(resources.files("registry").joinpath("schemas", filename).read_text())


@cache
def _validator(filename: str) -> jsonschema.protocols.Validator:
    """One validator per schema, checked and built once: `jsonschema.validate` re-checks the schema
    against its metaschema and builds a new validator on every call (milliseconds per manifest)."""
    schema = _schema(filename)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _digest(value: Any, where: str) -> Digest:
    if not isinstance(value, str):
        raise ManifestInvalidError(f"{where}: digest must be a string")
    try:
        return Digest.parse(value)
    except InvalidReferenceError as e:
        raise ManifestInvalidError(f"{where}: {e}") from e


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate `body` as a manifest of the declared `content_type` (or its own `mediaType`)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestInvalidError(f"manifest is not valid JSON: {e}") from e
    except RecursionError as e:  # hostile nesting depth
        raise ManifestInvalidError("manifest JSON is nested too deeply") from e
    if not isinstance(doc, dict):
        raise ManifestInvalidError("manifest must be a JSON object")
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
    schema_file = _SCHEMA_FILES.get(media_type)
    if schema_file is not None:
        try:
            error = jsonschema.exceptions.best_match(_validator(schema_file).iter_errors(doc))
            if error is not None:
                raise error
        except jsonschema.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise ManifestInvalidError(f"{path}: {e.message}") from e
    if media_type in IMAGE_TYPES:
        parsed.blobs.append(_digest(doc["config"]["digest"], "config"))
        for i, layer in enumerate(doc["layers"]):
            if layer.get("mediaType") in FOREIGN_LAYER_TYPES and layer.get("urls"):
                continue
            parsed.blobs.append(_digest(layer["digest"], f"layers/{i}"))
        parsed.artifact_type = doc.get("artifactType") or doc["config"].get("mediaType")
    elif media_type in INDEX_TYPES:
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
