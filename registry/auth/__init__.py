"""Authentication and per-project access control.

`setup(app, settings)` (called by `create_app`; a no-op without an `auth` section) loads the htpasswd file
(refusing non-bcrypt entries), installs the auth middleware, makes the `AuthService` the app's
`AUTHORIZER`, serves `/auth/token` when `auth.token` is set (its signing key loaded, or made and
kept in storage, at startup) and re-reads users and roles on reload (SIGHUP).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from config.loader import Settings
from registry import ops
from registry.access import AUTHORIZER
from registry.auth.middleware import AUTH, auth_middleware, token_get, token_post
from registry.auth.service import AuthService
from registry.auth.tokens import TokenAuthority, load_key_file, load_or_create_key
from registry.handlers.common import DRIVER

log = logging.getLogger("trustreg.auth")

DEFAULT_ISSUER = "trustreg"
DEFAULT_SERVICE = "trustreg"
DEFAULT_EXPIRY = 300


def setup(app: web.Application, settings: Settings) -> AuthService | None:
    """Wire authentication into `app` (before it starts) when `auth` is configured; a bad
    configuration raises ConfigError. Without `auth` the app stays open (`AllowAll`)."""
    if settings.raw.get("auth") is None:
        return None
    svc = AuthService(settings)
    app[AUTH] = svc
    app[AUTHORIZER] = svc
    app.middlewares.append(auth_middleware)
    token = svc.token_config
    if token is not None:
        key_path = token.get("key")
        key = load_key_file(key_path) if key_path else None

        async def token_authority(app: web.Application) -> AsyncIterator[None]:
            signing_key = key or await load_or_create_key(app[DRIVER])
            svc.tokens = TokenAuthority(signing_key, token.get("issuer", DEFAULT_ISSUER),
                                        token.get("service", DEFAULT_SERVICE), token.get("expiry", DEFAULT_EXPIRY))
            yield

        app.cleanup_ctx.append(token_authority)
        app.router.add_get("/auth/token", token_get)
        app.router.add_post("/auth/token", token_post)
    ops.on_reload(app, svc.reload)  # SIGHUP re-reads users and roles (a bad file keeps the old ones)
    return svc


__all__ = ["AUTH", "AuthService", "setup"]
