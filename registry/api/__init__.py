"""The JSON API the web UI and `trustreg trust inspect --url` share (read-only).

    GET /api/v1/projects                                   projects, their policy and visible repositories
    GET /api/v1/repositories/<name>/tags[?n=&last=]        tag reports, paginated like the tags list (Link)
    GET /api/v1/repositories/<name>/tags/<tag>             one tag report
    GET /api/v1/repositories/<name>/manifests/<digest>     layers, config, children, referrers, decision
    GET /api/v1/repositories/<name>/proxy                  a proxy repository: upstream, refused tags

A tag report: {"tag","digest","mediaType","kind","artifactType","platforms","size","pushed",
"signatures":[{"source","status","signer","keyids","expires","reason"}],"decision":{"served","reason"}},
and in a proxy project "proxy":{"upstream","digest","resolved","expires","verdict","refused"} (the tag's
last resolution upstream; see registry.api.proxy). A proxy project has "proxy":{"url","tag_ttl"}.
Permissions are the registry's (see `registry.api.access`); errors use the OCI error format.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from registry.api.access import authenticate, may_see_project, require_pull, visible_repositories
from registry.api.inspect import Inspector, RepositoryUnknownError, project_json
from registry.api.proxy import project_proxy, refused_tags, tag_proxies
from registry.enforcement import GATE, POLICY
from registry.errors import RegistryError
from registry.handlers.common import STORE, parse_digest, parse_page, repo_name
from registry.quota import quota_json
from trust.policy import project_of

PREFIX = "/api/v1"
NAME = r"{name:[^/]+(?:/[^/]+)*?}"


def inspector(request: web.Request) -> Inspector:
    app = request.app
    return Inspector(app[STORE], app[GATE], app[POLICY])


def project_view(request: web.Request, name: str, repositories: list[str] | None = None) -> dict[str, Any]:
    """A project as the API shows it (`proxy` for a proxy project: its upstream)."""
    out = project_json(inspector(request).project(name), repositories or [])
    proxy = project_proxy(request.app, name)
    if proxy is not None:
        out["proxy"] = proxy
    return out


async def projects_for(request: web.Request) -> list[dict[str, Any]]:
    """Every project the caller may see, with the repositories it may pull."""
    insp = inspector(request)
    repos = await visible_repositories(request, await insp.store.catalog())
    out = []
    for name in await insp.project_names():
        if await may_see_project(request, name, repos):
            out.append({**project_view(request, name, [r for r in repos if project_of(r) == name]),
                        "usage": await quota_json(request, name)})
    return out


async def with_proxy(request: web.Request, name: str, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tag reports of a proxy repository, each with its tag's last resolution upstream."""
    proxies = await tag_proxies(request.app, name, [r["tag"] for r in reports])
    for report in reports:
        if report["tag"] in proxies:
            report["proxy"] = proxies[report["tag"]]
    return reports


async def tag_page(request: web.Request, name: str, n: int | None, last: str | None
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of tag reports for an authorized caller, and the next page's query string."""
    try:
        reports, more = await inspector(request).tags(name, n, last)
    except RepositoryUnknownError as e:
        raise RegistryError("NAME_UNKNOWN", str(e), {"name": name}) from e
    link = None
    if more and n and reports:
        link = f"?{urlencode({'n': n, 'last': reports[-1].tag})}"
    return await with_proxy(request, name, [r.to_json() for r in reports]), link


async def projects(request: web.Request) -> web.StreamResponse:
    await authenticate(request)
    return web.json_response(await projects_for(request))


async def tags(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authenticate(request)
    await require_pull(request, name)
    page, link = await tag_page(request, name, *parse_page(request))
    headers = {"Link": f'<{PREFIX}/repositories/{quote(name)}/tags{link}>; rel="next"'} if link else {}
    return web.json_response(page, headers=headers)


async def tag(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authenticate(request)
    await require_pull(request, name)
    report = await inspector(request).tag(name, request.match_info["tag"])
    return web.json_response((await with_proxy(request, name, [report.to_json()]))[0])


async def manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    digest = parse_digest(request.match_info["digest"])
    await authenticate(request)
    await require_pull(request, name)
    report = await inspector(request).manifest(name, digest)
    return web.json_response(report.to_json())


async def proxy(request: web.Request) -> web.StreamResponse:
    """A proxy repository: its project's upstream and the tags whose last resolution was refused."""
    name = repo_name(request)
    await authenticate(request)
    await require_pull(request, name)
    upstream = project_proxy(request.app, project_of(name))
    if upstream is None:
        raise RegistryError("NAME_UNKNOWN", f"{name} is not in a proxy project", {"name": name})
    return web.json_response({"repository": name, "project": project_of(name), "proxy": upstream,
                              "refused": await refused_tags(request.app, name)})


def setup(app: web.Application) -> None:
    """Add the /api/v1/ routes (the gate and policy are looked up per request)."""
    r = app.router
    r.add_get(f"{PREFIX}/projects", projects)
    r.add_get(f"{PREFIX}/repositories/{NAME}/tags", tags)
    r.add_get(f"{PREFIX}/repositories/{NAME}/tags/{{tag}}", tag)
    r.add_get(f"{PREFIX}/repositories/{NAME}/manifests/{{digest}}", manifest)
    r.add_get(f"{PREFIX}/repositories/{NAME}/proxy", proxy)
