"""The upstream registry client of a proxy project: auth, bounded reads, retries, safe redirects.

- Auth: anonymous first; on a 401 the challenge decides: `Basic` sends the configured credentials,
  `Bearer realm=...,service=...,scope=...` fetches a token from the realm (with Basic credentials
  when configured) and caches it per scope until it expires. A realm must be https, or on the
  upstream's own scheme and host.
- Redirects (blob storage URLs) are followed by hand, at most MAX_REDIRECTS hops, only to https or
  to the upstream's own scheme and host; credentials are sent only to the upstream's own host.
- 429 and 503 are retried with backoff honouring Retry-After, within RETRY_BUDGET seconds in all,
  then surfaced: 429 as TOOMANYREQUESTS, the rest (unreachable, 5xx) as UpstreamUnavailableError.
- Manifests are read up to MAX_MANIFEST_SIZE, signature blobs up to MAX_SIGNATURE_BLOB.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from registry.errors import RegistryError
from registry.manifests import DOCKER_LIST, DOCKER_MANIFEST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST
from registry.proxy.config import ProxyConfig
from storage.references import Digest

log = logging.getLogger("trustreg.proxy")

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_REDIRECTS = 3
MAX_ATTEMPTS = 4
RETRY_BUDGET = 10.0  # seconds spent waiting on 429/503 per request, at most
MAX_RETRY_AFTER = 5.0
MAX_TOKEN_RESPONSE = 64 * 1024
MAX_LISTING = 4 * 1024 * 1024
MAX_TAG_PAGES = 50
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
REDIRECTS = (301, 302, 303, 307, 308)
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


class UpstreamUnavailableError(RegistryError):
    """The upstream cannot answer now (unreachable, 5xx, rate limited): a cached tag may be served stale."""

    def __init__(self, message: str, code: str = "UNAVAILABLE", status: int = 503) -> None:
        super().__init__(code, message, status=status)


class UpstreamInvalidError(RegistryError):
    """The upstream answered something unacceptable (wrong digest, too large, malformed): 502, nothing kept."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__("UNKNOWN", f"upstream answer refused: {message}", detail, status=502)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """`Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"` or `Basic realm=...`."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def retry_delay(header: str | None, attempt: int) -> float:
    """Seconds to wait before retry `attempt` (0-based): Retry-After seconds if given, else backoff."""
    if header is not None and header.strip().isdigit():
        return min(float(header.strip()), MAX_RETRY_AFTER)
    return min(0.25 * 2 ** attempt, MAX_RETRY_AFTER)


@dataclass
class _Token:
    value: str
    expires: float


class Upstream:
    """One upstream registry, as configured; one aiohttp session (closed by `close`)."""

    def __init__(self, config: ProxyConfig, connect_timeout: float = 10.0, read_timeout: float = 30.0) -> None:
        self.config = config
        self._tokens: dict[str, _Token] = {}
        self._challenge: Challenge | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                              sock_read=read_timeout)
        self._ssl: ssl.SSLContext | bool = True
        if config.ca is not None:
            self._ssl = ssl.create_default_context(cafile=config.ca)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # identity: the bytes hashed are the bytes the upstream stores (no content coding undone)
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False, headers={
                "Accept-Encoding": "identity", "User-Agent": "trustreg-proxy"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- auth ----------------------------------------------------------------------------------
    def _basic(self) -> aiohttp.BasicAuth | None:
        if self.config.username is None or self.config.password is None:
            return None
        return aiohttp.BasicAuth(self.config.username, self.config.password)

    def _own_host(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc.lower()) == self.config.origin

    def _allowed(self, url: str) -> bool:
        return urlsplit(url).scheme == "https" or self._own_host(url)

    async def _token(self, challenge: Challenge, scope: str) -> str:
        cached = self._tokens.get(scope)
        if cached is not None and cached.expires > time.monotonic():
            return cached.value
        realm = challenge.params.get("realm", "")
        if not realm or not self._allowed(realm):
            raise UpstreamUnavailableError(f"upstream token realm {realm[:200]!r} is not https nor the upstream's own")
        query = {k: v for k, v in (("service", challenge.params.get("service")), ("scope", scope)) if v}
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        try:
            async with self.session.get(url, auth=self._basic(), ssl=self._ssl, allow_redirects=False) as resp:
                if resp.status in (401, 403):
                    raise RegistryError("DENIED", f"the upstream's token service refused the credentials "
                                        f"({resp.status})", status=502)
                if resp.status != 200:
                    raise UpstreamUnavailableError(f"upstream token service answered {resp.status}")
                doc = json.loads(await read_bounded(resp, MAX_TOKEN_RESPONSE, "token response"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise UpstreamUnavailableError(f"upstream token service failed: {e}") from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailableError("upstream token service answered no token")
        lifetime = doc.get("expires_in", 60)
        lifetime = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 60
        self._tokens[scope] = _Token(token, time.monotonic() + max(lifetime - 10, lifetime / 2))
        return token

    async def _authorization(self, challenge: Challenge | None, repository: str) -> str | None:
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            basic = self._basic()
            return basic.encode() if basic is not None else None
        return f"Bearer {await self._token(challenge, self._scope(repository))}"

    @staticmethod
    def _scope(repository: str) -> str:
        return f"repository:{repository}:pull"

    # --- requests ------------------------------------------------------------------------------
    async def _once(self, method: str, path: str, repository: str, headers: dict[str, str],
                    challenge: Challenge | None) -> aiohttp.ClientResponse:
        """One request with its redirects (auth only towards the upstream's own host)."""
        url = f"{self.config.url}{path}"
        authorization = await self._authorization(challenge, repository)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization is not None and self._own_host(url):
                sent["Authorization"] = authorization
            resp = await self.session.request(method, url, headers=sent, ssl=self._ssl, allow_redirects=False)
            if resp.status not in REDIRECTS or "Location" not in resp.headers:
                return resp
            target = urljoin(url, resp.headers["Location"])
            resp.release()
            if not self._allowed(target):
                raise UpstreamInvalidError(f"redirect to {target[:200]} refused (only https, or the upstream itself)")
            url = target
        raise UpstreamInvalidError(f"more than {MAX_REDIRECTS} redirects")

    async def request(self, method: str, path: str, repository: str,
                      headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        """The upstream's answer (caller releases it); auth and retries done, 429 surfaced."""
        headers = headers or {}
        challenge = self._challenge  # the upstream's last challenge: answered up front (a cached token)
        waited, answered = 0.0, False
        try:
            for attempt in range(MAX_ATTEMPTS):
                resp = await self._once(method, path, repository, headers, challenge)
                fresh = parse_challenge(resp.headers.get("WWW-Authenticate")) if resp.status == 401 else None
                if fresh is not None and not answered and (fresh.scheme == "bearer" or self._basic() is not None):
                    self._challenge = challenge = fresh
                    self._tokens.pop(self._scope(repository), None)  # expired or revoked upstream: a new one
                    answered = True
                    resp.release()
                    resp = await self._once(method, path, repository, headers, challenge)
                if resp.status not in (429, 503):
                    return resp
                delay = retry_delay(resp.headers.get("Retry-After"), attempt)
                resp.release()
                if attempt == MAX_ATTEMPTS - 1 or waited + delay > RETRY_BUDGET:
                    break
                log.warning("upstream %s answered %s for %s %s; retrying in %.2fs",
                            self.config.url, resp.status, method, path, delay)
                waited += delay
                await asyncio.sleep(delay)
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as e:
            reason = f"{e.__class__.__name__}: {e}"
            raise UpstreamUnavailableError(f"upstream {self.config.url} unreachable: {reason}") from e
        if resp.status == 429:
            raise UpstreamUnavailableError(f"upstream {self.config.url} rate limit: still 429 after "
                                           f"{attempt + 1} attempts", code="TOOMANYREQUESTS", status=429)
        raise UpstreamUnavailableError(f"upstream {self.config.url} unavailable: still 503 after "
                                       f"{attempt + 1} attempts")

    async def _checked(self, method: str, path: str, repository: str,
                       headers: dict[str, str] | None = None) -> aiohttp.ClientResponse | None:
        """The answer if 200; None if 404; an error otherwise (5xx: unavailable)."""
        resp = await self.request(method, path, repository, headers)
        if resp.status == 200:
            return resp
        resp.release()
        if resp.status == 404:
            return None
        if resp.status in (401, 403):
            raise RegistryError("NAME_UNKNOWN", f"the upstream denied access to {repository} ({resp.status}); "
                                "it may not exist", {"name": repository})
        if resp.status >= 500:
            raise UpstreamUnavailableError(f"upstream {self.config.url} answered {resp.status}")
        raise UpstreamInvalidError(f"{method} {path} answered {resp.status}")

    # --- registry API --------------------------------------------------------------------------
    async def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str | None] | None:
        """(body, media type, Docker-Content-Digest header) or None if unknown upstream."""
        resp = await self._checked("GET", f"/v2/{repository}/manifests/{reference}", repository,
                                   {"Accept": MANIFEST_ACCEPT})
        if resp is None:
            return None
        async with resp:
            body = await read_bounded(resp, MAX_MANIFEST_SIZE, "manifest")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return body, media_type, resp.headers.get("Docker-Content-Digest")

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a reference resolves to upstream (Docker-Content-Digest), None if unknown."""
        resp = await self._checked("HEAD", f"/v2/{repository}/manifests/{reference}", repository,
                                   {"Accept": MANIFEST_ACCEPT})
        if resp is None:
            return None
        resp.release()
        return resp.headers.get("Docker-Content-Digest")

    async def tags(self, repository: str) -> list[str] | None:
        """Every tag, following the upstream's pagination (`Link: <...>; rel="next"`, as Docker Hub
        pages its lists) within this repository's list, at most MAX_TAG_PAGES pages; None if unknown."""
        base = f"/v2/{repository}/tags/list"
        path: str | None = base
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            resp = await self._checked("GET", path, repository)
            if resp is None:
                return tags or None
            async with resp:
                try:
                    page = json.loads(await read_bounded(resp, MAX_LISTING, "tags list")).get("tags") or []
                except (ValueError, AttributeError) as e:
                    raise UpstreamInvalidError("tags list is not JSON") from e
                path = next_page(resp.headers.get("Link"), base)
            tags += [t for t in page if isinstance(t, str)] if isinstance(page, list) else []
            if path is None:
                break
        return tags

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]] | None:
        """The referrers API's descriptors; None where the upstream has no referrers API (tag fallback)."""
        try:
            resp = await self._checked("GET", f"/v2/{repository}/referrers/{digest}", repository,
                                       {"Accept": OCI_INDEX})
        except UpstreamInvalidError:
            return None
        if resp is None:
            return None
        async with resp:
            try:
                doc = json.loads(await read_bounded(resp, MAX_MANIFEST_SIZE, "referrers"))
            except ValueError:
                return None
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None

    async def get_blob(self, repository: str, digest: Digest, limit: int) -> bytes | None:
        """A small blob (signature layers), whole, up to `limit` bytes; None if unknown."""
        async with self.open_blob(repository, digest) as resp:
            if resp is None:
                return None
            return await read_bounded(resp, limit, f"blob {digest}")

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: Digest) -> AsyncIterator[aiohttp.ClientResponse | None]:
        """The blob's streaming response (None if unknown upstream); released on exit."""
        resp = await self._checked("GET", f"/v2/{repository}/blobs/{digest}", repository)
        if resp is None:
            yield None
            return
        async with resp:
            yield resp


def next_page(link: str | None, base: str) -> str | None:
    """The path and query of a `Link: <...>; rel="next"` header if it stays on `base` (this repository's
    list on the upstream itself); None otherwise."""
    match = _NEXT_LINK.search(link or "")
    if match is None:
        return None
    target = urlsplit(match.group(1))
    if target.scheme or target.netloc or target.path != base:
        return None
    return f"{target.path}?{target.query}" if target.query else None


async def read_bounded(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body, refused once it exceeds `limit` bytes (and before reading if it says so)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise UpstreamInvalidError(f"{what} larger than {limit} bytes")
    data = bytearray()
    try:
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise UpstreamInvalidError(f"{what} larger than {limit} bytes")
    except (aiohttp.ClientError, TimeoutError) as e:
        raise UpstreamUnavailableError(f"upstream connection failed while reading {what}: {e}") from e
    return bytes(data)
