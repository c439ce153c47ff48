"""The read-only web UI under /ui/: server-rendered HTML (no JavaScript) over `registry.api`.

    /ui/                                          projects and their content-trust policy
    /ui/repositories/<name>[?n=&last=]            tags: type, platforms, size, last push, signatures,
                                                  and the gate's decision (served / refused: reason);
                                                  in a proxy project, each tag's upstream, last
                                                  resolution and verdict, and the tags refused upstream
    /ui/repositories/<name>/manifests/<digest>    config, layers, children, referrers, by-digest decision
    /ui/login                                     the Basic challenge (browsers then send credentials)

Everything rendered goes through Jinja2 autoescaping; pages carry a strict Content-Security-Policy.
`setup(app)` also installs the JSON API (`registry.api.setup`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from registry import api
from registry.api.access import authenticate, require_pull
from registry.api.inspect import RepositoryUnknownError, platform_name
from registry.api.proxy import refused_tags
from registry.auth.middleware import AUTH
from registry.errors import RegistryError
from registry.handlers.common import parse_digest, parse_page, repo_name
from registry.ui.templates import STYLE, TEMPLATES
from storage.references import InvalidReferenceError
from storage.store import StoreError
from trust.policy import project_of

NAME = r"{name:[^/]+(?:/[^/]+)*?}"
DEFAULT_PAGE = 100
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 400: "Bad request"}


def filesize(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def annotations(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return "; ".join(f"{k}={v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))


def when(value: Any) -> str:
    """`2024-01-02T03:04:05Z` -> `2024-01-02 03:04 UTC` (the exact time stays in the title)."""
    text = str(value or "")
    if len(text) >= 16 and text[10] == "T":
        return f"{text[:10]} {text[11:16]} UTC"
    return text


def identities(value: Any) -> str:
    """Keyless identities (`{"issuer" | "issuer_regexp", "subject" | "subject_regexp"}` each) as text:
    `issuer https://… · subject matching ^…$`, one after the other, `;`-separated."""
    shown = []
    for identity in value if isinstance(value, list | tuple) else ():
        if not isinstance(identity, dict):
            shown.append(str(identity))
            continue
        parts = []
        for field in ("issuer", "subject"):
            if identity.get(field) is not None:
                parts.append(f"{field} {identity[field]}")
            elif identity.get(f"{field}_regexp") is not None:
                parts.append(f"{field} matching {identity[f'{field}_regexp']}")
        shown.append(" · ".join(parts))
    return "; ".join(shown)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True, trim_blocks=True)
    env.filters.update(filesize=filesize, platform=platform_name, annotations=annotations, when=when,
                       identities=identities)
    return env


ENV = environment()


def render(request: web.Request, template: str, http_status: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> web.Response:
    from registry.access import PRINCIPAL

    html = ENV.get_template(template).render(
        principal=request.get(PRINCIPAL), auth_enabled=AUTH in request.app, **context
    )
    # Pushed JSON may carry lone UTF-16 surrogates ("\ud800"), which UTF-8 cannot encode: shown escaped.
    return web.Response(body=html.encode("utf-8", "backslashreplace"), status=http_status,
                        content_type="text/html", charset="utf-8", headers={**SECURITY_HEADERS, **(headers or {})})


Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Page) -> Page:
    """Authenticate, then render failures as HTML pages (401 keeps its Basic challenge)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            await authenticate(request)
            return await handler(request)
        except RegistryError as e:
            headers = {k: v for k, v in e.headers.items() if k.lower() == "www-authenticate"}
            return render(request, "error.html", e.status, headers, status=e.status,
                          title=TITLES.get(e.status, "Error"), message=e.message)
        except (StoreError, RepositoryUnknownError) as e:
            return render(request, "error.html", 404, status=404, title=TITLES[404], message=str(e))
        except InvalidReferenceError as e:
            return render(request, "error.html", 400, status=400, title=TITLES[400], message=str(e))

    return wrapped


@page
async def index(request: web.Request) -> web.StreamResponse:
    return render(request, "index.html", projects=await api.projects_for(request))


@page
async def repository(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await require_pull(request, name)
    n, last = parse_page(request)
    tags, link = await api.tag_page(request, name, DEFAULT_PAGE if n is None else n, last)
    project = api.project_view(request, project_of(name))
    refused = await refused_tags(request.app, name) if last is None else []
    next_link = f"/ui/repositories/{quote(name)}{link}" if link else None
    return render(request, "repository.html", name=name, project=project, tags=tags, refused=refused,
                  next_link=next_link)


@page
async def manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    digest = parse_digest(request.match_info["digest"])
    await require_pull(request, name)
    report = await api.inspector(request).manifest(name, digest)
    return render(request, "manifest.html", r=report.to_json())


@page
async def login(request: web.Request) -> web.StreamResponse:
    """Challenge until the browser sends valid credentials, then go to the projects."""
    from registry.access import PRINCIPAL

    svc = request.app.get(AUTH)
    if svc is not None and request.get(PRINCIPAL) is None:
        raise svc.unauthorized(None, basic=True)
    raise web.HTTPFound("/ui/")


async def style(request: web.Request) -> web.StreamResponse:
    return web.Response(text=STYLE, content_type="text/css", headers={"Cache-Control": "max-age=300"})


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


def setup(app: web.Application) -> None:
    """Add the JSON API and the UI routes."""
    api.setup(app)
    r = app.router
    r.add_get("/", redirect)  # the registry's root is where a browser lands
    r.add_get("/ui", redirect)
    r.add_get("/ui/", index)
    r.add_get("/ui/style.css", style)
    r.add_get("/ui/login", login)
    r.add_get(f"/ui/repositories/{NAME}/manifests/{{digest}}", manifest)
    r.add_get(f"/ui/repositories/{NAME}", repository)
