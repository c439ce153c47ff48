"""Project quotas (`projects.<p>.quota: {bytes: 20GiB}`): a push that would take a project past its
bytes is refused `403 DENIED` with the figures in `detail`.

Usage is never a counter (it would drift with several replicas on one storage, crashes and gc): it
is computed from what the project's repositories link (`_layers` and manifest revisions), each
distinct digest once per project with its stored size, and cached. Every push into a project with a
quota rewrites the project's generation object (`quotas/<project>/generation`, a random token) after
linking; a cached usage is used only while the token is unchanged (one small read per admission), so
a push through any replica is seen by the next admission everywhere. Deletions and `trustreg gc`
only lower usage: they are seen when the cache is older than `MAX_AGE` seconds, and a refusal is
always decided on a fresh computation, so stale figures never refuse a push there is room for.
Pushes admitted concurrently may overshoot by what they carry together. Sizes are read once per
digest (content-addressed: a digest's size never changes).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from registry.errors import RegistryError
from registry.immutable import project_config
from storage.base import PathNotFoundError
from storage.references import ALGORITHMS, Digest, InvalidReferenceError
from storage.store import RegistryStore, blob_key, repo_key
from trust.policy import project_of

MAX_AGE = 5.0  # seconds a computed usage is trusted for admitting a push
_SIZE_CACHE_LIMIT = 200_000
_STAT_CONCURRENCY = 32
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

USED = Gauge("trustreg_project_used_bytes", "Bytes a project's repositories link (each digest once)",
             ["project"], multiprocess_mode="mostrecent")
QUOTA = Gauge("trustreg_project_quota_bytes", "A project's configured quota", ["project"],
              multiprocess_mode="mostrecent")


def parse_bytes(value: int | str) -> int:
    """`20GiB`, `500 MB`, `1048576` -> bytes (ValueError if malformed)."""
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def project_quota(raw: Mapping[str, Any], project: str) -> int | None:
    """The project's quota in bytes, None without one."""
    quota = project_config(raw, f"{project}/x").get("quota")
    return None if not quota or "bytes" not in quota else parse_bytes(quota["bytes"])


@dataclass
class Usage:
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> size, every one linked in the project
    computed: float = 0.0  # time.monotonic() of the computation
    generation: bytes = b""  # the project's generation token read before computing

    @property
    def used(self) -> int:
        return sum(self.sizes.values())


class QuotaAccountant:
    """Per-project usage, computed from the links in storage and cached (see the module docstring)."""

    def __init__(self, store: RegistryStore, raw: Callable[[], Mapping[str, Any]]) -> None:
        self.store = store
        self.raw = raw
        self._usage: dict[str, Usage] = {}
        self._sizes: dict[str, int] = {}

    async def _size(self, digest: str) -> int:
        size = self._sizes.get(digest)
        if size is None:
            d = Digest.parse(digest)
            try:
                size = (await self.store.driver.stat(blob_key(d))).size
            except PathNotFoundError:  # swept content, dangling link: holds no space
                return 0
            if len(self._sizes) >= _SIZE_CACHE_LIMIT:
                self._sizes.clear()
            self._sizes[digest] = size
        return size

    async def _linked(self, repository: str) -> set[str]:
        digests = set()
        for where in ("_layers", "_manifests/revisions"):
            for alg in ALGORITHMS:
                for hex_ in await self.store.driver.list(f"{repo_key(repository)}/{where}/{alg}"):
                    try:
                        digests.add(str(Digest.parse(f"{alg}:{hex_}")))
                    except InvalidReferenceError:
                        continue
        return digests

    def _generation_key(self, project: str) -> str:
        return f"quotas/{project}/generation"

    async def _generation(self, project: str) -> bytes:
        try:
            return await self.store.driver.get(self._generation_key(project))
        except PathNotFoundError:
            return b""

    async def compute(self, project: str) -> Usage:
        """Usage from storage now (and cached)."""
        started = time.monotonic()
        generation = await self._generation(project)
        repositories = [r for r in await self.store.catalog() if project_of(r) == project]
        digests: set[str] = set()
        for linked in await asyncio.gather(*(self._linked(r) for r in repositories)):
            digests |= linked
        limit = asyncio.Semaphore(_STAT_CONCURRENCY)

        async def sized(digest: str) -> tuple[str, int]:
            async with limit:
                return digest, await self._size(digest)

        usage = Usage(dict(await asyncio.gather(*(sized(d) for d in sorted(digests)))), started, generation)
        self._usage[project] = usage
        self._publish(project, usage)
        return usage

    async def usage(self, project: str, max_age: float = MAX_AGE) -> Usage:
        """The cached usage while it is young and no push changed the project since; else computed."""
        cached = self._usage.get(project)
        if (cached is not None and time.monotonic() - cached.computed <= max_age
                and await self._generation(project) == cached.generation):
            return cached
        return await self.compute(project)

    def _publish(self, project: str, usage: Usage) -> None:
        USED.labels(project).set(usage.used)
        limit = project_quota(self.raw(), project)
        if limit is not None:
            QUOTA.labels(project).set(limit)

    async def admit(self, repository: str, digest: Digest | None, size: int) -> None:
        """Refuse (403 DENIED) storing `size` bytes of `digest` in `repository` if its project would
        exceed its quota; content the project already holds costs nothing."""
        project = project_of(repository)
        limit = project_quota(self.raw(), project)
        if limit is None:
            return
        usage = await self.usage(project)
        if not self._exceeds(usage, digest, size, limit):
            return
        usage = await self.compute(project)  # refuse on fresh figures only
        if self._exceeds(usage, digest, size, limit):
            raise RegistryError(
                "DENIED",
                f"quota of project {project} exceeded",
                {"project": project, "quota": limit, "used": usage.used, "requested": size},
                status=403,
            )

    @staticmethod
    def _exceeds(usage: Usage, digest: Digest | None, size: int, limit: int) -> bool:
        if digest is not None and str(digest) in usage.sizes:
            return False
        return usage.used + size > limit

    async def added(self, repository: str, digest: Digest, size: int) -> None:
        """Content now linked in `repository`: announce it to every process (a new generation) and
        keep this process's cached usage exact (or drop it if another process pushed meanwhile)."""
        project = project_of(repository)
        if project_quota(self.raw(), project) is None:
            return
        usage = self._usage.get(project)
        if usage is not None and await self._generation(project) != usage.generation:
            self._usage.pop(project, None)  # another process pushed since: compute afresh next time
            usage = None
        token = uuid.uuid4().hex.encode()
        await self.store.driver.put(self._generation_key(project), token)
        if usage is not None:
            usage.sizes[str(digest)] = size
            usage.generation = token
            self._sizes[str(digest)] = size
            self._publish(project, usage)

    def removed(self, repository: str) -> None:
        """Something was unlinked in `repository`: its project's usage is computed afresh next time."""
        self._usage.pop(project_of(repository), None)


QUOTAS = web.AppKey("quotas", QuotaAccountant)


def setup(app: web.Application, store: RegistryStore, raw: Callable[[], Mapping[str, Any]]) -> None:
    app[QUOTAS] = QuotaAccountant(store, raw)


def accountant(request: web.Request) -> QuotaAccountant:
    return request.app[QUOTAS]


async def quota_json(request: web.Request, project: str) -> dict[str, int | None]:
    """`{"bytes": used, "quota": limit or None}` for the projects API."""
    quotas = accountant(request)
    usage = await quotas.usage(project)
    return {"bytes": usage.used, "quota": project_quota(quotas.raw(), project)}


async def refresh_metrics(app: web.Application) -> None:
    """Publish the usage of every project with a quota (on a `/metrics` scrape)."""
    quotas = app[QUOTAS]
    for project in (quotas.raw().get("projects") or {}):
        if project_quota(quotas.raw(), project) is not None:
            await quotas.usage(project)
