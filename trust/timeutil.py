"""RFC 3339 timestamps as Notary writes them (`2036-11-21T17:19:14.246801935Z`, 0-9 fraction digits)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from trust.errors import Malformed

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> datetime:
    """Parse to an aware UTC datetime (fractions beyond microseconds are truncated)."""
    m = _RFC3339.match(text)
    if not m:
        raise Malformed(f"invalid RFC 3339 time {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(9, "0")[:6])
    zone = m.group(8)
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except ValueError as exc:
        raise Malformed(f"invalid RFC 3339 time {text!r}: {exc}") from exc


def format_rfc3339(moment: datetime) -> str:
    """Format like Go's RFC3339Nano in UTC (trailing fraction zeros trimmed)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def utcnow() -> datetime:
    """The wall clock, aware UTC (callers read it once and pass it down)."""
    return datetime.now(UTC)
