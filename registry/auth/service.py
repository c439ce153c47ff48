"""The authentication state of one app and every decision it makes, testable without HTTP.

- Principals: an htpasswd user (HTTP Basic without `auth.token`; a bearer token with it), or
  None for anonymous. `authorize` sets nothing; it answers or raises `RegistryError`:
  401 + `WWW-Authenticate` when logging in (or a token with more scope) could help, 403 `DENIED`
  when the principal is known and the roles refuse.
- Tokens grant the intersection of what was asked and what the roles allow, naming repositories
  (a notary GUN scope is mapped to its repository), and are re-checked against the roles on every
  request, so a reload that removes a member takes effect at once. What anyone may do (pull from a
  public project) needs no token, as in Basic mode.
- `reload()` re-reads the htpasswd file and the roles; a bad file keeps the previous state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from config.loader import ConfigError, Settings
from registry.access import GRANT, PRINCIPAL
from registry.auth.htpasswd import Htpasswd
from registry.auth.policy import Policy
from registry.auth.scope import Access, Requirement, ServerNames, scope_repositories
from registry.auth.tokens import TokenAuthority, TokenError, TokenGrant
from registry.errors import RegistryError
from registry.handlers.common import API_VERSION

log = logging.getLogger("trustreg.auth")
CACHE_TTL = 300.0
CACHE_MAX = 4096


@dataclass(frozen=True)
class Credentials:
    """What the request presented: nothing, Basic user/password, or a bearer token."""

    scheme: str = ""  # "", "basic", "bearer", "invalid"
    user: str = ""
    password: str = ""
    token: str = ""


def parse_authorization(header: str | None) -> Credentials:
    if not header:
        return Credentials()
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials("bearer", token=value)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return Credentials("invalid")
        user, sep, password = decoded.partition(":")
        return Credentials("basic", user, password) if sep and user else Credentials("invalid")
    return Credentials("invalid")


def _raw_auth(settings: Settings) -> dict[str, Any]:
    return settings.raw.get("auth") or {}


def _server_names(settings: Settings) -> ServerNames:
    """The names GUNs start with: the trust server's own (one definition for both)."""
    from registry import notary_api

    return notary_api.trust_server_names(settings)


class AuthService:
    """htpasswd users, project roles and (optionally) the token authority of one registry."""

    def __init__(self, settings: Settings, tokens: TokenAuthority | None = None) -> None:
        raw = _raw_auth(settings)
        self._htpasswd_path: str | None = raw.get("htpasswd")
        self._users = Htpasswd.load(self._htpasswd_path) if self._htpasswd_path else Htpasswd({})
        self.policy = Policy.from_config(settings.raw)
        self.tokens = tokens
        self.token_config: dict[str, Any] | None = raw.get("token")
        self.server_names = _server_names(settings)
        self._cache_key = os.urandom(32)
        self._verified: dict[bytes, float] = {}

    # -- configuration -------------------------------------------------------------------------

    def reload(self, settings: Settings | None = None) -> None:
        """Re-read the htpasswd file (and the roles, given new settings); raises ConfigError and
        keeps the running state if the new file is unusable."""
        path = _raw_auth(settings).get("htpasswd") if settings is not None else self._htpasswd_path
        users = Htpasswd.load(path) if path else Htpasswd({})
        policy = Policy.from_config(settings.raw) if settings is not None else self.policy
        self._users, self.policy, self._htpasswd_path = users, policy, path
        if settings is not None:
            self.server_names = _server_names(settings)
        self._verified.clear()
        log.info("auth reloaded: %d users", len(users))

    # -- authentication ------------------------------------------------------------------------

    async def check_password(self, user: str, password: str, remote: str | None = None) -> bool:
        """bcrypt in a thread (recent successes cached by keyed hash); failures logged without the password."""
        mac = hmac.new(self._cache_key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        seen = self._verified.get(mac)
        if seen is not None and now - seen < CACHE_TTL:
            return True
        users = self._users
        ok = await asyncio.get_running_loop().run_in_executor(None, users.check, user, password)
        if not ok:
            log.warning("authentication failed for user %r from %s", user[:100], remote or "-")
            return False
        if users is self._users:  # not reloaded meanwhile
            if len(self._verified) >= CACHE_MAX:
                self._verified.clear()
            self._verified[mac] = now
        return True

    async def basic_principal(self, creds: Credentials, remote: str | None) -> str | None:
        """The user of valid Basic credentials, None when none were sent; 401 when they are wrong."""
        if creds.scheme == "":
            return None
        if creds.scheme == "basic" and await self.check_password(creds.user, creds.password, remote):
            return creds.user
        if creds.scheme != "basic":
            log.warning("malformed credentials from %s", remote or "-")
        raise self.unauthorized(None, basic=True, message="invalid username or password")

    def verify_token(self, creds: Credentials) -> TokenGrant | None:
        """The grant of a bearer token (None without one); TokenError if it is bad or its user is gone."""
        if self.tokens is None or creds.scheme != "bearer":
            return None
        grant = self.tokens.verify(creds.token)
        if grant.subject is not None and grant.subject not in self._users:
            raise TokenError(f"user {grant.subject[:100]!r} no longer exists")
        return grant

    # -- authorization -------------------------------------------------------------------------

    async def allowed(self, request: web.Request, repository: str, action: str) -> bool:
        """The Authorizer protocol: may the request's principal `action` on `repository`?"""
        return self.policy.allows(request.get(PRINCIPAL), repository, action)

    async def credential_grants(self, request: web.Request, repository: str, action: str) -> bool:
        """The Authorizer protocol: the account's roles, and in token mode the token's scope as well."""
        principal = request.get(PRINCIPAL)
        if principal is None or not self.policy.allows(principal, repository, action):
            return False
        if self.tokens is None:
            return True
        grant = request.get(GRANT)
        return isinstance(grant, TokenGrant) and grant.grants("repository", repository, frozenset({action}))

    def challenge(self, request: web.Request, repository: str,
                  actions: frozenset[str] = frozenset({"pull"})) -> Exception | None:
        """The Authorizer protocol: in token mode, a challenge for `actions` to a request without
        credentials (a client with none fetches an anonymous token and asks again), or, for push, an
        `insufficient_scope` challenge to a token whose account may push; with Basic auth, None (a
        client without credentials could not answer it; a Basic credential is the account itself)."""
        if self.tokens is None:
            return None
        req = Requirement("repository", repository, actions, repository)
        if "Authorization" not in request.headers:
            return self.unauthorized(req, request.host, request.scheme)
        principal = request.get(PRINCIPAL)
        if "push" in actions and principal is not None and self.policy.allows(principal, repository, "push"):
            return self.unauthorized(req, request.host, request.scheme, error="insufficient_scope")
        return None

    def authorize(self, req: Requirement, principal: str | None, grant: TokenGrant | None,
                  host: str, scheme: str) -> None:
        """Raise 401/403 unless `principal` (holding `grant` in token mode) meets `req`."""
        token_mode = self.tokens is not None
        challenge = {"host": host, "scheme": scheme}
        if req.kind == "none":
            return
        if req.kind == "login":
            if (grant if token_mode else principal) is None:
                raise self.unauthorized(req, **challenge)
            return
        if req.kind == "catalog":
            if principal is None:
                raise self.unauthorized(req, **challenge)
            if token_mode and not (grant and grant.grants("registry", "catalog", frozenset({"*"}))):
                raise self.unauthorized(req, error="insufficient_scope", **challenge)
            return
        if req.kind == "admin":
            if principal is None:
                raise self.unauthorized(req, **challenge)
            if not self.policy.is_admin(principal):
                raise denied(req)
            return
        if req.actions <= self.policy.actions(None, req.repository):
            return  # what anyone may do (public pulls) needs no token
        roles_ok = req.actions <= self.policy.actions(principal, req.repository)
        if not roles_ok and principal is not None:
            raise denied(req)
        if roles_ok and not token_mode:
            return
        if roles_ok and grant is not None and grant.grants("repository", req.repository, req.actions):
            return
        raise self.unauthorized(req, error="insufficient_scope" if grant is not None else None, **challenge)

    def unauthorized(self, req: Requirement | None, host: str = "", scheme: str = "http",
                     error: str | None = None, basic: bool = False, message: str = "authentication required"
                     ) -> RegistryError:
        if self.tokens is None or basic:
            header = 'Basic realm="trustreg"'
        else:
            realm = (self.token_config or {}).get("realm") or f"{scheme}://{host}/auth/token"
            header = f'Bearer realm="{realm}",service="{self.tokens.service}"'
            scope = req.challenge_scope() if req is not None else None
            if scope:
                header += f',scope="{scope}"'
            if error:
                header += f',error="{error}"'
        return RegistryError("UNAUTHORIZED", message, _detail(req),
                             headers={"WWW-Authenticate": header, **API_VERSION})

    # -- the token service ---------------------------------------------------------------------

    def grant(self, principal: str | None, requested: Iterable[Access], hosts: Iterable[str]) -> list[Access]:
        """The intersection of the requested and the allowed access, naming repositories."""
        hosts = set(hosts)
        out: dict[tuple[str, str], set[str]] = {}
        for access in requested:
            if access.type == "registry":
                if principal is not None:
                    out.setdefault(("registry", "catalog"), set()).add("*")
                continue
            for repo in scope_repositories(access.name, hosts):
                actions = access.actions & self.policy.actions(principal, repo)
                if actions:
                    out.setdefault(("repository", repo), set()).update(actions)
        return [Access(t, n, frozenset(a)) for (t, n), a in out.items()]

    def issue(self, principal: str | None, requested: Iterable[Access], request_host: str) -> dict[str, Any]:
        if self.tokens is None:
            raise ConfigError("token service not configured")
        return self.tokens.issue(principal, self.grant(principal, requested, self.server_names.accepted(request_host)))


def _detail(req: Requirement | None) -> list[dict[str, str]] | None:
    if req is None or req.kind != "repository":
        return None
    return [{"Type": "repository", "Name": req.name or req.repository, "Action": a} for a in sorted(req.actions)]


def denied(req: Requirement) -> RegistryError:
    what = f" {req.name or req.repository}" if req.kind == "repository" else ""
    return RegistryError("DENIED", f"requested access to the resource{what} is denied", _detail(req),
                         headers=dict(API_VERSION))


__all__ = ["AuthService", "Credentials", "TokenError", "denied", "parse_authorization"]
