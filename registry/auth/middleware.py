"""HTTP glue: the auth middleware and the token endpoint. Decisions live in `AuthService`."""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import web

from registry.access import GRANT, PRINCIPAL, TRUST_TARGET, is_signing_tool
from registry.auth.scope import Requirement, parse_scopes, required_access
from registry.auth.service import AuthService, Credentials, parse_authorization
from registry.auth.tokens import TokenError
from registry.errors import RegistryError
from registry.middleware import Handler

log = logging.getLogger("trustreg.auth")
AUTH = web.AppKey("auth_service", AuthService)


def _bind_route(req: Requirement, request: web.Request) -> Requirement:
    """OCI routes: the repository is the one the router hands the handler."""
    name = request.match_info.get("name")
    if req.kind == "repository" and not req.trust and name and name != req.repository:
        return replace(req, repository=name, name=name)
    return req


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every request under /v2/ and to /auth/token, then authorize it."""
    svc = request.app[AUTH]
    if request.path == "/auth/token":
        if request.method != "POST":  # POST carries its credentials in the form
            creds = parse_authorization(request.headers.get("Authorization"))
            if creds.scheme == "bearer":
                creds = Credentials()
            request[PRINCIPAL] = await svc.basic_principal(creds, request.remote)
        return await handler(request)
    req = required_access(request.method, request.path, svc.server_names.accepted(request.host))
    if req.trust:  # the trust server acts on exactly the repository authorized here
        request[TRUST_TARGET] = (req.name, req.repository or None)
    if req.kind == "none":
        return await handler(request)
    req = _bind_route(req, request)
    if request.method in ("GET", "HEAD") and "/manifests/" in request.path and is_signing_tool(request):
        req = replace(req, invite=frozenset({"push"}))  # they read the subject, then push its signature
    creds = parse_authorization(request.headers.get("Authorization"))
    grant = None
    if svc.tokens is not None:
        try:
            grant = svc.verify_token(creds)
        except TokenError as e:
            log.info("refused bearer token from %s: %s", request.remote or "-", e)
            raise svc.unauthorized(req, request.host, request.scheme, error="invalid_token") from None
        principal = grant.subject if grant is not None else None
    else:
        principal = await svc.basic_principal(creds, request.remote)
    request[PRINCIPAL] = principal
    request[GRANT] = grant
    svc.authorize(req, principal, grant, request.host, request.scheme)
    return await handler(request)


def _check_service(svc: AuthService, service: str | None) -> None:
    assert svc.tokens is not None
    if service is not None and service != svc.tokens.service:
        raise RegistryError("UNSUPPORTED", f"this token service does not issue tokens for {service[:100]!r}",
                            status=400)


async def token_get(request: web.Request) -> web.StreamResponse:
    """`GET /auth/token?service=&scope=...` (Basic credentials or anonymous)."""
    svc = request.app[AUTH]
    _check_service(svc, request.query.get("service"))
    scopes = parse_scopes(request.query.getall("scope", []))
    return web.json_response(svc.issue(request.get(PRINCIPAL), scopes, request.host))


async def token_post(request: web.Request) -> web.StreamResponse:
    """OAuth2 password grant (`POST /auth/token`), which containerd tries first."""
    svc = request.app[AUTH]
    form = await request.post()
    if form.get("grant_type") != "password":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    _check_service(svc, str(form.get("service", "")) or None)
    user, password = str(form.get("username", "")), str(form.get("password", ""))
    if not user or not await svc.check_password(user, password, request.remote):
        raise svc.unauthorized(None, basic=True, message="invalid username or password")
    scopes = parse_scopes(str(s) for s in form.getall("scope", []))
    body = svc.issue(user, scopes, request.host)
    body["scope"] = " ".join(a.scope() for a in scopes)
    return web.json_response(body)
