"""Single-range `Range: bytes=...` requests (RFC 9110) for streamed blob responses."""

from __future__ import annotations

import re

from registry.errors import RegistryError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte positions, None for the whole body; 416 if unsatisfiable (also
    for a last position before the first, as the OCI conformance suite expects). Multi-range and
    malformed headers are ignored (the whole body is served), as RFC 9110 allows."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise _unsatisfiable(size)
        return max(size - n, 0), size - 1
    start = int(first)
    if start >= size:
        raise _unsatisfiable(size)
    end = int(last) if last else size - 1
    if end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID", "requested range not satisfiable", status=416, headers={"Content-Range": f"bytes */{size}"}
    )
