"""Cross-cutting request handling: the access log and rendering every error in the spec's format."""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from registry.access import PRINCIPAL
from registry.errors import RegistryError
from registry.metrics import BYTES_OUT, child, route_label
from storage.base import StorageFullError, StorageUnavailableError
from storage.references import InvalidReferenceError
from storage.store import StoreError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
error_log = logging.getLogger("trustreg.error")
REQUEST_ID = web.RequestKey("request_id", str)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ID_PREFIX = f"{uuid.uuid4().hex[:12]}-"  # per process; ids are the prefix and a counter (no urandom per request)
_ids = itertools.count(1)


def _to_registry_error(exc: BaseException) -> RegistryError | None:
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, StoreError):
        return RegistryError(exc.code, exc.message, exc.detail)
    if isinstance(exc, InvalidReferenceError):
        return RegistryError("NAME_INVALID", str(exc))
    if isinstance(exc, StorageUnavailableError):
        return RegistryError("UNAVAILABLE", f"storage unavailable: {exc}", status=503)
    if isinstance(exc, StorageFullError):
        return RegistryError("UNKNOWN", str(exc), status=507)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code = {404: "NOT_FOUND", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}.get(exc.status, "UNKNOWN")
        return RegistryError(code, exc.reason, status=exc.status)
    return None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into `{"errors":[...]}`; unexpected ones are logged, never sent."""
    try:
        return await handler(request)
    except Exception as exc:
        err = _to_registry_error(exc)
        if err is None:
            if isinstance(exc, web.HTTPException):  # redirects and other non-error responses
                raise
            error_log.exception("unhandled error on %s %s", request.method, request.path)
            err = RegistryError("UNKNOWN", "internal server error", status=500)
        return err.response()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag each request with an id (the client's `X-Request-Id` if it is a plain token, else a new one),
    echoed in the response; a client's id never carries spaces or control characters into the log."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _CLIENT_ID.fullmatch(offered) else f"{_ID_PREFIX}{next(_ids):x}"
    request[REQUEST_ID] = request_id
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    resp.headers["X-Request-Id"] = request_id
    return resp


class RequestLogger(AbstractAccessLogger):
    """One line per request once it is sent: method, path, status, bytes, duration, client, principal, id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        principal = request.get(PRINCIPAL) or "-"
        if isinstance(request, web.Request):
            child(BYTES_OUT, route_label(request)).inc(response.body_length)
        self.logger.info(
            "%s %s %s %d %.4fs %s %s %s",
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time,
            request.remote or "-",
            principal,
            request_id,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "bytes": response.body_length,
                "duration": round(time, 6),
                "remote": request.remote,
                "principal": principal,
            },
        )
