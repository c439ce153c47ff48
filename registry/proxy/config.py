"""Proxy projects as configured: `projects.<name>.proxy` (url, username, password_env, ca, tag_ttl).

The upstream URL comes only from here; the password only from the environment variable the file names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config.loader import ConfigError
from trust.policy import project_of

DEFAULT_TAG_TTL = 300
# Docker Hub serves its official images (`alpine`) as `library/alpine`; only its own hosts do.
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io", "docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True)
class ProxyConfig:
    """One proxy project's upstream."""

    project: str
    url: str  # scheme://host[:port], no trailing slash
    username: str | None = None
    password: str | None = None
    ca: str | None = None  # absolute path of a CA bundle trusted for the upstream's TLS
    tag_ttl: float = DEFAULT_TAG_TTL

    @property
    def origin(self) -> tuple[str, str]:
        """(scheme, host:port) of the upstream: the only place a plain-http redirect may lead."""
        parts = urlsplit(self.url)
        return parts.scheme, parts.netloc.lower()

    def upstream_repository(self, name: str) -> str:
        """`hub/alpine` -> `library/alpine` on Docker Hub, `alpine` elsewhere; `hub/a/b` -> `a/b`."""
        path = name.split("/", 1)[1]
        host = urlsplit(self.url).hostname or ""
        if "/" not in path and host.lower() in DOCKER_HUB_HOSTS:
            return f"library/{path}"
        return path


def load_proxies(raw: Mapping[str, Any], config_dir: str | None,
                 environ: Mapping[str, str] | None = None) -> dict[str, ProxyConfig]:
    """The proxy projects of a validated configuration; ConfigError names a missing password variable."""
    env = os.environ if environ is None else environ
    proxies = {}
    for project, body in (raw.get("projects") or {}).items():
        proxy = (body or {}).get("proxy")
        if proxy is None:
            continue
        trust = (body or {}).get("content_trust") or {}
        requirements = trust.get("require_any") or [{"notary": {}}]  # Notary is the default requirement
        if trust.get("enforce") and any("notary" in r for r in requirements if isinstance(r, Mapping)):
            raise ConfigError(f"config error at projects.{project}.content_trust.require_any: a proxy project "
                              "cannot require Notary v1 signatures (its collections are bound to the upstream's "
                              "host name, so it is not proxied); require cosign or notation signatures")
        password = None
        if "password_env" in proxy:
            password = env.get(proxy["password_env"])
            if password is None:
                raise ConfigError(f"config error at projects.{project}.proxy.password_env: environment variable "
                                  f"{proxy['password_env']} is not set")
        ca = proxy.get("ca")
        if ca is not None:
            ca = os.path.join(config_dir or os.getcwd(), ca)
            if not os.path.isfile(ca):
                raise ConfigError(f"config error at projects.{project}.proxy.ca: cannot read {ca}")
        proxies[project] = ProxyConfig(project, proxy["url"].rstrip("/"), proxy.get("username"), password, ca,
                                       float(proxy.get("tag_ttl", DEFAULT_TAG_TTL)))
    return proxies


def proxy_for(proxies: Mapping[str, ProxyConfig], name: str) -> ProxyConfig | None:
    """The proxy project `name` belongs to (a repository below it: `hub/<path>`), or None."""
    if "/" not in name:
        return None
    return proxies.get(project_of(name))
