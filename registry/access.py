"""Who may do what: the interface handlers ask, and the open policy used until auth is configured."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

PRINCIPAL = web.RequestKey("principal", object)  # the authenticated user name (str), or None: anonymous


class Authorizer(Protocol):
    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        """Whether the request's principal may `action` ("pull", "push", "delete") on `repository`."""
        ...


class AllowAll:
    """No authentication configured: everyone is anonymous and may do everything."""

    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        return True


AUTHORIZER = web.AppKey("authorizer", Authorizer)
