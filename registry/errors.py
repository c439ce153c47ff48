"""OCI distribution-spec error codes and their JSON rendering."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "RANGE_INVALID": 416,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
}


class RegistryError(Exception):
    """An error answered to the client as `{"errors":[{code,message,detail}]}`."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or STATUS.get(code, 400)
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return web.Response(
            status=self.status,
            body=json.dumps({"errors": [body]}).encode(),
            content_type="application/json",
            headers={k: v for k, v in self.headers.items() if k.lower() != "content-length"},
        )
