"""The verifier's high-level entry point: stored bytes of one GUN -> the targets trusted roles sign.

    result = verify_trust_data(StoredTrustData(root=…, timestamp=…, snapshot=…, targets=…,
                                               delegations={"targets/releases": …}),
                               gun="registry.example.com/secure/alpine", now=clock_reading)
    result.lookup("1.0")            -> SignedTarget(sha256="…", length=1234, role="targets/releases")
    result.names_for_digest("sha256:…") -> ("1.0", "latest")

Any refusal raises a `trust.errors.TrustError` subclass whose message says what failed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from trust.errors import NoTrustData
from trust.metadata import TARGETS, is_delegation, parent_of
from trust.trusted_set import TrustedMetadataSet

DEFAULT_TRUSTED_ROLES: tuple[str, ...] = ("targets/releases", "targets")


@dataclass(frozen=True)
class StoredTrustData:
    """The raw bytes of one GUN's current metadata, exactly as stored (None = absent).

    `delegations` maps delegation role names to their current bytes (extra roles are ignored).
    `root_history` optionally holds older root versions, oldest first: the first one is then the trust
    anchor and the chain is walked up to `root` (each step checked against the previous root's keys).
    """

    root: bytes | None
    timestamp: bytes | None
    snapshot: bytes | None
    targets: bytes | None
    delegations: Mapping[str, bytes] = field(default_factory=dict)
    root_history: Sequence[bytes] = ()


class SignedTarget(NamedTuple):
    """A target as a trusted role signs it."""

    sha256: str  # lowercase hex
    length: int
    role: str


@dataclass(frozen=True)
class VerifiedTargets:
    """What the trusted roles of a verified collection sign.

    `targets`: name -> the entry of the most preferred trusted role that signs the name.
    `by_digest`: "sha256:<hex>" -> names any trusted role signs with that digest.
    `excluded`: name -> why an entry of a trusted role was not accepted (outside delegated paths,
    no sha256). `expires`: earliest expiry of the metadata used (re-verify after it).
    """

    gun: str
    versions: Mapping[str, int]
    expires: datetime
    targets: Mapping[str, SignedTarget]
    by_digest: Mapping[str, tuple[str, ...]]
    excluded: Mapping[str, str]
    root_keyids: tuple[str, ...]
    role_keyids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # trusted role -> its key IDs

    def lookup(self, name: str) -> SignedTarget | None:
        return self.targets.get(name)

    def names_for_digest(self, digest: str) -> tuple[str, ...]:
        return self.by_digest.get(digest.lower(), ())


def _load_role(trusted: TrustedMetadataSet, data: StoredTrustData, role: str) -> bool:
    """Load `role` and its ancestors; False when the role is not part of the collection."""
    if role in trusted:
        return True
    if role == TARGETS:
        if data.targets is None:
            raise NoTrustData("the targets metadata is missing", TARGETS)
        trusted.update_targets(data.targets)
        return True
    if not is_delegation(role) or not _load_role(trusted, data, parent_of(role)):
        return False
    if trusted.delegation_of(role) is None:
        return False  # not delegated (any bytes lying around are not trusted)
    stored = data.delegations.get(role)
    if trusted.snapshot_entry(role) is None:
        return False  # delegated, but nothing published for it (or not covered by the snapshot)
    if stored is None:
        raise NoTrustData(f"{role} is listed in the snapshot but its metadata is missing", role)
    trusted.update_delegated_targets(stored, role)
    return True


def build_trusted_set(
    data: StoredTrustData,
    gun: str,
    now: datetime,
    *,
    pinned_root_keys: Collection[str] = (),
    min_versions: Mapping[str, int] | None = None,
) -> TrustedMetadataSet:
    """Verify root (chain), timestamp and snapshot; targets roles are loaded by the caller."""
    if data.root is None:
        raise NoTrustData(f"no trust data for {gun}")
    chain = [*data.root_history]
    if not chain or chain[-1] != data.root:
        chain.append(data.root)
    trusted = TrustedMetadataSet(chain[0], gun, now, pinned_root_keys=pinned_root_keys, min_versions=min_versions)
    for root in chain[1:]:
        trusted.update_root(root)
    if data.timestamp is None:
        raise NoTrustData("the timestamp metadata is missing", "timestamp")
    trusted.update_timestamp(data.timestamp)
    if data.snapshot is None:
        raise NoTrustData("the snapshot metadata is missing", "snapshot")
    trusted.update_snapshot(data.snapshot)
    return trusted


def verify_trust_data(
    data: StoredTrustData,
    gun: str,
    now: datetime,
    *,
    pinned_root_keys: Collection[str] = (),
    trusted_roles: Sequence[str] = DEFAULT_TRUSTED_ROLES,
    min_versions: Mapping[str, int] | None = None,
) -> VerifiedTargets:
    """Verify a GUN's stored metadata at clock reading `now` and collect what `trusted_roles` sign.

    `trusted_roles` are in order of preference (default: docker's `targets/releases`, then `targets`);
    roles that are not delegated or have no published metadata contribute nothing. `pinned_root_keys`
    (certificate or bare key IDs), if any, must include a key that signed the current root.
    Raises a `TrustError` subclass on any failure.
    """
    trusted = build_trusted_set(data, gun, now, pinned_root_keys=pinned_root_keys, min_versions=min_versions)
    targets: dict[str, SignedTarget] = {}
    by_digest: dict[str, list[str]] = {}
    excluded: dict[str, str] = {}
    role_keyids: dict[str, tuple[str, ...]] = {}
    for role in trusted_roles:
        if not _load_role(trusted, data, role):
            continue
        delegation = trusted.delegation_of(role) if role != TARGETS else None
        keys = delegation.keys if delegation is not None else trusted.root.signed.roles[TARGETS]
        role_keyids[role] = tuple(keys.keyids)
        accepted, refused = trusted.targets_of(role)
        for name, reason in refused.items():
            excluded.setdefault(name, reason)
        for name, meta in accepted.items():
            digest = meta.hashes.get("sha256")
            if digest is None:
                excluded.setdefault(name, f"{role} signs {name!r} without a sha256 hash")
                continue
            entry = SignedTarget(digest.hex(), meta.length, role)
            targets.setdefault(name, entry)
            names = by_digest.setdefault(f"sha256:{entry.sha256}", [])
            if name not in names:
                names.append(name)
    root = trusted.root
    return VerifiedTargets(
        gun=gun,
        versions=trusted.versions,
        expires=trusted.earliest_expiry,
        targets=targets,
        by_digest={d: tuple(n) for d, n in by_digest.items()},
        excluded=excluded,
        root_keyids=tuple(root.signed.roles["root"].keyids),
        role_keyids=role_keyids,
    )
