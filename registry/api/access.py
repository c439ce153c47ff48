"""Who may read what under /api/v1/ and /ui/: the registry's own principals and roles.

The /v2/ auth middleware does not cover these paths, so handlers call `authenticate` first:
- no `auth` configured: everyone is anonymous and may read everything (the registry is open);
- HTTP Basic with an htpasswd user (what a browser sends after the `Basic` challenge), in token
  mode too; a bearer token from /auth/token is accepted for the repositories it grants pull on;
- wrong credentials: 401; a repository the principal may not pull: 401 for anonymous (log in),
  403 for a known principal — as on /v2/.
"""

from __future__ import annotations

from aiohttp import web

from registry.access import AUTHORIZER, PRINCIPAL
from registry.auth.middleware import AUTH
from registry.auth.service import parse_authorization
from registry.auth.tokens import TokenError
from registry.errors import RegistryError
from trust.policy import project_of

GRANT = web.RequestKey("api_grant", object)  # the bearer token's grant, if one was used
PULL = frozenset({"pull"})


async def authenticate(request: web.Request) -> str | None:
    """Set and return the request's principal (None: anonymous); 401 on bad credentials."""
    svc = request.app.get(AUTH)
    principal = None
    if svc is not None:
        creds = parse_authorization(request.headers.get("Authorization"))
        if creds.scheme == "bearer" and svc.tokens is not None:
            try:
                grant = svc.verify_token(creds)
            except TokenError:
                raise svc.unauthorized(None, basic=True, message="invalid token") from None
            request[GRANT] = grant
            principal = grant.subject if grant is not None else None
        else:
            principal = await svc.basic_principal(creds, request.remote)
    request[PRINCIPAL] = principal
    return principal


async def may_pull(request: web.Request, repository: str) -> bool:
    """Whether the authenticated request may pull `repository` (roles, and a bearer grant's scope)."""
    if not await request.app[AUTHORIZER].allowed(request, repository, "pull"):
        return False
    grant = request.get(GRANT)
    svc = request.app.get(AUTH)
    if grant is None or svc is None or svc.policy.allows(None, repository, "pull"):
        return True
    return grant.grants("repository", repository, PULL)


async def require_pull(request: web.Request, repository: str) -> None:
    """401 (anonymous: log in) or 403 (known principal) unless the request may pull `repository`."""
    if await may_pull(request, repository):
        return
    svc = request.app.get(AUTH)
    if request.get(PRINCIPAL) is None and svc is not None:
        raise svc.unauthorized(None, basic=True)
    raise RegistryError("DENIED", f"requested access to the resource {repository} is denied",
                        [{"Type": "repository", "Name": repository, "Action": "pull"}])


async def visible_repositories(request: web.Request, repositories: list[str]) -> list[str]:
    return [r for r in repositories if await may_pull(request, r)]


async def may_see_project(request: web.Request, project: str, visible_repos: list[str]) -> bool:
    """A project is shown when the caller may pull in it (or sees one of its repositories)."""
    if any(project_of(r) == project for r in visible_repos):
        return True
    return await may_pull(request, f"{project}/x")  # roles are per project: any name in it will do
