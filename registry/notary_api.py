"""The Notary v1 trust-server API on the registry's own host and port (notes/notary-protocol.md §2-§3).

Thin handlers over `trust.server.NotaryService`: they map the GUN in the path to a repository, call
the service and write exactly what notary-server writes (clients accept only 200 as success).

    GET    /v2/<gun>/_trust/tuf/<role>.json | <role>.<sha256>.json | <N>.<role>.json
    GET    /v2/<gun>/_trust/tuf/{timestamp,snapshot}.key       POST the same: a new (rotated) key
    POST   /v2/<gun>/_trust/tuf/                               multipart publish
    DELETE /v2/<gun>/_trust/tuf/                               delete the collection
    GET    /_notary_server/health

A GUN is `<server name>/<repository>`. With `trust.server_names` configured, only those names are
accepted; without, the defaults (the `http.addr` host:port, localhost:<port>, 127.0.0.1:<port> when
listening on every address) and the host:port of the request itself; other GUNs are refused.
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
from registry.errors import RegistryError
from registry.handlers.common import DRIVER, SETTINGS
from registry.trust_keys import INSECURE_DEV_PASSPHRASE, verify_passphrase
from storage.references import is_valid_name
from trust.server import NotaryError, NotaryService

NOTARY = web.AppKey("notary", NotaryService)
SERVER_NAMES = web.AppKey("notary_server_names", tuple)
STRICT_NAMES = web.AppKey("notary_strict_server_names", bool)

log = logging.getLogger("trustreg")
DEFAULT_PASSPHRASE_ENV = "TRUSTREG_TRUST_PASSPHRASE"
MAX_UPLOAD = 64 * 1024 * 1024
CACHE_CURRENT = "public, max-age=300, s-maxage=300, must-revalidate"
CACHE_IMMUTABLE = "public, max-age=2592000, s-maxage=2592000"
TEXT = "text/plain; charset=utf-8"
T = TypeVar("T")

_BY_VERSION = re.compile(r"^([0-9]+)\.(.+)\.json$")
_BY_CHECKSUM = re.compile(r"^(.+)\.([0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})\.json$")
_CURRENT = re.compile(r"^(.+)\.json$")


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


def gun_repository(gun: str, names: tuple[str, ...], strict: bool, request_host: str = "") -> str:
    """The repository of GUN `<server name>/<repository>`; INVALID_GUN for any other GUN.

    The server name must be one of `names` (`trust.server_names`, or the defaults); without configured
    names, the host:port the client reached this request with is one of them too (so the registry works
    behind a port mapping without configuration). Other GUNs are refused.
    """
    accepted = set(names) if strict else {*names, request_host.lower()}
    first, sep, rest = gun.partition("/")
    if not sep or first.lower() not in accepted or not is_valid_name(rest):
        raise NotaryError("INVALID_GUN", f"{gun} is not <server name>/<repository> for this registry")
    return rest


def setup(app: web.Application) -> NotaryService:
    """Add the trust routes and the NotaryService (`app[NOTARY]`) to the registry application."""
    settings = app[SETTINGS]
    passphrase = key_passphrase(settings)
    service = NotaryService(app[DRIVER], passphrase)

    async def verify_keys(app: web.Application) -> None:  # after storage_lifetime has checked the driver
        await verify_passphrase(app[DRIVER], passphrase, passphrase_env(settings))

    app.on_startup.append(verify_keys)
    app[NOTARY] = service
    app[SERVER_NAMES] = server_names(settings)
    app[STRICT_NAMES] = bool((settings.raw.get("trust") or {}).get("server_names"))
    r = app.router
    r.add_get("/_notary_server/health", health)
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
        repository = gun_repository(gun, request.app[SERVER_NAMES], request.app[STRICT_NAMES], request.host)
        if request.method == "GET":
            return await _get(service, repository, gun, path)
        if request.method == "POST" and path == "":
            await service.publish(repository, gun, await _read_parts(request))
            return empty_ok()
        if request.method == "POST" and path.endswith(".key"):
            return key_response(await service.rotate_key(repository, path[: -len(".key")]))
        if request.method == "DELETE" and path == "":
            await service.delete(repository, gun=gun)
            return empty_ok()
        raise NotaryError("METADATA_NOT_FOUND")
    except NotaryError as err:
        return error_response(err)


async def _get(service: NotaryService, repository: str, gun: str, path: str) -> web.Response:
    if path.endswith(".key"):
        return key_response(await service.get_key(repository, path[: -len(".key")]))
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
