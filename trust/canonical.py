"""Canonical JSON as Notary (docker/go canonical/json) signs it.

No whitespace; object keys sorted by code point (= UTF-8 byte order); strings escape only `"` and `\\`
(control characters and non-ASCII are emitted raw as UTF-8); integers only; `true`/`false`/`null`.
"""

from __future__ import annotations

from typing import Any

from trust.errors import Malformed


def _encode_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if not value.is_integer():
            raise Malformed(f"canonical JSON cannot encode the fractional number {value!r}")
        out.append(str(int(value)))
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise Malformed(f"canonical JSON object keys must be strings, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append(_encode_str(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise Malformed(f"canonical JSON cannot encode a {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Encode `value` (parsed JSON) canonically; raises Malformed for unencodable values."""
    out: list[str] = []
    _encode(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Malformed(f"canonical JSON cannot encode an invalid string: {exc.reason}") from exc
