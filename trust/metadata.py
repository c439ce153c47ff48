"""Typed Notary metadata: parsing (JSON -> schema -> models), separate from verification.

`parse_metadata(data, role)` accepts the exact bytes of a file, validates its shape with the JSON
schemas, and returns a `Metadata` holding the typed `signed` part, the signatures, the exact bytes
(for hashes) and the canonical bytes the signatures are over.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from trust import schema
from trust.canonical import canonical_json
from trust.errors import HashMismatch, Malformed
from trust.keys import PublicKey, b64decode, b64encode
from trust.timeutil import parse_rfc3339

ROOT, TARGETS, SNAPSHOT, TIMESTAMP = "root", "targets", "snapshot", "timestamp"
BASE_ROLES = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)
TYPE_OF_ROLE = {ROOT: "Root", TARGETS: "Targets", SNAPSHOT: "Snapshot", TIMESTAMP: "Timestamp"}
_DELEGATION = re.compile(r"^targets(/[-a-z0-9_]+)+$")
HASH_SIZES = {"sha256": 32, "sha512": 64}


def is_delegation(role: str) -> bool:
    """A valid delegated targets role name (`targets/x[/y…]`, path-clean, < 256 chars)."""
    return len(role) < 256 and bool(_DELEGATION.match(role))


def is_valid_role(role: str) -> bool:
    return role in BASE_ROLES or is_delegation(role)


def parent_of(role: str) -> str:
    """The delegator of a targets role (`targets/a/b` -> `targets/a`, `targets` -> `root`)."""
    return ROOT if role == TARGETS else role.rsplit("/", 1)[0]


def type_of_role(role: str) -> str:
    return "Targets" if is_delegation(role) else TYPE_OF_ROLE[role]


@dataclass(frozen=True)
class Signature:
    keyid: str
    method: str
    sig: bytes


@dataclass(frozen=True)
class RoleKeys:
    """Who may sign a role: key IDs and how many of them must."""

    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class MetaFile:
    """Hashes and length of a file, as listed in timestamp/snapshot meta or as a target."""

    length: int
    hashes: dict[str, bytes]

    @classmethod
    def from_dict(cls, obj: dict[str, Any], what: str) -> MetaFile:
        hashes = {alg: b64decode(val, f"{what} {alg} hash") for alg, val in obj["hashes"].items()}
        for alg, size in HASH_SIZES.items():
            if alg in hashes and len(hashes[alg]) != size:
                raise Malformed(f"{what} has a {alg} hash of {len(hashes[alg])} bytes, not {size}")
        return cls(obj["length"], hashes)

    @classmethod
    def of_bytes(cls, data: bytes) -> MetaFile:
        return cls(len(data), {alg: hashlib.new(alg, data).digest() for alg in HASH_SIZES})

    def to_dict(self) -> dict[str, Any]:
        return {"hashes": {a: b64encode(h) for a, h in sorted(self.hashes.items())}, "length": self.length}

    def check(self, data: bytes, listed_by: str, role: str) -> None:
        """Raise HashMismatch unless `data` has the length and every known hash `listed_by` lists."""
        if len(data) != self.length:
            raise HashMismatch(
                f"{listed_by} length for {role} does not match: expected {self.length}, got {len(data)}", role
            )
        known = [alg for alg in self.hashes if alg in HASH_SIZES]
        if not known:
            raise HashMismatch(f"{listed_by} lists no sha256 or sha512 hash for {role}", role)
        for alg in known:
            if not hmac.compare_digest(hashlib.new(alg, data).digest(), self.hashes[alg]):
                raise HashMismatch(f"{listed_by} {alg} hash for {role} does not match", role)


@dataclass(frozen=True)
class DelegatedRole:
    name: str
    keys: RoleKeys
    paths: tuple[str, ...]

    def covers(self, target: str) -> bool:
        """Target names this role may sign: those starting with one of its paths ("" = all)."""
        return any(target.startswith(p) for p in self.paths)


@dataclass(frozen=True)
class Root:
    version: int
    expires: datetime
    expires_text: str
    keys: dict[str, PublicKey]
    roles: dict[str, RoleKeys]
    consistent_snapshot: bool


@dataclass(frozen=True)
class Targets:
    version: int
    expires: datetime
    expires_text: str
    targets: dict[str, MetaFile]
    delegation_keys: dict[str, PublicKey]
    delegations: tuple[DelegatedRole, ...]

    def delegation(self, name: str) -> DelegatedRole | None:
        return next((d for d in self.delegations if d.name == name), None)


@dataclass(frozen=True)
class Snapshot:
    version: int
    expires: datetime
    expires_text: str
    meta: dict[str, MetaFile]


@dataclass(frozen=True)
class Timestamp:
    version: int
    expires: datetime
    expires_text: str
    snapshot: MetaFile


Signed = Root | Targets | Snapshot | Timestamp
T = TypeVar("T", Root, Targets, Snapshot, Timestamp)


@dataclass(frozen=True)
class Metadata(Generic[T]):
    """A parsed (not yet verified) metadata file of role `role`."""

    role: str
    signed: T
    signatures: tuple[Signature, ...]
    raw: bytes = field(repr=False)
    message: bytes = field(repr=False)  # canonical JSON of `signed`: what signatures are over
    signed_dict: dict[str, Any] = field(repr=False)

    @property
    def version(self) -> int:
        return self.signed.version

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _loads(data: bytes, role: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise Malformed(f"{role} metadata has the key {key!r} twice")
            obj[key] = value
        return obj

    def no_constant(name: str) -> Any:
        raise Malformed(f"{role} metadata contains {name}")

    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed(f"{role} metadata is not valid JSON: {exc}") from exc


def _keys(obj: dict[str, Any]) -> dict[str, PublicKey]:
    return {keyid: PublicKey.from_dict(k) for keyid, k in obj.items()}


def _role_keys(obj: dict[str, Any]) -> RoleKeys:
    return RoleKeys(tuple(obj["keyids"]), obj["threshold"])


def _root(s: dict[str, Any]) -> Root:
    keys = _keys(s["keys"])
    roles = {name: _role_keys(r) for name, r in s["roles"].items()}
    for name, role in roles.items():
        missing = [k for k in role.keyids if k not in keys]
        if missing:
            raise Malformed(f"root type metadata invalid: {name} role lists key {missing[0]} not in keys")
    return Root(
        s["version"], parse_rfc3339(s["expires"]), s["expires"], keys, roles, s.get("consistent_snapshot", False)
    )


def _targets(s: dict[str, Any], role: str) -> Targets:
    deleg = s.get("delegations") or {"keys": {}, "roles": []}
    keys = _keys(deleg["keys"])
    roles = []
    seen: set[str] = set()
    for r in deleg["roles"]:
        name = r["name"]
        if parent_of(name) != role:
            raise Malformed(f"{role} type metadata invalid: {name} is not a direct child of {role}")
        if name in seen:
            raise Malformed(f"{role} type metadata invalid: {name} is delegated twice")
        seen.add(name)
        missing = [k for k in r["keyids"] if k not in keys]
        if missing:
            raise Malformed(f"{role} type metadata invalid: {name} lists key {missing[0]} not in keys")
        roles.append(DelegatedRole(name, _role_keys(r), tuple(r.get("paths") or ())))
    targets = {name: MetaFile.from_dict(t, f"target {name!r}") for name, t in s["targets"].items()}
    return Targets(s["version"], parse_rfc3339(s["expires"]), s["expires"], targets, keys, tuple(roles))


def _snapshot(s: dict[str, Any]) -> Snapshot:
    meta = {name: MetaFile.from_dict(m, f"snapshot meta for {name}") for name, m in s["meta"].items()}
    return Snapshot(s["version"], parse_rfc3339(s["expires"]), s["expires"], meta)


def _timestamp(s: dict[str, Any]) -> Timestamp:
    snap = MetaFile.from_dict(s["meta"]["snapshot"], "timestamp meta for snapshot")
    return Timestamp(s["version"], parse_rfc3339(s["expires"]), s["expires"], snap)


def parse_envelope(data: bytes, role: str) -> dict[str, Any]:
    """Parse bytes as a signed-envelope `{"signed": {...}, "signatures": [...]}`; raises Malformed."""
    doc = _loads(data, role)
    schema.validate("envelope", doc, role)
    return doc


def parse_metadata(data: bytes, role: str) -> Metadata[Any]:
    """Parse the bytes of role `role`'s file; raises Malformed (never anything else) on bad input."""
    if not is_valid_role(role):
        raise Malformed(f"invalid role name {role!r}")
    doc = parse_envelope(data, role)
    signed = doc["signed"]
    expected = type_of_role(role)
    if signed["_type"] != expected:
        raise Malformed(f"{role} type metadata invalid: expected type {expected}, not {signed['_type']}")
    schema.validate(expected.lower(), signed, role)
    try:
        if expected == "Root":
            typed: Signed = _root(signed)
        elif expected == "Targets":
            typed = _targets(signed, role)
        elif expected == "Snapshot":
            typed = _snapshot(signed)
        else:
            typed = _timestamp(signed)
    except (KeyError, TypeError, ValueError) as exc:  # schema should prevent these; belt and braces
        raise Malformed(f"{role} type metadata invalid: {exc!r}") from exc
    sigs = tuple(
        Signature(s["keyid"], s["method"].lower(), b64decode(s["sig"], f"{role} signature")) for s in doc["signatures"]
    )
    return Metadata(role, typed, sigs, data, canonical_json(signed), signed)
