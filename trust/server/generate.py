"""Metadata the server signs itself: the timestamp always, the snapshot when it holds the key."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from trust.metadata import MetaFile
from trust.signing import PrivateKeyObject, sign_signed
from trust.timeutil import format_rfc3339

TIMESTAMP_LIFETIME = timedelta(days=14)
SNAPSHOT_LIFETIME = timedelta(days=3 * 365)


def make_snapshot(
    version: int, files: Mapping[str, bytes], now: datetime, signers: list[tuple[str, PrivateKeyObject]]
) -> bytes:
    """A snapshot listing sha256+sha512+length of every given role file (root, targets, delegations)."""
    meta = {role: MetaFile.of_bytes(data).to_dict() for role, data in sorted(files.items())}
    signed = {
        "_type": "Snapshot",
        "expires": format_rfc3339(now + SNAPSHOT_LIFETIME),
        "meta": meta,
        "version": version,
    }
    return sign_signed(signed, signers)


def make_timestamp(version: int, snapshot: bytes, now: datetime, signers: list[tuple[str, PrivateKeyObject]]) -> bytes:
    """A timestamp pointing at the exact snapshot bytes."""
    signed = {
        "_type": "Timestamp",
        "expires": format_rfc3339(now + TIMESTAMP_LIFETIME),
        "meta": {"snapshot": MetaFile.of_bytes(snapshot).to_dict()},
        "version": version,
    }
    return sign_signed(signed, signers)
