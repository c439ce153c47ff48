"""Signature artifacts in the registry: media types, classification, discovery and bounded reads.

- A manifest is classified by its OWN content, never by an index entry describing it (cosign 3.1.1
  writes a wrong `artifactType` in the referrers-tag index): `artifactType`, else `config.mediaType`,
  else the media types of its layers.
- Discovery for a manifest digest `<alg>:<hex>` reads the referrers listing and three tags: the cosign
  legacy `<alg>-<hex>.sig` and `<alg>-<hex>.att`, and the OCI referrers tag schema index `<alg>-<hex>`.
  The digests found form the `SignatureSet.key`, part of every signature verdict's cache key, so a new signature is
  seen at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from storage.references import Digest
from storage.store import BlobUnknownError, Manifest, ManifestUnknownError, RegistryStore
from trust import strictjson

NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
NOTATION_ENVELOPES = ("application/jose+json", "application/cose")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_SIGNATURE_BLOB = 1 << 20
MAX_CANDIDATES = 64


def strict_doc(manifest: Manifest) -> dict[str, Any] | None:
    """The manifest's JSON object as Go clients read it, or None if they could read it otherwise
    (trust.strictjson) or it is not a JSON object."""
    try:
        doc = strictjson.loads(manifest.body, strictjson.MANIFEST_FIELDS)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def manifest_doc(manifest: Manifest) -> dict[str, Any]:
    """`strict_doc`, with {} for anything ambiguous or not an object (it then classifies as nothing)."""
    return strict_doc(manifest) or {}


def layer_types(doc: dict[str, Any]) -> list[str]:
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return []
    return [str(layer.get("mediaType", "")) if isinstance(layer, dict) else "" for layer in layers]


def signature_kind(doc: dict[str, Any]) -> str | None:
    """"cosign" (legacy .sig/.att), "sigstore-bundle", "notation", or None for anything else, from the
    manifest's own fields: besides the artifact type, every layer must be of the signature's own media
    type and the config of the media type the format prescribes. This picks candidates; only
    trust.exemption, which reads the blobs, decides that one is served ungated."""
    layers = layer_types(doc)
    if not layers:
        return None
    declared = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else ""
    config = doc.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    if ((declared == NOTATION_SIGNATURE and config_type == OCI_EMPTY)
            or (not declared and config_type == NOTATION_SIGNATURE)):
        return "notation" if all(t in NOTATION_ENVELOPES for t in layers) else None
    if declared.startswith(SIGSTORE_BUNDLE_PREFIX):
        ok = config_type == OCI_EMPTY and all(t.startswith(SIGSTORE_BUNDLE_PREFIX) for t in layers)
        return "sigstore-bundle" if ok else None
    if all(t in (COSIGN_SIMPLESIGNING, DSSE_ENVELOPE) for t in layers):
        return "cosign"
    return None


def tag_for(digest: Digest, suffix: str = "") -> str:
    return f"{digest.algorithm}-{digest.hex}{suffix}"


@dataclass(frozen=True)
class SignatureSet:
    """What refers to a manifest: referrer manifest digests (from the referrers API and the tag-schema
    index), and the cosign legacy `.sig` manifest digest. `key` identifies the whole set."""

    referrers: tuple[str, ...]
    legacy_sig: str | None
    key: frozenset[str]
    legacy_att: str | None = None  # cosign's `<alg>-<hex>.att` attestation manifest


async def _tag(store: RegistryStore, repository: str, tag: str) -> Digest | None:
    try:
        return await store.resolve_tag(repository, tag)
    except (ManifestUnknownError, ValueError):  # no such tag; or too long a name (sha512) to be one
        return None


async def discover(store: RegistryStore, repository: str, digest: Digest) -> SignatureSet:
    """One referrers listing and three tag reads (the tag-schema index is read only when present)."""
    listed, sig, index, att = await asyncio.gather(
        store.referrers(repository, digest), _tag(store, repository, tag_for(digest, ".sig")),
        _tag(store, repository, tag_for(digest)), _tag(store, repository, tag_for(digest, ".att")),
    )
    referrers = [str(d.get("digest")) for d in listed if isinstance(d, dict) and d.get("digest")]
    key = set(referrers)
    if index is not None:
        key.add(f"index:{index}")
        try:
            doc = manifest_doc(await store.get_manifest(repository, index))
        except ManifestUnknownError:
            doc = {}
        for entry in doc.get("manifests") or []:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str) and entry["digest"] not in referrers:
                referrers.append(entry["digest"])
    if sig is not None:
        key.add(f"sig:{sig}")
    if att is not None:
        key.add(f"att:{att}")
    return SignatureSet(tuple(sorted(set(referrers)))[:MAX_CANDIDATES], str(sig) if sig else None, frozenset(key),
                        str(att) if att else None)


async def load_manifest(store: RegistryStore, repository: str, digest: str) -> tuple[Manifest, dict[str, Any]] | None:
    try:
        manifest = await store.get_manifest(repository, Digest.parse(digest))
    except (ManifestUnknownError, ValueError):
        return None
    return manifest, manifest_doc(manifest)


class BlobError(Exception):
    """A signature blob is missing, too large, or does not match its descriptor's digest."""


class BlobMissingError(BlobError):
    """The blob is not (yet) in the repository."""


async def read_layer(store: RegistryStore, repository: str, layer: Any) -> bytes:
    """Read a signature layer blob (bounded) and check it against the descriptor's digest."""
    if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
        raise BlobError("layer descriptor without digest")
    try:
        digest = Digest.parse(layer["digest"])
    except ValueError as e:
        raise BlobError(f"layer digest {layer['digest']!r} is invalid") from e
    try:
        info = await store.stat_blob(repository, digest)
    except BlobUnknownError as e:
        raise BlobMissingError(f"layer blob {digest} is missing") from e
    if info.size > MAX_SIGNATURE_BLOB:
        raise BlobError(f"layer blob {digest} is too large ({info.size} bytes)")
    chunks = [chunk async for chunk in store.read_blob(info)]
    data = b"".join(chunks)
    if hashlib.new(digest.algorithm, data).hexdigest() != digest.hex:
        raise BlobError(f"layer blob does not match its digest {digest}")
    if isinstance(layer.get("size"), int) and layer["size"] != len(data):
        raise BlobError(f"layer blob is {len(data)} bytes, its descriptor says {layer['size']}")
    return data
