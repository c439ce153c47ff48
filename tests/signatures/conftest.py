"""Fixtures for the signature tests: a filesystem store, images in it, and gates over policies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from registry.manifests import parse_manifest, referrer_descriptor
from storage.filesystem import FilesystemDriver
from storage.references import Digest
from storage.store import Manifest, RegistryStore
from tests.helpers import OCI_MANIFEST, image_manifest
from tests.signatures.factory import Artifact
from trust.gate import ContentTrustGate
from trust.policy import Policy, PolicyHolder

REPO = "secure/app"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class NoTrustData:
    async def current_etag(self, repository: str) -> str | None:
        return None

    async def load(self, repository: str) -> None:
        return None


@dataclass
class Image:
    manifest: Manifest

    @property
    def digest(self) -> str:
        return str(self.manifest.digest)

    @property
    def subject(self) -> dict[str, Any]:
        return {"mediaType": self.manifest.media_type, "digest": self.digest, "size": len(self.manifest.body)}


class Registry:
    """A RegistryStore with helpers to push images and signature artifacts like a client would."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.counter = 0

    async def put(self, body: bytes, blobs: list[bytes], tags: list[str], repo: str = REPO) -> Manifest:
        for blob in blobs:
            await self.store.put_blob(repo, _once(blob), Digest.of(blob))
        parsed = parse_manifest(body, json.loads(body).get("mediaType", OCI_MANIFEST))
        digest = Digest.of(body)
        descriptor = referrer_descriptor(parsed, digest, len(body)) if parsed.subject else None
        await self.store.put_manifest(repo, body, parsed.media_type, digest, tags, parsed.subject, descriptor)
        return await self.store.get_manifest(repo, digest)

    async def image(self, tag: str = "v1", repo: str = REPO) -> Image:
        self.counter += 1
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": self.counter}).encode()
        layer = f"layer {self.counter} of {tag}".encode()
        return Image(await self.put(image_manifest(config, [layer]), [config, layer], [tag], repo))

    async def push(self, artifact: Artifact, repo: str = REPO) -> Manifest:
        return await self.put(artifact.manifest, artifact.blobs, [artifact.tag] if artifact.tag else [], repo)


@pytest.fixture
def registry_store(tmp_path: Path) -> Registry:
    return Registry(RegistryStore(FilesystemDriver(str(tmp_path / "data"))))


GateFactory = Callable[..., ContentTrustGate]


@pytest.fixture
def make_gate(registry_store: Registry) -> GateFactory:
    """`make_gate(config, now=None)` -> a gate over the store with that policy (no Notary data)."""

    def make(config: dict[str, Any], now: datetime | None = None) -> ContentTrustGate:
        policy = Policy.from_config(config)
        policy.load_trust_roots()
        kwargs: dict[str, Any] = {"clock": (lambda: now)} if now is not None else {}
        return ContentTrustGate(registry_store.store, NoTrustData(), PolicyHolder(policy), **kwargs)

    return make


def cosign_policy(*keys: str, min_signatures: int = 1, project: str = "secure") -> dict[str, Any]:
    return {"trust_roots": {"ci": {"type": "cosign-key", "public_keys": list(keys)}},
            "projects": {project: {"content_trust": {
                "enforce": True, "require_any": [{"cosign": {"trust_root": "ci", "min_signatures": min_signatures}}]}}}}


def notation_policy(*ca_pems: str, identities: list[str] | None = None) -> dict[str, Any]:
    notation: dict[str, Any] = {"trust_root": "pki"}
    if identities is not None:
        notation["identities"] = identities
    return {"trust_roots": {"pki": {"type": "x509-ca", "certificates": list(ca_pems)}},
            "projects": {"secure": {"content_trust": {"enforce": True, "require_any": [{"notation": notation}]}}}}
