"""Where one repository's Notary metadata lives in the storage driver, and atomic commits.

Layout (the `_` components cannot occur in repository names, so no repository shadows another):

    trust/<repository>/_tuf/current.json                 {"generation": <uuid>, "gun": <GUN>, "roles":
                                                          {<role>: {"version": N, "sha256": <hex>}}}
    trust/<repository>/_tuf/roles/<role>/<N>.json        every stored version, bytes as uploaded
    trust/<repository>/_tuf/sha256/<role>/<hex>          "<N>": which version has that checksum

A commit writes the new version files and checksum entries first and replaces `current.json` last, so
a crash leaves the old or the new state. Versions above the current one are uncommitted leftovers of
such a crash: readers ignore them and the next commit of that role removes them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from storage.base import PathNotFoundError, StorageDriver


@dataclass(frozen=True)
class RoleHead:
    version: int
    sha256: str


@dataclass(frozen=True)
class CurrentState:
    """The committed state of one repository: the GUN it is published under, and the current version
    and checksum of every role. `generation` changes with every commit."""

    generation: str
    gun: str
    roles: Mapping[str, RoleHead]

    def version(self, role: str) -> int:
        head = self.roles.get(role)
        return head.version if head else 0


@dataclass(frozen=True)
class StoredFile:
    """A metadata file as stored, with the time it was stored (Unix seconds)."""

    data: bytes
    modified: float
    version: int


class MetadataStore:
    """Versioned, atomically committed Notary metadata of repositories in a storage driver."""

    def __init__(self, driver: StorageDriver, prefix: str = "trust") -> None:
        self.driver = driver
        self.prefix = prefix.strip("/")

    # --- keys ----------------------------------------------------------------------------------
    def _base(self, repository: str) -> str:
        return f"{self.prefix}/{repository}/_tuf"

    def _current_key(self, repository: str) -> str:
        return f"{self._base(repository)}/current.json"

    def _role_dir(self, repository: str, role: str) -> str:
        return f"{self._base(repository)}/roles/{role}"

    def _version_key(self, repository: str, role: str, version: int) -> str:
        return f"{self._role_dir(repository, role)}/{version}.json"

    def _checksum_key(self, repository: str, role: str, sha256: str) -> str:
        return f"{self._base(repository)}/sha256/{role}/{sha256}"

    # --- reads ---------------------------------------------------------------------------------
    async def current(self, repository: str) -> CurrentState | None:
        """The committed state, or None when the repository has no trust data."""
        try:
            raw = await self.driver.get(self._current_key(repository))
        except PathNotFoundError:
            return None
        doc = json.loads(raw)
        roles = {role: RoleHead(h["version"], h["sha256"]) for role, h in doc["roles"].items()}
        return CurrentState(doc["generation"], doc["gun"], roles)

    async def current_raw(self, repository: str) -> bytes | None:
        """The committed pointer's bytes (they change with every commit), or None: a cheap change check."""
        try:
            return await self.driver.get(self._current_key(repository))
        except PathNotFoundError:
            return None

    async def read(self, repository: str, role: str, version: int) -> StoredFile | None:
        """A committed version of a role, or None."""
        key = self._version_key(repository, role, version)
        try:
            data = await self.driver.get(key)
            stat = await self.driver.stat(key)
        except PathNotFoundError:
            return None
        return StoredFile(data, stat.modified, version)

    async def read_committed(
        self, repository: str, role: str, version: int, state: CurrentState | None = None
    ) -> StoredFile | None:
        """Version `version` of `role` if it is committed (not above the current version)."""
        state = state or await self.current(repository)
        if state is None or not 1 <= version <= state.version(role):
            return None
        return await self.read(repository, role, version)

    async def read_current(self, repository: str, role: str, state: CurrentState | None = None) -> StoredFile | None:
        state = state or await self.current(repository)
        head = state.roles.get(role) if state else None
        if head is None:
            return None
        return await self.read(repository, role, head.version)

    async def read_by_checksum(self, repository: str, role: str, sha256: str) -> StoredFile | None:
        """The committed version of `role` whose bytes have SHA-256 `sha256` (hex), or None."""
        try:
            version = int(await self.driver.get(self._checksum_key(repository, role, sha256.lower())))
        except (PathNotFoundError, ValueError):
            return None
        found = await self.read_committed(repository, role, version)
        if found is None or hashlib.sha256(found.data).hexdigest() != sha256.lower():
            return None  # a leftover of an interrupted commit
        return found

    # --- writes --------------------------------------------------------------------------------
    async def commit(
        self, repository: str, gun: str, base: CurrentState | None, files: Mapping[str, tuple[int, bytes]]
    ) -> CurrentState:
        """Store `files` (role -> (version, bytes)) of `gun` on top of `base`; all become current at once.

        Raises ConcurrentUpdate if the committed state is no longer `base`.
        """
        for role in files:
            await self._drop_uncommitted(repository, role, base.version(role) if base else 0)
        heads = dict(base.roles) if base else {}
        for role, (version, data) in files.items():
            sha256 = hashlib.sha256(data).hexdigest()
            await self.driver.put(self._version_key(repository, role, version), data)
            await self.driver.put(self._checksum_key(repository, role, sha256), str(version).encode())
            heads[role] = RoleHead(version, sha256)
        now = await self.current(repository)
        if (now.generation if now else None) != (base.generation if base else None):
            raise ConcurrentUpdate(repository)
        state = CurrentState(uuid.uuid4().hex, gun, heads)
        doc = {
            "generation": state.generation,
            "gun": gun,
            "roles": {r: vars(h) for r, h in sorted(heads.items())},
        }
        await self.driver.put(self._current_key(repository), json.dumps(doc).encode())
        return state

    async def _drop_uncommitted(self, repository: str, role: str, current: int) -> None:
        """Remove version files of `role` above the committed version (crash leftovers)."""
        for name in await self.driver.list(self._role_dir(repository, role)):
            if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) > current:
                await self.driver.delete(f"{self._role_dir(repository, role)}/{name}")

    async def delete(self, repository: str) -> bool:
        """Delete all metadata of a repository (pointer first); True if there was any."""
        existed = await self.current(repository) is not None
        await self.driver.delete(self._current_key(repository))
        await self.driver.delete(self._base(repository))
        return existed


class ConcurrentUpdate(Exception):
    """Another writer committed to the repository while this update was being prepared."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"trust data of {repository} changed during the update")
