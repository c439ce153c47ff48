"""Notary server errors: the distribution errcode each failure is reported as (notes §3)."""

from __future__ import annotations

from typing import Any

from trust.errors import TrustError

MESSAGES: dict[str, tuple[int, str]] = {
    "METADATA_NOT_FOUND": (404, "You have requested metadata that does not exist."),
    "MALFORMED_UPLOAD": (400, "The body of your request is malformed."),
    "NO_FILENAME": (400, "No file/role name provided."),
    "INVALID_ROLE": (400, "The role you are attempting to operate on is invalid."),
    "MALFORMED_JSON": (400, "JSON sent by the client could not be parsed by the server"),
    "INVALID_UPDATE": (400, "Update sent by the client is invalid."),
    "VERSION": (400, "A newer version of metadata is already available."),
    "INVALID_GUN": (400, "The server does not support actions on images of this name."),
    "INVALID_PARAMETERS": (400, "The parameters provided are not valid."),
    "UPDATING": (500, "An error has occurred while updating the TUF repository."),
    "UNKNOWN": (500, "unknown error"),
}


class NotaryError(Exception):
    """A failure with Notary's error `code`, HTTP `status`, fixed `message` and optional `detail`.

    `detail` is omitted from the body when None (use `{}` for Notary's empty error object).
    """

    def __init__(self, code: str, detail: Any = None) -> None:
        self.code = code
        self.status, self.message = MESSAGES[code]
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail is not None else code)

    def body(self) -> dict[str, Any]:
        """The JSON error body `{"errors":[{"code","message"[,"detail"]}]}`."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def not_found(detail: Any = None) -> NotaryError:
    return NotaryError("METADATA_NOT_FOUND", detail)


def invalid_update(name: str, msg: str, **extra: Any) -> NotaryError:
    """INVALID_UPDATE with Notary's `{"Name": <ErrType>, "Error": {…, "Msg": …}}` detail."""
    return NotaryError("INVALID_UPDATE", {"Name": name, "Error": {**extra, "Msg": msg}})


def bad_role_update(role: str, exc: TrustError | str) -> NotaryError:
    """The INVALID_UPDATE for a refused root/targets/delegation/snapshot part."""
    if role == "root":
        name = "ErrBadRoot"
    elif role == "snapshot":
        name = "ErrBadSnapshot"
    else:
        name = "ErrBadTargets"
    return invalid_update(name, str(exc))
