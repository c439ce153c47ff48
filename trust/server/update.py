"""Validating a publish (multipart update) as a whole against the current state (notes §4).

Pure: no storage, no keys. `parse_parts` turns the uploaded parts into role -> bytes (MALFORMED_JSON,
INVALID_ROLE, NO_FILENAME); `validate_update` checks root, targets/delegations (parents first) and a
posted snapshot, raising `NotaryError` INVALID_UPDATE with Notary's error names. Generating the
snapshot/timestamp and the VERSION rule are the service's job (they need keys and storage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trust.errors import Malformed, NotDelegated, TrustError
from trust.metadata import (
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    Metadata,
    Root,
    Targets,
    is_valid_role,
    parent_of,
    parse_envelope,
    parse_metadata,
)
from trust.server.errors import NotaryError, bad_role_update, invalid_update
from trust.verify import check_expiry, verify_root_self, verify_threshold


def parse_parts(parts: Sequence[tuple[str | None, bytes]]) -> dict[str, bytes]:
    """Role name -> bytes of the uploaded parts (filename minus `.json`); timestamp parts dropped.

    No parts at all is a valid update (notary-server 0.7.0): the server re-signs what it holds keys for."""
    roles: dict[str, bytes] = {}
    for filename, data in parts:
        if not filename:
            raise NotaryError("NO_FILENAME")
        role = filename.removesuffix(".json")
        if not is_valid_role(role):
            raise NotaryError("INVALID_ROLE", role)
        try:
            parse_envelope(data, role)
        except Malformed as exc:
            raise NotaryError("MALFORMED_JSON", str(exc)) from exc
        if role != TIMESTAMP:
            roles[role] = data
    return roles


@dataclass
class ValidatedUpdate:
    """An update that passed validation: what to store and what the state will be."""

    root: Metadata[Root]  # the root in force after the update
    posted: dict[str, Metadata[Any]] = field(default_factory=dict)  # validated posted roles
    files: dict[str, bytes] = field(default_factory=dict)  # root/targets/delegations after the update


def _validate_root(gun: str, data: bytes, current: Metadata[Root] | None, now: datetime) -> Metadata[Root]:
    try:
        md: Metadata[Root] = parse_metadata(data, ROOT)
    except Malformed as exc:
        raise bad_role_update(ROOT, exc) from exc
    current_version = current.version if current else 0
    if md.version not in (current_version, current_version + 1) or (current is None and md.version != 1):
        raise bad_role_update(
            ROOT, f"Root modifications must increment the version. Current {current_version}, new {md.version}"
        )
    try:
        verify_root_self(md, gun, now)
    except TrustError as exc:
        raise bad_role_update(ROOT, exc) from exc
    if current is not None:
        try:
            verify_threshold(md, current.signed.keys, current.signed.roles[ROOT], "root")
        except TrustError as exc:
            raise bad_role_update(
                ROOT,
                "could not rotate trust to a new trusted root: failed to validate data with current "
                f"trusted certificates ({exc})",
            ) from exc
    try:
        check_expiry(md, now)
    except TrustError as exc:
        raise bad_role_update(ROOT, exc) from exc
    return md


class _TargetsLoader:
    """Targets roles after the update: posted ones (validated) over stored ones (verified on demand)."""

    def __init__(self, root: Metadata[Root], stored: Mapping[str, bytes], now: datetime) -> None:
        self.root = root
        self.stored = stored
        self.now = now
        self.loaded: dict[str, Metadata[Targets]] = {}

    def _verify(self, md: Metadata[Targets], parent: Metadata[Targets] | None) -> None:
        if md.role == TARGETS:
            verify_threshold(md, self.root.signed.keys, self.root.signed.roles[TARGETS], TARGETS)
            return
        entry = parent.signed.delegation(md.role) if parent else None
        if parent is None or entry is None:
            raise NotDelegated(f"tuf: invalid role {md.role}. delegation does not exist", md.role)
        verify_threshold(md, parent.signed.delegation_keys, entry.keys, md.role)

    def stored_role(self, role: str) -> Metadata[Targets] | None:
        """A stored role (and its stored ancestors), verified against the roles in force."""
        if role in self.loaded:
            return self.loaded[role]
        data = self.stored.get(role)
        if data is None:
            return None
        parent = None if role == TARGETS else self.stored_role(parent_of(role))
        md: Metadata[Targets] = parse_metadata(data, role)
        self._verify(md, parent)
        self.loaded[role] = md
        return md

    def posted_role(self, role: str, data: bytes) -> Metadata[Targets]:
        md: Metadata[Targets] = parse_metadata(data, role)
        parent = None if role == TARGETS else self.loaded.get(parent_of(role)) or self.stored_role(parent_of(role))
        self._verify(md, parent)
        check_expiry(md, self.now)
        self.loaded[role] = md
        return md


def validate_update(
    gun: str, stored: Mapping[str, bytes], posted: Mapping[str, bytes], now: datetime
) -> ValidatedUpdate:
    """Check the posted roles against the stored current roles (role -> bytes) of `gun`."""
    try:
        current_root: Metadata[Root] | None = parse_metadata(stored[ROOT], ROOT) if ROOT in stored else None
    except Malformed as exc:
        raise NotaryError("UNKNOWN", f"stored root does not parse: {exc}") from exc
    if ROOT in posted:
        root = _validate_root(gun, posted[ROOT], current_root, now)
        result = ValidatedUpdate(root, {ROOT: root})
    elif current_root is None:
        raise invalid_update("ErrValidation", "no pre-existing root and no root provided in update.")
    else:
        result = ValidatedUpdate(current_root)

    loader = _TargetsLoader(result.root, stored, now)
    targets_roles = sorted((r for r in posted if r == TARGETS or r.startswith(TARGETS + "/")), key=_depth)
    for role in targets_roles:
        try:
            result.posted[role] = loader.posted_role(role, posted[role])
        except TrustError as exc:
            raise bad_role_update(role, exc) from exc

    result.files = {r: d for r, d in stored.items() if r not in (SNAPSHOT, TIMESTAMP)}
    result.files.update({r: posted[r] for r in result.posted})

    if SNAPSHOT in posted:
        result.posted[SNAPSHOT] = _validate_snapshot(posted[SNAPSHOT], result, now)
    return result


def _depth(role: str) -> tuple[int, str]:
    return (role.count("/"), role)


def _validate_snapshot(data: bytes, update: ValidatedUpdate, now: datetime) -> Metadata[Any]:
    root = update.root.signed
    try:
        md = parse_metadata(data, SNAPSHOT)
        verify_threshold(md, root.keys, root.roles[SNAPSHOT], SNAPSHOT)
        check_expiry(md, now)
        for role, meta in md.signed.meta.items():
            if role in update.files:
                meta.check(update.files[role], f"snapshot version {md.version}", role)
    except TrustError as exc:
        raise bad_role_update(SNAPSHOT, exc) from exc
    return md
