"""The Notary v1 trust-server API on the registry's own host and port (notes/notary-protocol.md §2-§3).

Thin handlers over `trust.server.NotaryService`: they map the GUN in the path to a repository, call
the service and write exactly what notary-server writes (clients accept only 200 as success).

    GET    /v2/<gun>/_trust/tuf/<role>.json | <role>.<sha256>.json | <N>.<role>.json
    GET    /v2/<gun>/_trust/tuf/{timestamp,snapshot}.key       POST the same: a new (rotated) key
    POST   /v2/<gun>/_trust/tuf/                               multipart publish
    DELETE /v2/<gun>/_trust/tuf/                               delete the collection
    GET    /v2/_trust/changefeed?change_id=&records=              every change the caller may pull
    GET    /v2/<gun>/_trust/changefeed?change_id=&records=        the changes of one GUN
    GET    /_notary_server/health

A GUN is `<server name>/<repository>`, mapped by `registry.auth.scope.gun_repository`, the one mapping
authorization and token scopes use too. With `trust.server_names` configured, only those names are
accepted; without, the defaults (the `http.addr` host:port, localhost:<port>, 127.0.0.1:<port> when
listening on every address) and the host:port of the request itself. With authentication the auth
middleware maps the GUN once per request (`TRUST_TARGET`) and the handlers act on exactly that
repository; a GUN that does not map is refused (INVALID_GUN) before anything is read or written.
Creating a server key (`POST …key`, or a `GET` when none exists) needs push on the repository.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from config.loader import ConfigError, Settings
from registry.access import AUTHORIZER, TRUST_TARGET
from registry.auth.scope import ServerNames, gun_repository
from registry.errors import RegistryError
from registry.events import hooks as events
from registry.handlers.common import DRIVER, SETTINGS
from registry.trust_keys import INSECURE_DEV_PASSPHRASE, verify_passphrase
from trust.server import NotaryError, NotaryService

NOTARY = web.AppKey("notary", NotaryService)

log = logging.getLogger("trustreg")
DEFAULT_PASSPHRASE_ENV = "TRUSTREG_TRUST_PASSPHRASE"
MAX_UPLOAD = 64 * 1024 * 1024
CACHE_CURRENT = "public, max-age=300, s-maxage=300, must-revalidate"
CACHE_IMMUTABLE = "public, max-age=2592000, s-maxage=2592000"
TEXT = "text/plain; charset=utf-8"
T = TypeVar("T")

_BY_VERSION = re.compile(r"^([0-9]{1,18})\.(.+)\.json$")  # longer: no such version (and int() refuses 4300+ digits)
_BY_CHECKSUM = re.compile(r"^(.+)\.([0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})\.json$")
_CURRENT = re.compile(r"^(.+)\.json$")
_INT32 = re.compile(r"^[+-]?[0-9]+$")


# --- configuration ---------------------------------------------------------------------------------
def server_names(settings: Settings) -> tuple[str, ...]:
    """The names clients use for this registry: `trust.server_names`, or the defaults."""
    configured = (settings.raw.get("trust") or {}).get("server_names")
    if configured:
        return tuple(n.lower() for n in configured)
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    names = [f"{host}:{settings.port}", f"localhost:{settings.port}"]
    if settings.host in ("0.0.0.0", "::", ""):
        names.append(f"127.0.0.1:{settings.port}")
    return tuple(dict.fromkeys(n.lower() for n in names))


def passphrase_env(settings: Settings) -> str:
    """The environment variable holding the trust key passphrase."""
    return ((settings.raw.get("trust") or {}).get("keys") or {}).get("passphrase_env", DEFAULT_PASSPHRASE_ENV)


def key_passphrase(settings: Settings) -> str:
    """The passphrase encrypting the server's keys; ConfigError when it is not provided. Using the
    development passphrase is logged as a warning every time."""
    keys = (settings.raw.get("trust") or {}).get("keys") or {}
    env = passphrase_env(settings)
    value = os.environ.get(env, "")
    if value:
        return value
    if keys.get("insecure_dev_passphrase", False):
        log.warning("trust keys are encrypted with the public development passphrase (%s is not set): "
                    "for local development only", env)
        return INSECURE_DEV_PASSPHRASE
    raise ConfigError(
        f"config error at trust.keys.passphrase_env: environment variable {env} is not set; it must hold "
        "the passphrase that encrypts the trust server's keys (or set trust.keys.insecure_dev_passphrase "
        "for development, or trust.enabled: false)"
    )


def trust_server_names(settings: Settings) -> ServerNames:
    """The server names GUNs may start with; the request's own host:port too unless names are configured."""
    configured = bool((settings.raw.get("trust") or {}).get("server_names"))
    return ServerNames(server_names(settings), from_host=not configured)


def request_target(request: web.Request, gun: str) -> str:
    """The repository of the request's GUN: the one the auth middleware authorized (same GUN text), or,
    without authentication, `gun_repository` with the names accepted for this request. INVALID_GUN
    when the GUN does not map (nothing has been read or written yet)."""
    target = request.get(TRUST_TARGET)
    if target is not None:
        authorized_gun, repository = target
        if authorized_gun != gun:  # the router and the middleware read the path differently: refuse
            repository = None
    else:
        repository = gun_repository(gun, trust_server_names(request.app[SETTINGS]).accepted(request.host))
    if repository is None:
        raise NotaryError("INVALID_GUN", f"{gun} is not <server name>/<repository> for this registry")
    return repository


def setup(app: web.Application) -> NotaryService:
    """Add the trust routes and the NotaryService (`app[NOTARY]`) to the registry application."""
    settings = app[SETTINGS]
    passphrase = key_passphrase(settings)
    service = NotaryService(app[DRIVER], passphrase)

    async def verify_keys(app: web.Application) -> None:  # after storage_lifetime has checked the driver
        await verify_passphrase(app[DRIVER], passphrase, passphrase_env(settings))

    app.on_startup.append(verify_keys)
    app[NOTARY] = service
    r = app.router
    r.add_get("/_notary_server/health", health)
    r.add_get("/v2/_trust/changefeed", changefeed)
    r.add_get(r"/v2/{gun:[^*]+?}/_trust/changefeed", changefeed)
    r.add_route("*", r"/v2/{gun:[^*]+?}/_trust/tuf/{path:.*}", dispatch)
    r.add_route("*", r"/v2/{gun:[^*]+?}/_trust/{rest:.*}", unknown)
    return service


# --- responses ------------------------------------------------------------------------------------
def error_response(err: NotaryError) -> web.Response:
    body = json.dumps(err.body(), separators=(",", ":")).encode()
    return web.Response(status=err.status, body=body, headers={"Content-Type": "application/json; charset=utf-8"})


def _http_date(modified: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(modified))


def metadata_response(data: bytes, modified: float, cache_control: str) -> web.Response:
    headers = {"Content-Type": TEXT, "Last-Modified": _http_date(modified), "Cache-Control": cache_control}
    return web.Response(body=data, headers=headers)


def key_response(key: dict[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(key, separators=(",", ":")).encode(), headers={"Content-Type": TEXT})


def empty_ok() -> web.Response:
    return web.Response(status=200, body=b"")


# --- handlers -------------------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    return web.Response(body=b"{}", content_type="application/json")


async def unknown(request: web.Request) -> web.Response:
    return error_response(NotaryError("METADATA_NOT_FOUND"))


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route one `/_trust/tuf/…` request by method and path shape."""
    service = request.app[NOTARY]
    gun = request.match_info["gun"]
    path = request.match_info["path"]
    try:
        repository = request_target(request, gun)
        if request.method == "GET" and path.endswith(".key"):
            return key_response(await _get_key(request, service, repository, path[: -len(".key")]))
        if request.method == "GET":
            return await _get(service, repository, gun, path)
        if request.method == "POST" and path == "":
            parts = await _read_parts(request)
            await service.publish(repository, gun, parts)
            await events.trust_published(request, repository, gun, [name for name, _ in parts if name])
            return empty_ok()
        if request.method == "POST" and path.endswith(".key"):
            return key_response(await service.create_key(repository, path[: -len(".key")]))
        if request.method == "DELETE" and path == "":
            await service.delete(repository, gun=gun)
            return empty_ok()
        raise NotaryError("METADATA_NOT_FOUND")
    except NotaryError as err:
        return error_response(err)


async def _get_key(request: web.Request, service: NotaryService, repository: str, role: str) -> dict[str, Any]:
    """The server's key for `role`; creating one (none exists yet) needs push on the repository."""
    key = await service.existing_key(repository, role)
    if key is not None:
        return key
    if not await request.app[AUTHORIZER].credential_grants(request, repository, "push"):  # token scope too
        raise RegistryError("DENIED", f"creating a server key needs push access to {repository}", status=403)
    return await service.create_key(repository, role)


async def changefeed(request: web.Request) -> web.Response:
    """`GET [/v2/<gun>]/_trust/changefeed?change_id=&records=`: notary-server's paging; the global feed
    lists only the repositories the caller may pull."""
    service = request.app[NOTARY]
    try:
        records = _query_int(request, "records", required=True)
        change_id = _query_int(request, "change_id", required=False)
        if "gun" in request.match_info:
            gun = request.match_info["gun"]
            found = await service.changes(change_id, records, gun=gun, repository=request_target(request, gun))
        else:
            authorizer = request.app[AUTHORIZER]

            async def visible(repository: str) -> bool:
                return await authorizer.allowed(request, repository, "pull")

            found = await service.changes(change_id, records, visible=visible)
    except NotaryError as err:
        return error_response(err)
    listed = None if found is None else [c.to_json() for c in found]
    body = {"count": len(found or ()), "records": listed}
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")


def _query_int(request: web.Request, name: str, *, required: bool) -> int:
    """A 32-bit integer query parameter (`change_id` may be absent: 0), else INVALID_PARAMETERS."""
    value = request.query.get(name, "")
    if value == "" and not required:
        return 0
    if not _INT32.match(value) or not -(2**31) <= int(value) < 2**31:
        raise NotaryError("INVALID_PARAMETERS", f"invalid {name} parameter: {value[:40]!r} is not a 32-bit integer")
    return int(value)


async def _get(service: NotaryService, repository: str, gun: str, path: str) -> web.Response:
    if m := _BY_VERSION.match(path):
        found = await service.get_by_version(repository, m.group(2), int(m.group(1)), gun=gun)
        return metadata_response(found.data, found.modified, CACHE_IMMUTABLE)
    if m := _BY_CHECKSUM.match(path):
        found = await service.get_by_checksum(repository, m.group(1), m.group(2).lower(), gun=gun)
        return metadata_response(found.data, found.modified, CACHE_IMMUTABLE)
    if m := _CURRENT.match(path):
        found = await service.get_current(repository, m.group(1), gun=gun)
        return metadata_response(found.data, found.modified, CACHE_CURRENT)
    raise NotaryError("METADATA_NOT_FOUND")


async def _read_parts(request: web.Request) -> list[tuple[str | None, bytes]]:
    """The (filename, bytes) parts of a multipart/form-data publish."""
    if request.content_type != "multipart/form-data":
        raise NotaryError("MALFORMED_UPLOAD")
    timeout = request.app[SETTINGS].client_timeout
    try:
        reader = await request.multipart()
        parts: list[tuple[str | None, bytes]] = []
        total = 0
        while (part := await _within(timeout, reader.next())) is not None:
            if not isinstance(part, BodyPartReader):
                raise NotaryError("MALFORMED_UPLOAD", "nested multipart bodies are not supported")
            chunks = []
            while chunk := await _within(timeout, part.read_chunk()):
                total += len(chunk)
                if total > MAX_UPLOAD:
                    raise NotaryError("MALFORMED_UPLOAD", f"the update exceeds {MAX_UPLOAD} bytes")
                chunks.append(chunk)
            filename = unquote(part.filename) if part.filename else part.filename  # aiohttp clients escape '/'
            parts.append((filename, b"".join(chunks)))
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # aiohttp's multipart parser errors
        raise NotaryError("MALFORMED_UPLOAD", str(exc)) from exc
    return parts


async def _within(timeout: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, or 408 if the client sends nothing for `timeout` seconds (stalled upload)."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise RegistryError("UNKNOWN", f"client sent no data for {timeout:g} seconds", status=408) from None
