"""What a proxy project remembers beside the repository, in storage (so every replica agrees):

    repositories/<name>/_proxy/tags/<tag>             JSON TagRecord: the tag's last resolution upstream
    repositories/<name>/_proxy/blobs/<alg>/<hex>      JSON {"size": n}: an admitted manifest references
                                                      this blob; only these are ever fetched upstream

Repository path components cannot start with `_`, so `_proxy` never clashes with a name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from storage.base import PathNotFoundError
from storage.references import Digest, validate_tag
from storage.store import RegistryStore, repo_key

ACCEPTED = "accepted"


@dataclass
class TagRecord:
    """A tag's last resolution: the digest upstream named, when, from where, and the verdict."""

    digest: str
    resolved: float  # seconds since the epoch
    upstream: str  # url/repository:tag
    verdict: str = ACCEPTED  # or the gate's refusal reason
    refused: bool = False


class ProxyRecords:
    """Tag resolutions and fetchable-blob marks of proxy repositories."""

    def __init__(self, store: RegistryStore) -> None:
        self.driver = store.driver

    @staticmethod
    def _tag_key(name: str, tag: str) -> str:
        return f"{repo_key(name)}/_proxy/tags/{validate_tag(tag)}"

    @staticmethod
    def _blob_key(name: str, digest: Digest) -> str:
        return f"{repo_key(name)}/_proxy/blobs/{digest.algorithm}/{digest.hex}"

    async def tag(self, name: str, tag: str) -> TagRecord | None:
        try:
            doc = json.loads(await self.driver.get(self._tag_key(name, tag)))
            return TagRecord(**doc)
        except (PathNotFoundError, ValueError, TypeError):
            return None

    async def tags(self, name: str) -> list[str]:
        """The tags of `name` that have a resolution record."""
        return await self.driver.list(f"{repo_key(name)}/_proxy/tags")

    async def set_tag(self, name: str, tag: str, record: TagRecord) -> None:
        await self.driver.put(self._tag_key(name, tag), json.dumps(asdict(record)).encode())

    async def mark_blob(self, name: str, digest: Digest, size: int) -> None:
        await self.driver.put(self._blob_key(name, digest), json.dumps({"size": size}).encode())

    async def blob_size(self, name: str, digest: Digest) -> int | None:
        """The size an admitted manifest gives the blob, or None if no admitted manifest references it."""
        try:
            size = json.loads(await self.driver.get(self._blob_key(name, digest))).get("size")
        except (PathNotFoundError, ValueError, AttributeError):
            return None
        return size if isinstance(size, int) and size >= 0 else None
