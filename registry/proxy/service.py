"""Proxy projects in the application: the hooks the handlers call before serving from the local store.

- Manifests by digest: served from the cache if there, else admitted (registry.proxy.admit); never
  does a cached digest contact the upstream.
- Manifests by tag: served from the cache for `tag_ttl` seconds after the tag's last resolution;
  then re-resolved (HEAD upstream): unchanged refreshes the resolution, moved admits the new manifest
  (a refusal answers 412, removes the local tag and records the refusal; a tag never admitted leaves
  no trace), gone upstream removes it (404). When the upstream
  is unavailable (unreachable, 5xx, 429 after retries) a cached tag is served stale, and said so.
- Concurrent misses of one manifest share one upstream fetch (registry.proxy.flights).
- Writes of any kind into a proxy project are refused with UNSUPPORTED (405, as distribution's own
  pull-through cache answers them).
After a hook, the handler serves from the local store through the normal gate (defence in depth).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from registry.errors import RegistryError
from registry.metrics import PROXY_REFUSALS, PROXY_REQUESTS, PROXY_UPSTREAM_ERRORS, child
from registry.proxy.admit import Admitter, store_admission
from registry.proxy.blobs import BlobFetcher
from registry.proxy.config import ProxyConfig, load_proxies, proxy_for
from registry.proxy.flights import Flights
from registry.proxy.records import ProxyRecords, TagRecord
from registry.proxy.upstream import Upstream, UpstreamUnavailableError
from registry.refusal import Refusal
from storage.references import Digest, is_valid_name, is_valid_tag
from storage.store import ManifestUnknownError, RegistryStore
from trust.gate import TrustDataSource
from trust.policy import PolicyHolder

log = logging.getLogger("trustreg.proxy")
STALE_HEADERS = {"Warning": '110 - "Response is stale"', "X-Trustreg-Proxy": "stale"}
HIT = {"X-Trustreg-Proxy": "hit"}
MISS = {"X-Trustreg-Proxy": "miss"}
MAX_FRESH = 100_000
STALE_RETRY = 10.0  # seconds a tag served stale is served so without asking the upstream again
READS = ("GET", "HEAD")


class ProjectProxy:
    """One proxy project: its configuration, upstream client and admitter."""

    def __init__(self, config: ProxyConfig, policy: PolicyHolder, trust_source: TrustDataSource) -> None:
        self.config = config
        self.upstream = Upstream(config)
        self.admitter = Admitter(self.upstream, policy, trust_source)

    def count(self, kind: str, result: str) -> None:
        child(PROXY_REQUESTS, self.config.project, kind, result).inc()


class ProxyService:
    """Every proxy project of the configuration, over the application's store."""

    def __init__(self, proxies: dict[str, ProxyConfig], store: RegistryStore, policy: PolicyHolder,
                 trust_source: TrustDataSource, clock: Callable[[], float] = time.time) -> None:
        self.projects = {name: ProjectProxy(cfg, policy, trust_source) for name, cfg in proxies.items()}
        self.configs = proxies
        self.store = store
        self.records = ProxyRecords(store)
        self.flights = Flights()
        self.clock = clock
        self.blobs = BlobFetcher(store, self.records, self.flights)
        self._fresh: dict[tuple[str, str], float] = {}  # (name, tag) -> until when its resolution holds
        self._stale: dict[tuple[str, str], float] = {}  # (name, tag) -> until when it is served stale unasked

    def project(self, name: str) -> ProjectProxy | None:
        config = proxy_for(self.configs, name)
        return self.projects[config.project] if config is not None else None

    async def close(self) -> None:
        for project in self.projects.values():
            await project.upstream.close()

    async def _guard(self, project: ProjectProxy, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work`, counting upstream failures."""
        try:
            await work()
        except UpstreamUnavailableError as e:
            child(PROXY_UPSTREAM_ERRORS, project.config.project).inc()
            log.warning("proxy %s: upstream unavailable: %s", project.config.project, e.message)
            raise
        except Refusal:
            raise
        except RegistryError as e:
            if e.status >= 500:
                child(PROXY_UPSTREAM_ERRORS, project.config.project).inc()
                log.warning("proxy %s: upstream error: %s", project.config.project, e.message)
            raise

    # --- manifests -----------------------------------------------------------------------------
    def hit(self, name: str, kind: str = "manifest") -> dict[str, str]:
        """Count a manifest (by digest) or blob served from the cache without any upstream question."""
        project = self.project(name)
        if project is None:
            return {}
        project.count(kind, "hit")
        return HIT

    async def missing_digest(self, name: str, digest: Digest) -> dict[str, str] | None:
        """A manifest by digest the cache lacks: admitted from the upstream (or an error); None if
        `name` is not in a proxy project. Cached digests never reach this (they never expire)."""
        project = self.project(name)
        if project is None:
            return None
        project.count("manifest", "miss")
        await self.flights.run(("manifest", name, str(digest)),
                               lambda: self._guard(project, lambda: self._admit(project, name, None, str(digest))))
        return MISS

    async def missing_tag(self, name: str, tag: str) -> dict[str, str] | None:
        """A tag the cache lost while this process thought it fresh (e.g. removed by retention): resolved
        again; None if `name` is not in a proxy project."""
        if self.project(name) is None:
            return None
        self._fresh.pop((name, tag), None)
        self._stale.pop((name, tag), None)
        return await self.tag(name, tag)

    async def tag(self, name: str, tag: str) -> dict[str, str]:
        """Make the tag's manifest available locally within `tag_ttl` (or fail); headers to add."""
        project = self.project(name)
        if project is None:
            return {}
        key = (name, tag)
        fresh = self._fresh.get(key)
        now = self.clock()
        if fresh is not None and now < fresh:  # resolved recently (this process saw the record)
            project.count("manifest", "hit")
            return HIT
        if self._stale.get(key, 0.0) > now:  # the upstream failed moments ago: not asked again yet
            project.count("manifest", "stale")
            return dict(STALE_HEADERS)
        local = await self._local_tag(name, tag)
        record = await self.records.tag(name, tag)
        if (local is not None and record is not None and not record.refused and record.digest == str(local)
                and now - record.resolved < project.config.tag_ttl):
            self._remember(key, record.resolved + project.config.tag_ttl)
            project.count("manifest", "hit")
            return HIT
        self._fresh.pop(key, None)
        self._stale.pop(key, None)
        try:
            await self.flights.run(("tag", name, tag),
                                   lambda: self._guard(project, lambda: self._resolve(project, name, tag, local)))
        except UpstreamUnavailableError as e:
            local = await self._local_tag(name, tag)
            if local is None:
                raise
            project.count("manifest", "stale")
            log.warning("proxy %s: serving %s:%s stale (%s) as the upstream is unavailable: %s",
                        project.config.project, name, tag, local, e.message)
            self._stale[key] = now + min(project.config.tag_ttl, STALE_RETRY)
            if len(self._stale) > MAX_FRESH:
                self._stale.pop(next(iter(self._stale)))
            return dict(STALE_HEADERS)
        project.count("manifest", "miss")
        return MISS

    def _remember(self, key: tuple[str, str], until: float) -> None:
        self._fresh[key] = until
        if len(self._fresh) > MAX_FRESH:
            self._fresh.pop(next(iter(self._fresh)))

    async def _local_tag(self, name: str, tag: str) -> Digest | None:
        try:
            return await self.store.resolve_tag(name, tag)
        except ManifestUnknownError:
            return None

    def _upstream_ref(self, project: ProjectProxy, name: str, reference: str) -> str:
        sep = "@" if ":" in reference else ":"
        return f"{project.config.url}/{project.config.upstream_repository(name)}{sep}{reference}"

    async def _resolve(self, project: ProjectProxy, name: str, tag: str, local: Digest | None) -> None:
        """Re-resolve a tag upstream: refresh, admit the manifest it now names, or forget it."""
        repository = project.config.upstream_repository(name)
        if local is not None:
            current = await project.upstream.head_manifest(repository, tag)
            if current is None:  # gone upstream
                await self._forget_tag(name, tag)
                raise RegistryError("MANIFEST_UNKNOWN", f"tag {tag} is no longer in the upstream repository",
                                    {"tag": tag})
            if current == str(local):
                record = TagRecord(str(local), self.clock(), self._upstream_ref(project, name, tag))
                await self.records.set_tag(name, tag, record)
                self._remember((name, tag), record.resolved + project.config.tag_ttl)
                return
        await self._admit(project, name, tag, tag)

    async def _forget_tag(self, name: str, tag: str) -> None:
        try:
            await self.store.delete_tag(name, tag)
        except ManifestUnknownError:
            pass

    async def _admit(self, project: ProjectProxy, name: str, tag: str | None, reference: str) -> None:
        repository = project.config.upstream_repository(name)
        admission = await project.admitter.gather(name, repository, reference)
        if admission is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest {reference} is not in the upstream repository",
                                {"reference": reference})
        digest = admission.manifest.digest
        verdict = await project.admitter.judge(name, tag, admission)
        if not verdict.served:
            child(PROXY_REFUSALS, project.config.project).inc()
            log.warning("proxy %s: refused %s (%s), not stored: %s", project.config.project,
                        self._upstream_ref(project, name, reference), digest, verdict.reason)
            if tag is not None and await self.records.tag(name, tag) is not None:  # a cached tag moved upstream
                await self._forget_tag(name, tag)
                await self.records.set_tag(name, tag, TagRecord(
                    str(digest), self.clock(), self._upstream_ref(project, name, tag), verdict.reason, refused=True))
            raise Refusal(verdict.message, verdict.reason, verdict.detail)

        async def mark(blob: Digest, size: int) -> None:
            await self.records.mark_blob(name, blob, size)

        await store_admission(self.store, name, admission, mark)
        if tag is not None:
            record = TagRecord(str(digest), self.clock(), self._upstream_ref(project, name, tag))
            await self.records.set_tag(name, tag, record)
            self._remember((name, tag), record.resolved + project.config.tag_ttl)

    async def tag_record(self, name: str, tag: str) -> TagRecord | None:
        """For inspection (UI, /api/v1): the tag's last resolution upstream, when, and the verdict."""
        return await self.records.tag(name, tag) if self.project(name) is not None else None

    # --- blobs, tags, referrers ----------------------------------------------------------------
    async def blob(self, request: web.Request, name: str, digest: Digest) -> web.StreamResponse | None:
        """A blob the cache lacks: a response streamed from the upstream (this request leads the fetch),
        or None once it is stored (or if it is unknown or not fetchable): serve from the store."""
        project = self.project(name)
        if project is None:
            return None
        return await self.blobs.serve(request, project, name, digest)

    async def tags(self, name: str) -> list[str] | None:
        """The upstream's tags (valid ones); None if not a proxy repository or the upstream is away."""
        project = self.project(name)
        if project is None:
            return None
        try:
            tags = await project.upstream.tags(project.config.upstream_repository(name))
        except UpstreamUnavailableError as e:
            child(PROXY_UPSTREAM_ERRORS, project.config.project).inc()
            log.warning("proxy %s: tags of %s served from the cache: %s", project.config.project, name, e.message)
            return None
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known upstream", {"name": name})
        return sorted(t for t in tags if is_valid_tag(t))

    async def referrers(self, name: str, subject: Digest) -> None:
        """Admit the subject first (with its signatures) so the local listing holds what was verified."""
        if self.project(name) is None or await self.store.has_manifest(name, subject):
            return
        try:
            await self.missing_digest(name, subject)
        except RegistryError:  # refused, unknown or unavailable: the listing is the cache's (empty)
            pass


@web.middleware
async def read_only(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Refuse every write (push, delete, upload, mount) into a proxy project: UNSUPPORTED, 405."""
    name = request.match_info.get("name")
    if request.method not in READS and name is not None and is_valid_name(name):
        proxy = request.app.get(PROXY)
        project = proxy.project(name) if proxy is not None else None
        if project is not None:
            raise RegistryError("UNSUPPORTED", f"{project.config.project} is a proxy project of "
                                f"{project.config.url}: it is read-only", {"name": name})
    return await handler(request)


PROXY = web.AppKey("proxy", ProxyService)


def setup(app: web.Application, store: RegistryStore, settings_raw: dict, config_dir: str | None,
          policy: PolicyHolder, trust_source: TrustDataSource) -> None:
    """Serve the configuration's proxy projects (none: nothing changes)."""
    proxies = load_proxies(settings_raw, config_dir)
    if not proxies:
        return
    service = ProxyService(proxies, store, policy, trust_source)
    app[PROXY] = service
    app.middlewares.append(read_only)

    async def close(app: web.Application) -> None:
        await service.close()

    app.on_cleanup.append(close)
