"""What the API and the UI show of proxy projects (registry.proxy), read from the proxy's own records.

- A proxy project: `{"url", "tag_ttl"}` of its upstream. Never credentials: the configuration's `url`
  cannot carry any (the schema allows scheme, host and port only), and the username and password are
  not shown.
- A cached tag: `{"upstream", "digest", "resolved", "expires", "verdict", "refused"}` from the tag's
  last resolution upstream (`ProxyService.tag_record`): where it came from, when it was last resolved
  and until when it is served without asking the upstream again, and the gate's verdict on what
  upstream named (`accepted`, or the refusal's reason).
- Refused tags: a refused resolution removes the local tag, so those records are listed on their own.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.api.inspect import iso
from registry.proxy.records import TagRecord
from registry.proxy.service import PROXY, ProxyService


def _service(app: web.Application) -> ProxyService | None:
    return app.get(PROXY)


def project_proxy(app: web.Application, project: str) -> dict[str, Any] | None:
    """The upstream of proxy project `project`, or None for an ordinary project."""
    service = _service(app)
    config = service.configs.get(project) if service is not None else None
    if config is None:
        return None
    ttl = config.tag_ttl
    return {"url": config.url, "tag_ttl": int(ttl) if float(ttl).is_integer() else ttl}


def record_json(record: TagRecord, tag_ttl: float) -> dict[str, Any]:
    return {"upstream": record.upstream, "digest": record.digest, "resolved": iso(record.resolved),
            "expires": iso(record.resolved + tag_ttl), "verdict": record.verdict, "refused": record.refused}


async def tag_proxies(app: web.Application, name: str, tags: list[str]) -> dict[str, dict[str, Any]]:
    """Each cached tag's last resolution upstream (repositories of proxy projects only; a tag never
    resolved by tag, only fetched by digest and tagged locally, has none)."""
    service = _service(app)
    project = service.project(name) if service is not None else None
    if service is None or project is None:
        return {}
    out = {}
    for tag in tags:
        record = await service.tag_record(name, tag)
        if record is not None:
            out[tag] = record_json(record, project.config.tag_ttl)
    return out


async def refused_tags(app: web.Application, name: str) -> list[dict[str, Any]]:
    """The tags of `name` whose last resolution upstream the gate refused (sorted by tag)."""
    service = _service(app)
    project = service.project(name) if service is not None else None
    if service is None or project is None:
        return []
    out = []
    for tag in await service.records.tags(name):
        record = await service.tag_record(name, tag)
        if record is not None and record.refused:
            out.append({"tag": tag, **record_json(record, project.config.tag_ttl)})
    return out
