"""Who may do what: the interface handlers ask, and the open policy used until auth is configured."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

PRINCIPAL = web.RequestKey("principal", object)  # the authenticated user name (str), or None: anonymous


class Authorizer(Protocol):
    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        """Whether the request's principal may `action` ("pull", "push", "delete") on `repository`."""
        ...

    def challenge(self, request: web.Request, repository: str) -> Exception | None:
        """A 401 asking a client that sent no credentials to authenticate for `repository`, when
        every client can answer it (token auth: anonymous clients get tokens too); else None."""
        ...


class AllowAll:
    """No authentication configured: everyone is anonymous and may do everything."""

    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        return True

    def challenge(self, request: web.Request, repository: str) -> Exception | None:
        return None


AUTHORIZER = web.AppKey("authorizer", Authorizer)
# (GUN, repository or None) of a trust API request, mapped once by the auth middleware with the names
# accepted for this request; the trust server uses exactly this mapping (`registry.notary_api`).
TRUST_TARGET = web.RequestKey("trust_target", tuple)
