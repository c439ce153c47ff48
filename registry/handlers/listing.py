"""Tags list, catalog and referrers: read-only listings with `n`/`last` pagination."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from registry.access import AUTHORIZER
from registry.errors import RegistryError
from registry.handlers.common import paginate, parse_digest, parse_page, repo_name, store
from registry.manifests import OCI_INDEX
from registry.proxy.service import PROXY


def _link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


async def list_tags(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    n, last = parse_page(request)
    st = store(request)
    proxy = request.app.get(PROXY)
    upstream = await proxy.tags(name) if proxy is not None else None
    tags = upstream if upstream is not None else await st.list_tags(name)
    if not tags and upstream is None and not await st.repository_exists(name):
        raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known", {"name": name})
    page, more = paginate(tags, n, last)
    headers = {}
    if more and n and page:
        headers["Link"] = _link(f"/v2/{name}/tags/list", n, page[-1])
    return web.json_response({"name": name, "tags": page}, headers=headers)


async def catalog(request: web.Request) -> web.StreamResponse:
    n, last = parse_page(request)
    authz = request.app[AUTHORIZER]
    names = [r for r in await store(request).catalog() if await authz.allowed(request, r, "pull")]
    page, more = paginate(names, n, last)
    headers = {}
    if more and n and page:
        headers["Link"] = _link("/v2/_catalog", n, page[-1])
    return web.json_response({"repositories": page}, headers=headers)


async def referrers(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    subject = parse_digest(request.match_info["digest"])
    proxy = request.app.get(PROXY)
    if proxy is not None:
        await proxy.referrers(name, subject)  # a proxy project admits the subject with its signatures first
    descriptors = await store(request).referrers(name, subject)
    headers = {}
    artifact_type = request.query.get("artifactType")
    if artifact_type is not None:
        descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    descriptors.sort(key=lambda d: d["digest"])
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(body).encode(), content_type=OCI_INDEX, headers=headers)
