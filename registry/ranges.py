"""Single-range `Range: bytes=...` requests (RFC 9110) for streamed blob responses."""

from __future__ import annotations

import re

from registry.errors import RegistryError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_DIGITS = 19  # longer positions exceed any size (and Python's int() refuses 4300+ digits): beyond the end
_HUGE = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


def position(digits: str) -> int:
    """A byte position or count from a header; anything longer than MAX_DIGITS means "past any end"."""
    return int(digits) if len(digits) <= MAX_DIGITS else 10**MAX_DIGITS


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
        n = position(last)
        if n == 0:
            raise _unsatisfiable(size)
        return max(size - n, 0), size - 1
    start = position(first)
    if start >= size:
        raise _unsatisfiable(size)
    end = position(last) if last else size - 1
    if end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def sendfile_can_serve(header: str | None, rng: tuple[int, int] | None) -> bool:
    """Whether aiohttp's FileResponse, which parses `Range` again itself, would serve this request as
    we do: no header, or a range we accept whose numbers it converts (else it answers a bare 416)."""
    return header is None or (rng is not None and not _HUGE.search(header))


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID", "requested range not satisfiable", status=416, headers={"Content-Range": f"bytes */{size}"}
    )
