"""TrustedMetadataSet: one GUN's metadata that passed every check of the TUF client workflow.

Rules (modelled on python-tuf's ngclient TrustedMetadataSet, in Notary's dialect):
- Load order is root (+ rotations) -> timestamp -> snapshot -> targets -> delegations, parents before
  children. Loading out of order is a caller error (RuntimeError); nothing the repository serves can
  cause one.
- The set only ever holds metadata that passed every check; a failed update raises a `TrustError`
  subclass and leaves the set as it was.
- One clock reading (`now`) is used for every expiry check, so a verification is consistent.
- Root: the first root is the trust anchor (TOFU, optionally pinned to key IDs); its certificates
  must pass Notary's rules for the GUN and a threshold of them must sign it. Each further root must
  have version +1 and be signed by a threshold of the previous root's root keys AND of its own.
  Intermediate roots (and their certificates) may have expired; the final one (fixed when the
  timestamp is loaded) may not, and a threshold of its certificates must be valid at `now`.
- Timestamp: signed by the root's timestamp keys, not older than one already seen, unexpired.
- Snapshot: bytes match the timestamp's hashes and length; signed by the root's snapshot keys;
  its entry for root (if any) matches the trusted root; not rolled back; unexpired.
- Targets and delegations: bytes match the snapshot's entry; signed by a threshold of the keys the
  delegator assigns; not rolled back; unexpired. A delegation's targets count only for names inside
  the paths of every delegation on the way down from `targets`.
- `min_versions` (role -> version) is an optional rollback floor, e.g. versions trusted earlier.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from trust.errors import BadRoot, NotDelegated, NoTrustData, Rollback, ThresholdNotMet
from trust.metadata import (
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    DelegatedRole,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
    is_delegation,
    parent_of,
    parse_metadata,
)
from trust.verify import check_expiry, verify_root_self, verify_threshold


class TrustedMetadataSet:
    """Verified metadata of one GUN; see the module docstring for the invariants."""

    def __init__(
        self,
        root_data: bytes,
        gun: str,
        now: datetime,
        *,
        pinned_root_keys: Collection[str] = (),
        min_versions: Mapping[str, int] | None = None,
    ) -> None:
        self.gun = gun
        self.now = now
        self._pins = frozenset(pinned_root_keys)
        self._floor = dict(min_versions or {})
        self._trusted: dict[str, Metadata[Any]] = {}
        self._paths: dict[str, tuple[DelegatedRole, ...]] = {TARGETS: ()}
        self._root_signers: set[str] = set()
        self._root_final = False
        md = self._parse(root_data, ROOT)
        self._root_signers = verify_root_self(md, gun, None)
        self._check_floor(md)
        self._trusted[ROOT] = md

    # --- accessors -----------------------------------------------------------------------------
    @property
    def root(self) -> Metadata[Root]:
        return self._trusted[ROOT]

    @property
    def timestamp(self) -> Metadata[Timestamp] | None:
        return self._trusted.get(TIMESTAMP)

    @property
    def snapshot(self) -> Metadata[Snapshot] | None:
        return self._trusted.get(SNAPSHOT)

    @property
    def targets(self) -> Metadata[Targets] | None:
        return self._trusted.get(TARGETS)

    def get(self, role: str) -> Metadata[Any] | None:
        return self._trusted.get(role)

    def __contains__(self, role: str) -> bool:
        return role in self._trusted

    @property
    def versions(self) -> dict[str, int]:
        return {role: md.version for role, md in self._trusted.items()}

    @property
    def earliest_expiry(self) -> datetime:
        return min(md.signed.expires for md in self._trusted.values())

    # --- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _parse(data: bytes, role: str) -> Metadata[Any]:
        return parse_metadata(data, role)

    def _check_floor(self, md: Metadata[Any]) -> None:
        floor = self._floor.get(md.role)
        if floor is not None and md.version < floor:
            raise Rollback(f"{md.role} version {md.version} is older than version {floor} seen before", md.role)

    def _check_newer(self, md: Metadata[Any]) -> None:
        self._check_floor(md)
        old = self._trusted.get(md.role)
        if old is not None and md.version < old.version:
            raise Rollback(f"{md.role} version {md.version} is older than the trusted version {old.version}", md.role)

    # --- root ----------------------------------------------------------------------------------
    def update_root(self, data: bytes) -> Metadata[Root]:
        """Rotate to the next root version (client workflow: update the root)."""
        if self._root_final:
            raise RuntimeError("cannot update root after the timestamp was loaded")
        old = self.root
        md = self._parse(data, ROOT)
        try:
            verify_threshold(md, old.signed.keys, old.signed.roles[ROOT], f"root version {md.version}")
        except ThresholdNotMet as exc:
            raise BadRoot(
                f"could not rotate trust to root version {md.version}: it is not signed by a threshold of "
                f"the root keys of version {old.version}",
                ROOT,
            ) from exc
        if md.version != old.version + 1:
            kind = Rollback if md.version <= old.version else BadRoot
            raise kind(f"root version {md.version} does not follow trusted root version {old.version}", ROOT)
        signers = verify_root_self(md, self.gun, None)
        self._trusted[ROOT] = md
        self._root_signers = signers
        return md

    def finalize_root(self) -> None:
        """Fix the current root as final: unexpired, certificates valid at `now`, pins honoured.

        Called by the first `update_timestamp`; no root rotation is possible afterwards."""
        root = self.root
        check_expiry(root, self.now)
        self._check_floor(root)
        self._root_signers = verify_root_self(root, self.gun, self.now)
        if self._pins:
            signers = set()
            for keyid in self._root_signers:
                signers |= {keyid, root.signed.keys[keyid].bare_keyid()}
            if not signers & self._pins:
                raise BadRoot(
                    f"root version {root.version} is not signed by a pinned root key "
                    f"(signed by {', '.join(sorted(self._root_signers))})",
                    ROOT,
                )
        self._root_final = True

    # --- timestamp / snapshot ------------------------------------------------------------------
    def update_timestamp(self, data: bytes) -> Metadata[Timestamp]:
        if SNAPSHOT in self._trusted:
            raise RuntimeError("cannot update timestamp after the snapshot was loaded")
        if not self._root_final:
            self.finalize_root()
        root = self.root.signed
        md = self._parse(data, TIMESTAMP)
        verify_threshold(md, root.keys, root.roles[TIMESTAMP], TIMESTAMP)
        self._check_newer(md)
        check_expiry(md, self.now)
        self._trusted[TIMESTAMP] = md
        return md

    def update_snapshot(self, data: bytes) -> Metadata[Snapshot]:
        timestamp = self.timestamp
        if timestamp is None:
            raise RuntimeError("cannot update snapshot before the timestamp")
        if TARGETS in self._trusted:
            raise RuntimeError("cannot update snapshot after targets were loaded")
        timestamp.signed.snapshot.check(data, f"timestamp version {timestamp.version}", SNAPSHOT)
        root = self.root.signed
        md = self._parse(data, SNAPSHOT)
        verify_threshold(md, root.keys, root.roles[SNAPSHOT], SNAPSHOT)
        self._check_newer(md)
        root_meta = md.signed.meta.get(ROOT)
        if root_meta is not None:
            root_meta.check(self.root.raw, f"snapshot version {md.version}", f"root version {self.root.version}")
        check_expiry(md, self.now)
        self._trusted[SNAPSHOT] = md
        return md

    # --- targets and delegations ---------------------------------------------------------------
    def update_targets(self, data: bytes) -> Metadata[Targets]:
        return self.update_delegated_targets(data, TARGETS)

    def delegation_of(self, role: str) -> DelegatedRole | None:
        """The entry delegating `role` in its (trusted) parent, or None if the parent does not."""
        parent = self._trusted.get(parent_of(role))
        if parent is None:
            raise RuntimeError(f"cannot look up {role} before its parent {parent_of(role)} is loaded")
        return parent.signed.delegation(role)

    def snapshot_entry(self, role: str) -> MetaFile | None:
        snapshot = self.snapshot
        if snapshot is None:
            raise RuntimeError(f"cannot load {role} before the snapshot")
        return snapshot.signed.meta.get(role)

    def update_delegated_targets(self, data: bytes, role: str) -> Metadata[Targets]:
        """Load `targets` or a delegation, verified with the keys its delegator assigns."""
        snapshot = self.snapshot
        if snapshot is None:
            raise RuntimeError(f"cannot load {role} before the snapshot")
        if role in self._trusted:
            raise RuntimeError(f"{role} is already loaded")
        if role == TARGETS:
            root = self.root.signed
            keys, role_keys, chain = root.keys, root.roles[TARGETS], ()
        else:
            if not is_delegation(role):
                raise NotDelegated(f"{role} is not a valid delegation role name", role)
            entry = self.delegation_of(role)
            if entry is None:
                raise NotDelegated(f"{role} is not delegated by {parent_of(role)}", role)
            parent: Metadata[Targets] = self._trusted[parent_of(role)]
            keys, role_keys = parent.signed.delegation_keys, entry.keys
            chain = (*self._paths[parent_of(role)], entry)
        meta = snapshot.signed.meta.get(role)
        if meta is None:
            raise NoTrustData(f"snapshot version {snapshot.version} has no entry for {role}", role)
        meta.check(data, f"snapshot version {snapshot.version}", role)
        md = self._parse(data, role)
        verify_threshold(md, keys, role_keys, role)
        self._check_newer(md)
        check_expiry(md, self.now)
        self._trusted[role] = md
        self._paths[role] = chain
        return md

    def target_problem(self, role: str, name: str) -> str | None:
        """Why `role` may not sign target `name` (outside delegated paths), or None if it may."""
        for delegation in self._paths[role]:
            if not delegation.covers(name):
                return f"{role} signs {name!r}, outside the paths delegated to {delegation.name}"
        return None

    def targets_of(self, role: str) -> tuple[dict[str, MetaFile], dict[str, str]]:
        """A loaded role's targets: (accepted by name, refused name -> reason)."""
        md: Metadata[Targets] = self._trusted[role]
        accepted: dict[str, MetaFile] = {}
        refused: dict[str, str] = {}
        for name, meta in md.signed.targets.items():
            problem = self.target_problem(role, name)
            if problem is None:
                accepted[name] = meta
            else:
                refused[name] = problem
        return accepted, refused

    def require_target(self, role: str, name: str) -> MetaFile:
        """The target `name` as signed by `role`; raises NotDelegated/NoTrustData otherwise."""
        md: Metadata[Targets] = self._trusted[role]
        if name not in md.signed.targets:
            raise NoTrustData(f"{role} does not sign {name!r}", role)
        problem = self.target_problem(role, name)
        if problem is not None:
            raise NotDelegated(problem, role)
        return md.signed.targets[name]
