"""Who may do what: the interface handlers ask, and the open policy used until auth is configured."""

from __future__ import annotations

import re
from typing import Protocol

from aiohttp import web

PRINCIPAL = web.RequestKey("principal", object)  # the authenticated user name (str), or None: anonymous
GRANT = web.RequestKey("token_grant", object)  # token mode: the verified token's grant (None: no token)


class Authorizer(Protocol):
    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        """Whether the request's principal may `action` ("pull", "push", "delete") on `repository`."""
        ...

    async def credential_grants(self, request: web.Request, repository: str, action: str) -> bool:
        """Whether the credential THIS request presented grants `action` on `repository`: an
        authenticated principal whose roles allow it and, in token mode, whose token's scope holds it
        too (a pull-only token of an account that may push grants pull only). Without authentication
        configured, everything (as `allowed`)."""
        ...

    def challenge(self, request: web.Request, repository: str,
                  actions: frozenset[str] = frozenset({"pull"})) -> Exception | None:
        """A 401 asking the client to authenticate for `actions` on `repository`, where every client
        can answer it (token auth: anonymous clients get tokens too); for push, also a token holder
        whose account may push (insufficient scope); else None."""
        ...


class AllowAll:
    """No authentication configured: everyone is anonymous and may do everything."""

    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        return True

    async def credential_grants(self, request: web.Request, repository: str, action: str) -> bool:
        return True

    def challenge(self, request: web.Request, repository: str,
                  actions: frozenset[str] = frozenset({"pull"})) -> Exception | None:
        return None


AUTHORIZER = web.AppKey("authorizer", Authorizer)
# User agents of the signing tools (notation: "notation/<version>", cosign: "cosign/<version> ...").
_SIGNING_TOOL = re.compile(r"(notation|cosign)/")


def is_signing_tool(request: web.Request) -> bool:
    """Whether the client says it is notation or cosign. Never a reason to exempt anything: it only
    decides which scope a challenge invites the client to ask for (they read the subject, then push)."""
    return _SIGNING_TOOL.match(request.headers.get("User-Agent", "")) is not None
# (GUN, repository or None) of a trust API request, mapped once by the auth middleware with the names
# accepted for this request; the trust server uses exactly this mapping (`registry.notary_api`).
TRUST_TARGET = web.RequestKey("trust_target", tuple)
